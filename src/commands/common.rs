//! Small pieces more than one command needs, kept here so that no command
//! module imports another.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

/// A problem with one path, as `create` and `restore` report them.
#[derive(Debug, Serialize)]
pub struct PathMessage {
    pub path: String,
    pub message: String,
}

/// Engine (path, message) pairs as report entries.
pub(crate) fn path_messages(v: Vec<(PathBuf, String)>) -> Vec<PathMessage> {
    v.into_iter()
        .map(|(p, m)| PathMessage {
            path: p.to_string_lossy().into_owned(),
            message: m,
        })
        .collect()
}

/// Checks `--max-unused` (of `prune`, and of `forget --prune`).
pub(crate) fn check_max_unused(v: f64) -> Result<()> {
    if !(0.0..=100.0).contains(&v) || v.is_nan() {
        return Err(Error::Usage(format!(
            "--max-unused {v}: give a percentage from 0 to 100"
        )));
    }
    Ok(())
}
