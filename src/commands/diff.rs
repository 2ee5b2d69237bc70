//! `repo diff`: what changed between two snapshots.

use std::path::Path;

use serde::Serialize;

use super::Context;
use crate::engine::diff::{self, Diff};
use crate::error::Result;
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The earlier snapshot: `latest` or an id prefix.
    pub snapshot1: String,
    /// The later snapshot: `latest` or an id prefix.
    pub snapshot2: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot1: String,
    pub snapshot2: String,
    #[serde(flatten)]
    pub diff: Diff,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    pub storage: StatsReport,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    let (((id1, s1), (id2, s2)), index) = repo.with_index(|| {
        Ok((
            repo.find_snapshot(&args.snapshot1)?,
            repo.find_snapshot(&args.snapshot2)?,
        ))
    })?;
    repo.prefetch_trees(&index, [&s1.tree, &s2.tree]);
    let d = diff::diff(&repo, &index, s1.tree, s2.tree, Path::new("/"), ctx.cancel)?;
    Ok(Report {
        snapshot1: id1.to_hex(),
        snapshot2: id2.to_hex(),
        diff: d,
        storage: repo.storage_stats(),
    })
}
