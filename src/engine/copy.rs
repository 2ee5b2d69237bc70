//! `copy`: snapshots of one repository into another, every tree and data
//! blob decrypted from the source and saved under the destination's keys.
//!
//! Blob ids are keyed by each repository's own id key, so a blob gets a new
//! id in the destination and every tree that names it is rewritten. Chunks
//! are copied as they are (no re-chunking): two copies of the same data
//! deduplicate with each other, but not with the destination's own
//! backups, which cut chunks with its own keyed gear table.
//!
//! Before a snapshot's trees are rewritten, every data chunk below it that
//! is not copied yet is gathered and read a pack at a time, several packs
//! at once: a read per chunk would cost a round trip per small file on a
//! remote source. The list holds about 60 bytes per chunk of the snapshot.
//!
//! A copied snapshot records the source snapshot's `original` id (its own
//! id if it has none), so a snapshot already copied is recognised and
//! skipped, and nightly runs copy only what is new. Each snapshot is saved
//! only after its packs and index objects are stored, and the saver writes
//! an index object after every pack, so a copy killed midway resumes
//! without sending again what reached the destination, but for packs
//! stored in the instant before their index object.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ChunkRef, Tree};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::repository::objects::pack_key;
use crate::repository::saver::BlobSaver;
use crate::repository::{BlobError, BlobRef, Fetch, Repository};

/// One snapshot copied.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub source: String,
    /// The copy's id; `None` on a dry run.
    pub copy: Option<String>,
    pub time: chrono::DateTime<chrono::Utc>,
    pub paths: Vec<String>,
}

/// One snapshot the destination already had.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub source: String,
    pub copy: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub copied: Vec<Copied>,
    pub skipped: Vec<Skipped>,
    pub blobs_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
}

/// Source blob id to destination blob id, for everything copied so far in
/// this run: data shared by two snapshots is read and sent once.
#[derive(Default)]
struct Translated {
    trees: HashMap<BlobId, BlobId>,
    data: HashMap<BlobId, BlobId>,
}

/// Copies `wanted` (oldest first) from `src` into `dst`.
pub(crate) fn copy(
    src: (&Repository, &MemIndex),
    dst: (&Repository, &MemIndex),
    wanted: Vec<(SnapshotId, Snapshot)>,
    dry_run: bool,
    cancel: &AtomicBool,
) -> Result<CopyReport> {
    let (dst_repo, dst_index) = dst;
    // Which originals the destination holds, and under which id.
    let mut there: HashMap<SnapshotId, SnapshotId> = dst_repo
        .snapshots()?
        .into_iter()
        .map(|(id, s)| (s.original.unwrap_or(id), id))
        .collect();
    let mut report = CopyReport::default();
    let mut done = Translated::default();
    for (id, snap) in wanted {
        let original = snap.original.unwrap_or(id);
        if let Some(copy) = there.get(&original) {
            report.skipped.push(Skipped {
                source: id.to_hex(),
                copy: copy.to_hex(),
            });
            continue;
        }
        let (root, stats) = BlobSaver::run_indexing(dst_repo, dst_index, dry_run, 2, 1, |saver| {
            let mut c = Copier {
                src,
                saver,
                done: &mut done,
                cancel,
            };
            c.data_below(&snap.tree)?;
            c.tree(&snap.tree)
        })?;
        report.blobs_new += stats.blobs_new;
        report.bytes_new += stats.bytes_new;
        report.bytes_stored += stats.bytes_stored;
        let parent = snap.parent.and_then(|p| there.get(&p).copied());
        let copy = Snapshot {
            tree: root,
            original: Some(original),
            parent,
            ..snap.clone()
        };
        let new = if dry_run {
            None
        } else {
            let new = dst_repo.save_snapshot(&copy)?;
            there.insert(original, new);
            Some(new.to_hex())
        };
        report.copied.push(Copied {
            source: id.to_hex(),
            copy: new,
            time: snap.time,
            paths: snap.paths.clone(),
        });
    }
    Ok(report)
}

/// What a snapshot needs copied: its data chunks by pack, and the trees
/// and chunks already counted.
#[derive(Default)]
struct Wanted {
    by_pack: HashMap<PackId, Vec<BlobRef>>,
    trees: HashSet<BlobId>,
    chunks: HashSet<BlobId>,
}

