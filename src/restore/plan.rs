//! Turning a snapshot (sub)tree into a list of things to create.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::archive::Excludes;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::MemIndex;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

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
    pub fn path(&self) -> &Path {
        match self {
            Item::Dir { path, .. }
            | Item::File { path, .. }
            | Item::HardLink { path, .. }
            | Item::Other { path, .. } => path,
        }
    }
}

/// Selection of paths (matched against their absolute path in the snapshot).
pub struct Filter<'a> {
    pub include: Option<&'a Excludes>,
    pub exclude: Option<&'a Excludes>,
    /// Paths a repaired snapshot lists as damaged (lossy UTF-8 absolute
    /// path -> message): such files are not restored, such directories are
    /// restored empty, and each is reported.
    pub damaged: Option<&'a BTreeMap<String, String>>,
    /// Problems met while planning (damaged paths, unreadable directory
    /// listings), reported by the restore and counted as errors.
    pub problems: RefCell<Vec<(PathBuf, String)>>,
}

impl Filter<'_> {
    fn problem(&self, path: &Path, message: String) {
        self.problems
            .borrow_mut()
            .push((path.to_path_buf(), message));
    }

    pub(crate) fn damaged(&self, snap_path: &Path) -> Option<&String> {
        self.damaged?.get(snap_path.to_string_lossy().as_ref())
    }
}

/// Resolves `/sub/path` inside a snapshot's root tree. Returns the node
/// (a synthetic directory for the root) and its path in the snapshot.
pub fn resolve(
    repo: &Repository,
    index: &MemIndex,
    root: BlobId,
    sub: impl AsRef<Path>,
) -> Result<(Node, PathBuf)> {
    let sub = sub.as_ref();
    let mut node = Node::new(Vec::new(), NodeKind::Dir);
    node.subtree = Some(root);
    node.mode = 0o755;
    let mut at = PathBuf::from("/");
    for part in sub.iter().filter(|p| *p != "/" && *p != ".") {
        let Some(tree_id) = node.subtree else {
            return Err(Error::NotFound {
                what: format!("{} in the snapshot", sub.display()),
                hint: format!(": {} is not a directory", at.display()),
            });
        };
        let tree = repo.load_tree(index, &tree_id)?;
        node = tree
            .find(part.as_bytes())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("{} in the snapshot", sub.display()),
                hint: format!("; list what is there with `repo ls SNAP {}`", at.display()),
            })?;
        at.push(part);
    }
    Ok((node, at))
}

/// Walks below `start` and lists what to create under `target`.
pub fn plan(
    repo: &Repository,
    index: &MemIndex,
    start: &Node,
    start_path: &Path,
    target: &Path,
    filter: &Filter,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
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
        walk(
            repo, index, start, start_path, target, filter, false, true, &mut items, &mut links,
        )?;
    } else {
        let name = Path::new(std::ffi::OsStr::from_bytes(&start.name));
        add_leaf(start, target.join(name), &mut items, &mut links);
    }
    Ok(items)
}

fn add_leaf(
    node: &Node,
    path: PathBuf,
    items: &mut Vec<Item>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) {
    match node.kind {
        NodeKind::File if node.links > 1 => {
            let key = (node.device, node.inode);
            if let Some(first) = links.get(&key) {
                items.push(Item::HardLink {
                    path,
                    first: first.clone(),
                    node: node.clone(),
                });
            } else {
                links.insert(key, path.clone());
                items.push(Item::File {
                    path,
                    node: node.clone(),
                });
            }
        }
        NodeKind::File => items.push(Item::File {
            path,
            node: node.clone(),
        }),
        _ => items.push(Item::Other {
            path,
            node: node.clone(),
        }),
    }
}

/// Returns whether anything below `dir` was selected.
#[allow(clippy::too_many_arguments)]
fn walk(
    repo: &Repository,
    index: &MemIndex,
    dir: &Node,
    snap_path: &Path,
    out_path: &Path,
    filter: &Filter,
    included: bool,
    top: bool,
    items: &mut Vec<Item>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<bool> {
    let Some(id) = dir.subtree else {
        return Ok(false);
    };
    let tree = match repo.load_tree(index, &id) {
        Ok(t) => t,
        // Without the top listing there is nothing to restore.
        Err(e) if top => return Err(e),
        // A lost directory listing costs that directory, not the restore.
        Err(e) => {
            filter.problem(
                out_path,
                format!(
                    "the contents of this directory cannot be restored: {e}. \
                     `repo repair snapshots` can record the loss in the snapshot"
                ),
            );
            return Ok(included);
        }
    };
    let mut any = false;
    for node in &tree.nodes {
        let name = std::ffi::OsStr::from_bytes(&node.name);
        let sp = snap_path.join(name);
        let op = out_path.join(name);
        if filter.exclude.is_some_and(|e| e.is_excluded(&sp)) {
            continue;
        }
        let inc = included || filter.include.is_none_or(|i| i.is_excluded(&sp));
        let damaged = filter.damaged(&sp);
        if node.kind == NodeKind::Dir {
            let at = items.len();
            items.push(Item::Dir {
                path: op.clone(),
                node: node.clone(),
            });
            if let Some(note) = damaged
                && inc
            {
                filter.problem(&op, note.clone());
            }
            let below = walk(
                repo, index, node, &sp, &op, filter, inc, false, items, links,
            )?;
            if !(inc || below) {
                items.truncate(at);
            } else {
                any = true;
            }
        } else if inc {
            if let Some(note) = damaged {
                filter.problem(&op, note.clone());
                continue;
            }
            add_leaf(node, op, items, links);
            any = true;
        }
    }
    Ok(any)
}
