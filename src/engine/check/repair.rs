//! `repair index`: rebuild the index from the packs themselves.
//!
//! Every pack entry starts with an authenticated header, so scanning each
//! pack from its start recovers exactly which blobs it holds. The new index
//! object is written first and names the old ones it supersedes; only then
//! are the old ones deleted, so an interruption leaves a usable index.
//!
//! `repair snapshots`: rewrite snapshots whose data is partly gone so the
//! rest stays restorable and the loss is recorded (SPEC.md §12.1.2).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::crypto::hash;
use crate::engine::check::Problem;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack, MemIndex};
use crate::format::pack::BlobKind;
use crate::format::snapshot::{DamagedPath, REPAIRED_TAG, Snapshot};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::repository::objects::pack_key;
use crate::repository::saver::BlobSaver;
use crate::repository::{BlobError, BlobRef, Fetch, Repository, Step, Visitor, Walker};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairIndexReport {
    pub packs_scanned: usize,
    pub blobs_indexed: usize,
    /// Packs that were damaged; their readable entries were still indexed.
    pub damaged: Vec<Problem>,
    pub old_indexes: usize,
    pub new_index: Option<String>,
    pub dry_run: bool,
}

/// Scans every pack and replaces all index objects with one new one.
pub(crate) fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let old: Vec<IndexId> = repo.list_index_ids()?;
    // Each pack with its listed size: no index vouches for any here.
    let packs: Vec<(PackId, u64)> = repo
        .list_packs()?
        .into_iter()
        .map(|p| (p.id, p.size))
        .collect();
    let damaged = Mutex::new(Vec::new());
    let note = |object: &str, message: String| {
        if let Ok(mut d) = damaged.lock() {
            d.push(Problem {
                object: object.to_string(),
                message,
            });
        }
    };
    let scanned: Vec<IndexPack> = repo.transfer_pool()?.install(|| {
        packs
            .par_iter()
            .map(|(id, size)| {
                let pack = repo.scan_pack(id, *size)?;
                let key = pack.key();
                if !pack.name_matches {
                    note(
                        key,
                        "content does not match its name; its readable entries are indexed".into(),
                    );
                }
                if let Some(e) = &pack.error {
                    note(
                        key,
                        format!("scan stopped ({e}); the entries before it are indexed"),
                    );
                }
                Ok(IndexPack {
                    id: *id,
                    size: pack.size(),
                    blobs: pack.entries,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut report = RepairIndexReport {
        packs_scanned: scanned.len(),
        blobs_indexed: scanned.iter().map(|p| p.blobs.len()).sum(),
        damaged: damaged.into_inner().unwrap_or_default(),
        old_indexes: old.len(),
        new_index: None,
        dry_run,
    };
    if dry_run {
        return Ok(report);
    }
    let mut file = IndexFile::new(
        scanned
            .into_iter()
            .filter(|p| !p.blobs.is_empty())
            .collect(),
    );
    file.supersedes = old.clone();
    let new = repo.save_index(&file)?;
    report.new_index = Some(new.to_hex());
    for id in &old {
        if *id != new {
            repo.delete_index(id)?;
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// repair snapshots
// ---------------------------------------------------------------------------

/// How `repair snapshots` runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RepairSnapshotsOptions {
    /// Report what would change; write and delete nothing.
    pub dry_run: bool,
    /// Delete each original snapshot after its repaired copy is stored.
    pub forget: bool,
    /// Also read every pack holding a needed data blob and treat blobs that
    /// fail authentication as missing.
    pub read_data: bool,
}

/// One snapshot that had damage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairedSnapshot {
    pub old: String,
    /// The repaired snapshot's id; `None` in a dry run.
    pub new: Option<String>,
    /// Paths newly recorded as damaged.
    pub damaged: Vec<DamagedPath>,
    /// Whether the original was deleted (`--forget`).
    pub forgotten: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairSnapshotsReport {
    pub snapshots_checked: usize,
    /// Snapshots with damage, and what was (or would be) done.
    pub repaired: Vec<RepairedSnapshot>,
    /// Tree blobs written for the repaired snapshots.
    pub trees_written: u64,
    /// Packs read with `--read-data`, and data blobs that failed there.
    pub packs_read: usize,
    pub blobs_failed: usize,
    pub dry_run: bool,
    pub forget: bool,
}

/// A tree as rewritten: its new id and encoding (when it changed), and the
/// damage found below it, with paths relative to it.
#[derive(Clone)]
struct Rewritten {
    id: BlobId,
    damaged: Vec<(PathBuf, &'static str, u64, String)>,
}

/// Collects, per pack, the indexed data blobs the walked trees need (each
/// once). Damaged trees are skipped: `rewrite` records them.
struct WantedBlobs<'a> {
    index: &'a MemIndex,
    seen: HashSet<BlobId>,
    needed: BTreeMap<PackId, Vec<BlobRef>>,
}

impl Visitor for WantedBlobs<'_> {
    fn node(&mut self, _path: &Path, n: &Node, _parent: &BlobId) -> Result<Step> {
        for c in &n.content {
            if self.seen.insert(c.id)
                && let Some(loc) = self.index.get(BlobKind::Data, &c.id)
            {
                self.needed.entry(loc.pack).or_default().push(BlobRef {
                    kind: BlobKind::Data,
                    id: c.id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_len: None,
                });
            }
        }
        Ok(Step::Descend)
    }

    fn damaged(&mut self, _dir: &Path, _id: &BlobId, _error: Error) -> Result<()> {
        Ok(())
    }
}

struct SnapshotRepairer<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    /// Pack sizes on storage.
    stored: HashMap<PackId, u64>,
    /// Pack sizes in the index.
    indexed: HashMap<PackId, u64>,
    /// Data blobs that failed authentication (`--read-data`), with why.
    failed: HashMap<BlobId, String>,
    /// Rewritten trees by original id, shared by all snapshots.
    done: HashMap<BlobId, Rewritten>,
    /// New tree blobs to store: id -> encoding.
    new_trees: BTreeMap<BlobId, Vec<u8>>,
    empty_tree: BlobId,
}

impl SnapshotRepairer<'_> {
    /// Why a data blob cannot be read, or `None` if it can.
    fn blob_problem(&self, id: &BlobId) -> Option<String> {
        let Some(loc) = self.index.get(BlobKind::Data, id) else {
            return Some(format!("data blob {id} is in no index"));
        };
        let key = pack_key(&loc.pack);
        match (self.stored.get(&loc.pack), self.indexed.get(&loc.pack)) {
            (None, _) => Some(format!("pack {key} holding data blob {id} is missing")),
            (Some(s), Some(i)) if s != i => Some(format!(
                "pack {key} holding data blob {id} has {s} bytes, the index says {i}"
            )),
            _ => self.failed.get(id).cloned(),
        }
    }

    /// Rewrites the tree `id` (and everything below it) without damaged
    /// content. Returns `Err` only for storage errors, never for damage.
    fn rewrite(&mut self, id: BlobId) -> Result<std::result::Result<Rewritten, String>> {
        if let Some(r) = self.done.get(&id) {
            return Ok(Ok(r.clone()));
        }
        let mut tree = match self.repo.load_tree(self.index, &id) {
            Ok(t) => t,
            Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                return Ok(Err(format!("tree blob {id}: {e}")));
            }
            Err(e) => return Err(e),
        };
        let mut damaged = Vec::new();
        for node in &mut tree.nodes {
            let name = PathBuf::from(std::ffi::OsStr::from_bytes(&node.name));
            match node.kind {
                NodeKind::Dir => {
                    let Some(sub) = node.subtree else { continue };
                    match self.rewrite(sub)? {
                        Ok(r) => {
                            node.subtree = Some(r.id);
                            damaged.extend(
                                r.damaged
                                    .into_iter()
                                    .map(|(p, k, s, why)| (name.join(p), k, s, why)),
                            );
                        }
                        Err(why) => {
                            node.subtree = Some(self.empty_tree);
                            self.new_trees
                                .insert(self.empty_tree, Tree::new(Vec::new()).encode());
                            damaged.push((name.clone(), "dir", 0, why));
                        }
                    }
                }
                NodeKind::File => {
                    let problems: Vec<String> = node
                        .content
                        .iter()
                        .filter_map(|c| self.blob_problem(&c.id))
                        .collect();
                    if let Some(first) = problems.first() {
                        let why = if problems.len() > 1 {
                            format!(
                                "{first} (and {} more of its {} chunks)",
                                problems.len() - 1,
                                node.content.len()
                            )
                        } else {
                            first.clone()
                        };
                        damaged.push((name.clone(), "file", node.size, why));
                        node.content.clear();
                        node.size = 0;
                    }
                }
                _ => {}
            }
        }
        let new_id = if damaged.is_empty() {
            id
        } else {
            let bytes = tree.encode();
            let new_id = hash::blob_id(&self.repo.keys().blob_id, &bytes);
            self.new_trees.insert(new_id, bytes);
            new_id
        };
        let r = Rewritten {
            id: new_id,
            damaged,
        };
        self.done.insert(id, r.clone());
        Ok(Ok(r))
    }

    /// With `--read-data`: reads every pack holding a data blob the trees
    /// need and records the blobs that fail authentication.
    fn read_packs(&mut self, roots: &[BlobId]) -> Result<usize> {
        let mut wanted = WantedBlobs {
            index: self.index,
            seen: HashSet::new(),
            needed: BTreeMap::new(),
        };
        let mut walker = Walker::new(self.repo, self.index).once();
        for root in roots {
            walker.walk(root, Path::new("/"), &mut wanted)?;
        }
        let needed = wanted.needed;
        let needed: Vec<(PackId, Vec<BlobRef>)> = needed
            .into_iter()
            .filter(|(p, _)| {
                self.stored.contains_key(p) && self.stored.get(p) == self.indexed.get(p)
            })
            .collect();
        let failed = Mutex::new(HashMap::new());
        let repo = self.repo;
        repo.transfer_pool()?.install(|| {
            needed
                .par_iter()
                .try_for_each(|(pack, blobs)| -> Result<()> {
                    let mut bad = Vec::new();
                    repo.load_blobs(pack, blobs, Fetch::Whole, |b, data| {
                        let id = b.id;
                        match data {
                            Ok(_) => {}
                            Err(BlobError::Damaged { key, error, .. }) => bad.push((
                                id,
                                format!("data blob {id} in pack {key} is damaged: {error}"),
                            )),
                            Err(e) => bad.push((id, e.to_string())),
                        }
                        Ok(())
                    })?;
                    if let Ok(mut f) = failed.lock() {
                        f.extend(bad);
                    }
                    Ok(())
                })
        })?;
        self.failed = failed.into_inner().unwrap_or_default();
        Ok(needed.len())
    }
}

/// Rewrites the given snapshots so that every path whose data is gone is
/// recorded in the snapshot's `damaged` list: a file keeps its node with
/// size 0 and no chunks, a directory whose tree blob is unreadable becomes
/// an empty directory. New trees go to storage first (packs, then their
/// index), then each new snapshot, and only then, with `forget`, is the
/// original deleted.
pub(crate) fn repair_snapshots(
    repo: &Repository,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    opts: RepairSnapshotsOptions,
) -> Result<RepairSnapshotsReport> {
    // Strict: a blob missing only because its index object is damaged must
    // not be cut out of a snapshot.
    let index = repo.load_index_strict()?;
    let stored: HashMap<PackId, u64> = repo
        .list_packs()?
        .into_iter()
        .map(|p| (p.id, p.size))
        .collect();
    let empty = Tree::new(Vec::new()).encode();
    let empty_tree = hash::blob_id(&repo.keys().blob_id, &empty);
    let mut r = SnapshotRepairer {
        repo,
        index: &index,
        stored,
        indexed: index.packs().collect(),
        failed: HashMap::new(),
        done: HashMap::new(),
        new_trees: BTreeMap::new(),
        empty_tree,
    };
    let mut report = RepairSnapshotsReport {
        snapshots_checked: snapshots.len(),
        dry_run: opts.dry_run,
        forget: opts.forget,
        ..Default::default()
    };
    if opts.read_data {
        let roots: Vec<BlobId> = snapshots.iter().map(|(_, s)| s.tree).collect();
        report.packs_read = r.read_packs(&roots)?;
        report.blobs_failed = r.failed.len();
    }
    // Work out every rewrite before storing anything.
    let mut plans: Vec<(SnapshotId, Snapshot, Vec<DamagedPath>)> = Vec::new();
    for (id, snap) in snapshots {
        if let Some(plan) = r.plan(id, snap, &empty)? {
            plans.push(plan);
        }
    }
    if plans.iter().any(|(_, s, _)| s.tree == empty_tree) {
        r.new_trees.insert(empty_tree, empty);
    }
    if opts.dry_run {
        report.repaired = plans
            .into_iter()
            .map(|(id, _, damaged)| RepairedSnapshot {
                old: id.to_hex(),
                new: None,
                damaged,
                forgotten: false,
            })
            .collect();
        return Ok(report);
    }
    // Trees first (their packs and index), then the snapshots, then the originals.
    if !plans.is_empty() {
        let trees = std::mem::take(&mut r.new_trees);
        let (written, _) = BlobSaver::run(repo, &index, false, 1, |saver| {
            let mut n = 0u64;
            for bytes in trees.values() {
                if saver.save(BlobKind::Tree, bytes)?.1 {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        report.trees_written = written;
    }
    for (old, snap, damaged) in plans {
        let new = repo.save_snapshot(&snap)?;
        let forgotten = opts.forget && new != old;
        if forgotten {
            repo.delete_snapshot(&old)?;
        }
        report.repaired.push(RepairedSnapshot {
            old: old.to_hex(),
            new: Some(new.to_hex()),
            damaged,
            forgotten,
        });
    }
    Ok(report)
}

impl SnapshotRepairer<'_> {
    /// The rewrite of one snapshot, or `None` when nothing it needs is
    /// damaged: the new snapshot (tagged, pointing back at the original)
    /// and the paths newly recorded as damaged. `empty` is the encoded
    /// empty tree, which stands in for an unreadable root.
    fn plan(
        &mut self,
        id: SnapshotId,
        snap: Snapshot,
        empty: &[u8],
    ) -> Result<Option<(SnapshotId, Snapshot, Vec<DamagedPath>)>> {
        let (root, found) = match self.rewrite(snap.tree)? {
            Ok(rw) => (rw.id, rw.damaged),
            Err(why) => {
                self.new_trees.insert(self.empty_tree, empty.to_vec());
                (self.empty_tree, vec![(PathBuf::new(), "dir", 0, why)])
            }
        };
        if found.is_empty() {
            return Ok(None);
        }
        let damaged: Vec<DamagedPath> = found
            .into_iter()
            .map(|(p, kind, size, reason)| DamagedPath {
                path: Path::new("/").join(p).to_string_lossy().into_owned(),
                kind: kind.to_string(),
                size,
                reason,
            })
            .collect();
        let mut tags = snap.tags.clone();
        if !tags.iter().any(|t| t == REPAIRED_TAG) {
            tags.push(REPAIRED_TAG.to_string());
        }
        let mut all_damaged = snap.damaged.clone();
        all_damaged.extend(damaged.iter().cloned());
        let new = Snapshot {
            tree: root,
            tags,
            original: snap.original.or(Some(id)),
            damaged: all_damaged,
            ..snap
        };
        Ok(Some((id, new, damaged)))
    }
}
