//! `repo find`: search snapshots for paths matching glob patterns.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::Context;
use super::entry::{Entry, entry};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::local::filter::Excludes;
use crate::repository::{Step, Visitor, Walker};
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Glob (repeatable): without `/` it matches a name at any depth, with `/`
    /// the whole path; `*` stays within a path component, `**` crosses them.
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (repeatable; default: every snapshot).
    #[arg(long = "snapshot", short = 's', value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
}

/// One matching entry.
#[derive(Debug, Serialize)]
pub struct Match {
    pub snapshot: String,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub patterns: Vec<String>,
    /// The snapshots searched (full ids), oldest first.
    pub snapshots: Vec<String>,
    pub matches: Vec<Match>,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    pub storage: StatsReport,
}

/// Collects the nodes of one snapshot whose path matches.
struct Finder<'a> {
    matcher: &'a Excludes,
    snap: String,
    cancel: &'a AtomicBool,
    out: &'a mut Vec<Match>,
}

impl Visitor for Finder<'_> {
    fn tree(&mut self, _dir: &Path, _id: &BlobId, _tree: &Tree) -> Result<Step> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        Ok(Step::Descend)
    }

    fn node(&mut self, path: &Path, n: &Node, _parent: &BlobId) -> Result<Step> {
        if self.matcher.is_excluded(path) {
            self.out.push(Match {
                snapshot: self.snap.clone(),
                entry: entry(path, n),
            });
        }
        Ok(Step::Descend)
    }
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let matcher = Excludes::find(&args.patterns)?;
    let repo = ctx.open()?;
    let (mut chosen, index): (Vec<(SnapshotId, Snapshot)>, _) =
        repo.with_index(|| repo.select_snapshots(&args.snapshots))?;
    repo.prefetch_trees(&index, chosen.iter().map(|(_, s)| &s.tree));
    // Consecutive snapshots share most of their trees: keep them.
    let mut walker = Walker::new(&repo, &index).cached(4096);
    let mut matches = Vec::new();
    for (id, snap) in &chosen {
        let mut finder = Finder {
            matcher: &matcher,
            snap: id.to_hex(),
            cancel: ctx.cancel,
            out: &mut matches,
        };
        walker.walk(&snap.tree, Path::new("/"), &mut finder)?;
    }
    Ok(Report {
        patterns: args.patterns.clone(),
        snapshots: chosen.drain(..).map(|(id, _)| id.to_hex()).collect(),
        matches,
        storage: repo.storage_stats(),
    })
}
