//! Reading a file system entry's metadata into a [`Node`].

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

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
    n.user = user_name(md.uid());
    n.group = group_name(md.gid());
    n.mtime = Timestamp {
        secs: md.mtime(),
        nanos: md.mtime_nsec().clamp(0, 999_999_999) as u32,
    };
    n.ctime = Timestamp {
        secs: md.ctime(),
        nanos: md.ctime_nsec().clamp(0, 999_999_999) as u32,
    };
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    n.rdev = md.rdev();
    if n.kind == NodeKind::File {
        n.size = md.size();
    }
    n.xattrs = match parent {
        Some(p) if p.kind == n.kind && p.inode == n.inode && p.ctime == n.ctime => p.xattrs.clone(),
        _ => read_xattrs(path),
    };
    n
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

fn cached(
    cache: &'static OnceLock<Mutex<HashMap<u32, String>>>,
    id: u32,
    look: impl Fn(u32) -> Option<String>,
) -> String {
    let m = cache.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(g) = m.lock()
        && let Some(s) = g.get(&id)
    {
        return s.clone();
    }
    let name = look(id).unwrap_or_default();
    if let Ok(mut g) = m.lock() {
        g.insert(id, name.clone());
    }
    name
}

/// User name for a uid, or empty when unknown.
pub fn user_name(uid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    cached(&CACHE, uid, |u| {
        nix::unistd::User::from_uid(u.into())
            .ok()
            .flatten()
            .map(|u| u.name)
    })
}

/// Group name for a gid, or empty when unknown.
pub fn group_name(gid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    cached(&CACHE, gid, |g| {
        nix::unistd::Group::from_gid(g.into())
            .ok()
            .flatten()
            .map(|g| g.name)
    })
}
