//! Index objects and the compact index built from them.
//!
//! On storage an index object lists packs and, for each, the blobs it holds
//! with their offsets. For lookups all entries of one blob kind live in one
//! sorted array of 44-byte records (32-byte id, pack number, offset, length)
//! searched by binary search: no per-entry allocation and no hash-map
//! overhead. A small index (a million blobs cost about 44 MB) stays in
//! memory; a large one lives in a local file ([`table`], [`file`]) of the
//! same records, read one bucket at a time, so memory does not grow with
//! the repository.

use crate::format::error::FormatError;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::format::pack::BlobKind;
pub use crate::format::pack::IndexBlob;
use crate::id::{BlobId, IndexId, PackId};

pub mod file;
pub mod table;

pub(crate) use table::Entry;
use table::{ENTRY_SIZE, Starts};
pub use table::{FileTables, ReadAt};

/// Version of the index payload layout.
pub const INDEX_VERSION: u32 = 1;

/// One pack and its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    pub size: u64,
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub blobs: Vec<IndexBlob>,
}

/// The payload of an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexFile {
    pub version: u32,
    /// Index objects this one replaces (written by repair and prune).
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub supersedes: Vec<IndexId>,
    #[serde(deserialize_with = "crate::format::bounded::vec")]
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    pub fn new(packs: Vec<IndexPack>) -> Self {
        IndexFile {
            version: INDEX_VERSION,
            supersedes: Vec::new(),
            packs,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and checks internal consistency (entries inside their pack).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let f: IndexFile =
            postcard::from_bytes(bytes).map_err(|e| FormatError::syntax("an index", e))?;
        if f.version != INDEX_VERSION {
            return Err(FormatError::UnknownVersion {
                what: "index",
                found: f.version.into(),
            });
        }
        for p in &f.packs {
            for b in &p.blobs {
                if b.offset as u64 + b.length as u64 > p.size {
                    return Err(FormatError::Invalid(format!(
                        "blob {} lies outside pack {}",
                        b.id, p.id
                    )));
                }
            }
        }
        Ok(f)
    }
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    /// The pack's size as indexed: what a whole read of it may fetch.
    pub pack_size: u64,
}

/// All index objects merged, for lookups: entries in memory, and for a
/// large repository most of them in a file ([`FileTables`]) with only the
/// entries the file lacks in memory.
#[derive(Default)]
pub struct MemIndex {
    packs: Vec<(PackId, u64)>,
    pack_no: HashMap<PackId, u32>,
    data: Vec<Entry>,
    tree: Vec<Entry>,
    /// Per table: where each run of ids sharing their first bits starts, so a
    /// lookup searches a handful of entries instead of touching ~17 cache
    /// lines of a large sorted array (ids are uniformly random).
    data_starts: Starts,
    tree_starts: Starts,
    sorted: bool,
    base: Option<FileTables>,
}

/// The in-memory part of a finished index, taken out to be written to a file.
pub(crate) struct Drained {
    pub packs: Vec<(PackId, u64)>,
    pub data: Vec<Entry>,
    pub tree: Vec<Entry>,
}

impl MemIndex {
    /// An index whose entries are in `base`; [`MemIndex::add`] and
    /// [`MemIndex::finish`] then add the entries it lacks.
    pub fn with_base(base: FileTables) -> Self {
        MemIndex {
            base: Some(base),
            sorted: true,
            ..MemIndex::default()
        }
    }

    /// Adds every pack and blob of an index object. Call [`MemIndex::finish`] after the last.
    pub fn add(&mut self, file: &IndexFile) {
        let (mut data, mut tree) = (0, 0);
        for b in file.packs.iter().flat_map(|p| &p.blobs) {
            match b.kind {
                BlobKind::Data => data += 1,
                BlobKind::Tree => tree += 1,
            }
        }
        self.data.reserve(data);
        self.tree.reserve(tree);
        for p in &file.packs {
            let no = match self.pack_no.get(&p.id) {
                Some(&n) => n,
                None => {
                    let n = self.packs.len() as u32;
                    self.packs.push((p.id, p.size));
                    self.pack_no.insert(p.id, n);
                    n
                }
            };
            for b in &p.blobs {
                let e = Entry {
                    id: b.id.0,
                    pack: no,
                    offset: b.offset,
                    length: b.length,
                };
                match b.kind {
                    BlobKind::Data => self.data.push(e),
                    BlobKind::Tree => self.tree.push(e),
                }
            }
        }
        self.sorted = false;
    }

    /// Sorts for lookup; duplicates (the same blob in two packs, or a blob
    /// the file already holds) keep one entry.
    pub fn finish(&mut self) {
        for (v, kind) in [
            (&mut self.data, BlobKind::Data),
            (&mut self.tree, BlobKind::Tree),
        ] {
            v.sort_unstable_by(Entry::order);
            v.dedup_by(|a, b| a.id == b.id);
            if let Some(base) = &self.base {
                let t = base.table(kind);
                v.retain(|e| base.find(t, &e.id).is_none());
            }
            v.shrink_to_fit();
        }
        self.data_starts = Starts::build(&self.data);
        self.tree_starts = Starts::build(&self.tree);
        self.sorted = true;
    }

