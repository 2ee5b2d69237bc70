//! `repo snapshots`: list snapshots.

use serde::Serialize;

use super::Context;
use crate::error::Result;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only snapshots from this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots containing this source path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub short_id: String,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// Whether a snapshot passes host/tag/path filters.
pub fn matches(s: &Snapshot, hosts: &[String], tags: &[String], paths: &[String]) -> bool {
    (hosts.is_empty() || hosts.contains(&s.host))
        && (tags.is_empty() || tags.iter().any(|t| s.tags.contains(t)))
        && (paths.is_empty() || paths.iter().any(|p| s.paths.contains(p)))
}

pub fn run(ctx: &Context, args: &Args) -> Result<Vec<Entry>> {
    let repo = ctx.open()?;
    Ok(repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| matches(s, &args.hosts, &args.tags, &args.paths))
        .map(|(id, s)| Entry {
            id: id.to_hex(),
            short_id: id.short(),
            snapshot: s,
        })
        .collect())
}
