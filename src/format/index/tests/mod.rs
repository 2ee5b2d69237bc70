//! Index objects and the in-memory index: round trips, lookups, bounds.

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
