//! Step 3, the part that reads: a used blob indexed in more than one place
//! keeps only the chosen copy, so that copy is read and verified before
//! the plan may drop the others.
//!
//! Index objects are written by clients, and on an append-only server a
//! client may be compromised: with the key it can upload packs of junk and
//! a well-formed index naming them as more copies of every blob. Choosing
//! by index entries alone, prune kept the junk (fully used packs are
//! preferred) and deleted the real packs. Duplicates are rare (a backup
//! racing another, an interrupted prune), so verifying the chosen copy of
//! each costs little; a copy that fails is set aside and another chosen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::index::IndexBlob;
use crate::format::pack::BlobKind;
use crate::id::{BlobId, PackId};
use crate::repository::{BlobRef, Fetch, Repository};

use super::PruneReport;
use super::mark::Gathered;
use super::plan::{Chosen, choose};

/// One indexed copy of a blob.
pub(super) type Copy = (PackId, IndexBlob);

/// Chooses one copy of each used blob as [`choose`] does, but verifies the
/// chosen copy of every blob with more than one indexed copy, and chooses
/// again without the copies that fail, which are returned too: the new
/// index must not list them again.
pub(super) fn choose_verified(
    repo: &Repository,
    g: &Gathered,
    used: &HashSet<(BlobKind, BlobId)>,
    cancel: &AtomicBool,
    report: &mut PruneReport,
) -> Result<(Chosen, HashSet<Copy>)> {
    let several = duplicated(g, used);
    let mut bad: HashSet<Copy> = HashSet::new();
    let mut sound: HashSet<Copy> = HashSet::new();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let (chosen, needed) = choose(g, used, &bad)?;
        let mut unchecked: BTreeMap<PackId, Vec<IndexBlob>> = BTreeMap::new();
        for (pack, blobs) in &needed {
            for b in blobs {
                if several.contains(&(b.kind, b.id)) && !sound.contains(&(*pack, *b)) {
                    unchecked.entry(*pack).or_default().push(*b);
                }
            }
        }
        if unchecked.is_empty() {
            report.copies_verified = sound.len();
            report.copies_damaged = bad.len();
            return Ok(((chosen, needed), bad));
        }
        let verdicts: Vec<(Copy, bool)> = unchecked
            .par_iter()
            .map(|(pack, blobs)| verify(repo, pack, blobs))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        for (copy, ok) in verdicts {
            if ok {
                sound.insert(copy);
            } else {
                bad.insert(copy);
            }
        }
    }
}

/// The used blobs indexed in more than one place (pack, offset, length).
fn duplicated(g: &Gathered, used: &HashSet<(BlobKind, BlobId)>) -> HashSet<(BlobKind, BlobId)> {
    let mut copies: HashMap<(BlobKind, BlobId), u32> = HashMap::new();
    for p in g.indexed.values() {
        for b in &p.blobs {
            if used.contains(&(b.kind, b.id)) {
                *copies.entry((b.kind, b.id)).or_default() += 1;
            }
        }
    }
    copies
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

/// Reads `blobs` of `pack`: whether each opens and holds the blob its entry
/// names. A storage error (the pack cannot be fetched at all) stops prune.
fn verify(repo: &Repository, pack: &PackId, blobs: &[IndexBlob]) -> Result<Vec<(Copy, bool)>> {
    let wanted: Vec<BlobRef> = blobs
        .iter()
        .map(|b| BlobRef {
            raw_len: Some(b.raw_length),
            ..BlobRef::from(b)
        })
        .collect();
    let mut verdicts = Vec::with_capacity(blobs.len());
    let mut next = blobs.iter();
    repo.load_blobs(pack, &wanted, Fetch::Span, |_, data| {
        if let Some(b) = next.next() {
            verdicts.push(((*pack, *b), data.is_ok()));
        }
        Ok(())
    })?;
    // A copy the loader never handed over counts as failed, so that the
    // next round chooses another instead of asking for it again.
    verdicts.extend(next.map(|b| ((*pack, *b), false)));
    Ok(verdicts)
}
