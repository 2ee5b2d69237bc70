//! Metadata last, in the order that keeps it: files and special files
//! first (those a pack finished are already done), directories last and
//! deepest first, so writing into a directory never disturbs its times.
//! Each is set through a descriptor of the very entry this restore made.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstat, fstatat};
use rayon::prelude::*;

use crate::format::tree::{Node, NodeKind};

use super::{Item, Restorer, at, flags, meta};

impl Restorer<'_> {
    /// Sets the metadata of a file not finished through its descriptor, or
    /// of a special file or symlink, relative to its verified directory.
    fn apply_at(&self, no: usize, node: &Node) {
        let path = self.items[no].path();
        let Some((dir, name)) = self.parent(no) else {
            return;
        };
        let errs = if node.kind == NodeKind::Symlink {
            match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => meta::apply(
                    meta::Target::Link {
                        dir: dir.as_fd(),
                        name,
                    },
                    node,
                    self.as_root,
                    &self.owners,
                ),
                _ => return,
            }
        } else {
            // O_PATH needs no permission on the file and opens no device.
            let Ok(fd) = openat(&dir, name, flags(OFlag::O_PATH), Mode::empty()) else {
                return;
            };
            let want = match node.kind {
                NodeKind::Fifo => libc::S_IFIFO,
                NodeKind::CharDevice => libc::S_IFCHR,
                NodeKind::BlockDevice => libc::S_IFBLK,
                _ => libc::S_IFREG,
            };
            // A file gets metadata only if it is the one this restore
            // created or found identical: the owner of the directory may
            // have put their own file in its place, and root must not make
            // that setuid root.
            // A file it neither created nor checked has had its error
            // reported already.
            let made = match &self.items[no] {
                Item::File { .. } => match self.created[no].lock().ok().and_then(|c| *c) {
                    Some(id) => Some(id),
                    None => return,
                },
                _ => None,
            };
            let ours =
                |st: &nix::sys::stat::FileStat| made.is_none_or(|id| id == (st.st_dev, st.st_ino));
            match fstat(&fd) {
                Ok(st) if st.st_mode & libc::S_IFMT == want && ours(&st) => meta::apply(
                    meta::Target::Handle(fd.as_fd()),
                    node,
                    self.as_root,
                    &self.owners,
                ),
                Ok(_) => vec![
                    "it was replaced by something else during the restore; \
                     its owner, mode and times were not set: restore again"
                        .to_string(),
                ],
                Err(e) => vec![format!("cannot set metadata: {e}")],
            }
        };
        for e in errs {
            self.error(path, e);
        }
    }

    pub(super) fn apply_metadata(&self) {
        self.items.par_iter().enumerate().for_each(|(no, item)| {
            if let Item::File { node, .. } | Item::Other { node, .. } = item {
                if self.finished[no].load(Ordering::Acquire) || node.kind == NodeKind::Socket {
                    return;
                }
                self.apply_at(no, node);
            }
        });
        // Directories last and deepest first, so nothing disturbs their times.
        for (no, item) in self.items.iter().enumerate().rev() {
            if let Item::Dir { path, node } = item {
                let errs = match self.dirs.get(self.slots[no]) {
                    Ok(fd) => {
                        let target = if at::is_path_only(fd.as_fd()) {
                            meta::Target::Handle(fd.as_fd())
                        } else {
                            meta::Target::Open(fd.as_fd())
                        };
                        meta::apply(target, node, self.as_root, &self.owners)
                    }
                    Err(e) => vec![format!("cannot open directory to set its metadata: {e}")],
                };
                for e in errs {
                    self.error(path, e);
                }
            }
        }
    }
}