    /// Entries held in memory (what a builder spills to a file when large).
    pub(crate) fn in_memory(&self) -> usize {
        self.data.len() + self.tree.len()
    }

    /// Takes the in-memory part out of a finished index.
    pub(crate) fn drain(&mut self) -> Drained {
        self.pack_no = HashMap::new();
        self.data_starts = Starts::default();
        self.tree_starts = Starts::default();
        Drained {
            packs: std::mem::take(&mut self.packs),
            data: std::mem::take(&mut self.data),
            tree: std::mem::take(&mut self.tree),
        }
    }

    /// Whether most entries are in a file.
    pub(crate) fn has_base(&self) -> bool {
        self.base.is_some()
    }

    /// Takes the file-backed part out.
    pub(crate) fn take_base(&mut self) -> Option<FileTables> {
        self.base.take()
    }

    fn table(&self, kind: BlobKind) -> &[Entry] {
        debug_assert!(self.sorted || (self.data.is_empty() && self.tree.is_empty()));
        match kind {
            BlobKind::Data => &self.data,
            BlobKind::Tree => &self.tree,
        }
    }

    /// The in-memory entry for `id`.
    fn find(&self, kind: BlobKind, id: &BlobId) -> Option<&Entry> {
        let (table, starts) = match kind {
            BlobKind::Data => (&self.data, &self.data_starts),
            BlobKind::Tree => (&self.tree, &self.tree_starts),
        };
        let r = table.get(starts.range(&id.0))?;
        r.binary_search_by(|e| e.id.cmp(&id.0)).ok().map(|i| &r[i])
    }

    pub fn get(&self, kind: BlobKind, id: &BlobId) -> Option<Location> {
        let (e, pack) = match self.find(kind, id) {
            Some(e) => (*e, *self.packs.get(e.pack as usize)?),
            None => {
                let base = self.base.as_ref()?;
                let e = base.find(base.table(kind), &id.0)?;
                (e, base.pack(e.pack).map(|(p, s)| (PackId(p), s))?)
            }
        };
        Some(Location {
            pack: pack.0,
            offset: e.offset,
            length: e.length,
            pack_size: pack.1,
        })
    }

    pub(crate) fn contains(&self, kind: BlobKind, id: &BlobId) -> bool {
        self.find(kind, id).is_some()
            || self
                .base
                .as_ref()
                .is_some_and(|b| b.find(b.table(kind), &id.0).is_some())
    }

    /// Every pack named by some index, with its recorded size (a pack named
    /// by two index objects may come twice).
    pub(crate) fn packs(&self) -> impl Iterator<Item = (PackId, u64)> + '_ {
        let base = self.base.iter().flat_map(|b| {
            b.records(b.packs_at, b.packs, table::PACK_SIZE)
                .flat_map(|block| {
                    block
                        .chunks_exact(table::PACK_SIZE)
                        .map(|r| {
                            let (id, size) = table::split_pack(r);
                            (PackId(id), size)
                        })
                        .collect::<Vec<_>>()
                })
        });
        self.packs.iter().copied().chain(base)
    }

    /// Every pack holding a tree blob: few (tree and data blobs never share
    /// a pack, and trees are a small share), so this set stays small where
    /// the set of every pack would not.
    pub(crate) fn tree_packs(&self) -> std::collections::HashSet<PackId> {
        let mut out: std::collections::HashSet<PackId> = self
            .tree
            .iter()
            .filter_map(|e| self.packs.get(e.pack as usize).map(|p| p.0))
            .collect();
        if let Some(b) = &self.base {
            let mut numbers = std::collections::BTreeSet::new();
            for block in b.records(b.tree.at, b.tree.len, ENTRY_SIZE) {
                numbers.extend(
                    block
                        .chunks_exact(ENTRY_SIZE)
                        .map(|r| Entry::from_bytes(r).pack),
                );
            }
            out.extend(
                numbers
                    .into_iter()
                    .filter_map(|n| b.pack(n))
                    .map(|(id, _)| PackId(id)),
            );
        }
        out
    }

    pub(crate) fn blob_count(&self) -> usize {
        let base = self.base.as_ref().map_or(0, |b| b.data.len + b.tree.len);
        self.data.len() + self.tree.len() + base as usize
    }

    /// Every blob id of one kind, in order.
    pub(crate) fn ids(&self, kind: BlobKind) -> impl Iterator<Item = BlobId> + '_ {
        let base = self.base.iter().flat_map(move |b| {
            let t = b.table(kind);
            b.records(t.at, t.len, ENTRY_SIZE).flat_map(|block| {
                block
                    .chunks_exact(ENTRY_SIZE)
                    .map(|r| Entry::from_bytes(r).id)
                    .collect::<Vec<_>>()
            })
        });
        merge_sorted(self.table(kind).iter().map(|e| e.id), base).map(BlobId)
    }
}

/// Two ascending sequences as one.
fn merge_sorted<T: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests;
