//! Reading a file system entry's metadata into a [`Node`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::thread::LocalKey;

use crate::format::tree::{Node, NodeKind, Timestamp, Xattr};

/// The `stat` data a node is built from (`fstatat`/`fstat` of the walk).
pub(crate) type Stat = nix::sys::stat::FileStat;

/// The node kind of a file type (std metadata, for callers that have it).
pub(crate) fn kind_of(md: &Metadata) -> NodeKind {
    kind_of_mode(md.mode())
}

/// The node kind of the file type bits of `st_mode`.
pub(crate) fn kind_of_mode(mode: u32) -> NodeKind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFCHR => NodeKind::CharDevice,
        libc::S_IFBLK => NodeKind::BlockDevice,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// `st_nlink` is 64 bits wide on some targets and 32 on others.
#[allow(clippy::unnecessary_cast)]
fn links(st: &Stat) -> u64 {
    st.st_nlink as u64
}

/// Builds a node from `stat` data; content, subtree and target are filled by the caller.
///
/// Extended attributes come from `parent` (the node in the parent snapshot)
/// when it is the same inode with the same ctime: changing an xattr always
/// updates the ctime, so the list cannot differ, and an unchanged tree
/// then costs one `lstat` per entry instead of also one `llistxattr`.
/// Otherwise `xattrs` reads them.
pub(crate) fn node_from(
    name: &[u8],
    st: &Stat,
    parent: Option<&Node>,
    xattrs: impl FnOnce() -> Vec<Xattr>,
) -> Node {
    let mut n = Node::new(name.to_vec(), kind_of_mode(st.st_mode));
    n.mode = st.st_mode & 0o7777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    n.user = with_user(st.st_uid, str::to_owned);
    n.group = with_group(st.st_gid, str::to_owned);
    n.mtime = timestamp(st.st_mtime, st.st_mtime_nsec);
    n.ctime = timestamp(st.st_ctime, st.st_ctime_nsec);
    n.inode = st.st_ino;
    n.device = st.st_dev;
    n.links = links(st);
    n.rdev = st.st_rdev;
    n.size = size_of(n.kind, st);
    n.xattrs = match parent {
        Some(p) if p.kind == n.kind && p.inode == n.inode && p.ctime == n.ctime => p.xattrs.clone(),
        _ => xattrs(),
    };
    n
}

/// Whether [`node_from`] would fill every field it fills exactly as the
/// parent snapshot's node `p` has it. Then `p` itself can stand for the
/// entry: no allocation, and when a whole directory's entries agree, its
/// tree blob is the parent's too (no encoding, no hashing).
pub(crate) fn same_as(st: &Stat, p: &Node) -> bool {
    let kind = kind_of_mode(st.st_mode);
    p.kind == kind
        && p.mode == st.st_mode & 0o7777
        && p.uid == st.st_uid
        && p.gid == st.st_gid
        && p.mtime == timestamp(st.st_mtime, st.st_mtime_nsec)
        && p.ctime == timestamp(st.st_ctime, st.st_ctime_nsec)
        && p.inode == st.st_ino
        && p.device == st.st_dev
        && p.links == links(st)
        && p.rdev == st.st_rdev
        && p.size == size_of(kind, st)
        && with_user(st.st_uid, |u| u == p.user)
        && with_group(st.st_gid, |g| g == p.group)
}

/// A file's size; the size of anything else is recorded as 0.
pub(crate) fn size_of(kind: NodeKind, st: &Stat) -> u64 {
    if kind == NodeKind::File {
        u64::try_from(st.st_size).unwrap_or(0)
    } else {
        0
    }
}

/// A timestamp as nodes record it (nanoseconds clamped into range).
pub(crate) fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    Timestamp {
        secs,
        nanos: nanos.clamp(0, 999_999_999) as u32,
    }
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
pub(crate) fn with_user<R>(uid: u32, f: impl FnOnce(&str) -> R) -> R {
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
pub(crate) fn with_group<R>(gid: u32, f: impl FnOnce(&str) -> R) -> R {
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
