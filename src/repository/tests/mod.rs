//! Tests of the read path: loader, walker and typed objects together, on a
//! real local repository.

use std::path::{Path, PathBuf};

use super::{
    BlobError, BlobRef, Credentials, Fetch, InitOptions, Repository, Step, Visitor, Walker,
};
use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::repository::objects::pack_key;
use crate::repository::saver::BlobSaver;
use crate::storage::Location;

/// Options for test repositories: a KDF cheap enough for tests (password
/// `pw`); every library test that makes a repository starts from these.
pub(crate) fn test_options() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            m_cost: 8,
            t_cost: 1,
            p_cost: 1,
        },
        ..Default::default()
    }
}

/// A fresh repository in `dir/repo`.
pub(super) fn repo(dir: &Path) -> Repository {
    Repository::init(&Location::Local(dir.join("repo")), b"pw", &test_options()).unwrap()
}

/// The repository in `dir/repo` opened again, as by another process.
pub(super) fn reopen(dir: &Path) -> Repository {
    let password = Credentials::Password(b"pw".to_vec().into());
    Repository::open(&Location::Local(dir.join("repo")), &password).unwrap()
}

#[test]
fn a_repository_opens_again_on_its_memory_location() {
    let location = Location::memory();
    Repository::init(&location, b"pw", &test_options()).unwrap();
    assert!(Repository::init(&location, b"pw", &test_options()).is_err());
    let password = Credentials::Password(b"pw".to_vec().into());
    Repository::open(&location, &password).unwrap();
    assert!(matches!(
        Repository::open(&Location::memory(), &password),
        Err(Error::RepoNotFound { .. })
    ));
}

/// Stores `blobs` of one kind and returns their ids.
fn store(repo: &Repository, kind: BlobKind, blobs: &[Vec<u8>]) -> Vec<BlobId> {
    let index = repo.load_index().unwrap();
    BlobSaver::run(repo, &index, false, 1, |s| {
        blobs.iter().map(|b| Ok(s.save(kind, b)?.0)).collect()
    })
    .unwrap()
    .0
}

fn refs(index: &MemIndex, kind: BlobKind, ids: &[BlobId]) -> Vec<BlobRef> {
    ids.iter()
        .map(|id| {
            let l = index.get(kind, id).unwrap();
            BlobRef {
                kind,
                id: *id,
                offset: l.offset,
                length: l.length,
                raw_len: None,
            }
        })
        .collect()
}

/// Flips one byte of the stored pack at `offset`.
fn damage(dir: &Path, key: &str, offset: u64) {
    let path = dir.join("repo").join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn loader_hands_each_blob_or_its_own_error_and_names_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 3000 + i as usize]).collect();
    let ids = store(&repo, BlobKind::Data, &data);
    let index = repo.load_index().unwrap();
    let pack = index.get(BlobKind::Data, &ids[0]).unwrap().pack;
    let mut wanted = refs(&index, BlobKind::Data, &ids);
    let bad = wanted[1];
    damage(dir.path(), &pack_key(&pack), u64::from(bad.offset) + 100);
    wanted[2].raw_len = Some(1);
    for fetch in [Fetch::Span, Fetch::Whole] {
        let mut got = Vec::new();
        repo.load_blobs(&pack, &wanted, fetch, |b, r| {
            got.push((b.id, r));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 4, "one call per blob, past the damaged one");
        for (i, (id, r)) in got.iter().enumerate() {
            let want = wanted.iter().position(|w| w.id == *id).unwrap();
            match (want, r) {
                (1, Err(e @ BlobError::Damaged { .. })) => {
                    assert_eq!(e.key(), pack_key(&pack));
                }
                (2, Err(BlobError::Length { found, .. })) => assert_eq!(*found, data[2].len()),
                (w, Ok(d)) if w != 1 && w != 2 => assert_eq!(d, &data[w]),
                other => panic!("blob {i}: unexpected {other:?}"),
            }
        }
    }
    // A callback error stops the load at once.
    let mut calls = 0;
    let r = repo.load_blobs(&pack, &wanted, Fetch::Span, |_, _| {
        calls += 1;
        Err(Error::Interrupted)
    });
    assert!(matches!(r, Err(Error::Interrupted)) && calls == 1);
}

#[test]
fn scan_pack_reports_the_damage_and_opens_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let ids = store(&repo, BlobKind::Data, &[b"a".repeat(500), b"b".repeat(700)]);
    let index = repo.load_index().unwrap();
    let pack = index.get(BlobKind::Data, &ids[0]).unwrap().pack;
    let size = repo.list_packs().unwrap()[0].size;
    let clean = repo.scan_pack(&pack, size).unwrap();
    assert!(clean.name_matches && clean.error.is_none());
    assert_eq!(clean.entries.len(), 2);
    for e in &clean.entries {
        assert!(clean.open(&e.into()).is_ok());
    }
    let last = clean.entries.iter().max_by_key(|e| e.offset).unwrap();
    damage(dir.path(), clean.key(), u64::from(last.offset) + 5);
    let hurt = repo.scan_pack(&pack, size).unwrap();
    assert!(!hurt.name_matches);
    assert!(hurt.error.is_some());
    assert_eq!(hurt.entries.len(), 1);
    assert!(hurt.open(&BlobRef::from(&hurt.entries[0])).is_ok());
    assert!(matches!(
        hurt.open(&last.into()),
        Err(BlobError::Damaged { .. })
    ));
}

fn dir_node(name: &str, subtree: BlobId) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
    n.subtree = Some(subtree);
    n
}

