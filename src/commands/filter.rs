//! Snapshot selection by host, tag and source path: the `--host`, `--tag`
//! and `--path` options that `snapshots` and `forget` share, defined once
//! so both commands take them with the same names, help and meaning.

use crate::format::snapshot::Snapshot;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnapshotFilter {
    /// Only snapshots from this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable).
    #[arg(long = "tag", alias = "tags", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots containing this source path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes: every non-empty list must hold one of the
    /// snapshot's values (an empty list passes all).
    pub(crate) fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| s.paths.contains(p)))
    }
}
