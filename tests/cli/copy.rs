//! `repo copy`: snapshots into another repository on any backend, skipped
//! when already there, resumed after kill -9 without sending again what
//! arrived; each side stays clean under `check --read-data`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::pause::paused_at;
use crate::support::{
    Cmp, Run, assert_same_tree, repo_command, run, server, simple_tree, trust_test_ca, unique_url,
    write_random,
};

/// `repo ARGS` on repository `from` (password `from-pw`), copying into a
/// repository with password `to-pw`.
fn repo(dir: &Path, from: &str, args: &[&str]) -> Command {
    let mut c = repo_command();
    trust_test_ca(&mut c);
    c.args(args)
        .arg("-r")
        .arg(from)
        .env("REPO_PASSWORD", "from-pw")
        .env("REPO_TO_PASSWORD", "to-pw")
        .env("REPO_CACHE_DIR", dir.join("cache"));
    c
}

fn init(dir: &Path, at: &str, password: &str, extra: &[&str]) {
    let mut c = repo(dir, at, &["init"]);
    c.args(extra).env("REPO_PASSWORD", password);
    run(c).success();
}

/// `repo` on `at` as its own repository (the destination's password).
fn on_copy(dir: &Path, at: &str, args: &[&str]) -> Run {
    let mut c = repo(dir, at, args);
    c.env("REPO_PASSWORD", "to-pw");
    run(c)
}

fn snapshot_count(dir: &Path, at: &str, password: &str) -> usize {
    let mut c = repo(dir, at, &["snapshots", "--json"]);
    c.env("REPO_PASSWORD", password);
    let r = run(c);
    r.success();
    r.json().as_array().unwrap().len()
}

/// Restores the latest snapshot of `at` and compares it with `src`.
fn restores_identical(dir: &Path, at: &str, src: &Path, name: &str) {
    let target = dir.join(name);
    on_copy(
        dir,
        at,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    )
    .success();
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(src, &restored, Cmp::full());
}

