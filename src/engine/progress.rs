//! How engines tell the CLI what they are doing, without printing.

use std::path::Path;

/// Receives progress from an engine; every method has a silent default.
pub trait Progress: Sync {
    /// Totals found by the scanner, for percentages and ETA.
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// Work finished since the last call.
    fn add_done(&self, _files: u64, _bytes: u64) {}
    /// A problem with one path that did not stop the command.
    fn warn(&self, _path: &Path, _message: &str) {}
    /// A path that was handled, with a caveat the user should know about
    /// (a file that changed while it was read). Shown as a warning, not
    /// an error; by default the same as [`warn`](Self::warn).
    fn caveat(&self, path: &Path, message: &str) {
        self.warn(path, message);
    }
}

/// A [`Progress`] that ignores everything.
pub struct Silent;

impl Progress for Silent {}
