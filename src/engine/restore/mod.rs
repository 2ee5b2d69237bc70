//! The restore engine.
//!
//! Files are created and sized first; then every needed pack is fetched
//! once and all its blobs are written straight to their places (packs in
//! parallel, blobs out of order), zero chunks are skipped so sparse files
//! stay sparse, and metadata is applied last (directories deepest first,
//! so writing into them does not disturb their times).
//!
//! The pieces: [`plan`] decides what to restore, `entries` creates
//! directories, files, links and devices, `write` puts file content in
//! place, `finish` sets metadata in the order that keeps it, [`mirror`]
//! makes the target an exact copy (`control`: its `.repo` and manifest);
//! `at` reaches every directory through its verified parent and [`meta`]
//! applies one entry's metadata.

mod at;
mod control;
mod entries;
mod finish;
pub mod meta;
pub mod mirror;
pub mod plan;
mod write;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use rayon::prelude::*;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::id::BlobId;
use crate::local::filter::Excludes;
use crate::repository::Repository;
pub use plan::Item;

pub struct RestoreOptions<'a> {
    pub target: PathBuf,
    /// Path inside the snapshot to restore, `/` for everything.
    pub sub_path: String,
    pub include: Option<Excludes>,
    pub exclude: Option<Excludes>,
    /// Read every restored file back and check it against the snapshot.
    pub verify: bool,
    /// Make the target an exact copy: set aside what the snapshot lacks.
    pub delete: bool,
    /// With `delete`: keep what is removed or overwritten under `.repo/`.
    pub archive: bool,
    pub cancel: &'a AtomicBool,
    /// Paths the snapshot lists as damaged (see [`damaged_notes`]).
    pub damaged: BTreeMap<String, String>,
    /// With `delete`: directories (device, inode) that hold the local
    /// repository this restore reads, and their ancestors: a directory of
    /// the target that is one of them (a bind mount reaches the repository
    /// from inside the target) is never removed.
    pub protect: Vec<(u64, u64)>,
    /// With `delete`: asked with what would be removed (when anything
    /// would); `Ok(false)` stops the restore before anything changed.
    pub confirm: &'a (dyn Fn(&[mirror::Removal]) -> Result<bool> + Sync),
}

