//! Snapshot selection by host, tag and source path: the `--host`, `--tag`
//! and `--path` options that `snapshots` and `forget` share.

use crate::format::snapshot::Snapshot;

/// Whether a snapshot passes host/tag/path filters: every non-empty list
/// must hold one of the snapshot's values (an empty list passes all).
pub fn matches(s: &Snapshot, hosts: &[String], tags: &[String], paths: &[String]) -> bool {
    (hosts.is_empty() || hosts.contains(&s.host))
        && (tags.is_empty() || tags.iter().any(|t| s.tags.contains(t)))
        && (paths.is_empty() || paths.iter().any(|p| s.paths.contains(p)))
}
