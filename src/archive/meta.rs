//! Reading a file system entry's metadata into a [`Node`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::thread::LocalKey;

use crate::tree::{Node, NodeKind, Timestamp, Xattr};

/// The node kind of a file type.
pub fn kind_of(md: &Metadata) -> NodeKind {
    let t = md.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Builds a node from `lstat` data; content, subtree and target are filled by the caller.
///
/// Extended attributes come from `parent` (the node in the parent snapshot)
/// when it is the same inode with the same ctime: changing an xattr always
/// updates the ctime, so the list cannot differ, and an unchanged tree
/// then costs one `lstat` per entry instead of also one `llistxattr`.
pub fn node_from(name: &[u8], path: &Path, md: &Metadata, parent: Option<&Node>) -> Node {
    let mut n = Node::new(name.to_vec(), kind_of(md));
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = with_user(md.uid(), str::to_owned);
    n.group = with_group(md.gid(), str::to_owned);
    n.mtime = timestamp(md.mtime(), md.mtime_nsec());
    n.ctime = timestamp(md.ctime(), md.ctime_nsec());
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    n.rdev = md.rdev();
    n.size = size_of(n.kind, md);
    n.xattrs = match parent {
        Some(p) if p.kind == n.kind && p.inode == n.inode && p.ctime == n.ctime => p.xattrs.clone(),
        _ => read_xattrs(path),
    };
    n
}

/// Whether [`node_from`] would fill every field it fills exactly as the
/// parent snapshot's node `p` has it. Then `p` itself can stand for the
/// entry: no allocation, and when a whole directory's entries agree, its
/// tree blob is the parent's too (no encoding, no hashing).
pub fn same_as(md: &Metadata, p: &Node) -> bool {
    let kind = kind_of(md);
    p.kind == kind
        && p.mode == md.mode() & 0o7777
        && p.uid == md.uid()
        && p.gid == md.gid()
        && p.mtime == timestamp(md.mtime(), md.mtime_nsec())
        && p.ctime == timestamp(md.ctime(), md.ctime_nsec())
        && p.inode == md.ino()
        && p.device == md.dev()
        && p.links == md.nlink()
        && p.rdev == md.rdev()
        && p.size == size_of(kind, md)
        && with_user(md.uid(), |u| u == p.user)
        && with_group(md.gid(), |g| g == p.group)
}

fn size_of(kind: NodeKind, md: &Metadata) -> u64 {
    if kind == NodeKind::File { md.size() } else { 0 }
}

/// A timestamp as nodes record it (nanoseconds clamped into range).
pub fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    Timestamp {
        secs,
        nanos: nanos.clamp(0, 999_999_999) as u32,
    }
}

/// Extended attributes of `path` itself (not a symlink's target). File
/// systems without xattr support simply yield none.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

type NameCache = RefCell<HashMap<u32, String>>;

/// Looks a name up once per id and thread: no lock is shared between the
/// walker threads, and callers borrow the name instead of copying it.
fn with_name<R>(
    cache: &'static LocalKey<NameCache>,
    id: u32,
    look: impl Fn(u32) -> Option<String>,
    f: impl FnOnce(&str) -> R,
) -> R {
    cache.with(|c| {
        let mut c = c.borrow_mut();
        f(c.entry(id).or_insert_with(|| look(id).unwrap_or_default()))
    })
}

thread_local! {
    static USERS: NameCache = RefCell::new(HashMap::new());
    static GROUPS: NameCache = RefCell::new(HashMap::new());
}

/// Calls `f` with the user name of `uid` (empty when unknown).
pub fn with_user<R>(uid: u32, f: impl FnOnce(&str) -> R) -> R {
    with_name(
        &USERS,
        uid,
        |u| {
            nix::unistd::User::from_uid(u.into())
                .ok()
                .flatten()
                .map(|u| u.name)
        },
        f,
    )
}

/// Calls `f` with the group name of `gid` (empty when unknown).
pub fn with_group<R>(gid: u32, f: impl FnOnce(&str) -> R) -> R {
    with_name(
        &GROUPS,
        gid,
        |g| {
            nix::unistd::Group::from_gid(g.into())
                .ok()
                .flatten()
                .map(|g| g.name)
        },
        f,
    )
}
