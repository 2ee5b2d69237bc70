//! Comparing two snapshot trees.
//!
//! Both trees are walked together, name by name (tree nodes are sorted).
//! A directory whose subtree id is the same on both sides is identical
//! and skipped without being loaded: unchanged parts of a snapshot cost
//! nothing.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::repository::Repository;

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// Content differs (file chunks, symlink target or device number),
    /// possibly metadata too.
    Modified,
    /// Same content, different metadata.
    Metadata,
}

impl ChangeKind {
    /// One-letter marker for text output (restic's).
    pub fn marker(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'U',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub path: String,
    pub change: ChangeKind,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Size in the second snapshot (the first for removed paths).
    pub size: u64,
    /// Size in the first snapshot, for modified files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// Which fields differ, for modified and metadata changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
}

/// Counts of added or removed entries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Sum of the sizes of the files.
    pub bytes: u64,
}

impl Totals {
    fn count(&mut self, n: &Node) {
        match n.kind {
            NodeKind::File => {
                self.files += 1;
                self.bytes += n.size;
            }
            NodeKind::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// Modified files and their sizes before and after.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Modified {
    pub files: u64,
    pub others: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub added: Totals,
    pub removed: Totals,
    pub modified: Modified,
    /// Entries whose only change is metadata.
    pub metadata_only: u64,
    /// Directories skipped because their subtree id is the same in both.
    pub identical_subtrees: u64,
}

/// Metadata fields that differ between two nodes of the same kind.
fn metadata_changes(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut f = Vec::new();
    if a.mode != b.mode {
        f.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid || a.user != b.user || a.group != b.group {
        f.push("owner");
    }
    if a.mtime != b.mtime {
        f.push("mtime");
    }
    if a.xattrs != b.xattrs {
        f.push("xattrs");
    }
    f
}

/// Whether two nodes of the same kind differ in content.
fn content_differs(a: &Node, b: &Node) -> bool {
    match a.kind {
        NodeKind::File => a.size != b.size || a.content != b.content,
        NodeKind::Symlink => a.target != b.target,
        NodeKind::CharDevice | NodeKind::BlockDevice => a.rdev != b.rdev,
        _ => false,
    }
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    cancel: &'a AtomicBool,
    out: Diff,
}

impl Walker<'_> {
    fn load(&self, id: Option<BlobId>) -> Result<Tree> {
        match id {
            Some(id) => self.repo.load_tree(self.index, &id),
            None => Ok(Tree::new(Vec::new())),
        }
    }

    fn push(&mut self, path: &Path, change: ChangeKind, n: &Node, old: Option<&Node>) {
        let fields = old.map(|o| metadata_changes(o, n)).unwrap_or_default();
        self.out.changes.push(Change {
            path: path.to_string_lossy().into_owned(),
            change,
            kind: n.kind.name(),
            size: n.size,
            old_size: old.filter(|o| o.kind == NodeKind::File).map(|o| o.size),
            fields: if change == ChangeKind::Modified && old.is_some_and(|o| content_differs(o, n))
            {
                std::iter::once("content").chain(fields).collect()
            } else {
                fields
            },
        });
    }

    /// Records `n` and everything below it as added or removed.
    fn one_side(&mut self, n: &Node, path: &Path, added: bool) -> Result<()> {
        let change = if added {
            ChangeKind::Added
        } else {
            ChangeKind::Removed
        };
        self.push(path, change, n, None);
        if added {
            self.out.added.count(n);
        } else {
            self.out.removed.count(n);
        }
        if n.kind == NodeKind::Dir {
            let (a, b) = if added {
                (None, n.subtree)
            } else {
                (n.subtree, None)
            };
            self.walk(a, b, path)?;
        }
        Ok(())
    }

    fn walk(&mut self, a: Option<BlobId>, b: Option<BlobId>, at: &Path) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if a == b {
            if a.is_some() {
                self.out.identical_subtrees += 1;
            }
            return Ok(());
        }
        let (ta, tb) = (self.load(a)?, self.load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = &ta.nodes[i];
                    self.one_side(n, &child(at, n), false)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &tb.nodes[j];
                    self.one_side(n, &child(at, n), true)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                    self.both(x, y, &child(at, y))?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn both(&mut self, x: &Node, y: &Node, path: &Path) -> Result<()> {
        if x.kind != y.kind {
            self.one_side(x, path, false)?;
            return self.one_side(y, path, true);
        }
        if content_differs(x, y) {
            self.push(path, ChangeKind::Modified, y, Some(x));
            if x.kind == NodeKind::File {
                self.out.modified.files += 1;
                self.out.modified.bytes_before += x.size;
                self.out.modified.bytes_after += y.size;
            } else {
                self.out.modified.others += 1;
            }
        } else if !metadata_changes(x, y).is_empty() {
            self.push(path, ChangeKind::Metadata, y, Some(x));
            self.out.metadata_only += 1;
        }
        if x.kind == NodeKind::Dir {
            self.walk(x.subtree, y.subtree, path)?;
        }
        Ok(())
    }
}

fn child(at: &Path, n: &Node) -> PathBuf {
    at.join(std::ffi::OsStr::from_bytes(&n.name))
}

/// Compares the trees `a` (before) and `b` (after), both seen as `root`.
pub(crate) fn diff(
    repo: &Repository,
    index: &MemIndex,
    a: BlobId,
    b: BlobId,
    root: &Path,
    cancel: &AtomicBool,
) -> Result<Diff> {
    let mut w = Walker {
        repo,
        index,
        cancel,
        out: Diff::default(),
    };
    w.walk(Some(a), Some(b), root)?;
    Ok(w.out)
}
