//! The `rest:` backend beyond the conformance suite (tests/cli/backends.rs):
//! a hostile REST server (tests/cli/support/hostile_rest.py, a real HTTP
//! server) is refused without a panic or a huge allocation; the server
//! password never appears in output; its sources (URL, ~/.netrc,
//! REPO_REST_PASSWORD) work; redirects are never followed; plain folders are
//! refused.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    Background, Run, clean_command, own_peak_rss_kib, random_bytes, repo_command, run, server,
    trust_test_ca_for, unique_url,
};

const PASSWORD: &str = "rest-test-password";

fn repo_cmd(url: &str, args: &[&str]) -> Command {
    let mut c = repo_command();
    c.arg("-r")
        .arg(url)
        .args(args)
        .env("REPO_PASSWORD", PASSWORD);
    trust_test_ca_for(&mut c, url);
    c
}

/// A local repository with one snapshot of a few MiB, for the hostile server to serve.
fn local_repository(dir: &Path) -> String {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(2 << 20, 3)).unwrap();
    std::fs::write(src.join("b.txt"), b"hello").unwrap();
    let repo = dir.join("repo").to_str().unwrap().to_string();
    run(repo_cmd(&repo, &["init"])).success();
    run(repo_cmd(&repo, &["create", "-q", src.to_str().unwrap()])).success();
    repo
}

/// Starts the hostile server in `mode` over `repo`; its URL and the file
/// where it notes how much it sent.
fn hostile(mode: &str, repo: &str, dir: &Path) -> (Background, String, std::path::PathBuf) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cli/support/hostile_rest.py"
    );
    let sent = dir.join(format!("{mode}.sent"));
    let mut c = clean_command("python3");
    c.args([script, mode, repo, sent.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("rest:http://127.0.0.1:{}/", port.trim());
    let bg = Background {
        child: Some(child),
        stdout: dir.join(format!("{mode}.out")),
        stderr: dir.join(format!("{mode}.err")),
    };
    (bg, url, sent)
}

/// Bytes the hostile server sent before the client hung up (0 if it did not note any).
fn sent(file: &Path) -> u64 {
    for _ in 0..50 {
        if let Ok(s) = std::fs::read_to_string(file) {
            return s.trim().parse().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    0
}

#[test]
fn hostile_server_is_refused_without_huge_allocations() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = local_repository(tmp.path());
    let cases: [(&str, &[&str], &str); 7] = [
        ("endless-listing", &["snapshots"], "larger than 128 MiB"),
        ("declared-listing", &["snapshots"], "larger than 128 MiB"),
        ("malformed-listing", &["snapshots"], "not a REST v2 listing"),
        ("v1-listing", &["snapshots"], "protocol v2"),
        ("endless-config", &["snapshots"], "bytes"),
        ("declared-config", &["snapshots"], "8589934592 bytes"),
        (
            "short-range",
            &["--no-cache", "check", "--read-data"],
            "range",
        ),
    ];
    for (mode, args, says) in cases {
        let (_server, url, sent_file) = hostile(mode, &repo, tmp.path());
        let out: Run = run(repo_cmd(&url, args));
        assert_eq!(out.code, 1, "{mode}: {out}");
        assert!(out.stderr.contains(says), "{mode}: {out}");
        // The listing is read up to its 128 MiB bound, an object not at all.
        let allowed_kib = own_peak_rss_kib() + (300 << 10);
        assert!(
            out.peak_rss_kib < allowed_kib,
            "{mode}: peak RSS {} KiB",
            out.peak_rss_kib
        );
        if mode.starts_with("endless") {
            let limit = if mode == "endless-listing" { 200 } else { 16 };
            assert!(sent(&sent_file) < limit << 20, "{mode}: read too much");
        }
    }
}

/// What the command printed (not its command line, which has the URL).
fn shown(out: &Run) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// Responses lost after the server carried out a POST or DELETE: the
/// retries find the object stored (403 "exists" from an append-only server)
/// or gone (404); a first GET answered 503 is retried; every command still
/// succeeds.
#[test]
fn lost_responses_are_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    let (_server, url, lost_file) = hostile("lossy", root.to_str().unwrap(), tmp.path());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(1 << 20, 5)).unwrap();
    run(repo_cmd(&url, &["init"])).success();
    run(repo_cmd(&url, &["create", "-q", src.to_str().unwrap()])).success();
    let snaps = run(repo_cmd(&url, &["snapshots", "--json"]))
        .success()
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    run(repo_cmd(&url, &["check", "--read-data"])).success();
    // config, key, pack(s), index, snapshot and lock POSTs, lock DELETEs.
    assert!(sent(&lost_file) >= 8, "too few responses were lost");
    let snapshot = snaps[0]["id"].as_str().unwrap();
    let out = tmp.path().join("out");
    let mut c = repo_cmd(&url, &["--no-cache", "restore", snapshot, "--target"]);
    c.arg(&out);
    run(c).success();
    assert_eq!(
        std::fs::read(out.join(src.strip_prefix("/").unwrap()).join("a.bin")).unwrap(),
        random_bytes(1 << 20, 5)
    );
    assert!(
        std::fs::read_dir(root.join("locks"))
            .unwrap()
            .next()
            .is_none(),
        "a lock was left behind"
    );
}

