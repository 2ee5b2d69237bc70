//! The restore engine.
//!
//! Files are created and sized first; then every needed pack is fetched
//! once and all its blobs are written straight to their places (packs in
//! parallel, blobs out of order), zero chunks are skipped so sparse files
//! stay sparse, and metadata is applied last (directories deepest first,
//! so writing into them does not disturb their times).

pub mod meta;
pub mod mirror;
pub mod plan;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::archive::Excludes;
use crate::error::{Error, Result};
use crate::hash;
use crate::id::{BlobId, PackId};
use crate::index::MemIndex;
use crate::pack::{self, BlobKind};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::objects::pack_key;
use crate::tree::NodeKind;
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
    /// With `delete`: asked with what would be removed (when anything
    /// would); `Ok(false)` stops the restore before anything changed.
    pub confirm: &'a (dyn Fn(&[mirror::Removal]) -> Result<bool> + Sync),
}

/// What a restore says about each path a repaired snapshot lists as
/// damaged, keyed by the path as recorded.
pub fn damaged_notes(snap: &crate::snapshot::Snapshot) -> BTreeMap<String, String> {
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
    as_root: bool,
    owners: meta::Owners,
}

impl Restorer<'_> {
    fn error(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.warn(path, &msg);
        if let Ok(mut e) = self.errors.lock() {
            e.push((path.to_path_buf(), msg));
        }
    }

    /// Removes whatever non-directory is in the way, so we never write through a symlink.
    fn clear(&self, path: &Path) {
        if let Ok(md) = std::fs::symlink_metadata(path) {
            self.clear_known(path, &md);
        }
    }

    /// [`Restorer::clear`] for a path already `lstat`ed.
    fn clear_known(&self, path: &Path, md: &std::fs::Metadata) {
        if !md.is_dir() {
            match self.mirror {
                Some(m) => {
                    if let Err(e) = m.set_aside(path, "archive") {
                        self.error(path, e);
                    }
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// Creates one file at its full size, unless it is already there intact.
    /// Returns whether its content must be written.
    fn create_file(&self, path: &Path, node: &crate::tree::Node) -> bool {
        let existing = std::fs::symlink_metadata(path).ok();
        if let Some(md) = &existing {
            if self.identical(path, node, md) {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                self.progress.add_done(0, node.size);
                return false;
            }
            self.clear_known(path, md);
        }
        // A file with content is created by the first pack that writes to
        // it (one open instead of two), unless something is still in the
        // way: then it is truncated here, so no stale byte survives in a hole.
        let in_way = existing.is_some() && std::fs::symlink_metadata(path).is_ok();
        if !node.content.is_empty() && !in_way {
            return true;
        }
        let created = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .and_then(|f| f.set_len(node.size));
        if let Err(e) = created {
            self.error(path, format!("cannot create file: {e}"));
            return false;
        }
        true
    }

    fn create_entries(&self) -> PackPlan {
        // Directories level by level (every parent exists, and a symlink in
        // its place has been removed, before anything is created below it,
        // so nothing is ever created through a link), each level in
        // parallel; then files in parallel: with many small files, creating
        // them is most of a restore's system time.
        let mut dirs: Vec<(usize, &Path)> = self
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Dir { path, .. } => Some((path.components().count(), path.as_path())),
                _ => None,
            })
            .collect();
        dirs.sort_by_key(|(depth, _)| *depth);
        for level in dirs.chunk_by(|a, b| a.0 == b.0) {
            level.par_iter().for_each(|(_, path)| {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    let _ = std::fs::remove_file(path);
                }
                if let Err(e) = std::fs::create_dir_all(path) {
                    self.error(path, format!("cannot create directory: {e}"));
                }
            });
        }
        crate::testhooks::pause_point("restore-dirs-created");
        let wanted: Vec<bool> = self
            .items
            .par_iter()
            .map(|item| match item {
                Item::File { path, node } => self.create_file(path, node),
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

    /// Whether `path` already holds exactly this file (same size and mtime,
    /// and every chunk's MAC matches), so a repeated restore writes nothing.
    fn identical(&self, path: &Path, node: &crate::tree::Node, md: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.mirror.is_some_and(|m| m.unchanged(path, node)) {
            return true;
        }
        if !md.is_file()
            || md.size() != node.size
            || md.mtime() != node.mtime.secs
            || md.mtime_nsec() != node.mtime.nanos as i64
        {
            return false;
        }
        let Ok(mut f) = File::open(path) else {
            return false;
        };
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
            for e in meta::apply(path, node, self.as_root, &self.owners, Some(&f)) {
                self.error(path, e);
            }
            self.finished[no].store(true, Ordering::Release);
        }
    }

    /// Opens file `no` for writing, creating it at its full length if this
    /// is the first pack to reach it (several packs may race: both steps
    /// are idempotent).
    fn open_target(&self, no: usize) -> std::io::Result<File> {
        let (path, size) = match &self.items[no] {
            Item::File { path, node } => (path.as_path(), node.size),
            other => (other.path(), 0),
        };
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        if f.metadata()?.len() != size {
            f.set_len(size)?;
        }
        Ok(f)
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
        let start = blobs.keys().map(|(o, _)| *o as u64).min().unwrap_or(0);
        let end = blobs
            .keys()
            .map(|(o, l)| *o as u64 + *l as u64)
            .max()
            .unwrap_or(0);
        let key = pack_key(pack);
        let span = match self
            .repo
            .storage()
            .get_range_immutable(&key, start, end - start)
        {
            Ok(s) => s,
            Err(e) => {
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
        };
        let mut files: BTreeMap<usize, File> = BTreeMap::new();
        for ((off, len), (id, raw_len, targets)) in blobs {
            let rel = (*off as u64 - start) as usize;
            let entry = &span[rel..rel + *len as usize];
            let data = match pack::open_entry(
                self.repo.keys(),
                entry,
                *off as u64,
                Some((BlobKind::Data, *id)),
            ) {
                Ok((_, d)) => d,
                Err(e) => {
                    for (no, _) in targets {
                        self.error(
                            self.items[*no].path(),
                            format!("pack {key} is damaged: {e}"),
                        );
                    }
                    continue;
                }
            };
            if data.len() != *raw_len as usize {
                for (no, _) in targets {
                    self.error(
                        self.items[*no].path(),
                        format!(
                            "blob {id} has {} bytes, the tree says {raw_len}; run `repo check`",
                            data.len()
                        ),
                    );
                }
                continue;
            }
            let zeros = data.iter().all(|&b| b == 0);
            for (no, at) in targets {
                let path = self.items[*no].path();
                let f = match files.entry(*no) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => match self.open_target(*no) {
                        Ok(f) => v.insert(f),
                        Err(e) => {
                            self.error(path, format!("cannot create file: {e}"));
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
                if let Err(e) = f.write_all_at(&data, *at) {
                    self.error(path, format!("cannot write: {e}"));
                }
                self.written_one(*no, &mut files);
            }
            self.bytes
                .fetch_add(data.len() as u64 * targets.len() as u64, Ordering::Relaxed);
            self.progress
                .add_done(0, data.len() as u64 * targets.len() as u64);
        }
        Ok(())
    }

    fn create_others(&self) {
        for item in &self.items {
            match item {
                Item::HardLink { path, first, .. } => {
                    self.clear(path);
                    if let Err(e) = std::fs::hard_link(first, path) {
                        self.error(
                            path,
                            format!("cannot create hard link to {}: {e}", first.display()),
                        );
                    }
                }
                Item::Other { path, node } => {
                    self.clear(path);
                    let r = match node.kind {
                        NodeKind::Symlink => std::os::unix::fs::symlink(
                            std::ffi::OsStr::from_bytes(&node.target),
                            path,
                        ),
                        NodeKind::Fifo => nix::unistd::mkfifo(
                            path,
                            nix::sys::stat::Mode::from_bits_truncate(node.mode),
                        )
                        .map_err(std::io::Error::from),
                        NodeKind::CharDevice | NodeKind::BlockDevice => {
                            let kind = if node.kind == NodeKind::CharDevice {
                                nix::sys::stat::SFlag::S_IFCHR
                            } else {
                                nix::sys::stat::SFlag::S_IFBLK
                            };
                            nix::sys::stat::mknod(
                                path,
                                kind,
                                nix::sys::stat::Mode::from_bits_truncate(node.mode),
                                node.rdev,
                            )
                            .map_err(std::io::Error::from)
                        }
                        NodeKind::Socket => continue, // a socket is only meaningful to its live process
                        NodeKind::File | NodeKind::Dir => continue,
                    };
                    if let Err(e) = r {
                        self.error(path, format!("cannot create {:?}: {e}", node.kind));
                    }
                }
                _ => {}
            }
        }
    }

    fn apply_metadata(&self) {
        self.items.par_iter().enumerate().for_each(|(no, item)| {
            if let Item::File { path, node } | Item::Other { path, node } = item {
                if self.finished[no].load(Ordering::Acquire)
                    || node.kind == NodeKind::Socket
                    || std::fs::symlink_metadata(path).is_err()
                {
                    return;
                }
                for e in meta::apply(path, node, self.as_root, &self.owners, None) {
                    self.error(path, e);
                }
            }
        });
        // Directories last and deepest first, so nothing disturbs their times.
        for item in self.items.iter().rev() {
            if let Item::Dir { path, node } = item {
                for e in meta::apply(path, node, self.as_root, &self.owners, None) {
                    self.error(path, e);
                }
            }
        }
    }

    /// Reads each restored file back and checks every chunk's keyed hash.
    fn verify(&self) -> u64 {
        let ok = AtomicU64::new(0);
        self.items.par_iter().for_each(|item| {
            let Item::File { path, node } = item else {
                return;
            };
            let mut f = match File::open(path) {
                Ok(f) => f,
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
    if target_existed
        && matches!(items.first(), Some(Item::Dir { path, .. }) if *path == opts.target)
    {
        items.remove(0);
    }
    let mirror = opts
        .delete
        .then(|| mirror::Mirror::new(&opts.target, opts.archive, progress));
    if let Some(m) = &mirror
        && target_existed
    {
        let gone = m.plan_removals(&items, &filter, &start_path, progress)?;
        if !gone.is_empty() && !(opts.confirm)(&gone)? {
            return Err(Error::Usage(format!(
                "nothing changed in {}: the removals were not confirmed",
                opts.target.display()
            )));
        }
        m.remove(&gone)?;
    }
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io("create restore target", &opts.target, e))?;
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
        errors: Mutex::new(Vec::new()),
        progress,
        cancel: opts.cancel,
        bytes: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        mirror: mirror.as_ref(),
        remaining: Vec::new(),
        finished: Vec::new(),
        as_root: nix::unistd::geteuid().is_root(),
        owners: meta::Owners::default(),
    };
    for (path, message) in filter.take_problems() {
        r.error(&path, message);
    }
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
    if let Some(m) = &mirror
        && let Err(e) = m.record(&r.items)
    {
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
