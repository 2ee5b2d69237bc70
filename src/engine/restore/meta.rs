//! Applying a node's metadata to a restored path.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat};

use super::at::proc_path;
use crate::format::tree::Node;

/// Name-to-id lookups, cached: each lookup reads /etc/passwd or
/// /etc/group, and a restore asks for the same few names for every file.
#[derive(Default)]
pub(crate) struct Owners {
    users: Mutex<HashMap<String, Option<Uid>>>,
    groups: Mutex<HashMap<String, Option<Gid>>>,
}

impl Owners {
    /// uid and gid for a node: its names on this system if known, else its numbers (as tar does).
    fn of(&self, node: &Node) -> (Uid, Gid) {
        let uid = cached(&self.users, &node.user, |n| {
            nix::unistd::User::from_name(n)
                .ok()
                .flatten()
                .map(|u| u.uid)
        })
        .unwrap_or(Uid::from_raw(node.uid));
        let gid = cached(&self.groups, &node.group, |n| {
            nix::unistd::Group::from_name(n)
                .ok()
                .flatten()
                .map(|g| g.gid)
        })
        .unwrap_or(Gid::from_raw(node.gid));
        (uid, gid)
    }
}

fn cached<T: Copy>(
    map: &Mutex<HashMap<String, Option<T>>>,
    name: &str,
    lookup: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    if name.is_empty() {
        return None;
    }
    if let Ok(m) = map.lock()
        && let Some(v) = m.get(name)
    {
        return *v;
    }
    let v = lookup(name);
    if let Ok(mut m) = map.lock() {
        m.insert(name.to_string(), v);
    }
    v
}

/// What metadata is applied to, never by a path another user could redirect.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A file or directory open for reading or writing.
    Open(BorrowedFd<'a>),
    /// A special file or a file not held open, opened with
    /// `O_PATH | O_NOFOLLOW` (which needs no permission on the file itself):
    /// calls without an fd form go through `/proc/self/fd/N`.
    Handle(BorrowedFd<'a>),
    /// A symlink, by name in its verified directory, never followed.
    Link {
        dir: BorrowedFd<'a>,
        name: &'a OsStr,
    },
}

/// Sets owner (as root), xattrs, mode and mtime, in that order: chown
/// clears the setuid and setgid bits, so the mode comes after it; user
/// xattrs need write permission, so they come before a read-only mode.
/// Returns what failed.
pub(crate) fn apply(target: Target, node: &Node, as_root: bool, owners: &Owners) -> Vec<String> {
    let mut errs = Vec::new();
    if as_root {
        let (uid, gid) = owners.of(node);
        let r = match target {
            Target::Open(fd) => nix::unistd::fchown(fd, Some(uid), Some(gid)),
            Target::Handle(fd) => fchownat(fd, "", Some(uid), Some(gid), AtFlags::AT_EMPTY_PATH),
            Target::Link { dir, name } => fchownat(
                dir,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        };
        if let Err(e) = r {
            errs.push(format!("cannot set owner {uid}:{gid}: {e}"));
        }
    }
    for x in &node.xattrs {
        let name = OsStr::from_bytes(&x.name);
        let r = match target {
            // fsetxattr on a duplicate of the descriptor (xattr's API wants a
            // File): no path, and no need for /proc.
            Target::Open(fd) => fd.try_clone_to_owned().and_then(|own| {
                xattr::FileExt::set_xattr(&std::fs::File::from(own), name, &x.value)
            }),
            Target::Handle(fd) => xattr::set_deref(proc_path(fd, None), name, &x.value),
            Target::Link { dir, name: n } => xattr::set(proc_path(dir, Some(n)), name, &x.value),
        };
        if let Err(e) = r {
            errs.push(format!(
                "cannot set extended attribute {}: {e}",
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
    let mode = Mode::from_bits_truncate(node.mode & 0o7777);
    let r = match target {
        Target::Open(fd) => nix::sys::stat::fchmod(fd, mode),
        Target::Handle(fd) => nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &proc_path(fd, None),
            mode,
            FchmodatFlags::FollowSymlink,
        ),
        Target::Link { .. } => Ok(()),
    };
    if let Err(e) = r {
        errs.push(format!("cannot set mode {:o}: {e}", node.mode));
    }
    let mtime = TimeSpec::new(node.mtime.secs, node.mtime.nanos as i64);
    // atime is not recorded (reading files changes it); set it to the mtime.
    let r = match target {
        Target::Open(fd) => nix::sys::stat::futimens(fd, &mtime, &mtime),
        Target::Handle(fd) => utimensat(
            nix::fcntl::AT_FDCWD,
            &proc_path(fd, None),
            &mtime,
            &mtime,
            UtimensatFlags::FollowSymlink,
        ),
        Target::Link { dir, name } => {
            utimensat(dir, name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
        }
    };
    if let Err(e) = r {
        errs.push(format!("cannot set modification time: {e}"));
    }
    errs
}
