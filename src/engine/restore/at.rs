//! Directories below the restore target, opened relative to their verified
//! parents, so that nothing a restore creates, changes or removes is ever
//! reached by a path another user could redirect.
//!
//! A local user who owns a directory in the target can rename what is in it
//! at any moment, for instance swap a subdirectory for a symlink to a
//! root-only directory. Every directory below the target is therefore
//! created with `mkdirat` and opened with `O_DIRECTORY | O_NOFOLLOW`
//! relative to its parent's descriptor, and everything below it is created
//! and changed through that descriptor: a swap after the check cannot
//! redirect a single write. Descriptors are kept per directory (one
//! `openat` per directory, none per file) up to a budget taken from the
//! file descriptor limit; beyond it a directory is reopened from its
//! nearest kept ancestor, one `openat(O_NOFOLLOW)` per component, which is
//! as safe and only slower.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

use super::Item;

/// Opens directory `name` in `dir` without following a symlink in its place.
/// A directory we may search and write but not read (mode 0300) is opened
/// with `O_PATH`, which is enough to create, change and remove below it.
pub(crate) fn open_dir(dir: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir.as_fd(), name, flags | OFlag::O_RDONLY, Mode::empty()) {
        Err(Errno::EACCES) => openat(dir, name, flags | OFlag::O_PATH, Mode::empty()),
        other => other,
    }
}

/// Whether `fd` was opened with `O_PATH` (and so takes no `fchmod`,
/// `futimens` or `fsetxattr`).
pub(crate) fn is_path_only(fd: BorrowedFd) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .is_ok_and(|fl| OFlag::from_bits_truncate(fl).contains(OFlag::O_PATH))
}

/// Creates directory `name` in `dir` (private until its recorded mode is
/// set at the end) unless it exists, and opens it. `Errno::ELOOP` or
/// `Errno::ENOTDIR` mean something else is in its place.
pub(crate) fn make_dir(dir: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    match nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_dir(dir, name)
}

/// `/proc/self/fd/N[/name]`: a path the kernel resolves to exactly the open
/// directory `fd` (then `name` in it), for the calls that take no descriptor.
pub(crate) fn proc_path(fd: BorrowedFd, name: Option<&OsStr>) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Some(n) = name {
        p.push(n);
    }
    p
}

/// A directory's descriptor: kept for the whole restore, or opened for one use.
pub(crate) enum DirFd<'a> {
    Kept(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Kept(fd) => *fd,
            DirFd::Opened(fd) => fd.as_fd(),
        }
    }
}

/// The directories of one restore, by slot; slot 0 is the target.
pub(crate) struct Dirs {
    parent: Vec<usize>,
    name: Vec<OsString>,
    fd: Vec<OnceLock<OwnedFd>>,
    kept: AtomicUsize,
    budget: usize,
}

impl Dirs {
    /// Starts with the target's descriptor as slot 0.
    pub(crate) fn new(target: OwnedFd) -> Self {
        let root = OnceLock::new();
        let _ = root.set(target);
        Dirs {
            parent: vec![0],
            name: vec![OsString::new()],
            fd: vec![root],
            kept: AtomicUsize::new(1),
            budget: fd_budget(),
        }
    }

    /// Adds directory `name` below slot `parent`; returns its slot.
    pub(crate) fn add(&mut self, parent: usize, name: &OsStr) -> usize {
        self.parent.push(parent);
        self.name.push(name.to_os_string());
        self.fd.push(OnceLock::new());
        self.fd.len() - 1
    }

    /// Keeps `fd` as slot's descriptor while the budget allows.
    pub(crate) fn keep(&self, slot: usize, fd: OwnedFd) {
        if self.kept.fetch_add(1, Ordering::Relaxed) < self.budget {
            let _ = self.fd[slot].set(fd);
        } else {
            self.kept.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The directory of `slot`: its kept descriptor, or opened afresh from
    /// the nearest kept ancestor, one component at a time, never following
    /// a symlink.
    pub(crate) fn get(&self, slot: usize) -> nix::Result<DirFd<'_>> {
        if let Some(fd) = self.fd[slot].get() {
            return Ok(DirFd::Kept(fd.as_fd()));
        }
        let mut chain = vec![slot];
        let mut at = self.parent[slot];
        while self.fd[at].get().is_none() {
            chain.push(at);
            at = self.parent[at];
        }
        let mut cur = DirFd::Kept(self.fd[at].get().ok_or(Errno::EBADF)?.as_fd());
        for s in chain.into_iter().rev() {
            cur = DirFd::Opened(open_dir(&cur, &self.name[s])?);
        }
        Ok(cur)
    }
}

/// How many directory descriptors a restore keeps: half the soft limit
/// (raised to the hard limit first), leaving the rest for pack reads and
/// the files being written.
fn fd_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 256;
    };
    let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    usize::try_from(soft / 2).unwrap_or(usize::MAX).max(64)
}

/// An item's directory (its slot in [`Dirs`]) and its name there.
pub(crate) type Place = (usize, OsString);

/// Where each item lives: its directory's slot and its name there, and for
/// each directory item its own slot. Plan order lists parents first.
pub(crate) fn locate(
    items: &[Item],
    target: &Path,
    dirs: &mut Dirs,
) -> Result<(Vec<Place>, Vec<usize>)> {
    let mut slot_of: HashMap<&Path, usize> = HashMap::new();
    slot_of.insert(target, 0);
    let mut at = Vec::with_capacity(items.len());
    let mut slots = vec![0; items.len()];
    for (no, item) in items.iter().enumerate() {
        let path = item.path();
        if path == target {
            at.push((0, OsString::new()));
            continue;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::Usage(format!(
                "{} has no name to restore to",
                path.display()
            )));
        };
        let Some(&pslot) = slot_of.get(parent) else {
            return Err(Error::Corrupt {
                object: path.display().to_string(),
                reason: "the restore plan lists it before its directory".into(),
            });
        };
        at.push((pslot, name.to_os_string()));
        if let Item::Dir { .. } = item {
            let slot = dirs.add(pslot, name);
            slots[no] = slot;
            slot_of.insert(path, slot);
        }
    }
    Ok((at, slots))
}
