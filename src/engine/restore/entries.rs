//! Creating what a restore puts in the target, except file content:
//! directories level by level, empty files (a file with content is created
//! by the first pack that writes to it), then hard links, symlinks, FIFOs
//! and devices, each relative to its verified directory. A file already
//! there and identical is left alone, so a repeated restore writes nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mknodat};
use nix::unistd::{linkat, symlinkat};
use rayon::prelude::*;

use crate::crypto::hash;
use crate::format::tree::{Node, NodeKind};

use super::{Item, Restorer, at, flags, is_dir, links};

impl Restorer<'_> {
    /// Creates file `no`, unless it is already there intact. A file with
    /// content is created by the first pack that writes to it (one open
    /// instead of two). Returns whether its content must be written.
    fn create_file(&self, no: usize, node: &Node) -> bool {
        let path = self.items[no].path();
        let Some((dir, name)) = self.parent(no) else {
            return false;
        };
        if let Ok(st) = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if self.identical(no, &dir, name, node, &st) {
                // Its metadata is set later by name: only to this very file.
                if let Ok(mut c) = self.created[no].lock() {
                    *c = Some((st.st_dev, st.st_ino));
                }
                self.skipped.fetch_add(1, Ordering::Relaxed);
                self.progress.add_done(0, node.size);
                return false;
            }
            if is_dir(&st) {
                self.error(
                    path,
                    "a directory is in the way of this file; left alone (`--delete` moves it aside)",
                );
                return false;
            }
            self.clear_at(no, dir.as_fd(), name);
        }
        if !node.content.is_empty() {
            return true;
        }
        match self.open_target(no) {
            Ok(_) => true,
            Err(e) => {
                self.error(path, e);
                false
            }
        }
    }

    fn create_dirs(&self) {
        // Level by level (every parent exists and is open before anything
        // is created below it), each level in parallel.
        let mut dirs: Vec<(usize, usize)> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(no, item)| match item {
                Item::Dir { path, .. } if self.slots[no] != 0 => {
                    Some((path.components().count(), no))
                }
                _ => None,
            })
            .collect();
        dirs.sort_by_key(|(depth, _)| *depth);
        for level in dirs.chunk_by(|a, b| a.0 == b.0) {
            level.par_iter().for_each(|(_, no)| {
                let path = self.items[*no].path();
                let Some((parent, name)) = self.parent(*no) else {
                    return;
                };
                let made = match at::make_dir(&parent, name) {
                    Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                        // A symlink or file in its place: set it aside, then create.
                        self.clear_at(*no, parent.as_fd(), name);
                        at::make_dir(&parent, name)
                    }
                    other => other,
                };
                match made {
                    Ok(fd) => self.dirs.keep(self.slots[*no], fd),
                    Err(e) => self.error(path, format!("cannot create directory: {e}")),
                }
            });
        }
    }

    /// Creates every directory and file (not yet their content). Returns,
    /// per item, whether the file's content must be written.
    pub(super) fn create_entries(&self) -> Vec<bool> {
        // Directories first; then files in parallel: with many small files,
        // creating them is most of a restore's system time.
        self.create_dirs();
        crate::testhooks::pause_point("restore-dirs-created");
        self.items
            .par_iter()
            .enumerate()
            .map(|(no, item)| match item {
                Item::File { node, .. } => self.create_file(no, node),
                _ => false,
            })
            .collect()
    }

    /// Whether entry `name` of `dir` already holds exactly this file (same
    /// size and mtime, and every chunk's MAC matches), so a repeated restore
    /// writes nothing.
    fn identical(
        &self,
        no: usize,
        dir: &at::DirFd,
        name: &OsStr,
        node: &Node,
        st: &nix::sys::stat::FileStat,
    ) -> bool {
        // More names than the snapshot recorded: it may be a hard link to a
        // file outside the target, whose owner and mode must not change.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || links(st) > node.links.max(1) {
            return false;
        }
        if self
            .mirror
            .is_some_and(|m| m.unchanged(self.items[no].path(), node, st))
        {
            return true;
        }
        if st.st_size as u64 != node.size
            || st.st_mtime != node.mtime.secs
            || st.st_mtime_nsec != node.mtime.nanos as i64
        {
            return false;
        }
        let Ok(fd) = openat(
            dir,
            name,
            flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
            Mode::empty(),
        ) else {
            return false;
        };
        let mut f = File::from(fd);
        let mut buf = Vec::new();
        node.content.iter().all(|c| {
            buf.resize(c.len as usize, 0);
            f.read_exact(&mut buf).is_ok() && hash::blob_id(&self.repo.keys().blob_id, &buf) == c.id
        })
    }

    /// Hard links, symlinks, FIFOs and devices, each made relative to its
    /// verified directory. Sockets are skipped: a socket only means
    /// something to the process that listens on it.
    pub(super) fn create_others(&self) {
        let files: HashMap<&Path, usize> = if self
            .items
            .iter()
            .any(|i| matches!(i, Item::HardLink { .. }))
        {
            self.items
                .iter()
                .enumerate()
                .filter(|(_, i)| matches!(i, Item::File { .. }))
                .map(|(no, i)| (i.path(), no))
                .collect()
        } else {
            HashMap::new()
        };
        for (no, item) in self.items.iter().enumerate() {
            match item {
                Item::HardLink { first, .. } => self.hard_link(no, first, &files),
                Item::Other { node, .. } => self.special(no, node),
                _ => {}
            }
        }
    }

    /// Gives file `first` the further name of item `no`.
    fn hard_link(&self, no: usize, first: &Path, files: &HashMap<&Path, usize>) {
        let path = self.items[no].path();
        let Some(&first_no) = files.get(first) else {
            self.error(path, format!("{} was not restored", first.display()));
            return;
        };
        let (Some((dir, name)), Some((fdir, fname))) = (self.parent(no), self.parent(first_no))
        else {
            return;
        };
        // Linked only to the file this restore made (or found
        // identical) under the first name, through a descriptor:
        // the owner of that directory may have put their own
        // file or a symlink there, and it must not get a second
        // name elsewhere (in a directory only root may write).
        let made = self.created[first_no].lock().ok().and_then(|c| *c);
        let fd = match openat(&fdir, fname, flags(OFlag::O_PATH), Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                self.error(
                    path,
                    format!("cannot open {} to link to it: {e}", first.display()),
                );
                return;
            }
        };
        let same = fstat(&fd).is_ok_and(|st| {
            st.st_mode & libc::S_IFMT == libc::S_IFREG && made == Some((st.st_dev, st.st_ino))
        });
        if !same {
            self.error(
                path,
                format!(
                    "not linked: {} is not the file this restore wrote (it was \
                     replaced during the restore, or could not be restored); \
                     restore again",
                    first.display()
                ),
            );
            return;
        }
        // Already this link (a repeated restore): nothing to do,
        // and nothing to set aside.
        if fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| made == Some((st.st_dev, st.st_ino)))
        {
            return;
        }
        self.clear_at(no, dir.as_fd(), name);
        let r = match linkat(
            nix::fcntl::AT_FDCWD,
            &at::proc_path(fd.as_fd(), None),
            &dir,
            name,
            AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            // Without /proc: by name, just checked.
            Err(Errno::ENOENT) if !Path::new("/proc/self/fd").is_dir() => {
                linkat(&fdir, fname, &dir, name, AtFlags::empty())
            }
            r => r,
        };
        if let Err(e) = r {
            self.error(
                path,
                format!("cannot create hard link to {}: {e}", first.display()),
            );
        }
    }

    /// Creates symlink, FIFO or device `no` (sockets and the kinds restored
    /// elsewhere are skipped).
    fn special(&self, no: usize, node: &Node) {
        let path = self.items[no].path();
        if matches!(node.kind, NodeKind::Socket | NodeKind::File | NodeKind::Dir) {
            return;
        }
        let Some((dir, name)) = self.parent(no) else {
            return;
        };
        self.clear_at(no, dir.as_fd(), name);
        let perm = Mode::from_bits_truncate(node.mode & 0o7777);
        let r = match node.kind {
            NodeKind::Symlink => symlinkat(OsStr::from_bytes(&node.target), &dir, name),
            NodeKind::Fifo => mknodat(&dir, name, SFlag::S_IFIFO, perm, 0),
            NodeKind::CharDevice => mknodat(&dir, name, SFlag::S_IFCHR, perm, node.rdev),
            _ => mknodat(&dir, name, SFlag::S_IFBLK, perm, node.rdev),
        };
        if let Err(e) = r {
            self.error(path, format!("cannot create {:?}: {e}", node.kind));
        }
    }
}
