//! Index objects and the compact in-memory index.
//!
//! On storage an index object lists packs and, for each, the blobs it holds
//! with their offsets. In memory all entries of one blob kind live in one
//! sorted array of 44-byte records (32-byte id, pack number, offset, length)
//! searched by binary search: no per-entry allocation and no hash-map
//! overhead, so a million blobs cost about 44 MB.

use crate::format::error::FormatError;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::format::pack::BlobKind;
pub use crate::format::pack::IndexBlob;
use crate::id::{BlobId, IndexId, PackId};

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
}

#[derive(Clone, Copy)]
struct Entry {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    length: u32,
}

impl Entry {
    fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.id[..8]);
        u64::from_be_bytes(p)
    }
}

/// All index objects merged, for lookups.
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
}

/// Bucket starts over the leading `bits` bits of sorted ids.
#[derive(Default)]
struct Starts {
    bits: u32,
    starts: Vec<u32>,
}

impl Starts {
    fn build(table: &[Entry]) -> Self {
        // About one id per bucket, at most 2^16 buckets (256 KiB).
        let bits = (usize::BITS - table.len().leading_zeros()).clamp(1, 16);
        let mut starts = vec![0u32; (1 << bits) + 1];
        for e in table {
            starts[Self::bucket(&e.id, bits) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        Starts { bits, starts }
    }

    fn bucket(id: &[u8; 32], bits: u32) -> usize {
        (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - bits)) as usize
    }

    /// The part of the table that can hold `id`.
    fn range(&self, id: &[u8; 32]) -> std::ops::Range<usize> {
        if self.starts.is_empty() {
            return 0..0;
        }
        let b = Self::bucket(id, self.bits);
        self.starts[b] as usize..self.starts[b + 1] as usize
    }
}

impl MemIndex {
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

    /// Sorts for lookup; duplicates (the same blob in two packs) keep one entry.
    pub fn finish(&mut self) {
        for v in [&mut self.data, &mut self.tree] {
            // Ids are uniformly random, so their first 8 bytes as an integer
            // almost always decide: a register compare instead of a memcmp call.
            v.sort_unstable_by(|a, b| a.prefix().cmp(&b.prefix()).then_with(|| a.id.cmp(&b.id)));
            v.dedup_by(|a, b| a.id == b.id);
            v.shrink_to_fit();
        }
        self.data_starts = Starts::build(&self.data);
        self.tree_starts = Starts::build(&self.tree);
        self.sorted = true;
    }

    fn table(&self, kind: BlobKind) -> &[Entry] {
        debug_assert!(self.sorted || (self.data.is_empty() && self.tree.is_empty()));
        match kind {
            BlobKind::Data => &self.data,
            BlobKind::Tree => &self.tree,
        }
    }

    /// Position of `id` in its table.
    fn find(&self, kind: BlobKind, id: &BlobId) -> Option<usize> {
        let (table, starts) = match kind {
            BlobKind::Data => (&self.data, &self.data_starts),
            BlobKind::Tree => (&self.tree, &self.tree_starts),
        };
        let r = starts.range(&id.0);
        let at = r.start;
        table
            .get(r)?
            .binary_search_by(|e| e.id.cmp(&id.0))
            .ok()
            .map(|i| at + i)
    }

    pub fn get(&self, kind: BlobKind, id: &BlobId) -> Option<Location> {
        let e = self.table(kind)[self.find(kind, id)?];
        Some(Location {
            pack: self.packs[e.pack as usize].0,
            offset: e.offset,
            length: e.length,
        })
    }

    pub(crate) fn contains(&self, kind: BlobKind, id: &BlobId) -> bool {
        self.find(kind, id).is_some()
    }

    /// Every pack named by some index, with its recorded size.
    pub(crate) fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    pub(crate) fn blob_count(&self) -> usize {
        self.data.len() + self.tree.len()
    }

    /// Every blob id of one kind.
    pub(crate) fn ids(&self, kind: BlobKind) -> impl Iterator<Item = BlobId> + '_ {
        self.table(kind).iter().map(|e| BlobId(e.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> IndexFile {
        IndexFile::new(vec![IndexPack {
            id: PackId([1; 32]),
            size: 1000,
            blobs: vec![
                IndexBlob {
                    kind: BlobKind::Data,
                    id: BlobId([2; 32]),
                    offset: 0,
                    length: 500,
                    raw_length: 900,
                },
                IndexBlob {
                    kind: BlobKind::Tree,
                    id: BlobId([3; 32]),
                    offset: 500,
                    length: 500,
                    raw_length: 10,
                },
            ],
        }])
    }

    #[test]
    fn encode_decode_and_lookup() {
        let f = sample();
        let g = IndexFile::decode(&f.encode()).unwrap();
        assert_eq!(f, g);
        let mut m = MemIndex::default();
        m.add(&g);
        m.add(&g);
        m.finish();
        assert_eq!(m.blob_count(), 2);
        assert_eq!(m.get(BlobKind::Data, &BlobId([2; 32])).unwrap().length, 500);
        assert!(m.get(BlobKind::Data, &BlobId([3; 32])).is_none());
        assert!(m.contains(BlobKind::Tree, &BlobId([3; 32])));
        // README "Memory" and issue 14 count on 44 bytes per indexed blob.
        assert_eq!(std::mem::size_of::<Entry>(), 44);
    }

    #[test]
    fn out_of_pack_entry_rejected() {
        let mut f = sample();
        f.packs[0].size = 900;
        assert!(IndexFile::decode(&f.encode()).is_err());
    }

    proptest! {
        /// Every stored id is found where it was put, and absent ids are not,
        /// whatever the bucket table's size and however ids cluster.
        #[test]
        fn lookups_find_exactly_what_was_added(
            ids in proptest::collection::btree_set(any::<[u8; 32]>(), 0..3000),
            probes in proptest::collection::vec(any::<[u8; 32]>(), 0..50),
            clustered in any::<bool>(),
        ) {
            let ids: Vec<[u8; 32]> = ids
                .into_iter()
                .map(|mut id| {
                    if clustered {
                        id[..3].fill(0xff);
                    }
                    id
                })
                .collect();
            let blobs: Vec<IndexBlob> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| IndexBlob {
                    kind: BlobKind::Data,
                    id: BlobId(*id),
                    offset: i as u32,
                    length: 1,
                    raw_length: 1,
                })
                .collect();
            let mut m = MemIndex::default();
            m.add(&IndexFile::new(vec![IndexPack {
                id: PackId([1; 32]),
                size: u64::MAX,
                blobs,
            }]));
            m.finish();
            for (i, id) in ids.iter().enumerate() {
                let loc = m.get(BlobKind::Data, &BlobId(*id));
                prop_assert_eq!(loc.map(|l| l.offset), Some(i as u32));
                prop_assert!(!m.contains(BlobKind::Tree, &BlobId(*id)));
            }
            for p in &probes {
                prop_assert_eq!(m.contains(BlobKind::Data, &BlobId(*p)), ids.contains(p));
            }
        }

        #[test]
        fn truncated_or_random_never_panics(cut in 0usize..200, data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let enc = sample().encode();
            let _ = IndexFile::decode(&enc[..cut.min(enc.len())]);
            let _ = IndexFile::decode(&data);
        }
    }
}