#[test]
fn snapshots_travel_between_local_disk_s3_and_ftp() {
    let (Some(s3), Some(ftp)) = (server("REPO_TEST_S3_URL"), server("REPO_TEST_FTP_URL")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    simple_tree(&src, 81);
    let local = dir.join("local").to_str().unwrap().to_string();
    init(dir, &local, "from-pw", &[]);
    run(repo(dir, &local, &["create", src.to_str().unwrap()])).success();
    std::fs::write(src.join("second"), b"a second snapshot").unwrap();
    run(repo(dir, &local, &["create", src.to_str().unwrap()])).success();
    // local -> S3 -> FTP -> a second local repository: each backend as
    // source and as destination.
    let hops = [
        local.clone(),
        unique_url(&s3, "copy"),
        unique_url(&ftp, "copy"),
        dir.join("back").to_str().unwrap().to_string(),
    ];
    for pair in hops.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        init(dir, to, "to-pw", &[]);
        let r = run(repo(dir, from, &["copy", "--to", to, "--json"]));
        r.success();
        assert_eq!(r.json()["copied"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(snapshot_count(dir, to, "to-pw"), 2);
        // Every night: nothing new, nothing copied.
        let again = run(repo(dir, from, &["copy", "--to", to, "--json"]));
        again.success();
        assert_eq!(
            again.json()["copied"].as_array().unwrap().len(),
            0,
            "{again}"
        );
        assert_eq!(again.json()["blobs_new"], 0);
        on_copy(dir, to, &["check", "--read-data"]).success();
        // The next hop reads this one with the source's password.
        let pw = dir.join("from-pw");
        std::fs::write(&pw, "from-pw\n").unwrap();
        let mut c = repo(
            dir,
            to,
            &["key", "add", "--new-password-file", pw.to_str().unwrap()],
        );
        c.env("REPO_PASSWORD", "to-pw");
        run(c).success();
    }
    restores_identical(dir, &hops[3], &src, "restored");
}

/// Copies two snapshots of 11 MiB (the same data) from `from` to `to`,
/// killed with SIGKILL right after the first pack reached `to` and was
/// indexed, then again: nothing indexed is sent twice, and both sides are
/// clean.
fn killed_copy_trial(dir: &Path, from: &str, to: &str) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big"), 8 << 20, 82);
    write_random(&src.join("other"), 3 << 20, 83);
    init(dir, from, "from-pw", &[]);
    init(dir, to, "to-pw", &["--pack-size", "1048576"]);
    run(repo(dir, from, &["create", src.to_str().unwrap()])).success();
    // A second snapshot sharing all the data: stored once in the copy.
    run(repo(
        dir,
        from,
        &["create", src.to_str().unwrap(), "--force"],
    ))
    .success();
    let pauses = dir.join("pauses");
    std::fs::create_dir_all(&pauses).unwrap();
    let mut c = repo(dir, from, &["copy", "--to", to]);
    c.env("REPO_TEST_PAUSE", "save-index-written")
        .env("REPO_TEST_PAUSE_DIR", &pauses);
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while !paused_at(&pauses, "save-index-written", child.id()) {
        assert!(start.elapsed() < Duration::from_secs(120), "never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(snapshot_count(dir, to, "to-pw"), 0);
    if Path::new(to).is_dir() {
        // Paused at the first index object: one pack of about eleven in,
        // the rest still to come (an index per pack, not per batch).
        let packs = crate::support::walk_files(&Path::new(to).join("data")).len();
        assert!((1..8).contains(&packs), "{packs} packs at the first index");
    }
    let r = run(repo(dir, from, &["copy", "--to", to, "--json"]));
    r.success();
    let report = r.json();
    assert_eq!(report["copied"].as_array().unwrap().len(), 2, "{r}");
    // What the killed run indexed was not sent again: of 11 MiB, at least
    // the first 1 MiB pack had arrived.
    let sent = report["bytes_new"].as_u64().unwrap();
    assert!(
        sent <= (11 << 20) - (1 << 20) + (64 << 10),
        "sent {sent}: {r}"
    );
    assert!(sent > 0, "{r}");
    assert_eq!(snapshot_count(dir, to, "to-pw"), 2);
    on_copy(dir, to, &["check", "--read-data"]).success();
    run(repo(dir, from, &["check", "--read-data"])).success();
    restores_identical(dir, to, &src, "restored");
}

#[test]
fn a_killed_copy_resumes_without_sending_packs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (from, to) = (dir.join("from"), dir.join("to"));
    killed_copy_trial(dir, from.to_str().unwrap(), to.to_str().unwrap());
    // Both snapshots share every data blob: the copy stored them once.
    let stored = walk_sizes(&to.join("data"));
    assert!(
        stored < (11 << 20) + (2 << 20),
        "stored {stored} bytes for 11 MiB of data"
    );
}

#[test]
fn killed_copies_between_backends_resume() {
    let (Some(s3), Some(ftp)) = (server("REPO_TEST_S3_URL"), server("REPO_TEST_FTP_URL")) else {
        return;
    };
    for (from, to) in [
        ("local", unique_url(&s3, "kill-to")),
        ("s3", unique_url(&ftp, "kill-to")),
        ("ftp", "local".to_string()),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let at = |kind: &str| match kind {
            "local" => dir.join("local").to_str().unwrap().to_string(),
            "s3" => unique_url(&s3, "kill-from"),
            _ => unique_url(&ftp, "kill-from"),
        };
        let to = if to == "local" { at("local") } else { to };
        killed_copy_trial(dir, &at(from), &to);
    }
}

fn walk_sizes(dir: &Path) -> u64 {
    crate::support::walk_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn copy_refuses_the_same_repository_and_wrong_destination_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let at = dir.join("r").to_str().unwrap().to_string();
    init(dir, &at, "from-pw", &[]);
    let mut c = repo(dir, &at, &["copy", "--to", &at]);
    c.env("REPO_TO_PASSWORD", "from-pw");
    run(c).code(2).stderr_has("same repository");
    let other = dir.join("o").to_str().unwrap().to_string();
    init(dir, &other, "to-pw", &[]);
    let mut c = repo(dir, &at, &["copy", "--to", &other]);
    c.env("REPO_TO_PASSWORD", "wrong");
    run(c).code(12);
    let mut c = repo(
        dir,
        &at,
        &["copy", "--to", &dir.join("missing").to_string_lossy()],
    );
    c.env("REPO_TO_PASSWORD", "x");
    run(c).code(10);
}
