//! Steps 1 and 2 of prune: what is stored and indexed, and what the
//! snapshots use. Nothing is written or deleted here, so any error stops
//! prune with the repository untouched.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack, MemIndex};
use crate::format::pack::BlobKind;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::repository::{ObjectKind, Repository};

use super::PruneReport;

/// The index objects, every pack they list, and the packs on storage.
pub(super) struct Gathered {
    pub files: BTreeMap<IndexId, IndexFile>,
    pub index: MemIndex,
    /// Each indexed pack once, its blobs merged over every index object.
    pub indexed: BTreeMap<PackId, IndexPack>,
    /// Packs on storage and their sizes.
    pub stored: BTreeMap<PackId, u64>,
}

impl Gathered {
    /// Step 1: the indexes and the stored packs.
    pub(crate) fn load(repo: &Repository) -> Result<Gathered> {
        let files: BTreeMap<IndexId, IndexFile> = repo.load_index_files()?;
        let mut index = MemIndex::default();
        for f in files.values() {
            index.add(f);
        }
        index.finish();
        let stored: BTreeMap<PackId, u64> = repo
            .list_packs()?
            .into_iter()
            .map(|p| (p.id, p.size))
            .collect();
        let mut indexed: BTreeMap<PackId, IndexPack> = BTreeMap::new();
        for f in files.values() {
            for p in &f.packs {
                let e = indexed.entry(p.id).or_insert_with(|| IndexPack {
                    id: p.id,
                    size: p.size,
                    blobs: Vec::new(),
                });
                // Index objects may disagree on a pack's size (one written by a
                // compromised client, say): the stored size decides, so a lie
                // cannot make a sound pack unusable and then deleted.
                if stored.get(&p.id) == Some(&p.size) {
                    e.size = p.size;
                }
                e.blobs.extend_from_slice(&p.blobs);
            }
        }
        for p in indexed.values_mut() {
            p.blobs.sort_by_key(|b| (b.offset, b.length));
            p.blobs.dedup_by_key(|b| (b.offset, b.length));
        }
        Ok(Gathered {
            files,
            index,
            indexed,
            stored,
        })
    }
}

/// Step 2, mark. A snapshot that cannot be read might still need data: refuse.
pub(super) fn mark(
    repo: &Repository,
    index: &MemIndex,
    cancel: &AtomicBool,
    report: &mut PruneReport,
) -> Result<HashSet<(BlobKind, BlobId)>> {
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
    let used = reachable(repo, index, &roots, cancel)?;
    report.blobs_used = used.len();
    Ok(used)
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
