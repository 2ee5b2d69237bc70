//! The restore engine.
//!
//! Files are created and sized first; then every needed pack is fetched
//! once and all its blobs are written straight to their places (packs in
//! parallel, blobs out of order), zero chunks are skipped so sparse files
//! stay sparse, and metadata is applied last (directories deepest first,
//! so writing into them does not disturb their times).

mod at;
pub mod meta;
pub mod mirror;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mknodat};
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};
use rayon::prelude::*;

use crate::crypto::hash;
use crate::engine::archive::Excludes;
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, PackId};
use crate::repository::objects::pack_key;
use crate::repository::{BlobRef, Fetch, Repository};
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

/// Where one blob goes: (file number in the plan, offset in that file).
type Targets = Vec<(usize, u64)>;

/// Per pack, the needed entries by (offset, length), each with its blob id and targets.
type PackPlan = BTreeMap<PackId, BTreeMap<(u32, u32), (BlobId, u32, Targets)>>;

struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    items: Vec<Item>,
    /// Per item: the slot of its directory in `dirs` and its name there.
    at: Vec<Place>,
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

    /// Creates file `no`, unless it is already there intact. A file with
    /// content is created by the first pack that writes to it (one open
    /// instead of two). Returns whether its content must be written.
    fn create_file(&self, no: usize, node: &crate::format::tree::Node) -> bool {
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

    fn create_entries(&self) -> PackPlan {
        // Directories first; then files in parallel: with many small files,
        // creating them is most of a restore's system time.
        self.create_dirs();
        crate::testhooks::pause_point("restore-dirs-created");
        let wanted: Vec<bool> = self
            .items
            .par_iter()
            .enumerate()
            .map(|(no, item)| match item {
                Item::File { node, .. } => self.create_file(no, node),
                _ => false,
            })
            .collect();
        let mut packs = PackPlan::new();
        for (no, item) in self.items.iter().enumerate() {
            let Item::File { path, node } = item else {
                continue;
            };
            if !wanted[no] {
                continue;
            }
            let mut offset = 0u64;
            for c in &node.content {
                match self.index.get(BlobKind::Data, &c.id) {
                    Some(loc) => packs
                        .entry(loc.pack)
                        .or_default()
                        .entry((loc.offset, loc.length))
                        .or_insert_with(|| (c.id, c.len, Vec::new()))
                        .2
                        .push((no, offset)),
                    None => self.error(
                        path,
                        format!(
                            "data blob {} is missing from the index; run `repo check`",
                            c.id
                        ),
                    ),
                }
                offset += c.len as u64;
            }
        }
        packs
    }

    /// Whether entry `name` of `dir` already holds exactly this file (same
    /// size and mtime, and every chunk's MAC matches), so a repeated restore
    /// writes nothing.
    fn identical(
        &self,
        no: usize,
        dir: &at::DirFd,
        name: &OsStr,
        node: &crate::format::tree::Node,
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

    /// Counts one blob written to file `no`. After its last one, the file's
    /// metadata is set through its descriptor (if this pack holds it open),
    /// which spares three path lookups per file and closes it early.
    fn written_one(&self, no: usize, files: &mut BTreeMap<usize, File>) {
        if self.remaining[no].fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let (Some(f), Item::File { path, node }) = (files.remove(&no), &self.items[no]) {
            for e in meta::apply(
                meta::Target::Open(f.as_fd()),
                node,
                self.as_root,
                &self.owners,
            ) {
                self.error(path, e);
            }
            self.finished[no].store(true, Ordering::Release);
        }
    }

    /// Opens file `no` for writing. The first pack to reach it creates it
    /// (`O_EXCL`: never an existing file, never through a symlink) at its
    /// full length and records its inode; a later pack reopens it and
    /// checks it is still that file.
    fn open_target(&self, no: usize) -> std::result::Result<File, String> {
        let size = match &self.items[no] {
            Item::File { node, .. } => node.size,
            _ => 0,
        };
        let Some((dir, name)) = self.parent(no) else {
            return Err("its directory cannot be opened".into());
        };
        let mut created = self.created[no]
            .lock()
            .map_err(|_| "internal: lock poisoned".to_string())?;
        match *created {
            None => {
                let fd = openat(
                    &dir,
                    name,
                    flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL),
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| match e {
                    Errno::EEXIST => "something else appeared in its place during the restore; \
                                      left alone, restore again to replace it"
                        .to_string(),
                    e => format!("cannot create file: {e}"),
                })?;
                let st = fstat(&fd).map_err(|e| format!("cannot create file: {e}"))?;
                let f = File::from(fd);
                if size > 0 {
                    f.set_len(size)
                        .map_err(|e| format!("cannot size file: {e}"))?;
                }
                *created = Some((st.st_dev, st.st_ino));
                Ok(f)
            }
            Some(id) => {
                let fd = openat(
                    &dir,
                    name,
                    flags(OFlag::O_WRONLY | OFlag::O_NONBLOCK),
                    Mode::empty(),
                )
                .map_err(|e| format!("cannot reopen file: {e}"))?;
                let st = fstat(&fd).map_err(|e| format!("cannot reopen file: {e}"))?;
                if (st.st_dev, st.st_ino) != id {
                    return Err("it was replaced by something else during the restore; \
                                not written, restore again"
                        .into());
                }
                Ok(File::from(fd))
            }
        }
    }

    /// Fetches one pack's needed span and writes each blob to its targets.
    fn restore_pack(
        &self,
        pack: &PackId,
        blobs: &BTreeMap<(u32, u32), (BlobId, u32, Targets)>,
    ) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let wanted: Vec<BlobRef> = blobs
            .iter()
            .map(|((offset, length), (id, raw_len, _))| BlobRef {
                kind: BlobKind::Data,
                id: *id,
                offset: *offset,
                length: *length,
                raw_len: Some(*raw_len),
            })
            .collect();
        let mut files: BTreeMap<usize, File> = BTreeMap::new();
        let loaded = self.repo.load_blobs(pack, &wanted, Fetch::Span, |b, data| {
            let Some((_, _, targets)) = blobs.get(&(b.offset, b.length)) else {
                return Ok(());
            };
            let data = match data {
                Ok(d) => d,
                Err(e) => {
                    for (no, _) in targets {
                        self.error(self.items[*no].path(), e.to_string());
                    }
                    return Ok(());
                }
            };
            let zeros = data.iter().all(|&b| b == 0);
            for (no, at) in targets {
                let path = self.items[*no].path();
                let f = match files.entry(*no) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => match self.open_target(*no) {
                        Ok(f) => v.insert(f),
                        Err(e) => {
                            self.error(path, e);
                            self.written_one(*no, &mut files);
                            continue;
                        }
                    },
                };
                if zeros {
                    // Leave a hole: the file already has its full length.
                    self.written_one(*no, &mut files);
                    continue;
                }
                if let Err(e) = write_sparse(f, &data, *at) {
                    self.error(path, format!("cannot write: {e}"));
                }
                self.written_one(*no, &mut files);
            }
            self.bytes
                .fetch_add(data.len() as u64 * targets.len() as u64, Ordering::Relaxed);
            self.progress
                .add_done(0, data.len() as u64 * targets.len() as u64);
            Ok(())
        });
        if let Err(e) = loaded {
            let key = pack_key(pack);
            for (_, _, targets) in blobs.values() {
                for (no, _) in targets {
                    self.error(
                        self.items[*no].path(),
                        format!("cannot read pack {key}: {e}"),
                    );
                }
            }
            return Ok(());
        }
        // Files still incomplete are closed here and reopened by a later pack.
        drop(files);
        crate::testhooks::pause_point("restore-pack-written");
        Ok(())
    }

    /// Hard links, symlinks, FIFOs and devices, each made relative to its
    /// verified directory. Sockets are skipped: a socket only means
    /// something to the process that listens on it.
    fn create_others(&self) {
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
            let path = item.path();
            match item {
                Item::HardLink { first, .. } => {
                    let Some(&first_no) = files.get(first.as_path()) else {
                        self.error(path, format!("{} was not restored", first.display()));
                        continue;
                    };
                    let (Some((dir, name)), Some((fdir, fname))) =
                        (self.parent(no), self.parent(first_no))
                    else {
                        continue;
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
                            continue;
                        }
                    };
                    let same = fstat(&fd).is_ok_and(|st| {
                        st.st_mode & libc::S_IFMT == libc::S_IFREG
                            && made == Some((st.st_dev, st.st_ino))
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
                        continue;
                    }
                    // Already this link (a repeated restore): nothing to do,
                    // and nothing to set aside.
                    if fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| made == Some((st.st_dev, st.st_ino)))
                    {
                        continue;
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
                Item::Other { node, .. } => {
                    if matches!(node.kind, NodeKind::Socket | NodeKind::File | NodeKind::Dir) {
                        continue;
                    }
                    let Some((dir, name)) = self.parent(no) else {
                        continue;
                    };
                    self.clear_at(no, dir.as_fd(), name);
                    let perm = Mode::from_bits_truncate(node.mode & 0o7777);
                    let r = match node.kind {
                        NodeKind::Symlink => symlinkat(OsStr::from_bytes(&node.target), &dir, name),
                        NodeKind::Fifo => mknodat(&dir, name, SFlag::S_IFIFO, perm, 0),
                        NodeKind::CharDevice => {
                            mknodat(&dir, name, SFlag::S_IFCHR, perm, node.rdev)
                        }
                        _ => mknodat(&dir, name, SFlag::S_IFBLK, perm, node.rdev),
                    };
                    if let Err(e) = r {
                        self.error(path, format!("cannot create {:?}: {e}", node.kind));
                    }
                }
                _ => {}
            }
        }
    }

    /// Sets the metadata of a file not finished through its descriptor, or
    /// of a special file or symlink, relative to its verified directory.
    fn apply_at(&self, no: usize, node: &crate::format::tree::Node) {
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

    fn apply_metadata(&self) {
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

    /// Reads each restored file back and checks every chunk's keyed hash.
    fn verify(&self) -> u64 {
        let ok = AtomicU64::new(0);
        self.items.par_iter().enumerate().for_each(|(no, item)| {
            let Item::File { path, node } = item else {
                return;
            };
            let Some((dir, name)) = self.parent(no) else {
                return;
            };
            let mut f = match openat(
                &dir,
                name,
                flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
                Mode::empty(),
            ) {
                Ok(fd) => File::from(fd),
                Err(e) => return self.error(path, format!("verify: cannot open: {e}")),
            };
            let mut buf = Vec::new();
            for c in &node.content {
                buf.resize(c.len as usize, 0);
                if let Err(e) = f.read_exact(&mut buf) {
                    return self.error(path, format!("verify: cannot read: {e}"));
                }
                if hash::blob_id(&self.repo.keys().blob_id, &buf) != c.id {
                    return self.error(path, "verify: content differs from the snapshot");
                }
            }
            if f.read(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
                return self.error(path, "verify: file is longer than in the snapshot");
            }
            ok.fetch_add(1, Ordering::Relaxed);
        });
        ok.into_inner()
    }
}

/// File-system block size for holes: runs of zeros that cover whole aligned
/// blocks of this size are left unwritten.
const HOLE_BLOCK: u64 = 4096;

/// Writes `data` at offset `at` of a file that was created at its full
/// length (so every unwritten byte reads as zero), skipping each aligned
/// 4 KiB block of the file that `data` fills with zeros only: such blocks
/// stay holes. Runs of non-zero blocks are written with one call each.
fn write_sparse(f: &File, data: &[u8], at: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        let off = at + i as u64;
        let end = (((off / HOLE_BLOCK) + 1) * HOLE_BLOCK - at).min(data.len() as u64) as usize;
        let zero = data[i..end].iter().all(|&b| b == 0);
        match (zero, run) {
            (true, Some(start)) => {
                f.write_all_at(&data[start..i], at + start as u64)?;
                run = None;
            }
            (false, None) => run = Some(i),
            _ => {}
        }
        i = end;
    }
    if let Some(start) = run {
        f.write_all_at(&data[start..], at + start as u64)?;
    }
    Ok(())
}

