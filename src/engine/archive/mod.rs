//! The backup engine: walk sources, chunk and save files, build trees,
//! write the snapshot.
//!
//! Directories are processed with rayon: the entries of each directory are
//! archived in parallel and collected in order, so trees come out sorted
//! and deterministic while every core is busy. Saving is delegated to the
//! [`BlobSaver`], which overlaps pack uploads with this work.
//!
//! Every entry below a source is read relative to its open parent
//! directory and checked to be what was listed (module `at`), so a tree that
//! changes under the backup can never redirect it to another file.

mod at;
mod command;
pub mod file;
pub mod sources;
mod stream;
mod walk;

pub use stream::{Stream, StreamSource, backup_stream};

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use crate::id::{BlobId, SnapshotId};
pub use crate::local::filter::Excludes;
use crate::repository::saver::BlobSaver;
use crate::repository::{Repository, host_and_user};
use crate::storage::StatsReport;

/// Directory levels below `/` the walk descends: a hostile user can nest
/// directories without limit (relative to each other, far past PATH_MAX),
/// and each level costs stack and a descriptor. Deeper contents are left
/// out with an error (exit 3) instead of crashing the backup. A path can
/// name at most 2,048 levels (PATH_MAX); real trees stay far below 1,024.
pub(crate) const MAX_DEPTH: usize = 1024;

/// Stack of each walk thread: room for [`MAX_DEPTH`] levels of recursion
/// with a fourfold margin even in a debug build (up to 16 KiB a level with
/// rayon's frames); only what is touched is committed.
const WALK_STACK: usize = 64 << 20;

/// What to back up and how.
pub struct BackupOptions<'a> {
    pub paths: Vec<PathBuf>,
    pub excludes: Excludes,
    pub one_file_system: bool,
    pub dry_run: bool,
    pub tags: Vec<String>,
    pub host: Option<String>,
    /// Snapshot to compare against; `None` picks the latest with the same host and paths.
    pub parent: Option<String>,
    /// Re-read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Walk the sources first to give the progress display totals.
    pub scan: bool,
    /// Full packs allowed to wait for upload.
    pub in_flight: usize,
    /// The time to record for the snapshot; `None` records when it is
    /// saved. Given here so that `create --time` writes one snapshot, not
    /// one that is then rewritten.
    pub time: Option<chrono::DateTime<Utc>>,
    pub cancel: &'a AtomicBool,
}

/// The outcome of a backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// `None` for a dry run.
    pub snapshot: Option<SnapshotId>,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
    /// Paths that could not be read and were left out.
    pub errors: Vec<(PathBuf, String)>,
    /// Paths that were saved but deserve attention (changed while read).
    pub warnings: Vec<(PathBuf, String)>,
    pub storage: StatsReport,
}

/// Shared state of one walk.
struct Walk<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    saver: &'a BlobSaver<'a>,
    opts: &'a BackupOptions<'a>,
    progress: &'a dyn Progress,
    tally: &'a Tally,
}

/// What a walk counted; outlives the saver so the summary can be built after it.
struct Tally {
    /// Read buffers handed from file to file, so small files cost no large allocation.
    buffers: Mutex<Vec<Vec<u8>>>,
    errors: Mutex<Vec<(PathBuf, String)>>,
    warnings: Mutex<Vec<(PathBuf, String)>>,
    /// One set of counters per worker thread (and one for any other thread):
    /// counters shared by all workers would bounce their cache line between
    /// cores on every file.
    shards: Vec<Counts>,
}

/// Counters of one thread, alone on their cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Counts {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    /// Wraps below zero in one shard when a file is counted before it turns
    /// out unreadable on another thread; the sum is still right.
    total_bytes: AtomicU64,
    bytes_read: AtomicU64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            buffers: Mutex::default(),
            errors: Mutex::default(),
            warnings: Mutex::default(),
            shards: (0..=rayon::current_num_threads())
                .map(|_| Counts::default())
                .collect(),
        }
    }

    /// The calling thread's counters.
    fn count(&self) -> &Counts {
        let i = rayon::current_thread_index().map_or(0, |i| i + 1);
        &self.shards[i % self.shards.len()]
    }

    fn sum(&self, field: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        self.shards.iter().fold(0u64, |acc, c| {
            acc.wrapping_add(field(c).load(Ordering::Relaxed))
        })
    }
}

impl std::ops::Deref for Walk<'_> {
    type Target = Tally;
    fn deref(&self) -> &Tally {
        self.tally
    }
}

/// Leaves out, with an error, each source below another source that is a
/// symlink: that one is stored as the link itself (never followed), so
/// nothing below it can be in the snapshot, and dropping the inner source as
/// "covered" would lose it silently.
fn drop_sources_below_links(sources: &mut Vec<PathBuf>, tally: &Tally, progress: &dyn Progress) {
    let links: Vec<PathBuf> = sources
        .iter()
        .filter(|s| std::fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_symlink()))
        .cloned()
        .collect();
    sources.retain(|s| {
        let Some(link) = links.iter().find(|l| s != *l && s.starts_with(l)) else {
            return true;
        };
        let msg = format!(
            "not backed up: it lies below the source {}, a symlink, which is stored as the link itself; name the directory the link points to instead",
            link.display()
        );
        progress.warn(s, &msg);
        if let Ok(mut errs) = tally.errors.lock() {
            errs.push((s.clone(), msg));
        }
        false
    });
}