/// What a restore says about each path a repaired snapshot lists as
/// damaged, keyed by the path as recorded.
pub fn damaged_notes(snap: &crate::format::snapshot::Snapshot) -> BTreeMap<String, String> {
    snap.damaged
        .iter()
        .map(|d| {
            let note = if d.kind == "dir" {
                format!(
                    "the contents of this directory were lost ({}) and `repo repair snapshots` \
                     recorded it as empty; restored empty",
                    d.reason
                )
            } else {
                format!(
                    "the data of this file ({} bytes) was lost ({}) and `repo repair snapshots` \
                     dropped it; not restored",
                    d.size, d.reason
                )
            };
            (d.path.clone(), note)
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    pub verified_files: u64,
    /// Files already present and identical in the target, left untouched.
    pub skipped_files: u64,
    /// `--delete`: entries removed from the target.
    pub deleted: u64,
    /// `--delete`: entries moved to `.repo/archive` or `.repo/trash` instead of lost.
    pub archived: u64,
    /// `--delete`: identical files skipped on the target manifest's word, unread.
    pub skipped_unread: u64,
    pub errors: Vec<(PathBuf, String)>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    items: Vec<Item>,
    /// Per item: the slot of its directory in `dirs` and its name there.
    at: Vec<at::Place>,
    /// Per directory item: its own slot in `dirs`.
    slots: Vec<usize>,
    dirs: at::Dirs,
    errors: Mutex<Vec<(PathBuf, String)>>,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
    bytes: AtomicU64,
    skipped: AtomicU64,
    mirror: Option<&'a mirror::Mirror>,
    /// Per item: blobs still to write; the last write sets the file's metadata.
    remaining: Vec<AtomicU32>,
    /// Per item: metadata already set through the open file.
    finished: Vec<AtomicBool>,
    /// Per file item: (device, inode) of the file this restore created, so a
    /// later pack reopening it can tell it was not replaced in between.
    created: Vec<Mutex<Option<(u64, u64)>>>,
    as_root: bool,
    owners: meta::Owners,
}

/// `O_NOFOLLOW | O_CLOEXEC` plus `extra`. Opens for reading or reopening
/// add `O_NONBLOCK`, so a FIFO swapped in cannot block the restore.
fn flags(extra: OFlag) -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra
}

/// `st_nlink` is 64 bits wide on some targets and 32 on others.
#[allow(clippy::unnecessary_cast)]
fn links(st: &nix::sys::stat::FileStat) -> u64 {
    st.st_nlink as u64
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Restorer<'_> {
    fn error(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.warn(path, &msg);
        if let Ok(mut e) = self.errors.lock() {
            e.push((path.to_path_buf(), msg));
        }
    }

    /// The verified directory holding item `no`, and its name there.
    fn parent(&self, no: usize) -> Option<(at::DirFd<'_>, &OsStr)> {
        let (slot, name) = &self.at[no];
        match self.dirs.get(*slot) {
            Ok(d) => Some((d, name.as_os_str())),
            Err(e) => {
                self.error(
                    self.items[no].path(),
                    format!(
                        "cannot open its directory (it may have changed during the restore): {e}"
                    ),
                );
                None
            }
        }
    }

    /// Removes (or sets aside) a non-directory in the way of item `no`, so
    /// nothing is ever written through a symlink or into another file.
    fn clear_at(&self, no: usize, dir: BorrowedFd, name: &OsStr) {
        let path = self.items[no].path();
        match self.mirror {
            Some(m) => {
                let rel = path
                    .strip_prefix(&m.root)
                    .map(|p| p.as_os_str().as_bytes())
                    .unwrap_or_default();
                let root = self.dirs.get(0);
                let r = match &root {
                    Ok(root) => m.set_aside_at(root.as_fd(), dir, name, rel, "archive"),
                    Err(e) => Err(Error::io(
                        "open the target",
                        &m.root,
                        std::io::Error::from(*e),
                    )),
                };
                if let Err(e) = r {
                    self.error(path, e);
                }
            }
            None => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) | Err(Errno::EISDIR) => {}
                Err(e) => self.error(path, format!("cannot remove what is in the way: {e}")),
            },
        }
    }

    /// Everything but the read-back check, in the order that makes it safe
    /// and fast: entries, then content pack by pack, then the entries that
    /// need a finished file (hard links) or none, then metadata.
    fn run(&mut self) -> Result<()> {
        let wanted = self.create_entries();
        let packs = self.pack_plan(&wanted);
        self.remaining = write::blob_counts(&packs, self.items.len());
        let this = &*self;
        self.repo.transfer_pool()?.install(|| {
            packs
                .par_iter()
                .try_for_each(|(p, blobs)| this.restore_pack(p, blobs))
        })?;
        self.create_others();
        crate::testhooks::pause_point("restore-before-metadata");
        self.apply_metadata();
        Ok(())
    }

    fn into_report(self, verified_files: u64) -> RestoreReport {
        let mut report = RestoreReport {
            verified_files,
            bytes: self.bytes.load(Ordering::Relaxed),
            skipped_files: self.skipped.load(Ordering::Relaxed),
            deleted: self.mirror.map_or(0, |m| m.deleted.load(Ordering::Relaxed)),
            archived: self
                .mirror
                .map_or(0, |m| m.archived.load(Ordering::Relaxed)),
            skipped_unread: self.mirror.map_or(0, |m| m.unread.load(Ordering::Relaxed)),
            ..Default::default()
        };
        for item in &self.items {
            match item {
                Item::Dir { .. } => report.dirs += 1,
                Item::File { .. } | Item::HardLink { .. } => report.files += 1,
                Item::Other { .. } => report.others += 1,
            }
        }
        report.errors = self.errors.into_inner().unwrap_or_default();
        report
    }
}

