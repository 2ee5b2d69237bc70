//! Step 3 of prune: choose one copy of each used blob (preferring the
//! packs that are the most used) and decide each pack's fate. Pure
//! bookkeeping but for listing young packs: nothing is changed here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::format::index::{IndexBlob, IndexPack};
use crate::format::pack::BlobKind;
use crate::id::{BlobId, PackId};
use crate::repository::Repository;

use super::locked::Locked;
use super::mark::Gathered;
use super::verify::{Copy, choose_verified};
use super::{PruneReport, unindexed_grace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Keep,
    Repack,
    Remove,
}

/// What prune will do to each pack.
pub(super) struct Plan {
    /// Per pack, the chosen copies it holds.
    pub needed: BTreeMap<PackId, Vec<IndexBlob>>,
    pub fate: BTreeMap<PackId, Fate>,
    /// Packs on storage in no index that are deleted.
    pub unindexed: Vec<PackId>,
    /// Packs on storage in no index kept because they may still be locked.
    pub locked_unindexed: Vec<PackId>,
    /// Packs no snapshot needs, kept only until their lock ends: their
    /// locks are not extended.
    pub expiring: Vec<PackId>,
    /// Packs whose chosen copies are copied into new packs.
    pub repack: Vec<PackId>,
    /// Indexed copies found damaged: left out of the new index.
    pub damaged: HashSet<Copy>,
}

impl Plan {
    /// Step 3: choose copies (verified where there are several, see
    /// [`super::verify`]) and classify. Packs missing from storage, or with
    /// another size than indexed, hold no usable copy. `grace`: keep young
    /// unindexed packs (see [`unindexed_grace`]).
    pub(crate) fn decide(
        repo: &Repository,
        g: &Gathered,
        used: &HashSet<(BlobKind, BlobId)>,
        options: (f64, bool, &AtomicBool),
        report: &mut PruneReport,
    ) -> Result<Plan> {
        let (max_unused_percent, grace, cancel) = options;
        let ((chosen, needed), damaged) = choose_verified(repo, g, used, cancel, report)?;
        let mut fate = classify(g, &chosen, &needed, max_unused_percent, report);
        let locked = Locked::find(repo, g, &fate)?;
        let mut expiring = locked.keep(g, &mut fate, report);
        let count = |f: Fate| fate.values().filter(|&&x| x == f).count();
        report.packs_removed = count(Fate::Remove);
        report.packs_repacked = count(Fate::Repack);
        report.packs_kept = count(Fate::Keep);
        let mut unindexed: Vec<PackId> = g
            .stored
            .keys()
            .filter(|id| !g.indexed.contains_key(id))
            .copied()
            .collect();
        if grace && !unindexed.is_empty() {
            let young = young_packs(repo)?;
            let before = unindexed.len();
            unindexed.retain(|id| !young.contains(id));
            report.packs_unindexed_kept = before - unindexed.len();
        }
        let locked_unindexed = locked.keep_unindexed(g, &mut unindexed, report);
        expiring.extend(&locked_unindexed);
        report.packs_unindexed = unindexed.len();
        let repack: Vec<PackId> = fate
            .iter()
            .filter(|(_, f)| **f == Fate::Repack)
            .map(|(id, _)| *id)
            .collect();
        Ok(Plan {
            needed,
            fate,
            unindexed,
            locked_unindexed,
            expiring,
            repack,
            damaged,
        })
    }

    /// Whether the index must be rewritten. Unusable packs hold no chosen
    /// copy, so they are never kept; damaged entries are left out.
    pub(crate) fn rewrite_index(&self) -> bool {
        self.fate.values().any(|f| *f != Fate::Keep) || !self.damaged.is_empty()
    }

    /// The packs kept as they are, without the entries found damaged.
    pub(crate) fn kept<'a>(&'a self, g: &'a Gathered) -> impl Iterator<Item = IndexPack> + 'a {
        g.indexed
            .values()
            .filter(|p| self.fate.get(&p.id) == Some(&Fate::Keep))
            .map(|p| IndexPack {
                id: p.id,
                size: p.size,
                blobs: p
                    .blobs
                    .iter()
                    .filter(|b| !self.damaged.contains(&(p.id, **b)))
                    .copied()
                    .collect(),
            })
    }

    /// A dry run's report: what repacking would copy and what would remain.
    pub(crate) fn estimate(&self, repo: &Repository, g: &Gathered, report: &mut PruneReport) {
        let repack_bytes: u64 = self
            .repack
            .iter()
            .flat_map(|id| self.needed.get(id).into_iter().flatten())
            .map(|b| b.length as u64)
            .sum();
        let kept_bytes: u64 = self
            .fate
            .iter()
            .filter(|(_, f)| **f == Fate::Keep)
            .map(|(id, _)| id)
            .chain(&self.locked_unindexed)
            .filter_map(|id| g.stored.get(id))
            .sum();
        report.blobs_repacked = self
            .repack
            .iter()
            .map(|id| self.needed.get(id).map_or(0, Vec::len) as u64)
            .sum();
        report.bytes_repacked = repack_bytes;
        let pack_size = u64::from(repo.config().pack_size).max(1);
        report.packs_after = report.packs_kept
            + report.packs_unindexed_kept
            + self.locked_unindexed.len()
            + repack_bytes.div_ceil(pack_size) as usize;
        report.bytes_after = kept_bytes + repack_bytes;
    }
}

/// Chosen pack per used blob, and per pack the chosen copies it holds.
pub(super) type Chosen = (
    HashMap<(BlobKind, BlobId), PackId>,
    BTreeMap<PackId, Vec<IndexBlob>>,
);

/// One copy of each used blob, from the most used usable packs first, never
/// one of the `bad` copies nor an entry that would end past its pack.
pub(super) fn choose(
    g: &Gathered,
    used: &HashSet<(BlobKind, BlobId)>,
    bad: &HashSet<Copy>,
) -> Result<Chosen> {
    let usable = |p: &IndexPack| g.stored.get(&p.id) == Some(&p.size);
    let mut order: Vec<&IndexPack> = g.indexed.values().filter(|p| usable(p)).collect();
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
            let fits = u64::from(b.offset) + u64::from(b.length) <= p.size;
            if used.contains(&key)
                && !chosen.contains_key(&key)
                && fits
                && !bad.contains(&(p.id, *b))
            {
                chosen.insert(key, p.id);
                needed.entry(p.id).or_default().push(*b);
            }
        }
    }
    if let Some((kind, id)) = used.iter().find(|k| !chosen.contains_key(k)) {
        return Err(Error::corrupt(
            format!("{kind} blob {id}"),
            "a snapshot needs it but every pack holding it is missing, has the wrong size or holds a damaged copy; nothing was deleted. `repo check --read-data` says more",
        ));
    }
    Ok((chosen, needed))
}

/// Each indexed pack's fate, counting the unused entries on the way.
fn classify(
    g: &Gathered,
    chosen: &HashMap<(BlobKind, BlobId), PackId>,
    needed: &BTreeMap<PackId, Vec<IndexBlob>>,
    max_unused_percent: f64,
    report: &mut PruneReport,
) -> BTreeMap<PackId, Fate> {
    let mut fate: BTreeMap<PackId, Fate> = BTreeMap::new();
    for p in g.indexed.values() {
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
            if unused > 0 && unused as f64 * 100.0 > max_unused_percent * p.size as f64 {
                Fate::Repack
            } else {
                Fate::Keep
            }
        };
        fate.insert(p.id, f);
    }
    fate
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
