//! Applying a node's metadata to a restored path.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat};

use crate::tree::{Node, NodeKind};

/// uid for a node: its user name on this system if known, else its number (as tar does).
fn owner(node: &Node) -> (Uid, Gid) {
    let uid = (!node.user.is_empty())
        .then(|| nix::unistd::User::from_name(&node.user).ok().flatten())
        .flatten()
        .map(|u| u.uid)
        .unwrap_or(Uid::from_raw(node.uid));
    let gid = (!node.group.is_empty())
        .then(|| nix::unistd::Group::from_name(&node.group).ok().flatten())
        .flatten()
        .map(|g| g.gid)
        .unwrap_or(Gid::from_raw(node.gid));
    (uid, gid)
}

/// Sets owner (as root), mode, xattrs and mtime; returns what failed.
pub fn apply(path: &Path, node: &Node, as_root: bool) -> Vec<String> {
    let mut errs = Vec::new();
    let is_link = node.kind == NodeKind::Symlink;
    if as_root {
        let (uid, gid) = owner(node);
        if let Err(e) = fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            errs.push(format!("cannot set owner {uid}:{gid}: {e}"));
        }
    }
    // xattrs before the mode: setting user.* attributes needs write permission.
    for x in &node.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name), &x.value) {
            errs.push(format!(
                "cannot set extended attribute {}: {e}",
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
    if !is_link {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)) {
            errs.push(format!("cannot set mode {:o}: {e}", node.mode));
        }
    }
    let mtime = TimeSpec::new(node.mtime.secs, node.mtime.nanos as i64);
    // atime is not recorded (reading files changes it); set it to the mtime.
    if let Err(e) = utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    ) {
        errs.push(format!("cannot set modification time: {e}"));
    }
    errs
}
