//! `repo ls`: list the contents of a snapshot.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use super::entry::{Entry, entry};
use crate::error::Result;
use crate::format::index::MemIndex;
use crate::format::tree::{Node, NodeKind};
use crate::repository::{Repository, Step, Walker};
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix.
    pub snapshot: String,
    /// Directory inside the snapshot; without it the whole snapshot is listed.
    pub path: Option<String>,
    /// Show mode, owner, size and time.
    #[arg(long, short = 'l')]
    pub long: bool,
    /// With PATH, also list everything below it.
    #[arg(long, short = 'R')]
    pub recursive: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub entries: Vec<Entry>,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    pub storage: StatsReport,
}

/// The entries below `dir` (at `at`), in tree order; below
/// subdirectories too when `recursive`.
fn list(
    repo: &Repository,
    index: &MemIndex,
    dir: &Node,
    at: &Path,
    recursive: bool,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let Some(id) = dir.subtree else { return Ok(()) };
    Walker::new(repo, index).walk(&id, at, &mut |p: &Path, n: &Node| {
        out.push(entry(p, n));
        Ok(if recursive { Step::Descend } else { Step::Skip })
    })
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    let ((sid, snap), index) = repo.with_index(|| repo.find_snapshot(&args.snapshot))?;
    let sub = args.path.clone().unwrap_or_else(|| "/".into());
    let (node, at): (Node, PathBuf) = repo.resolve(&index, snap.tree, &sub)?;
    let mut entries = Vec::new();
    if node.kind == NodeKind::Dir {
        list(
            &repo,
            &index,
            &node,
            &at,
            args.path.is_none() || args.recursive,
            &mut entries,
        )?;
    } else {
        entries.push(entry(&at, &node));
    }
    if !snap.damaged.is_empty() {
        let lost: std::collections::HashMap<&str, String> = snap
            .damaged
            .iter()
            .map(|d| {
                let what = if d.kind == "dir" {
                    format!("contents lost: {}", d.reason)
                } else {
                    format!("{} bytes lost: {}", d.size, d.reason)
                };
                (d.path.as_str(), what)
            })
            .collect();
        for e in &mut entries {
            e.damaged = lost.get(e.path.as_str()).cloned();
        }
    }
    Ok(Report {
        snapshot: sid.to_hex(),
        entries,
        storage: repo.storage_stats(),
    })
}
