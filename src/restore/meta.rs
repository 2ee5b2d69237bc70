//! Applying a node's metadata to a restored path.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::AtFlags;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat};

use crate::tree::{Node, NodeKind};

/// Name-to-id lookups, cached: each lookup reads /etc/passwd or
/// /etc/group, and a restore asks for the same few names for every file.
#[derive(Default)]
pub struct Owners {
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

/// Sets owner (as root), mode, xattrs and mtime; returns what failed.
/// With `open`, the file's descriptor is used instead of its path.
pub fn apply(
    path: &Path,
    node: &Node,
    as_root: bool,
    owners: &Owners,
    open: Option<&File>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let is_link = node.kind == NodeKind::Symlink;
    if as_root {
        let (uid, gid) = owners.of(node);
        let r = match open {
            Some(f) => nix::unistd::fchown(f, Some(uid), Some(gid)),
            None => fchownat(
                nix::fcntl::AT_FDCWD,
                path,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        };
        if let Err(e) = r {
            errs.push(format!("cannot set owner {uid}:{gid}: {e}"));
        }
    }
    // xattrs before the mode: setting user.* attributes needs write permission.
    for x in &node.xattrs {
        let name = OsStr::from_bytes(&x.name);
        let r = match open {
            Some(f) => xattr::FileExt::set_xattr(f, name, &x.value),
            None => xattr::set(path, name, &x.value),
        };
        if let Err(e) = r {
            errs.push(format!(
                "cannot set extended attribute {}: {e}",
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
    if !is_link {
        let perms = std::fs::Permissions::from_mode(node.mode);
        let r = match open {
            Some(f) => f.set_permissions(perms),
            None => std::fs::set_permissions(path, perms),
        };
        if let Err(e) = r {
            errs.push(format!("cannot set mode {:o}: {e}", node.mode));
        }
    }
    let mtime = TimeSpec::new(node.mtime.secs, node.mtime.nanos as i64);
    // atime is not recorded (reading files changes it); set it to the mtime.
    let r = match open {
        Some(f) => nix::sys::stat::futimens(f, &mtime, &mtime),
        None => utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        ),
    };
    if let Err(e) = r {
        errs.push(format!("cannot set modification time: {e}"));
    }
    errs
}