#[test]
fn server_password_never_appears() {
    let tmp = tempfile::tempdir().unwrap();
    // Unreachable: the error names the URL without the password.
    let out = run(repo_cmd(
        "rest:http://me:hunter2secret@127.0.0.1:1/r",
        &["snapshots"],
    ));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("rest:http://me@127.0.0.1:1/r"), "{out}");
    assert!(!shown(&out).contains("hunter2secret"), "{out}");
    let Some(base) = server("REPO_TEST_RESTS_URL") else {
        return;
    };
    let url = unique_url(&base, "pw");
    run(repo_cmd(&url, &["init"])).success();
    // A wrong server password: 401, said so, and not shown either.
    let wrong = url.replace(":repo-rest-pw@", ":wrong-pw-secret@");
    assert_ne!(wrong, url, "the test server's password changed");
    let out = run(repo_cmd(&wrong, &["snapshots"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("wrong user or password"), "{out}");
    assert!(!shown(&out).contains("wrong-pw-secret"), "{out}");
    // The password from REPO_REST_PASSWORD, then from ~/.netrc ($NETRC).
    let bare = url.replace(":repo-rest-pw@", "@");
    let mut c = repo_cmd(&bare, &["snapshots"]);
    c.env("REPO_REST_PASSWORD", "repo-rest-pw");
    run(c).success();
    let netrc = tmp.path().join("netrc");
    std::fs::write(
        &netrc,
        "machine 127.0.0.1 login repo password repo-rest-pw\n",
    )
    .unwrap();
    let mut c = repo_cmd(&bare, &["snapshots"]);
    c.env("NETRC", &netrc);
    run(c).success();
    // No password anywhere and no terminal: told where to put it.
    let out = run(repo_cmd(&bare, &["snapshots"]));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("REPO_REST_PASSWORD"), "{out}");
}

#[test]
fn plain_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = repo_command();
    c.args([
        "mirror",
        tmp.path().to_str().unwrap(),
        "rest:http://127.0.0.1:1/x",
    ]);
    let out = run(c);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("repositories only"), "{out}");
}