struct Copier<'s, 'a> {
    src: (&'s Repository, &'s MemIndex),
    saver: &'s BlobSaver<'a>,
    done: &'s mut Translated,
    cancel: &'s AtomicBool,
}

impl Copier<'_, '_> {
    /// Copies tree `id` and everything below it; returns its new id. Each
    /// tree is read a second time here (after [`Copier::gather`]) rather
    /// than kept from the first read: from the cache or a local disk that
    /// costs a decode, while keeping them would hold a whole snapshot's
    /// trees in memory.
    fn tree(&mut self, id: &BlobId) -> Result<BlobId> {
        if let Some(t) = self.done.trees.get(id) {
            return Ok(*t);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let (repo, index) = self.src;
        let mut tree = repo.load_tree(index, id)?;
        for node in &mut tree.nodes {
            for chunk in &mut node.content {
                *chunk = self.chunk(chunk)?;
            }
            if let Some(sub) = node.subtree {
                node.subtree = Some(self.tree(&sub)?);
            }
        }
        let (new, _) = self.saver.save(BlobKind::Tree, &Tree::encode(&tree))?;
        self.done.trees.insert(*id, new);
        Ok(new)
    }

    /// Copies every data chunk below tree `root` that is not copied yet,
    /// before any tree is rewritten: gathered from the whole snapshot, a
    /// pack at a time (close ranges in one request, as a restore reads
    /// them), several packs at once. A request per chunk, or even per
    /// directory, would cost a round trip per small file or folder on a
    /// remote source.
    fn data_below(&mut self, root: &BlobId) -> Result<()> {
        let mut wanted = Wanted::default();
        self.gather(root, &mut wanted)?;
        let (repo, _) = self.src;
        let saver = self.saver;
        let packs: Vec<(PackId, Vec<BlobRef>)> = wanted.by_pack.into_iter().collect();
        let copied: Vec<Result<Vec<(BlobId, BlobId)>>> = repo.transfer_pool()?.install(|| {
            packs
                .par_iter()
                .map(|(pack, refs)| {
                    let mut out = Vec::with_capacity(refs.len());
                    repo.load_blobs(pack, refs, Fetch::Span, |b, data| {
                        let data = data.map_err(|e| damaged(pack, e))?;
                        let (id, _) = saver.save(BlobKind::Data, &data)?;
                        out.push((b.id, id));
                        Ok(())
                    })?;
                    Ok(out)
                })
                .collect()
        });
        for pairs in copied {
            self.done.data.extend(pairs?);
        }
        Ok(())
    }

    /// Adds the chunks below tree `id` (trees already copied excepted) to
    /// `wanted`.
    fn gather(&self, id: &BlobId, wanted: &mut Wanted) -> Result<()> {
        if self.done.trees.contains_key(id) || !wanted.trees.insert(*id) {
            return Ok(());
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let (repo, index) = self.src;
        let tree = repo.load_tree(index, id)?;
        for node in &tree.nodes {
            for c in &node.content {
                if self.done.data.contains_key(&c.id) || !wanted.chunks.insert(c.id) {
                    continue;
                }
                let loc = index
                    .get(BlobKind::Data, &c.id)
                    .ok_or_else(|| Error::NotFound {
                        what: format!("data blob {} in the index", c.id),
                        hint: "; the source repository is damaged: run `repo check` on it".into(),
                    })?;
                wanted.by_pack.entry(loc.pack).or_default().push(BlobRef {
                    kind: BlobKind::Data,
                    id: c.id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_len: Some(c.len),
                });
            }
            if let Some(sub) = &node.subtree {
                self.gather(sub, wanted)?;
            }
        }
        Ok(())
    }

    /// Chunk `c` as copied by [`Copier::data_below`], which copied every
    /// chunk below the tree being rewritten.
    fn chunk(&self, c: &ChunkRef) -> Result<ChunkRef> {
        let id = self.done.data.get(&c.id).ok_or_else(|| {
            Error::Internal(format!("data blob {} was not copied before its tree", c.id))
        })?;
        Ok(ChunkRef {
            id: *id,
            len: c.len,
        })
    }
}

/// A blob of `pack` that does not open as the index says.
fn damaged(pack: &PackId, e: BlobError) -> Error {
    match e {
        BlobError::Damaged { key, error, .. } => Error::corrupt(format!("pack {key}"), error),
        other => Error::corrupt(format!("pack {}", pack_key(pack)), other),
    }
}
