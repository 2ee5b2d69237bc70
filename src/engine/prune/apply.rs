//! Steps 4 to 7 of prune: the only ones that change the repository, in the
//! order that keeps every snapshot complete after a crash at any point.
//! New packs and the new index are written before anything is deleted, and
//! the lock is proved still held right before each deletion (SPEC.md §10.1).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::index::{INDEX_VERSION, IndexFile, IndexPack, MemIndex};
use crate::id::{IndexId, PackId};
use crate::repository::saver::BlobSaver;
use crate::repository::{BlobError, BlobRef, Fetch, Repository};

use super::PruneReport;
use super::mark::Gathered;
use super::plan::{Fate, Plan};

/// Step 4, repack: read the chosen copies from the packs to repack,
/// verify them and save them into new packs (and an index object for
/// those).
pub(super) fn repack(
    repo: &Repository,
    g: &Gathered,
    plan: &Plan,
    cancel: &AtomicBool,
    report: &mut PruneReport,
) -> Result<()> {
    let (repack, needed) = (&plan.repack, &plan.needed);
    let mut keep_index = MemIndex::default();
    keep_index.add(&IndexFile::new(plan.kept(g).collect()));
    keep_index.finish();
    let (copied, stats) = BlobSaver::run(repo, &keep_index, false, 2, |saver| {
        let mut copied = 0u64;
        for id in repack {
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
    Ok(())
}

/// Step 5: one index for everything that stays: the kept packs and those the
/// repack just wrote, superseding every index object there was. Returns
/// the superseded ones.
pub(super) fn write_index(
    repo: &Repository,
    g: &Gathered,
    plan: &Plan,
    report: &mut PruneReport,
) -> Result<BTreeSet<IndexId>> {
    let files = &g.files;
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
    let mut packs: Vec<IndexPack> = plan.kept(g).collect();
    packs.extend(new_packs);
    let file = IndexFile {
        version: INDEX_VERSION,
        supersedes: superseded.iter().copied().collect(),
        packs,
    };
    repo.save_index(&file)?;
    report.index_written = 1;
    Ok(superseded)
}

/// Step 6: delete the old index objects. Prune too may have been
/// suspended past the stale period; a backup that started meanwhile may
/// rely on them.
pub(super) fn delete_indexes(
    repo: &Repository,
    superseded: &BTreeSet<IndexId>,
    report: &mut PruneReport,
) -> Result<()> {
    crate::testhooks::pause_point("prune-delete");
    repo.ensure_lock("deleting the superseded index objects")?;
    for id in superseded {
        repo.delete_index(id)?;
        report.index_removed += 1;
    }
    Ok(())
}

/// Step 7: delete the packs no index lists any more, then what is left on storage.
pub(super) fn delete_packs(
    repo: &Repository,
    g: &Gathered,
    plan: Plan,
    report: &mut PruneReport,
) -> Result<()> {
    crate::testhooks::pause_point("prune-delete");
    repo.ensure_lock("deleting packs")?;
    let doomed: Vec<PackId> = plan
        .fate
        .iter()
        .filter(|(_, f)| **f != Fate::Keep)
        .map(|(id, _)| *id)
        .filter(|id| g.stored.contains_key(id))
        .chain(plan.unindexed)
        .collect();
    doomed.par_iter().try_for_each(|id| repo.delete_pack(id))?;

    let after = repo.list_pack_objects()?;
    report.packs_after = after.len();
    report.bytes_after = after.iter().map(|l| l.size).sum();
    Ok(())
}