/// A server that answers every upload with a redirect to a login page (a
/// portal, a misconfigured proxy). Following it would turn each POST into a
/// GET of that page, whose 200 looked like "stored": `create` reported a
/// snapshot saved with nothing stored. Every write must fail, and say why.
#[test]
fn redirected_writes_fail_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = local_repository(tmp.path());
    let (_server, url, _) = hostile("redirect-writes", &repo, tmp.path());
    let before = run(repo_cmd(&url, &["snapshots", "--json"]))
        .success()
        .json();
    assert_eq!(before.as_array().unwrap().len(), 1);
    let src = tmp.path().join("new");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("c.bin"), random_bytes(1 << 20, 8)).unwrap();
    let out = run(repo_cmd(&url, &["create", src.to_str().unwrap()]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("302"), "{out}");
    assert!(out.stderr.contains("never follows"), "{out}");
    assert!(!shown(&out).contains("saved"), "{out}");
    let after = run(repo_cmd(&url, &["snapshots", "--json"]))
        .success()
        .json();
    assert_eq!(after, before);
    // Nor is a new repository reported made there.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (_server, url, _) = hostile("redirect-writes", empty.to_str().unwrap(), tmp.path());
    let out = run(repo_cmd(&url, &["init"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("302"), "{out}");
    assert!(!empty.join("config").exists());
}

/// A storage that refuses deletes only of objects that exist passes the
/// append-only probe. `tag` and `key passwd` write the new object before
/// they delete the old one, so nothing is lost, but the delete then fails:
/// the message says what was written, what is left, and what to run.
#[test]
fn a_delete_refused_after_the_write_says_what_was_left() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = local_repository(tmp.path());
    let (_server, url, _) = hostile("late-refusal", &repo, tmp.path());
    let out = run(repo_cmd(&url, &["tag", "--add", "x", "latest"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("could not delete snapshot"), "{out}");
    assert!(out.stderr.contains("repo forget"), "{out}");
    let snaps = run(repo_cmd(&url, &["snapshots", "--json"]))
        .success()
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");

    let newpw = tmp.path().join("newpw");
    std::fs::write(&newpw, "the-new-password").unwrap();
    let mut c = repo_cmd(&url, &["key", "passwd", "--new-password-file"]);
    c.arg(&newpw);
    let out = run(c);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("Both passwords open"), "{out}");
    assert!(out.stderr.contains("repo key remove"), "{out}");
    run(repo_cmd(&url, &["snapshots"])).success();
    let mut c = repo_cmd(&url, &["snapshots"]);
    c.env("REPO_PASSWORD", "the-new-password");
    run(c).success();
}

/// A server whose listings name every object twice: each snapshot is still
/// one snapshot (forget keeps the last two distinct ones, and removes only
/// the older; snapshots lists each once).
#[test]
fn duplicate_names_in_a_listing_count_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = local_repository(tmp.path());
    let src = tmp.path().join("src");
    for i in 0..2u64 {
        std::fs::write(src.join("b.txt"), format!("change {i}")).unwrap();
        run(repo_cmd(&repo, &["create", "-q", src.to_str().unwrap()])).success();
    }
    let mut ids: Vec<String> = run(repo_cmd(&repo, &["--json", "snapshots"]))
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let (_server, url, _) = hostile("dup-listing", &repo, tmp.path());
    let listed = run(repo_cmd(&url, &["--json", "snapshots"]))
        .success()
        .json();
    let mut seen: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "snapshots listed through the server");
    let plan = run(repo_cmd(
        &url,
        &["--json", "forget", "--keep-last", "2", "--dry-run"],
    ))
    .success()
    .json();
    let group = &plan["groups"][0];
    let ids_of = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let keep = ids_of(&group["keep"]);
    let remove = ids_of(&group["remove"]);
    assert_eq!(keep.len(), 2, "{plan}");
    assert_ne!(keep[0], keep[1], "one snapshot kept twice: {plan}");
    assert_eq!(remove.len(), 1, "{plan}");
    assert!(!keep.contains(&remove[0]), "{plan}");
    assert_eq!(plan["groups"].as_array().unwrap().len(), 1, "{plan}");
}

/// A server answering a whole-pack read with more than the pack: the read
/// stops at the size the index gives the pack, and the error names it;
/// memory stays near what an honest server's check costs.
#[test]
fn a_pack_longer_than_indexed_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = local_repository(tmp.path());
    let args = ["--no-cache", "check", "--read-data", "--connections", "2"];
    let (honest_server, url, _) = hostile("honest", &repo, tmp.path());
    let honest = run(repo_cmd(&url, &args));
    honest.success();
    drop(honest_server);
    let (_server, url, _) = hostile("long-pack", &repo, tmp.path());
    let out = run(repo_cmd(&url, &args));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("data/"), "{out}");
    assert!(
        out.stderr.contains("more than the") && out.stderr.contains("its size in the index"),
        "{out}"
    );
    // The 256 MiB of junk were never read.
    assert!(
        out.peak_rss_kib < honest.peak_rss_kib + (64 << 10),
        "peak RSS {} KiB, {} KiB with an honest server",
        out.peak_rss_kib,
        honest.peak_rss_kib
    );
}