/// Restores (part of) the snapshot whose root tree is `root`.
pub fn restore(
    repo: &Repository,
    index: &MemIndex,
    root: BlobId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let (start, start_path) = repo.resolve(index, root, &opts.sub_path)?;
    let filter = plan::Filter {
        include: opts.include.as_ref(),
        exclude: opts.exclude.as_ref(),
        damaged: Some(&opts.damaged),
        problems: Default::default(),
    };
    let mut items = plan::plan(repo, index, &start, &start_path, &opts.target, &filter)?;
    // An existing target keeps its own owner, mode and times: only a target
    // this restore creates takes the snapshot directory's metadata.
    let target_existed = std::fs::symlink_metadata(&opts.target).is_ok();
    if opts.delete {
        control::check_control(&opts.target, &items, target_existed)?;
    }
    if target_existed
        && matches!(items.first(), Some(Item::Dir { path, .. }) if *path == opts.target)
    {
        items.remove(0);
    }
    let target_fd = open_target_dir(&opts.target)?;
    let mirror = opts
        .delete
        .then(|| mirror::Mirror::new(&opts.target, target_fd.as_fd(), opts.archive, progress));
    let gone = match &mirror {
        Some(m) if target_existed => {
            m.plan_removals(&items, &filter, &start_path, &opts.protect, progress)?
        }
        _ => Vec::new(),
    };
    let not_removed = remove_confirmed(mirror.as_ref(), &gone, opts, target_fd.as_fd())?;
    let mut dirs = at::Dirs::new(target_fd);
    let (at, slots) = at::locate(&items, &opts.target, &mut dirs)?;
    progress.set_total(items.len() as u64, total_bytes(&items));
    let count = items.len();
    let mut r = Restorer {
        repo,
        index,
        items,
        at,
        slots,
        dirs,
        errors: Mutex::new(Vec::new()),
        progress,
        cancel: opts.cancel,
        bytes: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        mirror: mirror.as_ref(),
        remaining: Vec::new(),
        finished: (0..count).map(|_| AtomicBool::new(false)).collect(),
        created: (0..count).map(|_| Mutex::new(None)).collect(),
        as_root: nix::unistd::geteuid().is_root(),
        owners: meta::Owners::default(),
    };
    for (path, message) in filter.take_problems().into_iter().chain(not_removed) {
        r.error(&path, message);
    }
    r.run()?;
    let verified_files = if opts.verify { r.verify() } else { 0 };
    let recorded = match (&mirror, r.dirs.get(0)) {
        (Some(m), Ok(root)) => m.record(root.as_fd(), &r.items),
        _ => Ok(()),
    };
    if let Err(e) = recorded {
        r.error(&opts.target, e);
    }
    Ok(r.into_report(verified_files))
}

/// Creates the target and opens it. The target itself is the user's
/// choice (it may be a symlink); every directory below it is reached from
/// this descriptor.
fn open_target_dir(target: &Path) -> Result<OwnedFd> {
    std::fs::create_dir_all(target).map_err(|e| Error::io("create restore target", target, e))?;
    openat(
        nix::fcntl::AT_FDCWD,
        target.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open restore target", target, std::io::Error::from(e)))
}

/// `--delete`: asks about the removals `gone` (when there are any), then
/// makes them. Returns the ones that failed, as errors to report.
fn remove_confirmed(
    mirror: Option<&mirror::Mirror>,
    gone: &[mirror::Removal],
    opts: &RestoreOptions,
    target: BorrowedFd,
) -> Result<Vec<(PathBuf, String)>> {
    if !gone.is_empty() && !(opts.confirm)(gone)? {
        return Err(Error::Usage(format!(
            "nothing changed in {}: the removals were not confirmed",
            opts.target.display()
        )));
    }
    Ok(match mirror {
        Some(m) => {
            crate::testhooks::pause_point("restore-before-removals");
            m.remove(target, gone)
        }
        None => Vec::new(),
    })
}

/// Bytes of every file the plan restores.
fn total_bytes(items: &[Item]) -> u64 {
    items
        .iter()
        .map(|i| {
            if let Item::File { node, .. } = i {
                node.size
            } else {
                0
            }
        })
        .sum()
}
