//! Adversarial part: locks. A backup suspended (SIGSTOP, as a closed laptop
//! lid or a paused VM) longer than the stale period while another process
//! prunes, a prune suspended while a backup runs, lock holders in other pid
//! namespaces and on "other machines" under the same host name, a lock
//! removed under its holder, and a garbage exclusive claim.
//!
//! The stale period is shortened with `REPO_TEST_STALE_SECS`; races are
//! opened with the binary's pause points (`REPO_TEST_PAUSE`): `create-locked`
//! (create, right after taking its lock), `save-index` / `save-snapshot`
//! (before the lock check of that write), `…-checked` (between the check
//! and the write), `…-written` (between the write and the check after it),
//! and `prune-delete` (prune, before its lock check ahead of deleting).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

mod claims;
mod failures;
mod identity;
mod suspended;

/// The shortened stale period of the suspension trials, in seconds.
const STALE: u64 = 4;

/// A repository with two snapshots: `keep` (must survive everything) and
/// `old` (forgotten during the trials, so prune deletes its packs), and a
/// third source `new` holding a copy of `old`'s files (so a backup of it
/// deduplicates against the packs prune deletes) and files of its own.
struct Fixture {
    t: TestRepo,
    keep: PathBuf,
    new: PathBuf,
    keep_id: String,
    old_id: String,
}

fn fixture() -> Fixture {
    let t = TestRepo::new();
    t.init();
    let keep = t.join("keep");
    simple_tree(&keep, 100);
    let old = t.join("old");
    simple_tree(&old, 200);
    let new = t.join("new");
    simple_tree(&new.join("copy"), 200);
    simple_tree(&new.join("own"), 300);
    let id = |v: serde_json::Value| v["snapshot"].as_str().expect("snapshot id").to_string();
    let keep_id = id(t.create([&keep]));
    let old_id = id(t.create([&old]));
    Fixture {
        t,
        keep,
        new,
        keep_id,
        old_id,
    }
}

/// `t.cmd()` with the shortened stale period.
fn cmd(t: &TestRepo, stale: Option<u64>) -> Command {
    let mut c = t.cmd();
    if let Some(s) = stale {
        c.env("REPO_TEST_STALE_SECS", s.to_string());
    }
    c
}

/// Starts `args` in the background, to stop itself at pause point `point`;
/// returns once it has stopped there.
fn paused(t: &TestRepo, args: &[&str], point: &str, stale: Option<u64>, name: &str) -> Background {
    let dir = t.join(format!("pause-{name}"));
    fs::create_dir_all(&dir).unwrap();
    let stdout = t.join(format!("{name}.stdout"));
    let stderr = t.join(format!("{name}.stderr"));
    let mut c = cmd(t, stale);
    c.args(args)
        .env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &dir)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    let mut bg = Background {
        child: Some(c.spawn().expect("spawn")),
        stdout,
        stderr,
    };
    let pid = bg.pid().as_raw();
    let stopped = wait_until(Duration::from_secs(120), || {
        crate::support::pause::paused_at(&dir, point, pid)
    });
    if !stopped {
        let status = bg.exited();
        panic!(
            "{args:?} never stopped at pause point {point} (exit: {status:?})\n{}",
            bg.output()
        );
    }
    bg
}

/// Lets the stale period pass (`periods` times) for a stopped holder: its
/// last refresh was before it stopped, so after this its lock is stale by age.
fn outlive_stale_periods(periods: u64) {
    std::thread::sleep(Duration::from_millis(periods * STALE * 1000 + 1200));
}

fn outlive_stale_period() {
    outlive_stale_periods(1)
}

fn snapshot_ids(t: &TestRepo) -> Vec<String> {
    t.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Restores `id` and compares it with `src`; false on any difference or failure.
fn restores_identical(t: &TestRepo, id: &str, src: &Path, name: &str) -> bool {
    let target = t.join(format!("restore-{name}"));
    let mut c = t.cmd();
    c.arg("restore").arg(id).arg("--target").arg(&target);
    let r = run(c);
    if r.code != 0 {
        eprintln!("restore of {id} failed: {r}");
        return false;
    }
    let ok = compare_trees(src, &restored(&target, src), Cmp::content_only()).is_ok();
    let _ = fs::remove_dir_all(&target);
    ok
}

/// `check --read-data` passes.
fn check_clean(t: &TestRepo) -> bool {
    let r = t.run(["check", "--read-data"]);
    if r.code != 0 {
        eprintln!("check --read-data failed: {r}");
    }
    r.code == 0
}

/// Root is needed for namespaces and bind mounts: skip loudly, except under CI.
fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (namespaces, bind mounts) and CI=true"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// How one trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The resumed side failed, without a snapshot or without deleting.
    FailedSafely,
    /// The resumed side finished, and its result is complete.
    Complete,
    /// Some snapshot cannot be restored, or `check --read-data` fails.
    Lost,
}

/// Waits until the process that wrote `marker` (a pause point's marker file)
/// is stopped there; returns its pid.
fn stopped_at(marker: &Path) -> i32 {
    let mut pid = 0;
    let ok = wait_until(Duration::from_secs(120), || {
        pid = fs::read_to_string(marker)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid > 0 && crate::support::pause::is_stopped(pid)
    });
    assert!(ok, "no process stopped at {}", marker.display());
    pid
}
