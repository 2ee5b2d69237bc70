//! The engines together, in process, on one repository in memory
//! (object_store's InMemory through `Location::memory()`): what a backup
//! stores, restore gives back byte for byte; check finds an object damaged
//! behind the repository's back; prune keeps every blob a snapshot still
//! needs. The CLI suite (`tests/cli`) checks the same through the binary;
//! here a failure points at the engine, with no process, exit code or JSON
//! in between, and each test takes seconds, not minutes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use rand::RngCore;

use crate::codec::chunker::ChunkerParams;
use crate::engine::archive::{self, BackupOptions, Excludes};
use crate::engine::check::{self, CheckReport, ReadData};
use crate::engine::progress::Silent;
use crate::engine::prune::{self, PruneOptions};
use crate::engine::restore::{self, RestoreOptions};
use crate::id::SnapshotId;
use crate::repository::{InitOptions, ObjectKind, Repository};
use crate::storage::{Location, Storage};

/// Never set: these tests run to the end.
static NOT_CANCELLED: AtomicBool = AtomicBool::new(false);

/// A fresh repository at `location` (in memory), with a KDF cheap enough
/// for tests and small chunks, so small files make many blobs.
fn new_repository(location: &Location) -> Repository {
    let opts = InitOptions {
        chunk_sizes: ChunkerParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        },
        ..crate::repository::tests::test_options()
    };
    Repository::init(location, b"pw", &opts).unwrap()
}

/// `len` random bytes, so chunks neither compress nor deduplicate.
fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A small tree with several chunks, an empty file, a nested folder, a
/// symlink and unusual modes.
fn make_source(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("big.bin"), random(1 << 20)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("sub/note.txt"), b"hello\n").unwrap();
    fs::write(root.join("sub/deeper/data.bin"), random(300_000)).unwrap();
    fs::set_permissions(root.join("sub/note.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("sub/note.txt", root.join("link")).unwrap();
}

fn backup(repo: &Repository, src: &Path) -> SnapshotId {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        excludes: Excludes::new(&[], &[], false).unwrap(),
        one_file_system: false,
        dry_run: false,
        tags: Vec::new(),
        host: None,
        parent: None,
        force: false,
        scan: false,
        in_flight: 1,
        time: None,
        cancel: &NOT_CANCELLED,
    };
    let r = archive::backup(repo, &opts, &Silent).unwrap();
    assert!(r.errors.is_empty(), "backup errors: {:?}", r.errors);
    r.snapshot.expect("not a dry run, so a snapshot")
}

/// Restores snapshot `id` below `target`; returns where `src` ended up.
fn restore_to(repo: &Repository, id: SnapshotId, src: &Path, target: &Path) -> PathBuf {
    let (_, snap) = repo.find_snapshot(&id.to_hex()).unwrap();
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        sub_path: "/".into(),
        include: None,
        exclude: None,
        verify: true,
        delete: false,
        archive: false,
        cancel: &NOT_CANCELLED,
        damaged: BTreeMap::new(),
        protect: Vec::new(),
        confirm: &|_| Ok(true),
    };
    let index = repo.load_index().unwrap();
    let r = restore::restore(repo, &index, snap.tree, &opts, &Silent).unwrap();
    assert!(r.errors.is_empty(), "restore errors: {:?}", r.errors);
    target.join(src.strip_prefix("/").unwrap())
}

/// Every entry below `root`: its mode and its bytes (file) or target (link).
fn listing(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let content = if md.is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if md.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.insert(rel, (md.permissions().mode(), content));
        }
    }
    out
}

fn check_all(repo: &Repository) -> CheckReport {
    check::check(repo, ReadData::All, &Silent, &NOT_CANCELLED).unwrap()
}

#[test]
fn backup_then_restore_gives_back_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repository(&Location::memory());
    let src = dir.path().join("src");
    make_source(&src);
    let id = backup(&repo, &src);
    let copy = restore_to(&repo, id, &src, &dir.path().join("target"));
    assert_eq!(listing(&src), listing(&copy));
    let report = check_all(&repo);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.packs_read >= 1);
}

#[test]
fn check_names_a_pack_damaged_in_storage() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::memory();
    let repo = new_repository(&location);
    let src = dir.path().join("src");
    make_source(&src);
    backup(&repo, &src);
    // The same objects, behind the repository's back (a memory location's
    // clones share one store).
    let storage = Storage::open(&location.clone(), false).unwrap();
    let pack_id = repo.list_ids(ObjectKind::Pack).unwrap().remove(0);
    let victim = ObjectKind::Pack.key(&pack_id);
    let mut bytes = storage.get(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    storage.put(&victim, bytes).unwrap();

    let report = check_all(&repo);
    assert!(
        report.errors.iter().any(|p| p.object.contains(&pack_id)),
        "check did not name {victim}: {:?}",
        report.errors
    );
}

#[test]
fn prune_frees_what_was_forgotten_and_keeps_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repository(&Location::memory());
    let src = dir.path().join("src");
    make_source(&src);
    let old = backup(&repo, &src);
    // The second snapshot no longer has big.bin but has a new file.
    fs::remove_file(src.join("big.bin")).unwrap();
    fs::write(src.join("new.bin"), random(512 << 10)).unwrap();
    let kept = backup(&repo, &src);
    repo.delete_snapshot(&old).unwrap();

    let opts = PruneOptions {
        max_unused_percent: 0.0,
        dry_run: false,
        cancel: &NOT_CANCELLED,
    };
    let r = prune::prune(&repo, &opts).unwrap();
    assert_eq!(r.snapshots, 1);
    assert!(r.blobs_unused > 0, "big.bin's chunks are unused: {r:?}");
    assert!(
        r.packs_removed + r.packs_repacked > 0,
        "nothing freed: {r:?}"
    );
    assert!(r.bytes_after < r.bytes_before, "{r:?}");

    let report = check_all(&repo);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let copy = restore_to(&repo, kept, &src, &dir.path().join("target"));
    assert_eq!(listing(&src), listing(&copy));
}
