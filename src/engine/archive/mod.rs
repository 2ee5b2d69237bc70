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
pub mod file;
pub mod sources;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use rayon::prelude::*;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
pub use crate::local::filter::Excludes;
use crate::local::meta;
use crate::repository::saver::BlobSaver;
use crate::repository::{Repository, host_and_user};
use crate::storage::StatsReport;
use meta::Stat;
use nix::sys::stat::fstat;
use sources::VNode;

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

impl Walk<'_> {
    fn error(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.warn(path, &msg);
        if let Ok(mut e) = self.errors.lock() {
            e.push((path.to_path_buf(), msg));
        }
    }

    fn warning(&self, path: &Path, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        self.progress.caveat(path, &msg);
        if let Ok(mut w) = self.warnings.lock() {
            w.push((path.to_path_buf(), msg));
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.opts.cancel.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Saves a directory's tree, after the same validation a reader runs
    /// (names, order, subtree only for directories): a snapshot whose tree
    /// `check` and `restore` would refuse is never written.
    fn save_tree(&self, path: &Path, nodes: Vec<Node>) -> Result<BlobId> {
        let tree = Tree::new(nodes);
        tree.validate().map_err(|reason| Error::InvalidTree {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        })?;
        Ok(self.saver.save(BlobKind::Tree, &tree.encode())?.0)
    }

    /// Saves a directory's tree, or names the parent snapshot's tree when
    /// every entry came out identical to it (`parent_same`), which skips
    /// encoding and hashing: most directories of a re-backup.
    fn finish_tree(
        &self,
        path: &Path,
        nodes: Vec<Node>,
        parent_same: Option<BlobId>,
    ) -> Result<Saved> {
        if let Some(id) = parent_same
            && self.index.contains(BlobKind::Tree, &id)
        {
            return Ok(Saved { id, same: true });
        }
        Ok(Saved {
            id: self.save_tree(path, nodes)?,
            same: false,
        })
    }

    /// Loads a parent tree's nodes for comparison; a damaged parent only costs speed.
    fn parent_nodes(&self, id: Option<BlobId>) -> Vec<Node> {
        id.and_then(|id| self.repo.load_tree(self.index, &id).ok())
            .map(|t| t.nodes)
            .unwrap_or_default()
    }

    /// Archives one node of the virtual tree: `name` in the open directory `dir`.
    fn vnode(
        &self,
        v: &VNode,
        dir: BorrowedFd,
        name: &[u8],
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Done>> {
        let os_name = OsStr::from_bytes(name);
        match v {
            VNode::Source(path) => {
                let st = match at::lstat_at(dir, os_name) {
                    Ok(st) => st,
                    Err(e) => {
                        self.error(path, format!("cannot read source: {e}"));
                        return Ok(None);
                    }
                };
                self.entry(
                    Place {
                        dir,
                        path,
                        name,
                        root_dev: None,
                        depth,
                    },
                    &st,
                    parent.cloned(),
                )
            }
            VNode::Parent { path, children } => {
                // An ancestor of a source is recorded as the directory it
                // resolves to, even when the path names it through a symlink.
                match at::open_dir_follow_at(dir, os_name) {
                    Ok(d) => self.ancestor(&d, path, name, children, parent, depth),
                    Err(e) => {
                        self.error(path, format!("cannot open directory: {e}"));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Archives the open directory `d`, an ancestor of some sources: only
    /// its `children` of the virtual tree.
    fn ancestor(
        &self,
        d: &File,
        path: &Path,
        name: &[u8],
        children: &BTreeMap<OsString, VNode>,
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Done>> {
        let st = fstat(d).map_err(|e| Error::io("read metadata of", path, e.into()))?;
        let mut node = meta::node_from(name, &st, parent, || at::xattrs_of(d));
        self.count().dirs.fetch_add(1, Ordering::Relaxed);
        let ptree = Tree::new(self.parent_nodes(parent.and_then(|p| p.subtree)));
        let list: Vec<_> = children.iter().collect();
        let nodes: Vec<Option<Done>> = list
            .par_iter()
            .map(|(n, child)| {
                let pn = ptree.find(n.as_bytes());
                self.vnode(child, d.as_fd(), n.as_bytes(), pn, depth + 1)
            })
            .collect::<Result<_>>()?;
        let nodes = nodes.into_iter().flatten().map(|d| d.node).collect();
        node.subtree = Some(self.save_tree(path, nodes)?);
        Ok(Some(Done { node, same: false }))
    }

    /// Archives the entry at `at`, which `lstat` saw as `st`; `parent` is
    /// its node in the parent snapshot.
    fn entry(&self, at: Place, st: &Stat, parent: Option<Node>) -> Result<Option<Done>> {
        self.check_cancel()?;
        let Place {
            dir, path, name, ..
        } = at;
        let kind = meta::kind_of_mode(st.st_mode);
        if kind == NodeKind::File {
            return file::archive(self, dir, path, name, st, parent);
        }
        let os_name = OsStr::from_bytes(name);
        let counts = self.count();
        if kind == NodeKind::Dir {
            return self.subdir(at, st, parent);
        }
        let (mut node, mut same) = match parent {
            Some(p) if meta::same_as(st, &p) => (p, true),
            p => (
                meta::node_from(name, st, p.as_ref(), || at::xattrs_at(dir, os_name, path)),
                false,
            ),
        };
        if kind == NodeKind::Symlink {
            match at::read_link_at(dir, os_name) {
                Ok(t) => {
                    same &= node.target == t;
                    node.target = t;
                }
                Err(e) => {
                    self.error(path, format!("cannot read symlink: {e}"));
                    return Ok(None);
                }
            }
        }
        counts.others.fetch_add(1, Ordering::Relaxed);
        self.progress.add_done(1, 0);
        Ok(Some(Done { node, same }))
    }

    /// Archives the directory at `at` with everything below it: opened
    /// without following a symlink and checked to be the directory `lstat`
    /// saw.
    fn subdir(&self, at: Place, st: &Stat, parent: Option<Node>) -> Result<Option<Done>> {
        let Place {
            dir,
            path,
            name,
            root_dev,
            depth,
        } = at;
        let parent_subtree = parent.as_ref().and_then(|p| p.subtree);
        let opened = match at::open_seen(dir, OsStr::from_bytes(name), st) {
            Ok(o) => Some(o),
            Err(at::OpenError::Swapped(msg)) => {
                self.error(path, msg);
                return Ok(None);
            }
            Err(at::OpenError::Io(e)) => {
                // Recorded (as an empty directory) with its lstat metadata.
                self.error(path, format!("cannot list directory: {e}"));
                None
            }
        };
        self.count().dirs.fetch_add(1, Ordering::Relaxed);
        let st = opened.as_ref().map_or(st, |(_, fst)| fst);
        let (mut node, mut same) = match parent {
            Some(p) if meta::same_as(st, &p) => (p, true),
            p => {
                let node = meta::node_from(name, st, p.as_ref(), || match &opened {
                    Some((d, _)) => at::xattrs_of(d),
                    None => at::xattrs_at(dir, OsStr::from_bytes(name), path),
                });
                (node, false)
            }
        };
        let dev = root_dev.unwrap_or(st.st_dev);
        let too_deep = depth >= MAX_DEPTH;
        if too_deep && opened.is_some() {
            self.error(
                path,
                format!("directory nesting deeper than {MAX_DEPTH} levels: its contents are left out; back it up as a source of its own"),
            );
        }
        let saved = match &opened {
            Some((d, _)) if !too_deep && (!self.opts.one_file_system || st.st_dev == dev) => {
                self.dir(d, path, parent_subtree, dev, depth)?
            }
            _ => self.finish_tree(path, Vec::new(), None)?,
        };
        same &= saved.same;
        node.subtree = Some(saved.id);
        self.progress.add_done(1, 0);
        Ok(Some(Done { node, same }))
    }

    /// Archives the entries of the open directory `d`, `depth` levels below
    /// `/`, and saves its tree.
    fn dir(
        &self,
        d: &File,
        path: &Path,
        parent_subtree: Option<BlobId>,
        dev: u64,
        depth: usize,
    ) -> Result<Saved> {
        let mut names = match at::list(d) {
            Ok(names) => names,
            Err(e) => {
                self.error(path, format!("cannot list directory: {e}"));
                return self.finish_tree(path, Vec::new(), None);
            }
        };
        names.sort();
        if self.opts.excludes.exclude_caches
            && at::has_cachedir_tag(d, crate::local::filter::CACHEDIR_SIGNATURE)
        {
            names.retain(|n| n == "CACHEDIR.TAG");
        }
        let parent_nodes = self.parent_nodes(parent_subtree);
        let parent_count = parent_nodes.len();
        let jobs = pair_with_parent(names, parent_nodes);
        let done: Vec<Option<Done>> = jobs
            .into_par_iter()
            .map(|(n, pn)| {
                let child = path.join(&n);
                if self.opts.excludes.is_excluded(&child) {
                    return Ok(None);
                }
                let st = match at::lstat_at(d.as_fd(), &n) {
                    Ok(st) => st,
                    Err(e) => {
                        self.error(&child, format!("cannot read metadata: {e}"));
                        return Ok(None);
                    }
                };
                crate::testhooks::pause_point("source-after-lstat");
                let at = Place {
                    dir: d.as_fd(),
                    path: &child,
                    name: n.as_bytes(),
                    root_dev: Some(dev),
                    depth: depth + 1,
                };
                self.entry(at, &st, pn)
            })
            .collect::<Result<_>>()?;
        // Identical only if every entry matched a parent node unchanged and
        // none of the parent's entries went missing.
        let all_same =
            done.len() == parent_count && done.iter().all(|d| d.as_ref().is_some_and(|d| d.same));
        let nodes = done.into_iter().flatten().map(|d| d.node).collect();
        self.finish_tree(path, nodes, parent_subtree.filter(|_| all_same))
    }
}

/// Where an entry lies: its name in the open directory `dir`, its full
/// path, the device of the source root it was reached from (for
/// `--one-file-system`) and the number of directories between it and `/`.
#[derive(Clone, Copy)]
struct Place<'a> {
    dir: BorrowedFd<'a>,
    path: &'a Path,
    name: &'a [u8],
    root_dev: Option<u64>,
    depth: usize,
}

/// One archived entry: its node, and whether that node is the parent
/// snapshot's node unchanged.
struct Done {
    node: Node,
    same: bool,
}

/// A saved (or reused) tree blob, and whether it is the parent's.
struct Saved {
    id: BlobId,
    same: bool,
}

type Job = (OsString, Option<Node>);

/// Hands each directory entry its node from the parent tree, by one merge
/// of the two name-sorted lists: the nodes are moved, not searched for and
/// copied.
fn pair_with_parent(names: Vec<OsString>, parent: Vec<Node>) -> Vec<Job> {
    let mut parent = parent.into_iter().peekable();
    names
        .into_iter()
        .map(|name| {
            let key = name.as_bytes();
            while parent.next_if(|p| p.name.as_slice() < key).is_some() {}
            let p = parent.next_if(|p| p.name.as_slice() == key);
            (name, p)
        })
        .collect()
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
    let index = repo.load_index()?;
    let parent = find_parent(repo, opts.parent.as_deref(), &host, &path_strings)?;
    let vroot = sources::build(&sources);

    let walk_done = AtomicBool::new(false);
    let (tree, save) = std::thread::scope(|scope| {
        if opts.scan {
            let srcs = sources.clone();
            let done = &walk_done;
            scope.spawn(move || file::scan_totals(&srcs, &opts.excludes, progress, done));
        }
        let r = on_walk_threads(|| {
            BlobSaver::run(repo, &index, opts.dry_run, opts.in_flight, |saver| {
                let walk = Walk {
                    repo,
                    index: &index,
                    saver,
                    opts,
                    progress,
                    tally: &tally,
                };
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
    let mut snapshot_id = None;
    if !opts.dry_run {
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            time: opts.time.unwrap_or_else(Utc::now),
            host,
            user,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            paths: path_strings,
            tags: opts.tags.clone(),
            excludes: opts.excludes.patterns.clone(),
            tree,
            parent: parent.as_ref().map(|(id, _)| *id),
            program_version: format!("repo {}", env!("CARGO_PKG_VERSION")),
            summary: summary.clone(),
            original: None,
            damaged: Vec::new(),
        };
        snapshot_id = Some(repo.save_snapshot(&snap)?);
    }
    Ok(BackupReport {
        snapshot: snapshot_id,
        parent: parent.map(|(id, _)| id),
        summary,
        errors,
        warnings,
        storage: repo.storage_stats(),
    })
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

impl Walk<'_> {
    /// Archives from `/` down to the sources (the virtual tree `vroot`)
    /// and returns the root tree's id; `parent_tree` is the parent
    /// snapshot's root tree.
    fn root(&self, vroot: &VNode, parent_tree: Option<BlobId>) -> Result<BlobId> {
        let parent_root = parent_tree.map(|id| {
            let mut n = Node::new(Vec::new(), NodeKind::Dir);
            n.subtree = Some(id);
            n
        });
        let root = at::open_dir_path(Path::new("/"))
            .map_err(|e| Error::io("open the root directory", "/", e))?;
        let tree = match vroot {
            VNode::Source(p) => {
                let st = fstat(&root).map_err(|e| Error::io("read metadata of", p, e.into()))?;
                self.dir(
                    &root,
                    p,
                    parent_root.as_ref().and_then(|n| n.subtree),
                    st.st_dev,
                    0,
                )?
                .id
            }
            VNode::Parent { path, children } => {
                match self.ancestor(&root, path, b"", children, parent_root.as_ref(), 0)? {
                    Some(Done {
                        node:
                            Node {
                                subtree: Some(id), ..
                            },
                        ..
                    }) => id,
                    _ => self.save_tree(path, Vec::new())?,
                }
            }
        };
        Ok(tree)
    }
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
