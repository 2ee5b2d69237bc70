//! Waiting for the binary's pause points (`src/testhooks.rs`), shared by
//! every part: the marker is written just before the process stops itself,
//! so a test must also see the stopped state, or its SIGCONT may come
//! first, be lost, and leave the process stopped for good.

use std::fmt::Display;
use std::fs;
use std::path::Path;

/// Whether process `pid` is stopped: state `T` (or `t`, stopped by a
/// tracer such as strace) in `/proc/<pid>/stat`, read after the command
/// name, which may itself contain spaces and parentheses.
pub fn is_stopped(pid: impl Display) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('T' | 't')))
    })
}

/// Whether process `pid` has reached pause point `point` (its marker is in
/// `dir`) and is stopped there.
pub fn paused_at(dir: &Path, point: &str, pid: impl Display) -> bool {
    dir.join(point).exists() && is_stopped(pid)
}
