//! Tree blobs: one directory's entries with their metadata.
//!
//! A tree is stored as a blob, so an unchanged directory encodes to the
//! same bytes, gets the same id and costs nothing in the next snapshot.
//! Names are raw bytes because Unix file names need not be UTF-8.

use crate::format::error::FormatError;
use serde::{Deserialize, Serialize};

use crate::id::BlobId;

/// Version of the tree payload layout.
pub const TREE_VERSION: u32 = 1;

/// File type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl NodeKind {
    /// The name `ls`, `diff`, `dump` and `cat` show for this kind.
    pub(crate) fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
        }
    }
}

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// One piece of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: BlobId,
    /// Plaintext length, so a restore can place every chunk without fetching the others first.
    pub len: u32,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub name: Vec<u8>,
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub value: Vec<u8>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission and special bits (st_mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub mtime: Timestamp,
    /// Recorded for change detection on the next backup; not restored.
    pub ctime: Timestamp,
    pub inode: u64,
    pub device: u64,
    pub links: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
    pub size: u64,
    /// Regular files: the chunks in order.
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub content: Vec<ChunkRef>,
    /// Directories: the tree blob of the directory.
    pub subtree: Option<BlobId>,
    /// Symlinks: the target, verbatim.
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub target: Vec<u8>,
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// A node with the given name and kind and everything else empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            links: 0,
            rdev: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: Vec::new(),
            xattrs: Vec::new(),
        }
    }

    /// The name for display (lossy for non-UTF-8 names).
    pub(crate) fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory listing, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub version: u32,
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts nodes by name so equal directories encode identically.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            version: TREE_VERSION,
            nodes,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and [validates](Self::validate) a tree.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let t: Tree = postcard::from_bytes(bytes).map_err(|e| FormatError::syntax("a tree", e))?;
        t.validate()?;
        Ok(t)
    }

    /// The rules of SPEC §8.2, which readers enforce and writers run
    /// before saving: the version, names (no empty names, no `/` or NUL,
    /// no `.`/`..`, sorted, unique) so a hostile tree cannot make a restore
    /// escape its target directory, and a subtree exactly for directories.
    pub(crate) fn validate(&self) -> Result<(), FormatError> {
        if self.version != TREE_VERSION {
            return Err(FormatError::UnknownVersion {
                what: "tree",
                found: self.version.into(),
            });
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty()
                || n.name == b"."
                || n.name == b".."
                || n.name.contains(&b'/')
                || n.name.contains(&0)
            {
                return Err(FormatError::Invalid(format!(
                    "invalid entry name {:?}",
                    n.display_name()
                )));
            }
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err(FormatError::Invalid(format!(
                    "entries not sorted or duplicated at {:?}",
                    n.display_name()
                )));
            }
            if (n.kind == NodeKind::Dir) != n.subtree.is_some() {
                return Err(FormatError::Invalid(format!(
                    "entry {:?}: subtree does not match its kind",
                    n.display_name()
                )));
            }
        }
        Ok(())
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node_strategy() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(1u8..=255, 1..20),
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(name, mode, secs, size, chunks, target)| {
                let name: Vec<u8> = name
                    .into_iter()
                    .map(|b| if b == b'/' { b'x' } else { b })
                    .collect();
                let mut n = Node::new(name, NodeKind::File);
                n.mode = mode;
                n.mtime = Timestamp { secs, nanos: 5 };
                n.size = size;
                n.content = chunks
                    .into_iter()
                    .map(|c| ChunkRef {
                        id: BlobId(c),
                        len: 7,
                    })
                    .collect();
                n.target = target;
                n.xattrs = vec![Xattr {
                    name: b"user.a".to_vec(),
                    value: vec![0, 1, 2],
                }];
                n
            })
    }

    proptest! {
        #[test]
        fn round_trip(nodes in proptest::collection::vec(node_strategy(), 0..10)) {
            let mut nodes = nodes;
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            nodes.retain(|n| n.name != b"." && n.name != b"..");
            let t = Tree::new(nodes);
            prop_assert_eq!(Tree::decode(&t.encode()).unwrap(), t);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let _ = Tree::decode(&data);
        }
    }

    #[test]
    fn hostile_names_rejected() {
        for bad in [&b".."[..], b"a/b", b"", b"."] {
            let t = Tree {
                version: TREE_VERSION,
                nodes: vec![Node::new(bad.to_vec(), NodeKind::File)],
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{bad:?}");
        }
    }

    /// What `create` once wrote for a source below a symlinked directory:
    /// a symlink node with a subtree. The writer's check refuses it as the
    /// reader does.
    #[test]
    fn symlink_with_subtree_rejected_by_writer_and_reader() {
        let mut n = Node::new(b"link".to_vec(), NodeKind::Symlink);
        n.subtree = Some(BlobId([7; 32]));
        let t = Tree::new(vec![n]);
        let err = t.validate().unwrap_err();
        assert!(
            err.to_string().contains("subtree does not match its kind"),
            "{err}"
        );
        assert_eq!(Tree::decode(&t.encode()).unwrap_err(), err);
        let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
        assert!(Tree::new(vec![d.clone()]).validate().is_err());
        d.subtree = Some(BlobId([7; 32]));
        assert!(Tree::new(vec![d]).validate().is_ok());
    }
}
