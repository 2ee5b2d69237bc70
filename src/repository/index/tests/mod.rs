//! The file-backed index against the in-memory one, and the kept file's
//! checks: reused when whole and current, rebuilt when damaged or stale.

use std::collections::BTreeSet;
use std::path::Path;

use super::build::IndexBuilder;
use super::open;
use super::write::FILE_NAME;
use crate::format::index::{IndexBlob, IndexFile, IndexPack, MemIndex};
use crate::format::pack::BlobKind;
use crate::id::{BlobId, IndexId, PackId};

const REPO: [u8; 32] = [7; 32];

/// A pseudo-random 32-byte id from a number.
fn id(n: u64) -> [u8; 32] {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

/// Pack `p` of index object `i`: 40 blobs, one in five a tree.
fn pack(i: u64, p: u64) -> IndexPack {
    IndexPack {
        id: PackId(id(1_000_000 + i * 10 + p)),
        size: 1 << 20,
        blobs: (0..40u64)
            .map(|b| {
                let n = i * 1000 + p * 40 + b;
                IndexBlob {
                    kind: if n.is_multiple_of(5) {
                        BlobKind::Tree
                    } else {
                        BlobKind::Data
                    },
                    id: BlobId(id(n)),
                    offset: (b * 100) as u32,
                    length: 100,
                    raw_length: 100,
                }
            })
            .collect(),
    }
}

/// Index object `i`: its own 3 packs and, from the second object on, the
/// previous object's first pack again (as a superseding index lists it), so
/// its blobs are named twice.
fn object(i: u64) -> IndexFile {
    let mut packs: Vec<IndexPack> = (0..3).map(|p| pack(i, p)).collect();
    if i > 0 {
        packs.push(pack(i - 1, 0));
    }
    IndexFile::new(packs)
}

fn build(
    limit: usize,
    dir: Option<&Path>,
    base: Option<open::Opened>,
    objects: &[u64],
) -> MemIndex {
    let mut b = IndexBuilder::new(REPO, limit, dir, base);
    for &i in objects {
        b.add(IndexId(id(i)), &object(i)).unwrap();
    }
    b.finish().unwrap()
}

/// Both indexes answer every lookup alike and list the same ids.
fn assert_same(a: &MemIndex, b: &MemIndex, probes: u64) {
    assert_eq!(a.blob_count(), b.blob_count());
    for kind in [BlobKind::Data, BlobKind::Tree] {
        assert_eq!(
            a.ids(kind).collect::<Vec<_>>(),
            b.ids(kind).collect::<Vec<_>>()
        );
        for n in 0..probes {
            let x = BlobId(id(n));
            assert_eq!(a.get(kind, &x), b.get(kind, &x), "blob {n}");
            assert_eq!(a.contains(kind, &x), b.contains(kind, &x));
        }
    }
    let packs = |m: &MemIndex| m.packs().collect::<BTreeSet<_>>();
    assert_eq!(packs(a), packs(b));
    assert_eq!(a.tree_packs(), b.tree_packs());
}

fn listed(objects: impl IntoIterator<Item = u64>) -> BTreeSet<IndexId> {
    objects.into_iter().map(|i| IndexId(id(i))).collect()
}

#[test]
fn a_file_backed_index_answers_like_the_in_memory_one() {
    let all: Vec<u64> = (0..12).collect();
    let mem = build(1 << 20, None, None, &all);
    assert!(!mem.has_base());
    assert_eq!(mem.blob_count(), 12 * 120);
    // One blob in five is a tree: every pack holds some.
    assert_eq!(mem.tree_packs().len(), 12 * 3);
    for limit in [1, 50, 700] {
        let file = build(limit, None, None, &all);
        assert!(file.has_base(), "limit {limit}");
        assert_same(&mem, &file, 12_200);
    }
}

#[test]
fn a_kept_file_is_reused_with_new_objects_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    build(100, Some(dir.path()), None, &[0, 1, 2, 3, 4]);
    // One new index object: the file is the base, the object the overlay.
    let opened = open::open(&path, &REPO, &listed(0..6)).unwrap();
    assert_eq!(opened.sources, listed(0..5).into_iter().collect::<Vec<_>>());
    let reused = build(1000, Some(dir.path()), Some(opened), &[5]);
    assert!(reused.has_base());
    assert_same(
        &build(1 << 20, None, None, &[0, 1, 2, 3, 4, 5]),
        &reused,
        700,
    );
    // Enough new entries (a quarter of the limit): merged into a new file.
    let opened = open::open(&path, &REPO, &listed(0..8)).unwrap();
    let merged = build(400, Some(dir.path()), Some(opened), &[5, 6, 7]);
    assert_same(
        &build(1 << 20, None, None, &(0..8).collect::<Vec<_>>()),
        &merged,
        900,
    );
    let opened = open::open(&path, &REPO, &listed(0..8)).unwrap();
    assert_eq!(opened.sources.len(), 8);
}

#[test]
fn a_damaged_stale_or_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    build(100, Some(dir.path()), None, &[0, 1, 2, 3]);
    assert!(open::open(&path, &REPO, &listed(0..4)).is_ok());
    // Built from an index object that no longer exists (pruned): stale.
    let why = open::open(&path, &REPO, &listed(1..4)).err().unwrap();
    assert!(why.contains("no longer exist"), "{why}");
    assert!(open::open(&path, &[8; 32], &listed(0..4)).is_err());
    let bytes = std::fs::read(&path).unwrap();
    for at in [0, 50, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            open::open(&path, &REPO, &listed(0..4)).is_err(),
            "byte {at}"
        );
    }
    std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
    assert!(open::open(&path, &REPO, &listed(0..4)).is_err());
}

mod generate;