/// Runs the walk on threads with stacks deep enough for [`MAX_DEPTH`]
/// levels (as many as rayon's global pool has); on the global pool if they
/// cannot be started.
fn on_walk_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .stack_size(WALK_STACK)
        .thread_name(|i| format!("walk-{i}"))
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// Runs `work` with a walk whose blobs a [`BlobSaver`] stores; returns its
/// result and what was stored.
fn saving<R>(
    repo: &Repository,
    index: &MemIndex,
    opts: &BackupOptions,
    progress: &dyn Progress,
    tally: &Tally,
    work: impl FnOnce(&Walk) -> Result<R>,
) -> Result<(R, crate::repository::saver::SaveStats)> {
    BlobSaver::run(repo, index, opts.dry_run, opts.in_flight, |saver| {
        work(&Walk {
            repo,
            index,
            saver,
            opts,
            progress,
            tally,
        })
    })
}

/// Picks the parent snapshot: the given one, or the latest with the same host and paths.
fn find_parent(
    repo: &Repository,
    spec: Option<&str>,
    host: &str,
    paths: &[String],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if let Some(spec) = spec {
        return repo.find_snapshot(spec).map(Some);
    }
    let mut want = paths.to_vec();
    want.sort();
    Ok(repo.snapshots()?.into_iter().rev().find(|(_, s)| {
        let mut p = s.paths.clone();
        p.sort();
        s.host == host && p == want
    }))
}

/// Runs a backup and writes its snapshot.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::Usage(
            "no source paths given: name at least one file or directory to back up".into(),
        ));
    }
    at::raise_open_file_limit();
    let mut tally = Tally::new();
    let sources = readable_sources(opts, &tally, progress)?;
    let path_strings: Vec<String> = sources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let (default_host, user) = host_and_user();
    let host = opts.host.clone().unwrap_or(default_host);
    let (parent, index) =
        repo.with_index(|| find_parent(repo, opts.parent.as_deref(), &host, &path_strings))?;
    let vroot = sources::build(&sources);

    let walk_done = AtomicBool::new(false);
    let (tree, save) = std::thread::scope(|scope| {
        if opts.scan {
            let srcs = sources.clone();
            let done = &walk_done;
            scope.spawn(move || file::scan_totals(&srcs, &opts.excludes, progress, done));
        }
        let r = on_walk_threads(|| {
            saving(repo, &index, opts, progress, &tally, |walk| {
                walk.root(&vroot, parent.as_ref().map(|(_, s)| s.tree))
            })
        });
        walk_done.store(true, Ordering::Relaxed);
        r
    })?;
    let errors = tally
        .errors
        .get_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let warnings = tally
        .warnings
        .get_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let summary = summarize(&tally, &save, errors.len(), started);
    let parent = parent.map(|(id, s)| (id, s.tree));
    let snapshot_id = write_snapshot(repo, opts, host, user, path_strings, tree, parent, &summary)?;
    Ok(BackupReport {
        snapshot: snapshot_id,
        parent: parent.map(|(id, _)| id),
        summary,
        errors,
        warnings,
        storage: repo.storage_stats(),
    })
}

/// Writes the snapshot of a finished backup whose root tree is `tree`;
/// nothing for a dry run. `parent` is the parent snapshot and its root tree.
#[allow(clippy::too_many_arguments)]
fn write_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    host: String,
    user: String,
    paths: Vec<String>,
    tree: BlobId,
    parent: Option<(SnapshotId, BlobId)>,
    summary: &Summary,
) -> Result<Option<SnapshotId>> {
    if opts.dry_run {
        return Ok(None);
    }
    let snap = Snapshot {
        version: SNAPSHOT_VERSION,
        time: opts.time.unwrap_or_else(Utc::now),
        host,
        user,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        paths,
        tags: opts.tags.clone(),
        excludes: opts.excludes.patterns.clone(),
        tree,
        parent: parent.map(|(id, _)| id),
        program_version: format!("repo {}", env!("CARGO_PKG_VERSION")),
        summary: summary.clone(),
        original: None,
        damaged: Vec::new(),
    };
    Ok(Some(repo.save_snapshot(&snap)?))
}

/// The source paths that exist, absolute; each missing one is reported and
/// left out. Fails when none is left.
fn readable_sources(
    opts: &BackupOptions,
    tally: &Tally,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = Vec::new();
    for p in &opts.paths {
        let abs = sources::normalize(p)?;
        match std::fs::symlink_metadata(&abs) {
            Ok(_) => sources.push(abs),
            Err(e) => {
                let msg = format!("cannot read source: {e}");
                progress.warn(&abs, &msg);
                if let Ok(mut errs) = tally.errors.lock() {
                    errs.push((abs, msg));
                }
            }
        }
    }
    drop_sources_below_links(&mut sources, tally, progress);
    if sources.is_empty() {
        return Err(Error::NotFound {
            what: "any readable source path".into(),
            hint: ": check the paths given to create".into(),
        });
    }
    Ok(sources)
}

/// The snapshot's summary from the walk's counters and the saver's totals.
fn summarize(
    tally: &Tally,
    save: &crate::repository::saver::SaveStats,
    errors: usize,
    started: Instant,
) -> Summary {
    Summary {
        files_new: tally.sum(|c| &c.files_new),
        files_changed: tally.sum(|c| &c.files_changed),
        files_unchanged: tally.sum(|c| &c.files_unchanged),
        dirs: tally.sum(|c| &c.dirs),
        others: tally.sum(|c| &c.others),
        total_bytes: tally.sum(|c| &c.total_bytes),
        bytes_read: tally.sum(|c| &c.bytes_read),
        errors: errors as u64,
        blobs_new: save.blobs_new,
        data_added: save.bytes_new,
        data_added_stored: save.bytes_stored,
        duration_secs: started.elapsed().as_secs_f64(),
    }
}
