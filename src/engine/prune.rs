//! The prune engine: delete what no snapshot needs, safe to interrupt.
//!
//! 1. Load every index object and list the packs on storage.
//! 2. Mark every blob reachable from every snapshot. A tree that cannot be
//!    read stops prune before anything is written or deleted.
//! 3. Choose one copy of each used blob (preferring the packs that are the
//!    most used) and classify the indexed packs: no chosen copy -> delete;
//!    a share of unused bytes above the threshold -> repack; else keep.
//! 4. Repack: read the chosen copies from those packs, verify them, and
//!    save them into new packs with the ordinary [`BlobSaver`], which writes
//!    the new packs and then an index object for them.
//! 5. Write one new index object listing every remaining pack, with
//!    `supersedes` naming every index object it replaces.
//! 6. Delete the superseded index objects.
//! 7. Delete the packs no longer needed (and packs in no index, except young
//!    ones while a lock stale only by age exists: a suspended backup may
//!    still index them).
//!
//! Prune may itself be suspended past the stale period while a backup
//! starts and relies on what prune planned to delete, so it proves its lock
//! still held before steps 6 and 7 (SPEC.md §10.1).
//!
//! Until step 5 only new objects appear; after it, the new index alone
//! describes every pack still needed; so a crash at any point leaves every
//! snapshot complete, at worst with duplicate index entries or unindexed
//! packs that `check` reports as notices and the next prune removes.
//! `REPO_TEST_PRUNE_CRASH_AT` (a test hook, see [`crash_point`]) stops the
//! process abruptly between steps so tests can prove it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::{INDEX_VERSION, IndexBlob, IndexFile, IndexPack, MemIndex};
use crate::format::pack::BlobKind;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::repository::saver::BlobSaver;
use crate::repository::{BlobError, BlobRef, Fetch, ObjectKind, Repository};

/// Environment variable of the crash test hook: `after-repack`,
/// `after-index` or `before-delete` makes prune exit(1) at once at that
/// point, without cleaning up (its lock stays behind, as after a crash).
/// For tests only.
pub const CRASH_ENV: &str = "REPO_TEST_PRUNE_CRASH_AT";

/// Default for `--max-unused`: repack a pack when more than this percentage
/// of its bytes is unused.
pub const DEFAULT_MAX_UNUSED: f64 = 5.0;

/// How prune runs.
pub struct PruneOptions<'a> {
    /// Repack partly used packs whose unused share exceeds this percentage.
    pub max_unused_percent: f64,
    /// Plan only: report what would happen, write and delete nothing.
    pub dry_run: bool,
    pub cancel: &'a AtomicBool,
}

/// What prune found and did (or would do, for a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    /// Packs on storage and their bytes before prune.
    pub packs_before: usize,
    pub bytes_before: u64,
    /// Distinct blobs the snapshots reference.
    pub blobs_used: usize,
    /// Indexed blob entries no snapshot needs (duplicates included).
    pub blobs_unused: usize,
    pub bytes_unused: u64,
    /// Packs whose blobs are all unused: deleted.
    pub packs_removed: usize,
    /// Partly used packs rewritten and deleted.
    pub packs_repacked: usize,
    /// Packs on storage in no index (left by interrupted runs): deleted.
    pub packs_unindexed: usize,
    /// Packs in no index kept because they are younger than
    /// [`unindexed_grace`] while a lock stale only by its age exists: a
    /// suspended backup may still index them.
    pub packs_unindexed_kept: usize,
    /// That grace period, in seconds.
    pub unindexed_grace_secs: u64,
    /// Packs left as they are.
    pub packs_kept: usize,
    /// Blobs copied into new packs and their stored bytes.
    pub blobs_repacked: u64,
    pub bytes_repacked: u64,
    pub packs_written: u64,
    pub index_written: usize,
    pub index_removed: usize,
    /// Packs on storage and their bytes afterwards (for a dry run: the estimate).
    pub packs_after: usize,
    pub bytes_after: u64,
}

/// Ends the process at once if the crash test hook names `point`.
pub fn crash_point(point: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        std::process::exit(1);
    }
}

