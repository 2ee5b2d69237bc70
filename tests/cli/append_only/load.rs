//! Append-only servers under the conditions clients meet: backups killed
//! half way (kill -9, so nothing is cleaned up and their locks stay), and
//! many hosts backing up at once into their private repositories.

use std::process::Stdio;
use std::time::Duration;

use super::{AppendServer, tree};
use crate::support::{Background, Cmp, assert_same_tree, restored, wait_until, write_random};

/// A tree big enough that a backup is still uploading when it is killed.
fn big_tree(root: &std::path::Path, seed: u64) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..6 {
        write_random(&root.join(format!("part{i}.bin")), 1 << 20, seed * 100 + i);
    }
}

fn spawn(s: &AppendServer, path: &str, args: &[&str], out: &std::path::Path) -> Background {
    let mut c = s.client(path, args);
    let (so, se) = (out.with_extension("out"), out.with_extension("err"));
    c.stdout(std::fs::File::create(&so).unwrap())
        .stderr(std::fs::File::create(&se).unwrap())
        .stdin(Stdio::null());
    Background {
        child: Some(c.spawn().unwrap()),
        stdout: so,
        stderr: se,
    }
}

/// Packs stored so far.
fn packs(s: &AppendServer, path: &str) -> usize {
    crate::support::walk_files(&s.folder(path).join("data")).len()
}

#[test]
fn twenty_backups_killed_midway_leave_a_clean_repository_and_no_blocking_lock() {
    let Some(s) = AppendServer::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = s.new_path("host04", "killed");
    let src = tmp.path().join("src");
    // 1 MiB packs: several are uploaded while the backup runs.
    s.run(&path, &["init", "--pack-size", "1048576"]).success();
    for round in 0..20u64 {
        // New content every round, so each backup has packs to upload.
        big_tree(&src, round + 1);
        let start = packs(&s, &path);
        let mut bg = spawn(
            &s,
            &path,
            &["create", src.to_str().unwrap()],
            &tmp.path().join("bg"),
        );
        // Killed once it has stored something (or, on a fast machine,
        // whenever it gets that far), never cleaned up.
        wait_until(Duration::from_secs(60), || {
            packs(&s, &path) > start || bg.exited().is_some()
        });
        bg.kill_and_reap();
        // Its lock stays behind, and blocks no other client.
        s.run(&path, &["check"]).success();
        s.run(&path, &["create", src.to_str().unwrap()]).success();
    }
    let locks = crate::support::walk_files(&s.folder(&path).join("locks")).len();
    assert!(
        locks > 0,
        "the killed backups left no lock: the kills came too late"
    );
    s.run(&path, &["check", "--read-data"]).success();
    let out = tmp.path().join("out");
    s.run(
        &path,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .success();
    assert_same_tree(&src, &restored(&out, &src), Cmp::content_only());
    // Nor the operator: prune on the server sees the holders are gone and
    // removes what the killed backups left.
    s.operator(&path, &["prune"]).success();
    assert_eq!(
        crate::support::walk_files(&s.folder(&path).join("locks")).len(),
        0,
        "prune left the dead clients' locks"
    );
    s.run(&path, &["check", "--read-data"]).success();
}

#[test]
fn twenty_hosts_back_up_at_once_into_their_private_repositories() {
    let Some(s) = AppendServer::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let hosts: Vec<(String, std::path::PathBuf)> = (11..31)
        .map(|n| {
            let user = format!("host{n:02}");
            let src = tmp.path().join(&user);
            tree(&src, n);
            write_random(&src.join("own.bin"), 1 << 20, n * 7);
            (s.new_path(&user, "load"), src)
        })
        .collect();
    let mut running: Vec<Background> = hosts
        .iter()
        .enumerate()
        .map(|(i, (path, src))| {
            let script = "\"$0\" init -r \"$1\" && \"$0\" create -r \"$1\" \"$2\"";
            let mut c = crate::support::clean_command("sh");
            c.arg("-c")
                .arg(script)
                .arg(crate::support::BIN)
                .arg(s.url(path))
                .arg(src);
            c.env("REPO_PASSWORD", super::PASSWORD)
                .env("REPO_CA_CERT", &s.ca);
            let (so, se) = (
                tmp.path().join(format!("{i}.out")),
                tmp.path().join(format!("{i}.err")),
            );
            c.stdout(std::fs::File::create(&so).unwrap())
                .stderr(std::fs::File::create(&se).unwrap());
            Background {
                child: Some(c.spawn().unwrap()),
                stdout: so,
                stderr: se,
            }
        })
        .collect();
    for bg in &mut running {
        let status = bg.wait(Duration::from_secs(600));
        assert!(status.success(), "a client failed\n{}", bg.output());
    }
    for (path, src) in &hosts {
        let out = tmp.path().join(format!("{path}-out").replace('/', "_"));
        s.run(
            path,
            &["restore", "latest", "--target", out.to_str().unwrap()],
        )
        .success();
        assert_same_tree(src, &restored(&out, src), Cmp::content_only());
    }
}
