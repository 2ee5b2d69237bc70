//! S3 object lock against a real SeaweedFS bucket created with object lock
//! (`scripts/s3-server.sh` makes it and exports `REPO_TEST_S3_LOCK_URL`).
//! An independent client (boto3, `support/s3_versions.py`) reads what the
//! bucket really holds: every version, its lock, and the delete markers.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Run, clean_command, random_bytes, repo_command, run, server, unique_url};

const PASSWORD: &str = "object-lock-password";

fn repo(url: &str, args: &[&str], lock_secs: Option<u64>) -> Run {
    let mut c = repo_command();
    c.arg("-r")
        .arg(url)
        .args(args)
        .env("REPO_PASSWORD", PASSWORD);
    if let Some(s) = lock_secs {
        c.env("REPO_TEST_OBJECT_LOCK_SECS", s.to_string());
    }
    run(c)
}

fn boto(args: &[&str]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cli/support/s3_versions.py"
    );
    let mut c: Command = clean_command("python3");
    c.arg(script).args(args);
    run(c).success().json()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Every stored version under the repository's prefix.
fn versions(url: &str) -> Vec<Value> {
    boto(&["versions", url])["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A new repository with object lock at a fresh place in the lock bucket,
/// holding one backup of a few MiB (several packs).
fn locked_repo(tag: &str, lock_secs: Option<u64>) -> Option<(String, tempfile::TempDir)> {
    let base = server("REPO_TEST_S3_LOCK_URL")?;
    let url = unique_url(&base, tag);
    repo(
        &url,
        &["init", "--object-lock", "1", "--pack-size", "1048576"],
        lock_secs,
    )
    .success();
    let src = tempfile::tempdir().unwrap();
    for i in 0..3u64 {
        std::fs::write(src.path().join(format!("f{i}")), random_bytes(1 << 20, i)).unwrap();
    }
    repo(&url, &["create", src.path().to_str().unwrap()], lock_secs).success();
    Some((url, src))
}

#[test]
fn init_refuses_storage_that_cannot_lock() {
    if let Some(plain) = server("REPO_TEST_S3_URL") {
        let url = unique_url(&plain, "nolock");
        repo(&url, &["init", "--object-lock", "1"], None)
            .code(2)
            .stderr_has("has no object lock")
            .stderr_has("--object-lock-enabled-for-bucket");
        // Nothing was written: the URL holds no repository.
        repo(&url, &["snapshots"], None).code(10);
    }
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("repo");
    repo(
        local.to_str().unwrap(),
        &["init", "--object-lock", "1"],
        None,
    )
    .code(2)
    .stderr_has("needs S3 storage");
    assert!(!local.exists(), "a refused init made {}", local.display());
}

/// A locked repository copied into a bucket without object lock (a
/// disaster-recovery copy): the first locked write there is refused with
/// S3's bare "400 InvalidRequest", which now turns into the bucket check's
/// message naming what is wrong and what to do.
#[test]
fn a_locked_repository_in_a_bucket_without_lock_says_so() {
    let Some((url, src)) = locked_repo("moved", None) else {
        return;
    };
    let plain = unique_url(&server("REPO_TEST_S3_URL").expect("plain bucket"), "moved");
    assert!(boto(&["copy", &url, &plain])["copied"].as_u64().unwrap() > 3);
    std::fs::write(src.path().join("new"), random_bytes(1 << 20, 77)).unwrap();
    repo(&plain, &["create", src.path().to_str().unwrap()], None)
        .code(2)
        .stderr_has("has no object lock")
        .stderr_has("--object-lock-enabled-for-bucket");
}

#[test]
fn every_object_but_locks_is_locked_and_stays() {
    let Some((url, _src)) = locked_repo("every", None) else {
        return;
    };
    let all = versions(&url);
    let day = 86400.0;
    let mut dirs = std::collections::BTreeSet::new();
    for v in &all {
        let key = v["key"].as_str().unwrap();
        let dir = key.split('/').next().unwrap();
        if dir == "locks" {
            assert!(
                v["mode"].is_null() && v["until"].is_null(),
                "lock file locked: {v}"
            );
            continue;
        }
        dirs.insert(dir.to_string());
        assert_eq!(v["mode"], "COMPLIANCE", "{v}");
        let until = v["until"].as_f64().unwrap();
        assert!(until >= now_secs() + day - 300.0, "locked too briefly: {v}");
        assert!(
            until <= now_secs() + day + 2.0 * 3600.0,
            "locked too long: {v}"
        );
    }
    let want = ["config", "data", "index", "keys", "locks", "snapshots"];
    let seen: Vec<&str> = all.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert!(
        seen.iter().any(|k| k.starts_with("locks/")),
        "no lock was ever written: {seen:?}"
    );
    assert_eq!(dirs.len(), want.len() - 1, "{dirs:?}");
    // Someone holding these credentials tries to destroy a pack for good:
    // the server refuses, and the repository is intact.
    let pack = all
        .iter()
        .find(|v| v["key"].as_str().unwrap().starts_with("data/"))
        .unwrap();
    let attempt = boto(&[
        "delete-version",
        &url,
        pack["key"].as_str().unwrap(),
        pack["version"].as_str().unwrap(),
    ]);
    assert_eq!(attempt["deleted"], false, "{attempt}");
    assert_eq!(attempt["error"], "AccessDenied", "{attempt}");
    repo(&url, &["check", "--read-data"], None).success();
}

#[test]
fn prune_keeps_packs_while_locked_and_removes_them_after() {
    let secs = 3;
    let Some((url, _src)) = locked_repo("prune", Some(secs)) else {
        return;
    };
    let r = repo(&url, &["--json", "forget", "latest", "--prune"], Some(secs));
    let report = &r.success().json()["prune"];
    let before = report["packs_before"].as_u64().unwrap();
    assert!(before >= 3, "{report}");
    assert_eq!(report["locked_kept"].as_u64(), Some(before), "{report}");
    assert_eq!(report["packs_removed"], 0, "{report}");
    assert_eq!(report["packs_after"].as_u64(), Some(before), "{report}");
    let until = report["locked_until"].as_str().unwrap().to_string();
    // No pack was even hidden behind a delete marker.
    let markers = boto(&["versions", &url])["markers"].clone();
    let hidden: Vec<&Value> = markers
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["key"].as_str().unwrap().starts_with("data/"))
        .collect();
    assert!(hidden.is_empty(), "packs deleted while locked: {hidden:?}");
    // The kept packs are indexed as before: the repository is consistent.
    repo(&url, &["check", "--read-data"], Some(secs)).success();
    sleep_past(&until);
    let report = repo(&url, &["--json", "prune"], Some(secs))
        .success()
        .json();
    assert_eq!(report["locked_kept"], 0, "{report}");
    assert_eq!(report["packs_removed"].as_u64(), Some(before), "{report}");
    assert_eq!(report["packs_after"], 0, "{report}");
    repo(&url, &["check"], Some(secs)).success();
}

/// The latest version of each key under `dir/`, with its lock.
fn latest(url: &str, dir: &str) -> Vec<Value> {
    versions(url)
        .into_iter()
        .filter(|v| v["latest"] == true && v["key"].as_str().unwrap().starts_with(dir))
        .collect()
}

/// Waits until `rfc3339` has passed (and a little more), at most 40 s.
fn sleep_past(rfc3339: &str) {
    let until = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    let wait = (until.timestamp() as f64 - now_secs()).max(0.0) + 1.5;
    assert!(wait < 40.0, "locked until {until}");
    std::thread::sleep(Duration::from_secs_f64(wait));
}

#[test]
fn prune_extends_the_locks_of_what_snapshots_use_and_only_those() {
    let secs = 4;
    let Some((url, _src)) = locked_repo("extend", Some(secs)) else {
        return;
    };
    // Older than the hold (4 s + 2 × 4 s): judged by write time alone,
    // every lock has ended.
    std::thread::sleep(Duration::from_secs(13));
    // Locks are extended from when prune runs: judged against its start, not against the
    // clock after the slow listing below (under load that made the test fail).
    let started = now_secs();
    let report = repo(&url, &["--json", "prune"], Some(secs))
        .success()
        .json();
    let packs = report["packs_before"].as_u64().unwrap();
    // Packs, the index, the snapshot, the key and the config.
    assert!(
        report["locks_extended"].as_u64().unwrap() >= packs + 4,
        "{report}"
    );
    for dir in ["config", "data/", "index/", "keys/", "snapshots/"] {
        for v in latest(&url, dir) {
            let until = v["until"].as_f64().unwrap();
            // Whole seconds on the wire: up to one lost.
            assert!(until >= started + secs as f64 - 1.0, "not extended: {v}");
        }
    }
    let extended: Vec<Value> = latest(&url, "data/");
    // Nothing uses the packs any more, but their extended locks hold: prune
    // asks each pack and keeps them, and does not extend them again.
    let r = repo(&url, &["--json", "forget", "latest", "--prune"], Some(secs));
    let report = r.success().json()["prune"].clone();
    assert_eq!(report["locked_kept"].as_u64(), Some(packs), "{report}");
    assert_eq!(report["packs_removed"], 0, "{report}");
    let again: Vec<Value> = latest(&url, "data/");
    let untils = |vs: &[Value]| vs.iter().map(|v| v["until"].clone()).collect::<Vec<_>>();
    assert_eq!(
        untils(&extended),
        untils(&again),
        "unused packs' locks extended"
    );
    sleep_past(report["locked_until"].as_str().unwrap());
    let report = repo(&url, &["--json", "prune"], Some(secs))
        .success()
        .json();
    assert_eq!(report["packs_removed"].as_u64(), Some(packs), "{report}");
    assert_eq!(report["packs_after"], 0, "{report}");
}

#[test]
fn prune_with_a_shorter_period_than_the_locks_have_leaves_them_and_succeeds() {
    // A lock can only be lengthened: the server refuses an earlier date
    // (403). Locks extended by a run with a longer period (or a clock ahead,
    // or an administrator) must not make a later prune fail.
    let long = 8;
    let Some((url, _src)) = locked_repo("shorter", Some(long)) else {
        return;
    };
    // Past half the long period: the first prune extends everything.
    std::thread::sleep(Duration::from_secs(5));
    let report = repo(&url, &["--json", "prune"], Some(long))
        .success()
        .json();
    assert!(report["locks_extended"].as_u64().unwrap() > 0, "{report}");
    let before: Vec<Value> = latest(&url, "data/");
    // Now with a period so short that every object is past half of it and
    // its new date would come before the one it has.
    std::thread::sleep(Duration::from_secs(2));
    let r = repo(&url, &["--json", "prune"], Some(2));
    let report = r.success().json();
    assert_eq!(report["locks_extended"], 0, "{report}");
    let after: Vec<Value> = latest(&url, "data/");
    let untils = |vs: &[Value]| vs.iter().map(|v| v["until"].clone()).collect::<Vec<_>>();
    assert_eq!(untils(&before), untils(&after), "locks changed");
}