/// Every blob reachable from the given root trees. A tree that cannot be
/// read, or a data blob in no index, is an error naming the snapshot.
pub fn reachable(
    repo: &Repository,
    index: &MemIndex,
    roots: &[(SnapshotId, BlobId)],
    cancel: &AtomicBool,
) -> Result<HashSet<(BlobKind, BlobId)>> {
    let mut used: HashSet<(BlobKind, BlobId)> = HashSet::new();
    let mut frontier: Vec<(BlobId, SnapshotId)> = roots.iter().map(|(s, t)| (*t, *s)).collect();
    while !frontier.is_empty() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        frontier.retain(|(id, _)| used.insert((BlobKind::Tree, *id)));
        let trees: Vec<_> = frontier
            .par_iter()
            .map(|(id, snap)| (*id, *snap, repo.load_tree(index, id)))
            .collect();
        let mut next = Vec::new();
        for (id, snap, tree) in trees {
            let tree = tree.map_err(|e| {
                Error::corrupt(
                    format!("tree {id} of snapshot {}", snap.short()),
                    format!("{e}; nothing was deleted"),
                )
            })?;
            for n in &tree.nodes {
                match n.kind {
                    NodeKind::Dir => {
                        if let Some(sub) = n.subtree {
                            next.push((sub, snap));
                        }
                    }
                    NodeKind::File => {
                        for c in &n.content {
                            if !index.contains(BlobKind::Data, &c.id) {
                                return Err(Error::corrupt(
                                    format!("snapshot {}", snap.short()),
                                    format!(
                                        "file {} needs data blob {} which is in no index; nothing was deleted",
                                        n.display_name(),
                                        c.id
                                    ),
                                ));
                            }
                            used.insert((BlobKind::Data, c.id));
                        }
                    }
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    Ok(used)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Remove,
}

/// How young an unindexed pack must be to be kept while a lock stale only
/// by its age exists: twice the stale period.
pub fn unindexed_grace() -> std::time::Duration {
    crate::repository::lock::stale_after() * 2
}

/// Whether some lock was ignored only for its age: its holder may be a
/// suspended process (or an older version of this program that does not
/// check its own lock) that will resume and index the packs it wrote.
fn suspended_holder_possible(repo: &Repository) -> Result<bool> {
    Ok(crate::repository::lock::list_locks(repo)?
        .into_iter()
        .any(|(_, info)| info.is_ok_and(|i| i.is_stale_by_age() && !i.holder_is_dead())))
}

/// Runs prune. The caller must hold an exclusive lock.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let cancel = opts.cancel;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        unindexed_grace_secs: unindexed_grace().as_secs(),
        ..Default::default()
    };
    let grace = suspended_holder_possible(repo)?;
    if !opts.dry_run {
        // Before anything is listed: a holder of a lock ignored here finds
        // it gone at its next check, even if its clock says it is fresh
        // (suspended VM, clock behind), and writes nothing relying on what
        // this prune deletes (SPEC.md §10.1).
        crate::repository::lock::remove_ignored(repo, true)?;
    }

    // 1. Indexes and stored packs.
    let files: BTreeMap<IndexId, IndexFile> = repo.load_index_files()?;
    let mut index = MemIndex::default();
    for f in files.values() {
        index.add(f);
    }
    index.finish();
    let mut indexed: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    for f in files.values() {
        for p in &f.packs {
            let e = indexed.entry(p.id).or_insert_with(|| IndexPack {
                id: p.id,
                size: p.size,
                blobs: Vec::new(),
            });
            e.blobs.extend_from_slice(&p.blobs);
        }
    }
    for p in indexed.values_mut() {
        p.blobs.sort_by_key(|b| (b.offset, b.length));
        p.blobs.dedup_by_key(|b| (b.offset, b.length));
    }
    let stored: BTreeMap<PackId, u64> = repo
        .list_packs()?
        .into_iter()
        .map(|p| (p.id, p.size))
        .collect();
    report.packs_before = stored.len();
    report.bytes_before = stored.values().sum();

    // 2. Mark. A snapshot that cannot be read might still need data: refuse.
    let (snaps, damaged) = repo.snapshots_and_damaged()?;
    if let Some((hex, e)) = damaged.first() {
        let why = match e {
            Error::Corrupt { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        return Err(Error::corrupt(
            ObjectKind::Snapshot.key(hex),
            format!(
                "{why}; prune cannot tell which data this snapshot needs ({} damaged snapshot(s) in all) and deleted nothing. Restore the object from a copy, or delete it if it is beyond repair, then prune again",
                damaged.len()
            ),
        ));
    }
    report.snapshots = snaps.len();
    let roots: Vec<(SnapshotId, BlobId)> = snaps.iter().map(|(id, s)| (*id, s.tree)).collect();
    let used = reachable(repo, &index, &roots, cancel)?;
    report.blobs_used = used.len();

    // 3. Choose copies and classify. Packs missing from storage, or with
    // another size than indexed, hold no usable copy.
    let usable = |p: &IndexPack| stored.get(&p.id) == Some(&p.size);
    let mut order: Vec<&IndexPack> = indexed.values().filter(|p| usable(p)).collect();
    let used_share = |p: &IndexPack| -> u64 {
        let u: u64 = p
            .blobs
            .iter()
            .filter(|b| used.contains(&(b.kind, b.id)))
            .map(|b| b.length as u64)
            .sum();
        // Parts per million, to sort without floats.
        u.saturating_mul(1_000_000) / p.size.max(1)
    };
    order.sort_by_cached_key(|p| (std::cmp::Reverse(used_share(p)), p.id));
    let mut chosen: HashMap<(BlobKind, BlobId), PackId> = HashMap::new();
    let mut needed: BTreeMap<PackId, Vec<IndexBlob>> = BTreeMap::new();
    for p in &order {
        for b in &p.blobs {
            let key = (b.kind, b.id);
            if used.contains(&key) && !chosen.contains_key(&key) {
                chosen.insert(key, p.id);
                needed.entry(p.id).or_default().push(*b);
            }
        }
    }
    if let Some((kind, id)) = used.iter().find(|k| !chosen.contains_key(k)) {
        return Err(Error::corrupt(
            format!("{kind} blob {id}"),
            "a snapshot needs it but every pack holding it is missing or has the wrong size; nothing was deleted",
        ));
    }
    let mut fate: BTreeMap<PackId, Fate> = BTreeMap::new();
    for p in indexed.values() {
        let need: u64 = needed
            .get(&p.id)
            .map(|v| v.iter().map(|b| b.length as u64).sum())
            .unwrap_or(0);
        let unused_blobs = p
            .blobs
            .len()
            .saturating_sub(needed.get(&p.id).map_or(0, Vec::len));
        report.blobs_unused += unused_blobs;
        if unused_blobs > 0 {
            report.bytes_unused += p
                .blobs
                .iter()
                .filter(|b| chosen.get(&(b.kind, b.id)) != Some(&p.id))
                .map(|b| b.length as u64)
                .sum::<u64>();
        }
        let f = if need == 0 {
            Fate::Remove
        } else {
            let unused = p.size.saturating_sub(need);
            if unused > 0 && unused as f64 * 100.0 > opts.max_unused_percent * p.size as f64 {
                Fate::Repack
            } else {
                Fate::Keep
            }
        };
        fate.insert(p.id, f);
    }
    let count = |f: Fate| fate.values().filter(|&&x| x == f).count();
    report.packs_removed = count(Fate::Remove);
    report.packs_repacked = count(Fate::Repack);
    report.packs_kept = count(Fate::Keep);
    let mut unindexed: Vec<PackId> = stored
        .keys()
        .filter(|id| !indexed.contains_key(id))
        .copied()
        .collect();
    if grace && !unindexed.is_empty() {
        let young = young_packs(repo)?;
        let before = unindexed.len();
        unindexed.retain(|id| !young.contains(id));
        report.packs_unindexed_kept = before - unindexed.len();
    }
    report.packs_unindexed = unindexed.len();
    let repack: Vec<PackId> = fate
        .iter()
        .filter(|(_, f)| **f == Fate::Repack)
        .map(|(id, _)| *id)
        .collect();
    let repack_bytes: u64 = repack
        .iter()
        .flat_map(|id| needed.get(id).into_iter().flatten())
        .map(|b| b.length as u64)
        .sum();
    let kept_bytes: u64 = fate
        .iter()
        .filter(|(_, f)| **f == Fate::Keep)
        .filter_map(|(id, _)| stored.get(id))
        .sum();
    // Unusable packs hold no chosen copy, so they are never kept.
    let rewrite_index = fate.values().any(|f| *f != Fate::Keep);

    if opts.dry_run {
        report.blobs_repacked = repack
            .iter()
            .map(|id| needed.get(id).map_or(0, Vec::len) as u64)
            .sum();
        report.bytes_repacked = repack_bytes;
        let pack_size = u64::from(repo.config().pack_size).max(1);
        report.packs_after = report.packs_kept
            + report.packs_unindexed_kept
            + repack_bytes.div_ceil(pack_size) as usize;
        report.bytes_after = kept_bytes + repack_bytes;
        return Ok(report);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }

    // 4. Repack.
    if !repack.is_empty() {
        let mut keep_index = MemIndex::default();
        keep_index.add(&IndexFile::new(
            indexed
                .values()
                .filter(|p| fate.get(&p.id) == Some(&Fate::Keep))
                .cloned()
                .collect(),
        ));
        keep_index.finish();
        let (copied, stats) = BlobSaver::run(repo, &keep_index, false, 2, |saver| {
            let mut copied = 0u64;
            for id in &repack {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let wanted: Vec<BlobRef> = needed
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(BlobRef::from)
                    .collect();
                repo.load_blobs(id, &wanted, Fetch::Whole, |b, data| {
                    let data = data.map_err(|e| match e {
                        BlobError::Short { key, pack_len, .. } => Error::corrupt(
                            key,
                            format!("pack is shorter than the index says ({pack_len} bytes)"),
                        ),
                        BlobError::Damaged { key, error, .. } => {
                            Error::corrupt(key, format!("{error}; prune deleted nothing"))
                        }
                        other => Error::corrupt(other.key().to_string(), other),
                    })?;
                    saver.save(b.kind, &data)?;
                    copied += 1;
                    Ok(())
                })?;
            }
            Ok(copied)
        })?;
        report.blobs_repacked = copied;
        report.bytes_repacked = stats.bytes_stored;
        report.packs_written = stats.packs;
    }
    crash_point("after-repack");

    if rewrite_index {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        // The index objects the repack just wrote (we hold the exclusive
        // lock, so every new one is ours).
        let all_now: BTreeSet<IndexId> = repo.list_index_ids()?.into_iter().collect();
        let mut new_packs: Vec<IndexPack> = Vec::new();
        let mut superseded: BTreeSet<IndexId> = files.keys().copied().collect();
        for id in all_now {
            if files.contains_key(&id) {
                continue;
            }
            new_packs.extend(repo.load_index_file(&id)?.packs);
            superseded.insert(id);
        }
        // 5. One index for everything that stays.
        let mut packs: Vec<IndexPack> = indexed
            .values()
            .filter(|p| fate.get(&p.id) == Some(&Fate::Keep))
            .cloned()
            .collect();
        packs.extend(new_packs);
        let file = IndexFile {
            version: INDEX_VERSION,
            supersedes: superseded.iter().copied().collect(),
            packs,
        };
        repo.save_index(&file)?;
        report.index_written = 1;
        crash_point("after-index");

        // 6. Old index objects. Prune too may have been suspended past the
        // stale period; a backup that started meanwhile may rely on them.
        crate::testhooks::pause_point("prune-delete");
        repo.ensure_lock("deleting the superseded index objects")?;
        for id in &superseded {
            repo.delete_index(id)?;
            report.index_removed += 1;
        }
    }
    crash_point("before-delete");

    // 7. Packs no index lists any more.
    crate::testhooks::pause_point("prune-delete");
    repo.ensure_lock("deleting packs")?;
    let doomed: Vec<PackId> = fate
        .iter()
        .filter(|(_, f)| **f != Fate::Keep)
        .map(|(id, _)| *id)
        .filter(|id| stored.contains_key(id))
        .chain(unindexed)
        .collect();
    doomed.par_iter().try_for_each(|id| repo.delete_pack(id))?;

    let after = repo.list_pack_objects()?;
    report.packs_after = after.len();
    report.bytes_after = after.iter().map(|l| l.size).sum();
    Ok(report)
}

/// Packs whose storage modification time is within [`unindexed_grace`] of now.
fn young_packs(repo: &Repository) -> Result<HashSet<PackId>> {
    let grace = i64::try_from(unindexed_grace().as_millis()).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now().timestamp_millis().saturating_sub(grace);
    Ok(repo
        .list_packs_modified()?
        .into_iter()
        .filter(|p| p.modified_ms > cutoff)
        .map(|p| p.id)
        .collect())
}
