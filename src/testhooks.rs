//! Test-only pause points, so that the adversarial suite can open a race
//! window deterministically instead of by sleeping and hoping.
//!
//! `REPO_TEST_PAUSE=name[,name…]` makes the process stop itself with
//! SIGSTOP when it reaches a pause point of that name, exactly as a laptop
//! lid or a paused VM would stop it; the test sees the marker file
//! `$REPO_TEST_PAUSE_DIR/<name>` (written just before stopping) and waits
//! until `/proc/<pid>/stat` shows the process stopped (state `T`: a SIGCONT
//! sent before the stop would be lost), does its mischief, and resumes the
//! process with SIGCONT. Each point stops once per
//! process. Without the variable a pause point is one environment lookup.

use std::sync::Mutex;

/// Names already paused at in this process.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Stops the whole process here if the test asked for it (see the module docs).
pub(crate) fn pause_point(name: &str) {
    let Some(wanted) = std::env::var_os("REPO_TEST_PAUSE") else {
        return;
    };
    if !wanted.to_string_lossy().split(',').any(|w| w == name) {
        return;
    }
    {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
    }
    if let Some(dir) = std::env::var_os("REPO_TEST_PAUSE_DIR") {
        let marker = std::path::Path::new(&dir).join(name);
        let _ = std::fs::write(marker, std::process::id().to_string());
    }
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
}

/// A shorter lock stale period for tests (`REPO_TEST_STALE_SECS`), so that a
/// suspended writer can outlive its lock in seconds instead of half an hour.
pub(crate) fn stale_after_override() -> Option<std::time::Duration> {
    std::env::var("REPO_TEST_STALE_SECS")
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(std::time::Duration::from_secs)
}