fn file_node(name: &str) -> Node {
    Node::new(name.as_bytes().to_vec(), NodeKind::File)
}

/// `/a/{x, y}`, `/b` (a tree in no index), `/c`; `a` is stored twice
/// (as `a` and `d`) to share one tree.
fn snapshot_tree(repo: &Repository) -> (BlobId, BlobId) {
    let a = Tree::new(vec![file_node("x"), file_node("y")]).encode();
    let a_id = store(repo, BlobKind::Tree, &[a])[0];
    let lost = BlobId([7; 32]);
    let root = Tree::new(vec![
        dir_node("a", a_id),
        dir_node("b", lost),
        file_node("c"),
        dir_node("d", a_id),
    ]);
    (store(repo, BlobKind::Tree, &[root.encode()])[0], lost)
}

#[derive(Default)]
struct Seen {
    nodes: Vec<PathBuf>,
    damaged: Vec<(PathBuf, BlobId)>,
    skip: Option<&'static str>,
}

impl Visitor for Seen {
    fn node(&mut self, path: &Path, _node: &Node, _parent: &BlobId) -> Result<Step> {
        self.nodes.push(path.to_path_buf());
        Ok(match self.skip {
            Some(s) if path == Path::new(s) => Step::Skip,
            _ => Step::Descend,
        })
    }

    fn damaged(&mut self, dir: &Path, id: &BlobId, _error: Error) -> Result<()> {
        self.damaged.push((dir.to_path_buf(), *id));
        Ok(())
    }
}

#[test]
fn walker_goes_depth_first_in_tree_order_and_past_damage_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let (root, lost) = snapshot_tree(&repo);
    let index = repo.load_index().unwrap();
    let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();

    let mut all = Seen::default();
    Walker::new(&repo, &index)
        .walk(&root, Path::new("/"), &mut all)
        .unwrap();
    assert_eq!(
        all.nodes,
        paths(&["/a", "/a/x", "/a/y", "/b", "/c", "/d", "/d/x", "/d/y"])
    );
    assert_eq!(all.damaged, vec![(PathBuf::from("/b"), lost)]);

    let mut once = Seen {
        skip: Some("/a"),
        ..Default::default()
    };
    Walker::new(&repo, &index)
        .once()
        .walk(&root, Path::new("/"), &mut once)
        .unwrap();
    assert_eq!(once.nodes, paths(&["/a", "/b", "/c", "/d", "/d/x", "/d/y"]));

    // A closure visitor stops at the damaged tree.
    let mut met = Vec::new();
    let r = Walker::new(&repo, &index).cached(2).walk(
        &root,
        Path::new("/s"),
        &mut |p: &Path, _: &Node| {
            met.push(p.to_path_buf());
            Ok(Step::Descend)
        },
    );
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    assert_eq!(met, paths(&["/s/a", "/s/a/x", "/s/a/y", "/s/b"]));
}

#[test]
fn resolve_finds_nodes_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let (root, _) = snapshot_tree(&repo);
    let index = repo.load_index().unwrap();
    let (n, at) = repo.resolve(&index, root, "/a/y").unwrap();
    assert_eq!((n.name.as_slice(), at), (&b"y"[..], PathBuf::from("/a/y")));
    let (top, at) = repo.resolve(&index, root, "/").unwrap();
    assert_eq!((top.subtree, at), (Some(root), PathBuf::from("/")));
    let e = repo.resolve(&index, root, "/c/z").unwrap_err().to_string();
    assert!(e.contains("/c is not a directory"), "{e}");
    let e = repo.resolve(&index, root, "/q").unwrap_err().to_string();
    assert!(e.contains("repo ls SNAP /"), "{e}");
}

/// Blobs far apart in a pack are fetched by separate requests, near ones by
/// one, and each still comes out whole, in the order asked for.
#[test]
fn loader_fetches_far_apart_blobs_separately_and_near_ones_together() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    // Incompressible, so each entry keeps its 600 KiB.
    let data: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut b = vec![0u8; 600 << 10];
            let mut x = 0x9e37_79b9_u32.wrapping_mul(u32::from(i) + 1);
            for v in &mut b {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *v = x as u8;
            }
            b
        })
        .collect();
    let ids = store(&repo, BlobKind::Data, &data);
    let index = repo.load_index().unwrap();
    let pack = index.get(BlobKind::Data, &ids[0]).unwrap().pack;
    let all = refs(&index, BlobKind::Data, &ids);
    let mut by_offset = all.clone();
    by_offset.sort_by_key(|b| b.offset);
    let requests = |wanted: &[BlobRef]| {
        let before = repo.storage_stats().requests;
        let mut got = Vec::new();
        repo.load_blobs(&pack, wanted, Fetch::Span, |b, r| {
            got.push((b.id, r.unwrap()));
            Ok(())
        })
        .unwrap();
        for (w, (id, bytes)) in wanted.iter().zip(&got) {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert_eq!(w.id, *id);
            assert_eq!(bytes, &data[i]);
        }
        repo.storage_stats().requests - before
    };
    // First and last: 1.2 MiB apart.
    assert_eq!(requests(&[by_offset[3], by_offset[0]]), 2);
    // Neighbours, and neighbours with one skipped (600 KiB apart).
    assert_eq!(requests(&[by_offset[1], by_offset[0]]), 1);
    assert_eq!(requests(&[by_offset[0], by_offset[2]]), 1);
    assert_eq!(requests(&all), 1);
}
