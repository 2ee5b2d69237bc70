//! The backup engine: walk sources, chunk and save files, build trees,
//! write the snapshot.
//!
//! Directories are processed with rayon: the entries of each directory are
//! archived in parallel and collected in order, so trees come out sorted
//! and deterministic while every core is busy. Saving is delegated to the
//! [`BlobSaver`], which overlaps pack uploads with this work.

pub mod exclude;
pub mod file;
pub mod meta;
pub mod sources;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::index::MemIndex;
use crate::pack::BlobKind;
use crate::progress::Progress;
use crate::repo::saver::BlobSaver;
use crate::repo::{ObjectKind, Repository, host_and_user};
use crate::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use crate::storage::StatsReport;
use crate::tree::{Node, NodeKind, Tree};
pub use exclude::Excludes;
use sources::VNode;

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
#[derive(Default)]
struct Tally {
    /// Read buffers handed from file to file, so small files cost no large allocation.
    buffers: Mutex<Vec<Vec<u8>>>,
    errors: Mutex<Vec<(PathBuf, String)>>,
    warnings: Mutex<Vec<(PathBuf, String)>>,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    total_bytes: AtomicU64,
    bytes_read: AtomicU64,
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
        self.progress.warn(path, &msg);
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

    fn save_tree(&self, nodes: Vec<Node>) -> Result<BlobId> {
        let tree = Tree::new(nodes);
        Ok(self.saver.save(BlobKind::Tree, &tree.encode())?.0)
    }

    /// Loads a parent tree for comparison; a damaged parent only costs speed.
    fn parent_tree(&self, id: Option<BlobId>) -> Option<Tree> {
        id.and_then(|id| self.repo.load_tree(self.index, &id).ok())
    }

    /// Archives one source or parent-of-source node of the virtual tree.
    fn vnode(&self, v: &VNode, name: &[u8], parent: Option<&Node>) -> Result<Option<Node>> {
        match v {
            VNode::Source(path) => {
                let md = match std::fs::symlink_metadata(path) {
                    Ok(md) => md,
                    Err(e) => {
                        self.error(path, format!("cannot read source: {e}"));
                        return Ok(None);
                    }
                };
                self.entry(path, name, md, parent, None)
            }
            VNode::Parent { path, children } => {
                let md = std::fs::symlink_metadata(path)
                    .map_err(|e| Error::io("read metadata of", path, e))?;
                let mut node = meta::node_from(name, path, &md, parent);
                self.dirs.fetch_add(1, Ordering::Relaxed);
                let ptree = self.parent_tree(parent.and_then(|p| p.subtree));
                let list: Vec<_> = children.iter().collect();
                let nodes: Vec<Option<Node>> = list
                    .par_iter()
                    .map(|(n, child)| {
                        let pn = ptree.as_ref().and_then(|t| t.find(n.as_bytes()));
                        self.vnode(child, n.as_bytes(), pn)
                    })
                    .collect::<Result<_>>()?;
                node.subtree = Some(self.save_tree(nodes.into_iter().flatten().collect())?);
                Ok(Some(node))
            }
        }
    }

