//! Sizes of snapshots: what a restore would write, and what the blobs they
//! reference cost in the repository.
//!
//! Trees are walked once each: the totals of a subtree are remembered by its
//! id, so a directory shared by many snapshots is counted in each of them
//! but loaded once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::{IndexFile, MemIndex};
use crate::format::pack::BlobKind;
use crate::format::tree::NodeKind;
use crate::id::BlobId;
use crate::repository::Repository;

/// What a set of snapshots holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotStats {
    pub snapshots: usize,
    /// Entries a restore of every one of the snapshots would create.
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Bytes of file content a restore of every one would write.
    pub restore_size: u64,
    /// Distinct blobs the snapshots reference.
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub raw_data: u64,
    pub raw_trees: u64,
    /// Their stored bytes (encrypted, compressed entries with headers).
    pub stored_size: u64,
    /// `restore_size / raw_data`: how much deduplication saves (>= 1 when
    /// files or snapshots share content).
    pub dedup_ratio: f64,
    /// `(raw_data + raw_trees) / stored_size`: how much compression saves,
    /// net of the 129 bytes of encryption and header per blob.
    pub compression_ratio: f64,
}

#[derive(Clone, Copy, Default)]
struct Sub {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    cancel: &'a AtomicBool,
    totals: HashMap<BlobId, Sub>,
    data: HashSet<BlobId>,
}

impl Walker<'_> {
    fn tree(&mut self, id: BlobId) -> Result<Sub> {
        if let Some(s) = self.totals.get(&id) {
            return Ok(*s);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let tree = self.repo.load_tree(self.index, &id)?;
        let mut s = Sub::default();
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => {
                    s.files += 1;
                    s.bytes += n.size;
                    self.data.extend(n.content.iter().map(|c| c.id));
                }
                NodeKind::Dir => {
                    s.dirs += 1;
                    if let Some(sub) = n.subtree {
                        let t = self.tree(sub)?;
                        s.files += t.files;
                        s.dirs += t.dirs;
                        s.others += t.others;
                        s.bytes += t.bytes;
                    }
                }
                _ => s.others += 1,
            }
        }
        self.totals.insert(id, s);
        Ok(s)
    }
}

/// Statistics of the snapshots with these root trees.
pub(crate) fn stats(
    repo: &Repository,
    files: &[IndexFile],
    roots: &[BlobId],
    cancel: &AtomicBool,
) -> Result<SnapshotStats> {
    let mut index = MemIndex::default();
    // (length, raw_length) of the first copy of every blob.
    let mut sizes: HashMap<(BlobKind, BlobId), (u32, u32)> = HashMap::new();
    for f in files {
        index.add(f);
        for p in &f.packs {
            for b in &p.blobs {
                sizes
                    .entry((b.kind, b.id))
                    .or_insert((b.length, b.raw_length));
            }
        }
    }
    index.finish();
    let mut w = Walker {
        repo,
        index: &index,
        cancel,
        totals: HashMap::new(),
        data: HashSet::new(),
    };
    let mut out = SnapshotStats {
        snapshots: roots.len(),
        ..Default::default()
    };
    for root in roots {
        let s = w.tree(*root)?;
        out.files += s.files;
        out.dirs += s.dirs;
        out.others += s.others;
        out.restore_size += s.bytes;
    }
    let missing = |kind: BlobKind, id: &BlobId| Error::NotFound {
        what: format!("{kind} blob {id} in the index"),
        hint: "; the repository is damaged: run `repo check`".into(),
    };
    for id in &w.data {
        let (len, raw) = sizes
            .get(&(BlobKind::Data, *id))
            .ok_or_else(|| missing(BlobKind::Data, id))?;
        out.data_blobs += 1;
        out.raw_data += *raw as u64;
        out.stored_size += *len as u64;
    }
    for id in w.totals.keys() {
        let (len, raw) = sizes
            .get(&(BlobKind::Tree, *id))
            .ok_or_else(|| missing(BlobKind::Tree, id))?;
        out.tree_blobs += 1;
        out.raw_trees += *raw as u64;
        out.stored_size += *len as u64;
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    out.dedup_ratio = ratio(out.restore_size, out.raw_data);
    out.compression_ratio = ratio(out.raw_data + out.raw_trees, out.stored_size);
    Ok(out)
}
