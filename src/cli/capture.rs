//! What a job of `repo run` printed and reported, kept while it runs: the
//! last lines go into the body of a failure ping, the report to the job's
//! hooks and the metrics file. Outside `repo run` nothing is kept.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept: what a person reads in a failure notification.
const LINES: usize = 100;
/// Characters kept of one line.
const LINE_CHARS: usize = 1000;

/// What one job left.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub(super) lines: VecDeque<String>,
    /// The command's report, as its `--json` would print it.
    pub(super) report: Option<serde_json::Value>,
}

static STATE: Mutex<Option<Captured>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<Captured>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts keeping what the next job prints.
pub(super) fn start() {
    *state() = Some(Captured::default());
}

/// Stops keeping, and returns what was kept.
pub(super) fn finish() -> Captured {
    state().take().unwrap_or_default()
}

/// Keeps a printed line (stdout or stderr), if a job is running.
pub(super) fn line(text: &str) {
    if let Some(c) = state().as_mut() {
        for l in text.lines() {
            if c.lines.len() == LINES {
                c.lines.pop_front();
            }
            c.lines.push_back(l.chars().take(LINE_CHARS).collect());
        }
    }
}

/// Keeps the command's report, if a job is running.
pub(super) fn report<T: serde::Serialize + ?Sized>(r: &T) {
    if let Some(c) = state().as_mut() {
        c.report = serde_json::to_value(r).ok();
    }
}
