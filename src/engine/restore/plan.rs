//! Turning a snapshot (sub)tree into a list of things to create.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::Result;
use crate::format::index::MemIndex;
use crate::format::tree::{Node, NodeKind};
use crate::local::filter::Excludes;
use crate::repository::Repository;

/// One thing a restore creates.
#[derive(Debug, Clone)]
pub enum Item {
    Dir {
        path: PathBuf,
        node: Node,
    },
    File {
        path: PathBuf,
        node: Node,
    },
    /// A further name for a file restored earlier (same device and inode in the source).
    HardLink {
        path: PathBuf,
        first: PathBuf,
        node: Node,
    },
    Other {
        path: PathBuf,
        node: Node,
    },
}

impl Item {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Item::Dir { path, .. }
            | Item::File { path, .. }
            | Item::HardLink { path, .. }
            | Item::Other { path, .. } => path,
        }
    }
}

/// Selection of paths (matched against their absolute path in the snapshot).
pub(crate) struct Filter<'a> {
    pub include: Option<&'a Excludes>,
    pub exclude: Option<&'a Excludes>,
    /// Paths a repaired snapshot lists as damaged (lossy UTF-8 absolute
    /// path -> message): such files are not restored, such directories are
    /// restored empty, and each is reported.
    pub damaged: Option<&'a BTreeMap<String, String>>,
    /// Problems met while planning (damaged paths, unreadable directory
    /// listings), reported by the restore and counted as errors.
    pub problems: Mutex<Vec<(PathBuf, String)>>,
}

impl Filter<'_> {
    fn problem(&self, path: &Path, message: String) {
        if let Ok(mut p) = self.problems.lock() {
            p.push((path.to_path_buf(), message));
        }
    }

    /// The problems met, in path order (the walk is parallel).
    pub(crate) fn take_problems(&self) -> Vec<(PathBuf, String)> {
        let mut p = self
            .problems
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        p.sort();
        p
    }

    pub(crate) fn damaged(&self, snap_path: &Path) -> Option<&String> {
        let damaged = self.damaged.filter(|d| !d.is_empty())?;
        damaged.get(snap_path.to_string_lossy().as_ref())
    }
}

/// Walks below `start` and lists what to create under `target`, parents
/// before their contents. Sibling directories are walked in parallel (each
/// one's tree blob is a storage read plus a decryption), and the lists are
/// joined in tree order, so the plan is the same as a sequential walk's.
pub(crate) fn plan(
    repo: &Repository,
    index: &MemIndex,
    start: &Node,
    start_path: &Path,
    target: &Path,
    filter: &Filter,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    if start.kind == NodeKind::Dir {
        // The snapshot root is synthetic (no metadata of its own): leave the
        // target's own mode, owner and times alone then.
        if !start.name.is_empty() {
            items.push(Item::Dir {
                path: target.to_path_buf(),
                node: start.clone(),
            });
        }
        if let Some(note) = filter.damaged(start_path) {
            filter.problem(target, note.clone());
        }
        let ctx = Walk {
            repo,
            index,
            filter,
        };
        items.extend(ctx.dir(start, start_path, target, false, true)?.0);
    } else {
        let name = Path::new(std::ffi::OsStr::from_bytes(&start.name));
        items.push(leaf(start.clone(), target.join(name)));
    }
    link_hard_links(&mut items);
    Ok(items)
}

fn leaf(node: Node, path: PathBuf) -> Item {
    match node.kind {
        NodeKind::File => Item::File { path, node },
        _ => Item::Other { path, node },
    }
}

/// Turns every later name of a file seen before (same device and inode,
/// more than one link) into a hard link to the first, in plan order.
fn link_hard_links(items: &mut [Item]) {
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for item in items.iter_mut() {
        let Item::File { path, node } = item else {
            continue;
        };
        if node.links <= 1 {
            continue;
        }
        match first.get(&(node.device, node.inode)) {
            Some(f) => {
                *item = Item::HardLink {
                    path: std::mem::take(path),
                    first: f.clone(),
                    node: std::mem::replace(node, Node::new(Vec::new(), NodeKind::File)),
                }
            }
            None => {
                first.insert((node.device, node.inode), path.clone());
            }
        }
    }
}

struct Walk<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    filter: &'a Filter<'a>,
}

impl Walk<'_> {
    /// The items below `dir`, and whether anything below it was selected.
    fn dir(
        &self,
        dir: &Node,
        snap_path: &Path,
        out_path: &Path,
        included: bool,
        top: bool,
    ) -> Result<(Vec<Item>, bool)> {
        let Some(id) = dir.subtree else {
            return Ok((Vec::new(), false));
        };
        let tree = match self.repo.load_tree(self.index, &id) {
            Ok(t) => t,
            // Without the top listing there is nothing to restore.
            Err(e) if top => return Err(e),
            // A lost directory listing costs that directory, not the restore.
            Err(e) => {
                self.filter.problem(
                    out_path,
                    format!(
                        "the contents of this directory cannot be restored: {e}. \
                         `repo repair snapshots` can record the loss in the snapshot"
                    ),
                );
                return Ok((Vec::new(), included));
            }
        };
        let parts: Vec<(Vec<Item>, bool)> = tree
            .nodes
            .into_par_iter()
            .map(|node| self.entry(node, snap_path, out_path, included))
            .collect::<Result<_>>()?;
        let any = parts.iter().any(|(_, a)| *a);
        let mut items = Vec::with_capacity(parts.iter().map(|(i, _)| i.len()).sum());
        for (i, _) in parts {
            items.extend(i);
        }
        Ok((items, any))
    }

    fn entry(
        &self,
        node: Node,
        snap_path: &Path,
        out_path: &Path,
        included: bool,
    ) -> Result<(Vec<Item>, bool)> {
        let filter = self.filter;
        let name = std::ffi::OsStr::from_bytes(&node.name);
        let sp = snap_path.join(name);
        let op = out_path.join(name);
        if filter.exclude.is_some_and(|e| e.is_excluded(&sp)) {
            return Ok((Vec::new(), false));
        }
        let inc = included || filter.include.is_none_or(|i| i.is_excluded(&sp));
        let damaged = filter.damaged(&sp);
        if node.kind == NodeKind::Dir {
            if let Some(note) = damaged
                && inc
            {
                filter.problem(&op, note.clone());
            }
            let (below, any) = self.dir(&node, &sp, &op, inc, false)?;
            if !(inc || any) {
                return Ok((Vec::new(), false));
            }
            let mut items = Vec::with_capacity(below.len() + 1);
            items.push(Item::Dir { path: op, node });
            items.extend(below);
            return Ok((items, true));
        }
        if !inc {
            return Ok((Vec::new(), false));
        }
        if let Some(note) = damaged {
            filter.problem(&op, note.clone());
            return Ok((Vec::new(), false));
        }
        Ok((vec![leaf(node, op)], true))
    }
}
