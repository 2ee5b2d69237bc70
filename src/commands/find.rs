//! `repo find`: search snapshots for paths matching glob patterns.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::Context;
use super::entry::{Entry, entry};
use crate::engine::archive::Excludes;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repository::Repository;

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
}

/// Keeps recently loaded trees: consecutive snapshots share most of them.
struct Trees<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    cache: HashMap<BlobId, std::rc::Rc<Tree>>,
}

impl Trees<'_> {
    fn get(&mut self, id: &BlobId) -> Result<std::rc::Rc<Tree>> {
        if let Some(t) = self.cache.get(id) {
            return Ok(t.clone());
        }
        if self.cache.len() >= 4096 {
            self.cache.clear();
        }
        let t = std::rc::Rc::new(self.repo.load_tree(self.index, id)?);
        self.cache.insert(*id, t.clone());
        Ok(t)
    }
}

fn walk(
    trees: &mut Trees,
    id: &BlobId,
    at: &Path,
    matcher: &Excludes,
    snap: &str,
    cancel: &AtomicBool,
    out: &mut Vec<Match>,
) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let tree = trees.get(id)?;
    for n in &tree.nodes {
        let p = at.join(std::ffi::OsStr::from_bytes(&n.name));
        if matcher.is_excluded(&p) {
            out.push(Match {
                snapshot: snap.to_string(),
                entry: entry(&p, n),
            });
        }
        if n.kind == NodeKind::Dir
            && let Some(sub) = &n.subtree
        {
            walk(trees, sub, &p, matcher, snap, cancel, out)?;
        }
    }
    Ok(())
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let matcher = Excludes::find(&args.patterns)?;
    let repo = ctx.open()?;
    let mut chosen: Vec<(SnapshotId, Snapshot)> = repo.select_snapshots(&args.snapshots)?;
    let index = repo.load_index()?;
    let mut trees = Trees {
        repo: &repo,
        index: &index,
        cache: HashMap::new(),
    };
    let mut matches = Vec::new();
    for (id, snap) in &chosen {
        walk(
            &mut trees,
            &snap.tree,
            &PathBuf::from("/"),
            &matcher,
            &id.to_hex(),
            ctx.cancel,
            &mut matches,
        )?;
    }
    Ok(Report {
        patterns: args.patterns.clone(),
        snapshots: chosen.drain(..).map(|(id, _)| id.to_hex()).collect(),
        matches,
    })
}