    /// Archives a real file system entry.
    fn entry(
        &self,
        path: &Path,
        name: &[u8],
        md: std::fs::Metadata,
        parent: Option<&Node>,
        root_dev: Option<u64>,
    ) -> Result<Option<Node>> {
        self.check_cancel()?;
        let mut node = meta::node_from(name, path, &md, parent);
        match node.kind {
            NodeKind::Dir => {
                self.dirs.fetch_add(1, Ordering::Relaxed);
                let dev = root_dev.unwrap_or(md.dev());
                let crosses = self.opts.one_file_system && md.dev() != dev;
                let subtree = if crosses {
                    self.save_tree(Vec::new())?
                } else {
                    self.dir(path, parent.and_then(|p| p.subtree), dev)?
                };
                node.subtree = Some(subtree);
            }
            NodeKind::File => return file::archive(self, path, node, parent),
            NodeKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => {
                    node.target = t.as_os_str().as_bytes().to_vec();
                    self.others.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.error(path, format!("cannot read symlink: {e}"));
                    return Ok(None);
                }
            },
            _ => {
                self.others.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.progress.add_done(1, 0);
        Ok(Some(node))
    }

    /// Archives a directory's entries and saves its tree.
    fn dir(&self, path: &Path, parent_subtree: Option<BlobId>, dev: u64) -> Result<BlobId> {
        // Entries keep the directory open, so their lstat is relative to it
        // (fstatat) instead of walking the whole path again for every file.
        let mut entries: Vec<(std::ffi::OsString, std::fs::DirEntry)> =
            match std::fs::read_dir(path) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| (e.file_name(), e)))
                    .collect(),
                Err(e) => {
                    self.error(path, format!("cannot list directory: {e}"));
                    return self.save_tree(Vec::new());
                }
            };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if self.opts.excludes.is_cache_dir(path) {
            entries.retain(|(n, _)| n == "CACHEDIR.TAG");
        }
        let ptree = self.parent_tree(parent_subtree);
        let nodes: Vec<Option<Node>> = entries
            .par_iter()
            .map(|(n, de)| {
                let child = path.join(n);
                if self.opts.excludes.is_excluded(&child) {
                    return Ok(None);
                }
                let md = match de.metadata() {
                    Ok(md) => md,
                    Err(e) => {
                        self.error(&child, format!("cannot read metadata: {e}"));
                        return Ok(None);
                    }
                };
                let pn = ptree.as_ref().and_then(|t| t.find(n.as_bytes()));
                self.entry(&child, n.as_bytes(), md, pn, Some(dev))
            })
            .collect::<Result<_>>()?;
        self.save_tree(nodes.into_iter().flatten().collect())
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
    let tally = Tally::default();
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
    if sources.is_empty() {
        return Err(Error::NotFound {
            what: "any readable source path".into(),
            hint: ": check the paths given to create".into(),
        });
    }
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
        let r = BlobSaver::run(repo, &index, opts.dry_run, opts.in_flight, |saver| {
            let walk = Walk {
                repo,
                index: &index,
                saver,
                opts,
                progress,
                tally: &tally,
            };
            let parent_root = parent.as_ref().map(|(_, s)| {
                let mut n = Node::new(Vec::new(), NodeKind::Dir);
                n.subtree = Some(s.tree);
                n
            });
            let tree = match &vroot {
                VNode::Source(p) => {
                    let md = std::fs::symlink_metadata(p)
                        .map_err(|e| Error::io("read metadata of", p, e))?;
                    walk.dir(p, parent_root.as_ref().and_then(|n| n.subtree), md.dev())?
                }
                VNode::Parent { .. } => walk
                    .vnode(&vroot, b"", parent_root.as_ref())?
                    .and_then(|n| n.subtree)
                    .unwrap_or_default(),
            };
            Ok(tree)
        });
        walk_done.store(true, Ordering::Relaxed);
        r
    })?;
    let walk = tally;
    let errors = walk.errors.into_inner().unwrap_or_default();
    let warnings = walk.warnings.into_inner().unwrap_or_default();
    let summary = Summary {
        files_new: walk.files_new.into_inner(),
        files_changed: walk.files_changed.into_inner(),
        files_unchanged: walk.files_unchanged.into_inner(),
        dirs: walk.dirs.into_inner(),
        others: walk.others.into_inner(),
        errors: errors.len() as u64,
        total_bytes: walk.total_bytes.into_inner(),
        bytes_read: walk.bytes_read.into_inner(),
        blobs_new: save.blobs_new,
        data_added: save.bytes_new,
        data_added_stored: save.bytes_stored,
        duration_secs: started.elapsed().as_secs_f64(),
    };
    let mut snapshot_id = None;
    if !opts.dry_run {
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            time: Utc::now(),
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
        let hex = repo.save_object(ObjectKind::Snapshot, &snap.encode())?;
        snapshot_id = SnapshotId::from_hex(&hex);
    }
    Ok(BackupReport {
        snapshot: snapshot_id,
        parent: parent.map(|(id, _)| id),
        summary,
        errors,
        warnings,
        storage: repo.storage().stats(),
    })
}
