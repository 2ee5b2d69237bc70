//! The walk: each directory is opened relative to its parent's descriptor,
//! its entries archived in parallel against the parent snapshot's tree, and
//! its tree saved (or the parent's reused when nothing below changed).

use super::*;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::local::meta;
use meta::Stat;
use nix::sys::stat::fstat;
use rayon::prelude::*;
use sources::VNode;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

impl Walk<'_> {
    pub(super) fn error(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.warn(path, &msg);
        if let Ok(mut e) = self.errors.lock() {
            e.push((path.to_path_buf(), msg));
        }
    }

    pub(super) fn warning(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.caveat(path, &msg);
        if let Ok(mut w) = self.warnings.lock() {
            w.push((path.to_path_buf(), msg));
        }
    }

    pub(super) fn check_cancel(&self) -> Result<()> {
        if self.opts.cancel.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Saves a directory's tree, after the same validation a reader runs
    /// (names, order, subtree only for directories): a snapshot whose tree
    /// `check` and `restore` would refuse is never written.
    pub(super) fn save_tree(&self, path: &Path, nodes: Vec<Node>) -> Result<BlobId> {
        let tree = Tree::new(nodes);
        tree.validate().map_err(|reason| Error::InvalidTree {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        })?;
        Ok(self.saver.save(BlobKind::Tree, &tree.encode())?.0)
    }

    /// Saves a directory's tree, or names the parent snapshot's tree when
    /// every entry came out identical to it (`parent_same`), which skips
    /// encoding and hashing: most directories of a re-backup.
    pub(super) fn finish_tree(
        &self,
        path: &Path,
        nodes: Vec<Node>,
        parent_same: Option<BlobId>,
    ) -> Result<Saved> {
        if let Some(id) = parent_same
            && self.index.contains(BlobKind::Tree, &id)
        {
            return Ok(Saved { id, same: true });
        }
        Ok(Saved {
            id: self.save_tree(path, nodes)?,
            same: false,
        })
    }

    /// Loads a parent tree's nodes for comparison; a damaged parent only costs speed.
    pub(super) fn parent_nodes(&self, id: Option<BlobId>) -> Vec<Node> {
        id.and_then(|id| self.repo.load_tree(self.index, &id).ok())
            .map(|t| t.nodes)
            .unwrap_or_default()
    }

    /// Archives one node of the virtual tree: `name` in the open directory `dir`.
    pub(super) fn vnode(
        &self,
        v: &VNode,
        dir: BorrowedFd,
        name: &[u8],
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Done>> {
        let os_name = OsStr::from_bytes(name);
        match v {
            VNode::Source(path) => {
                let st = match at::lstat_at(dir, os_name) {
                    Ok(st) => st,
                    Err(e) => {
                        self.error(path, format!("cannot read source: {e}"));
                        return Ok(None);
                    }
                };
                self.entry(
                    Place {
                        dir,
                        path,
                        name,
                        root_dev: None,
                        depth,
                    },
                    &st,
                    parent.cloned(),
                )
            }
            VNode::Parent { path, children } => {
                // An ancestor of a source is recorded as the directory it
                // resolves to, even when the path names it through a symlink.
                match at::open_dir_follow_at(dir, os_name) {
                    Ok(d) => self.ancestor(&d, path, name, children, parent, depth),
                    Err(e) => {
                        self.error(path, format!("cannot open directory: {e}"));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Archives the open directory `d`, an ancestor of some sources: only
    /// its `children` of the virtual tree.
    pub(super) fn ancestor(
        &self,
        d: &File,
        path: &Path,
        name: &[u8],
        children: &BTreeMap<OsString, VNode>,
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Done>> {
        let st = fstat(d).map_err(|e| Error::io("read metadata of", path, e.into()))?;
        let mut node = meta::node_from(name, &st, parent, || at::xattrs_of(d));
        self.count().dirs.fetch_add(1, Ordering::Relaxed);
        let ptree = Tree::new(self.parent_nodes(parent.and_then(|p| p.subtree)));
        let list: Vec<_> = children.iter().collect();
        let nodes: Vec<Option<Done>> = list
            .par_iter()
            .map(|(n, child)| {
                let pn = ptree.find(n.as_bytes());
                self.vnode(child, d.as_fd(), n.as_bytes(), pn, depth + 1)
            })
            .collect::<Result<_>>()?;
        let nodes = nodes.into_iter().flatten().map(|d| d.node).collect();
        node.subtree = Some(self.save_tree(path, nodes)?);
        Ok(Some(Done { node, same: false }))
    }

    /// Archives the entry at `at`, which `lstat` saw as `st`; `parent` is
    /// its node in the parent snapshot.
    pub(super) fn entry(&self, at: Place, st: &Stat, parent: Option<Node>) -> Result<Option<Done>> {
        self.check_cancel()?;
        let Place {
            dir, path, name, ..
        } = at;
        let kind = meta::kind_of_mode(st.st_mode);
        if kind == NodeKind::File {
            return file::archive(self, dir, path, name, st, parent);
        }
        let os_name = OsStr::from_bytes(name);
        let counts = self.count();
        if kind == NodeKind::Dir {
            return self.subdir(at, st, parent);
        }
        let (mut node, mut same) = match parent {
            Some(p) if meta::same_as(st, &p) => (p, true),
            p => (
                meta::node_from(name, st, p.as_ref(), || at::xattrs_at(dir, os_name, path)),
                false,
            ),
        };
        if kind == NodeKind::Symlink {
            match at::read_link_at(dir, os_name) {
                Ok(t) => {
                    same &= node.target == t;
                    node.target = t;
                }
                Err(e) => {
                    self.error(path, format!("cannot read symlink: {e}"));
                    return Ok(None);
                }
            }
        }
        counts.others.fetch_add(1, Ordering::Relaxed);
        self.progress.add_done(1, 0);
        Ok(Some(Done { node, same }))
    }

    /// Archives the directory at `at` with everything below it: opened
    /// without following a symlink and checked to be the directory `lstat`
    /// saw.
    pub(super) fn subdir(
        &self,
        at: Place,
        st: &Stat,
        parent: Option<Node>,
    ) -> Result<Option<Done>> {
        let Place {
            dir,
            path,
            name,
            root_dev,
            depth,
        } = at;
        let parent_subtree = parent.as_ref().and_then(|p| p.subtree);
        let opened = match at::open_seen(dir, OsStr::from_bytes(name), st) {
            Ok(o) => Some(o),
            Err(at::OpenError::Swapped(msg)) => {
                self.error(path, msg);
                return Ok(None);
            }
            Err(at::OpenError::Io(e)) => {
                // Recorded (as an empty directory) with its lstat metadata.
                self.error(path, format!("cannot list directory: {e}"));
                None
            }
        };
        self.count().dirs.fetch_add(1, Ordering::Relaxed);
        let st = opened.as_ref().map_or(st, |(_, fst)| fst);
        let (mut node, mut same) = match parent {
            Some(p) if meta::same_as(st, &p) => (p, true),
            p => {
                let node = meta::node_from(name, st, p.as_ref(), || match &opened {
                    Some((d, _)) => at::xattrs_of(d),
                    None => at::xattrs_at(dir, OsStr::from_bytes(name), path),
                });
                (node, false)
            }
        };
        let dev = root_dev.unwrap_or(st.st_dev);
        let too_deep = depth >= MAX_DEPTH;
        if too_deep && opened.is_some() {
            self.error(
                path,
                format!("directory nesting deeper than {MAX_DEPTH} levels: its contents are left out; back it up as a source of its own"),
            );
        }
        let saved = match &opened {
            Some((d, _)) if !too_deep && (!self.opts.one_file_system || st.st_dev == dev) => {
                self.dir(d, path, parent_subtree, dev, depth)?
            }
            _ => self.finish_tree(path, Vec::new(), None)?,
        };
        same &= saved.same;
        node.subtree = Some(saved.id);
        self.progress.add_done(1, 0);
        Ok(Some(Done { node, same }))
    }

    /// Archives the entries of the open directory `d`, `depth` levels below
    /// `/`, and saves its tree.
    pub(super) fn dir(
        &self,
        d: &File,
        path: &Path,
        parent_subtree: Option<BlobId>,
        dev: u64,
        depth: usize,
    ) -> Result<Saved> {
        let mut names = match at::list(d) {
            Ok(names) => names,
            Err(e) => {
                self.error(path, format!("cannot list directory: {e}"));
                return self.finish_tree(path, Vec::new(), None);
            }
        };
        names.sort();
        if self.opts.excludes.exclude_caches
            && at::has_cachedir_tag(d, crate::local::filter::CACHEDIR_SIGNATURE)
        {
            names.retain(|n| n == "CACHEDIR.TAG");
        }
        let parent_nodes = self.parent_nodes(parent_subtree);
        let parent_count = parent_nodes.len();
        let jobs = pair_with_parent(names, parent_nodes);
        let done: Vec<Option<Done>> = jobs
            .into_par_iter()
            .map(|(n, pn)| {
                let child = path.join(&n);
                if self.opts.excludes.is_excluded(&child) {
                    return Ok(None);
                }
                let st = match at::lstat_at(d.as_fd(), &n) {
                    Ok(st) => st,
                    Err(e) => {
                        self.error(&child, format!("cannot read metadata: {e}"));
                        return Ok(None);
                    }
                };
                if self.opts.excludes.own_cache == Some((st.st_dev, st.st_ino)) {
                    return Ok(None);
                }
                crate::testhooks::pause_point("source-after-lstat");
                let at = Place {
                    dir: d.as_fd(),
                    path: &child,
                    name: n.as_bytes(),
                    root_dev: Some(dev),
                    depth: depth + 1,
                };
                self.entry(at, &st, pn)
            })
            .collect::<Result<_>>()?;
        // Identical only if every entry matched a parent node unchanged and
        // none of the parent's entries went missing.
        let all_same =
            done.len() == parent_count && done.iter().all(|d| d.as_ref().is_some_and(|d| d.same));
        let nodes = done.into_iter().flatten().map(|d| d.node).collect();
        self.finish_tree(path, nodes, parent_subtree.filter(|_| all_same))
    }
}

/// Where an entry lies: its name in the open directory `dir`, its full
/// path, the device of the source root it was reached from (for
/// `--one-file-system`) and the number of directories between it and `/`.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub(super) dir: BorrowedFd<'a>,
    pub(super) path: &'a Path,
    pub(super) name: &'a [u8],
    pub(super) root_dev: Option<u64>,
    pub(super) depth: usize,
}

/// One archived entry: its node, and whether that node is the parent
/// snapshot's node unchanged.
pub(super) struct Done {
    pub(super) node: Node,
    pub(super) same: bool,
}

/// A saved (or reused) tree blob, and whether it is the parent's.
pub(super) struct Saved {
    pub(super) id: BlobId,
    pub(super) same: bool,
}

type Job = (OsString, Option<Node>);

/// Hands each directory entry its node from the parent tree, by one merge
/// of the two name-sorted lists: the nodes are moved, not searched for and
/// copied.
pub(super) fn pair_with_parent(names: Vec<OsString>, parent: Vec<Node>) -> Vec<Job> {
    let mut parent = parent.into_iter().peekable();
    names
        .into_iter()
        .map(|name| {
            let key = name.as_bytes();
            while parent.next_if(|p| p.name.as_slice() < key).is_some() {}
            let p = parent.next_if(|p| p.name.as_slice() == key);
            (name, p)
        })
        .collect()
}

impl Walk<'_> {
    /// Archives from `/` down to the sources (the virtual tree `vroot`)
    /// and returns the root tree's id; `parent_tree` is the parent
    /// snapshot's root tree.
    pub(super) fn root(&self, vroot: &VNode, parent_tree: Option<BlobId>) -> Result<BlobId> {
        let parent_root = parent_tree.map(|id| {
            let mut n = Node::new(Vec::new(), NodeKind::Dir);
            n.subtree = Some(id);
            n
        });
        let root = at::open_dir_path(Path::new("/"))
            .map_err(|e| Error::io("open the root directory", "/", e))?;
        let tree = match vroot {
            VNode::Source(p) => {
                let st = fstat(&root).map_err(|e| Error::io("read metadata of", p, e.into()))?;
                self.dir(
                    &root,
                    p,
                    parent_root.as_ref().and_then(|n| n.subtree),
                    st.st_dev,
                    0,
                )?
                .id
            }
            VNode::Parent { path, children } => {
                match self.ancestor(&root, path, b"", children, parent_root.as_ref(), 0)? {
                    Some(Done {
                        node:
                            Node {
                                subtree: Some(id), ..
                            },
                        ..
                    }) => id,
                    _ => self.save_tree(path, Vec::new())?,
                }
            }
        };
        Ok(tree)
    }
}
