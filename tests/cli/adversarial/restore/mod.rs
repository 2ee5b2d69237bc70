//! Adversarial part: restore (see tests/cli/adversarial/mod.rs).
//!
//! A restore must not be turnable against its user: `--delete` keeps what
//! an excluded directory holds and refuses a target holding the repository
//! it reads; an existing target keeps its own owner, mode and times; and a
//! local user who owns (part of) the target cannot, by swapping a directory
//! for a symlink while root restores, make root write, chown or chmod
//! anything outside the target.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
use crate::support::*;

mod control_folder;
mod delete;
mod holes;
mod metadata;
mod race;

/// Trials run and files found written, moved or changed where they must not be.
static TRIALS: AtomicU64 = AtomicU64::new(0);

fn report(part: &str, trials: u64, lost: u64) {
    TRIALS.fetch_add(trials, Ordering::Relaxed);
    eprintln!("adversarial restore ({part}): {trials} trials, data lost: {lost}");
}

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// `latest:<src>`, so the target maps onto `src` itself.
fn spec_of(src: &Path) -> String {
    format!("latest:{}", src.display())
}

fn restore_cmd(t: &TestRepo, spec: &str, target: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = t.cmd();
    c.arg("restore")
        .arg(spec)
        .arg("--target")
        .arg(target)
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// A repository holding one snapshot of `src/a.txt` ("alpha"): the
/// starting point of the restore --delete and control-folder tests.
fn alpha_snapshot() -> (TestRepo, PathBuf) {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    (t, src)
}

/// Skips a root-only test loudly, or fails it under CI.
fn need_root(name: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} needs root, and CI runs as root"
    );
    eprintln!("skipping {name}: not root");
    false
}

/// Runs `sh -c script` as nobody (through setpriv) or, without setpriv, as
/// root doing exactly what nobody could.
fn as_nobody(script: &str) {
    let mut c = match setpriv() {
        Some(sp) => {
            let mut c = std::process::Command::new(sp);
            c.args(AS_NOBODY);
            c.arg("sh");
            c
        }
        None => std::process::Command::new("sh"),
    };
    let st = c.arg("-c").arg(script).status().expect("run sh");
    assert!(st.success(), "the attacker's script failed: {script}");
}

/// Every entry below `dir` (its whole listing, recursively).
fn listing(dir: &Path) -> Vec<PathBuf> {
    walk_all(dir)
}

/// Starts `restore` stopped at pause point `point`; returns the child once
/// it is stopped there.
fn restore_paused(
    t: &TestRepo,
    spec: &str,
    target: &Path,
    extra: &[&str],
    point: &str,
) -> std::process::Child {
    let pause_dir = t.join(format!("pause-{point}"));
    fs::create_dir_all(&pause_dir).unwrap();
    let mut c = restore_cmd(t, spec, target, extra);
    c.env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &pause_dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(t.join(format!("{point}.stderr"))).unwrap());
    let mut child = c.spawn().expect("spawn restore");
    let pid = child.id();
    let stopped = wait_until(Duration::from_secs(120), || {
        crate::support::pause::paused_at(&pause_dir, point, pid)
    });
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "restore never stopped at {point}: {}",
            fs::read_to_string(t.join(format!("{point}.stderr"))).unwrap_or_default()
        );
    }
    child
}

/// Resumes a paused restore and waits for it; returns its exit code and stderr.
fn resume(t: &TestRepo, mut child: std::process::Child, point: &str) -> (Option<i32>, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "restore hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = fs::read_to_string(t.join(format!("{point}.stderr"))).unwrap_or_default();
    (status.code(), stderr)
}
