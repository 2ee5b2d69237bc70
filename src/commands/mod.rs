//! One module per command: arguments, and a `run` that returns a report.
//! Commands never print; the CLI renders their reports.

pub mod cat;
pub mod check;
pub mod common;
pub mod copy;
pub mod create;
pub mod diff;
pub mod dump;
pub mod entry;
pub mod filter;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod lock;
pub mod ls;
pub mod plain;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod tag;
pub mod unlock;

use std::sync::atomic::AtomicBool;

use crate::engine::progress::Progress;
use crate::error::Result;
use crate::repository::{CacheUse, Credentials, Repository};
use crate::storage::Location;

/// What every command gets from the CLI.
pub struct Context<'a> {
    pub location: Location,
    pub credentials: Credentials,
    /// Root of the local cache of remote repositories (and of a large local
    /// repository's index file); `None` for none.
    pub cache: Option<std::path::PathBuf>,
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
}

impl Context<'_> {
    pub(crate) fn open(&self) -> Result<Repository> {
        let (location, credentials) = (&self.location, &self.credentials);
        Repository::open_cached(location, credentials, self.cache.as_deref(), CacheUse::Read)
    }

    /// Opens the repository for commands that judge what it holds (check,
    /// repair): every object is read from the repository itself, and the
    /// cache only takes in what was read.
    pub(crate) fn open_uncached(&self) -> Result<Repository> {
        let (location, credentials) = (&self.location, &self.credentials);
        Repository::open_cached(
            location,
            credentials,
            self.cache.as_deref(),
            CacheUse::Refresh,
        )
    }
}

/// Formats a byte count for people (binary units, as restic and borg do).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}
