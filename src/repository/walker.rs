//! The one walk over a snapshot's trees, and path lookup inside one.
//!
//! ls, find, check, repair, dump and others each walked trees by hand, with
//! their own recursion, error handling and path building. A walk here is
//! depth-first in tree order (so listings come out as before), iterative
//! (a hostile, deeply nested snapshot cannot overflow the stack), and hands
//! a tree that cannot be loaded to the visitor, which decides whether that
//! costs the subtree (check) or the whole walk (ls).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Repository;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;

/// Whether a walk goes below a node (or into a tree's nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Descend,
    Skip,
}

/// What a walk calls back. Paths are absolute in the snapshot (`/` for the
/// tree the walk starts at, unless the walk was given another start path).
pub trait Visitor {
    /// A tree was loaded for the directory at `dir`; `Skip` leaves its nodes
    /// unvisited. Called before any of its nodes.
    fn tree(&mut self, _dir: &Path, _id: &BlobId, _tree: &Tree) -> Result<Step> {
        Ok(Step::Descend)
    }

    /// One node, at `path`, listed in tree `parent`; `Skip` keeps the walk
    /// out of a directory's subtree.
    fn node(&mut self, path: &Path, node: &Node, parent: &BlobId) -> Result<Step>;

    /// The tree `id` of the directory at `dir` could not be loaded. `Ok` goes
    /// on past that subtree; an error stops the walk (the default).
    fn damaged(&mut self, _dir: &Path, _id: &BlobId, error: Error) -> Result<()> {
        Err(error)
    }
}

/// A closure is a visitor of nodes that stops at the first damaged tree.
impl<F: FnMut(&Path, &Node) -> Result<Step>> Visitor for F {
    fn node(&mut self, path: &Path, node: &Node, _parent: &BlobId) -> Result<Step> {
        self(path, node)
    }
}

/// Walks trees of one repository through one index. Optionally visits each
/// tree once however often it is referenced (for whole-repository checks),
/// and keeps recently loaded trees (for walks over many similar snapshots).
pub struct Walker<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    seen: Option<HashSet<BlobId>>,
    cache: Option<(usize, HashMap<BlobId, Rc<Tree>>)>,
}

/// One directory being walked: its tree, the next node, and its path.
struct Frame {
    id: BlobId,
    tree: Rc<Tree>,
    next: usize,
    dir: PathBuf,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(repo: &'a Repository, index: &'a MemIndex) -> Self {
        Walker {
            repo,
            index,
            seen: None,
            cache: None,
        }
    }

    /// Visits each tree at most once over all walks of this walker: a tree
    /// shared by many directories or snapshots is walked where first met.
    pub(crate) fn once(mut self) -> Self {
        self.seen = Some(HashSet::new());
        self
    }

    /// Keeps up to `limit` loaded trees for later walks: consecutive
    /// snapshots share most of theirs.
    pub(crate) fn cached(mut self, limit: usize) -> Self {
        self.cache = Some((limit, HashMap::new()));
        self
    }

    /// Walks the tree `root` of the directory at `dir`, depth-first in tree order.
    pub(crate) fn walk(&mut self, root: &BlobId, dir: &Path, v: &mut impl Visitor) -> Result<()> {
        let mut stack: Vec<Frame> = Vec::new();
        self.enter(root, dir.to_path_buf(), &mut stack, v)?;
        while let Some(frame) = stack.last_mut() {
            let (id, tree, i) = (frame.id, frame.tree.clone(), frame.next);
            let Some(node) = tree.nodes.get(i) else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            let path = frame.dir.join(name(node));
            if v.node(&path, node, &id)? == Step::Descend
                && node.kind == NodeKind::Dir
                && let Some(sub) = node.subtree
            {
                self.enter(&sub, path, &mut stack, v)?;
            }
        }
        Ok(())
    }

    /// Loads tree `id` and, unless it was seen or the visitor skips it,
    /// pushes it to be walked.
    fn enter(
        &mut self,
        id: &BlobId,
        dir: PathBuf,
        stack: &mut Vec<Frame>,
        v: &mut impl Visitor,
    ) -> Result<()> {
        if let Some(seen) = &mut self.seen
            && !seen.insert(*id)
        {
            return Ok(());
        }
        let tree = match self.load(id) {
            Ok(t) => t,
            Err(e) => return v.damaged(&dir, id, e),
        };
        if v.tree(&dir, id, &tree)? == Step::Descend {
            stack.push(Frame {
                id: *id,
                tree,
                next: 0,
                dir,
            });
        }
        Ok(())
    }

    fn load(&mut self, id: &BlobId) -> Result<Rc<Tree>> {
        let Some((limit, cache)) = &mut self.cache else {
            return Ok(Rc::new(self.repo.load_tree(self.index, id)?));
        };
        if let Some(t) = cache.get(id) {
            return Ok(t.clone());
        }
        if cache.len() >= *limit {
            cache.clear();
        }
        let t = Rc::new(self.repo.load_tree(self.index, id)?);
        cache.insert(*id, t.clone());
        Ok(t)
    }
}

/// A node's name as a path component.
pub(crate) fn name(node: &Node) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(&node.name))
}

impl Repository {
    /// Resolves `/sub/path` inside a snapshot's root tree. Returns the node
    /// (a synthetic directory for the root) and its path in the snapshot.
    pub(crate) fn resolve(
        &self,
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
            let tree = self.load_tree(index, &tree_id)?;
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
}