/// An item's directory (its slot in [`at::Dirs`]) and its name there.
type Place = (usize, OsString);

/// Where each item lives: its directory's slot and its name there, and for
/// each directory item its own slot. Plan order lists parents first.
fn locate(items: &[Item], target: &Path, dirs: &mut at::Dirs) -> Result<(Vec<Place>, Vec<usize>)> {
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

/// Restores (part of) the snapshot whose root tree is `root`.
pub fn restore(
    repo: &Repository,
    index: &MemIndex,
    root: BlobId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let (start, start_path) = plan::resolve(repo, index, root, &opts.sub_path)?;
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
        mirror::check_control(&opts.target, &items, target_existed)?;
    }
    if target_existed
        && matches!(items.first(), Some(Item::Dir { path, .. }) if *path == opts.target)
    {
        items.remove(0);
    }
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io("create restore target", &opts.target, e))?;
    // The target itself is the user's choice (it may be a symlink); every
    // directory below it is reached from this descriptor.
    let target_fd = openat(
        nix::fcntl::AT_FDCWD,
        opts.target.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open restore target", &opts.target, std::io::Error::from(e)))?;
    let mirror = opts
        .delete
        .then(|| mirror::Mirror::new(&opts.target, target_fd.as_fd(), opts.archive, progress));
    let gone = match &mirror {
        Some(m) if target_existed => {
            m.plan_removals(&items, &filter, &start_path, &opts.protect, progress)?
        }
        _ => Vec::new(),
    };
    if !gone.is_empty() && !(opts.confirm)(&gone)? {
        return Err(Error::Usage(format!(
            "nothing changed in {}: the removals were not confirmed",
            opts.target.display()
        )));
    }
    let not_removed = match &mirror {
        Some(m) => {
            crate::testhooks::pause_point("restore-before-removals");
            m.remove(target_fd.as_fd(), &gone)
        }
        None => Vec::new(),
    };
    let mut dirs = at::Dirs::new(target_fd);
    let (at, slots) = locate(&items, &opts.target, &mut dirs)?;
    let total: u64 = items
        .iter()
        .map(|i| {
            if let Item::File { node, .. } = i {
                node.size
            } else {
                0
            }
        })
        .sum();
    progress.set_total(items.len() as u64, total);
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
        finished: Vec::new(),
        created: Vec::new(),
        as_root: nix::unistd::geteuid().is_root(),
        owners: meta::Owners::default(),
    };
    for (path, message) in filter.take_problems().into_iter().chain(not_removed) {
        r.error(&path, message);
    }
    r.created = (0..r.items.len()).map(|_| Mutex::new(None)).collect();
    let packs = r.create_entries();
    let mut remaining: Vec<u32> = vec![0; r.items.len()];
    for blobs in packs.values() {
        for (_, _, targets) in blobs.values() {
            for (no, _) in targets {
                remaining[*no] += 1;
            }
        }
    }
    r.remaining = remaining.into_iter().map(AtomicU32::new).collect();
    r.finished = (0..r.items.len()).map(|_| AtomicBool::new(false)).collect();
    repo.transfer_pool()?.install(|| {
        packs
            .par_iter()
            .try_for_each(|(p, blobs)| r.restore_pack(p, blobs))
    })?;
    r.create_others();
    crate::testhooks::pause_point("restore-before-metadata");
    r.apply_metadata();
    let verified_files = if opts.verify { r.verify() } else { 0 };
    let recorded = match (&mirror, r.dirs.get(0)) {
        (Some(m), Ok(root)) => m.record(root.as_fd(), &r.items),
        _ => Ok(()),
    };
    if let Err(e) = recorded {
        r.error(&opts.target, e);
    }
    let mut report = RestoreReport {
        verified_files,
        bytes: r.bytes.load(Ordering::Relaxed),
        skipped_files: r.skipped.load(Ordering::Relaxed),
        deleted: mirror
            .as_ref()
            .map_or(0, |m| m.deleted.load(Ordering::Relaxed)),
        archived: mirror
            .as_ref()
            .map_or(0, |m| m.archived.load(Ordering::Relaxed)),
        skipped_unread: mirror
            .as_ref()
            .map_or(0, |m| m.unread.load(Ordering::Relaxed)),
        ..Default::default()
    };
    for item in &r.items {
        match item {
            Item::Dir { .. } => report.dirs += 1,
            Item::File { .. } | Item::HardLink { .. } => report.files += 1,
            Item::Other { .. } => report.others += 1,
        }
    }
    report.errors = r.errors.into_inner().unwrap_or_default();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_sparse_writes_every_non_zero_byte_and_skips_zero_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let at = 1000u64;
        let mut data = vec![0u8; 64 * 1024];
        data[0] = 1; // partial first block
        data[20_000] = 2;
        data[64 * 1024 - 1] = 3; // partial last block
        f.set_len(at + data.len() as u64 + 500).unwrap();
        write_sparse(&f, &data, at).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[at as usize..at as usize + data.len()], &data[..]);
        assert!(back[..at as usize].iter().all(|&b| b == 0));
        assert!(f.metadata().unwrap().blocks() * 512 <= 32 * 1024);
    }
}
