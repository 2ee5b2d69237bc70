//! The cache trusts nothing it reads, removes what the repository no longer
//! has, and never touches what is not its own.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::format::index::MemIndex;
use crate::repository::tests::test_options;
use crate::repository::{BlobRef, CacheUse, Credentials, Fetch, Repository};
use crate::storage::Location;

fn id() -> RepoId {
    RepoId([7; 32])
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(hash::object_hash(bytes))
}

fn set_mtime(path: &Path, age: Duration) {
    let t = SystemTime::now() - age;
    let f = File::open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

#[test]
fn opening_tags_the_root_and_keeps_the_directories_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    Cache::open(&root, &id(), false).unwrap();
    let tag = fs::read_to_string(root.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    let repo_dir = root.join(id().to_hex());
    for d in [root.clone(), repo_dir.clone(), repo_dir.join("data")] {
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert!(repo_dir.join(USED).is_file());
}

#[test]
fn an_entry_is_returned_only_while_it_hashes_to_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path(), &id(), false).unwrap();
    let bytes = b"sealed snapshot bytes".to_vec();
    let hex = hex_of(&bytes);
    assert_eq!(c.get(ObjectKind::Snapshot, &hex, 1 << 20), None);
    c.put(ObjectKind::Snapshot, &hex, &[&bytes[..5], &bytes[5..]]);
    assert_eq!(
        c.get(ObjectKind::Snapshot, &hex, 1 << 20),
        Some(bytes.clone())
    );
    // Over the kind's limit: refused unread, but left for a later read.
    assert_eq!(c.get(ObjectKind::Snapshot, &hex, 4), None);
    // Damaged on disk: refused and removed.
    let path = c.path(ObjectKind::Snapshot, &hex);
    fs::write(&path, b"sealed snapshot bytez").unwrap();
    assert_eq!(c.get(ObjectKind::Snapshot, &hex, 1 << 20), None);
    assert!(!path.exists());
    assert_eq!(
        c.report(),
        CacheReport {
            cache_hits: 1,
            cache_misses: 3
        }
    );
}

#[test]
fn a_link_planted_as_an_entry_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(&dir.path().join("c"), &id(), false).unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"not for the cache").unwrap();
    let hex = hex_of(b"not for the cache");
    std::os::unix::fs::symlink(&secret, c.path(ObjectKind::Index, &hex)).unwrap();
    assert_eq!(c.get(ObjectKind::Index, &hex, 1 << 20), None);
    assert!(secret.exists());
}

#[test]
fn refreshing_reads_nothing_but_still_writes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"index".to_vec();
    let hex = hex_of(&bytes);
    let c = Cache::open(dir.path(), &id(), true).unwrap();
    c.put(ObjectKind::Index, &hex, &[&bytes]);
    assert_eq!(c.get(ObjectKind::Index, &hex, 1 << 20), None);
    let c = Cache::open(dir.path(), &id(), false).unwrap();
    assert_eq!(c.get(ObjectKind::Index, &hex, 1 << 20), Some(bytes));
}

#[test]
fn retain_removes_what_the_listing_no_longer_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path(), &id(), false).unwrap();
    let (a, b) = (b"a".to_vec(), b"b".to_vec());
    for x in [&a, &b] {
        c.put(ObjectKind::Snapshot, &hex_of(x), &[x]);
        c.put(ObjectKind::Pack, &hex_of(x), &[x]);
    }
    let snaps = c.dir.join("snapshots");
    let (fresh_tmp, old_tmp) = (snaps.join(".tmp-1"), snaps.join(".tmp-2"));
    fs::write(&fresh_tmp, b"being written").unwrap();
    fs::write(&old_tmp, b"left by a crash").unwrap();
    set_mtime(&old_tmp, Duration::from_secs(7200));
    let keep: HashSet<String> = [hex_of(&a)].into();
    c.retain(ObjectKind::Snapshot, &keep);
    c.retain(ObjectKind::Pack, &keep);
    assert!(c.get(ObjectKind::Snapshot, &hex_of(&a), 10).is_some());
    assert!(c.get(ObjectKind::Snapshot, &hex_of(&b), 10).is_none());
    assert!(c.has_pack(&PackId(hash::object_hash(&a))));
    assert!(!c.has_pack(&PackId(hash::object_hash(&b))));
    assert!(fresh_tmp.exists() && !old_tmp.exists());
}

#[test]
fn only_our_own_unused_caches_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = RepoId([1; 32]);
    let recent = RepoId([2; 32]);
    Cache::open(root, &old, false).unwrap();
    Cache::open(root, &recent, false).unwrap();
    set_mtime(
        &root.join(old.to_hex()).join(USED),
        Duration::from_secs((UNUSED_DAYS + 1) * 86_400),
    );
    // Not ours: a directory named like a repository without our marker,
    // and other things a shared cache root may hold.
    let foreign = root.join("ab".repeat(32));
    fs::create_dir(&foreign).unwrap();
    set_mtime(&foreign, Duration::from_secs(400 * 86_400));
    fs::create_dir(root.join("restic")).unwrap();
    Cache::open(root, &id(), false).unwrap();
    assert!(!root.join(old.to_hex()).exists());
    assert!(root.join(recent.to_hex()).exists());
    assert!(foreign.exists() && root.join("restic").exists());
}

#[test]
fn a_cache_directory_that_is_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join(id().to_hex())).unwrap();
    let e = Cache::open(&root, &id(), false).unwrap_err();
    assert!(e.contains("not a directory"), "{e}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// A repository in memory (a remote stand-in: it gets a cache) with one
/// tree blob stored, and the tree pack's id.
fn remote_with_a_tree(cache: &Path) -> (Repository, crate::format::index::MemIndex, BlobRef) {
    let location = Location::memory();
    Repository::init(&location, b"pw", &test_options()).unwrap();
    let password = Credentials::Password(b"pw".to_vec().into());
    let repo = Repository::open(&location, &password)
        .unwrap()
        .with_cache(Some(cache), CacheUse::Read);
    let index = repo.load_index().unwrap();
    let tree = crate::format::tree::Tree::new(Vec::new()).encode();
    crate::repository::saver::BlobSaver::run(&repo, &index, false, 1, |s| {
        s.save(crate::format::pack::BlobKind::Tree, &tree)
    })
    .unwrap();
    let index = repo.load_index().unwrap();
    let (pack, _) = index.packs().next().unwrap();
    let blob = index
        .ids(crate::format::pack::BlobKind::Tree)
        .next()
        .unwrap();
    let loc = index
        .get(crate::format::pack::BlobKind::Tree, &blob)
        .unwrap();
    assert_eq!(loc.pack, pack);
    let r = BlobRef {
        kind: crate::format::pack::BlobKind::Tree,
        id: blob,
        offset: loc.offset,
        length: loc.length,
        raw_len: None,
    };
    (repo, index, r)
}

#[test]
fn a_damaged_cached_tree_pack_is_dropped_and_read_from_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let pack = index.get(blob.kind, &blob.id).unwrap().pack;
    let c = repo.cache().unwrap();
    // Written through the cache by the backup itself.
    assert!(c.has_pack(&pack));
    let path = c.path(ObjectKind::Pack, &pack.to_hex());
    let mut bytes = fs::read(&path).unwrap();
    let at = blob.offset as usize + blob.length as usize - 1;
    bytes[at] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let mut got = None;
    let pack_size = index.get(blob.kind, &blob.id).unwrap().pack_size;
    repo.load_blobs(&pack, &[blob], Fetch::Cached { pack_size }, |_, r| {
        got = Some(r.unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        got.unwrap(),
        crate::format::tree::Tree::new(Vec::new()).encode()
    );
    assert!(!path.exists(), "the damaged copy is dropped");
    // The next command fetches the pack whole again, and it is sound.
    let next = repo.clone().with_cache(Some(dir.path()), CacheUse::Read);
    next.load_tree(&index, &blob.id).unwrap();
    assert!(c.has_pack(&pack));
}

/// The cached copy of the only tree pack in `repo`, and the pack's id.
fn cached_pack_path(repo: &Repository, index: &MemIndex, blob: &BlobRef) -> (PathBuf, PackId) {
    let pack = index.get(blob.kind, &blob.id).unwrap().pack;
    (
        repo.cache().unwrap().path(ObjectKind::Pack, &pack.to_hex()),
        pack,
    )
}

/// What a crash can leave of a cached pack (the rename reached the disk,
/// the data did not): an empty file. It must be dropped and fetched again,
/// not kept forever while every tree of the pack is read from the
/// repository, one round trip each.
#[test]
fn a_short_cached_tree_pack_is_dropped_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let (path, pack) = cached_pack_path(&repo, &index, &blob);
    fs::write(&path, b"").unwrap();
    repo.load_tree(&index, &blob.id).unwrap();
    assert!(!path.exists(), "the short copy is dropped");
    // The next command fetches it whole again.
    let next = repo.clone().with_cache(Some(dir.path()), CacheUse::Read);
    next.load_tree(&index, &blob.id).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(
        hex_of(&bytes),
        pack.to_hex(),
        "the cached copy is whole again"
    );
}

/// A cache that cannot keep a pack (disk full, a file in the way): the
/// pack is fetched whole at most once, not once more for every tree read
/// from it (a walk of a thousand directories would download the pack a
/// thousand times).
#[test]
fn a_tree_pack_the_cache_cannot_keep_is_fetched_whole_once() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let (path, _) = cached_pack_path(&repo, &index, &blob);
    let sub = path.parent().unwrap();
    fs::remove_dir_all(sub).unwrap();
    fs::write(sub, b"in the way").unwrap();
    let before = repo.storage_stats().requests;
    for _ in 0..5 {
        repo.load_tree(&index, &blob.id).unwrap();
    }
    // One whole fetch that could not be kept, then one ranged read per tree.
    assert_eq!(repo.storage_stats().requests - before, 6);
}

/// A planted huge object at a tree pack's key (the index, authenticated,
/// says how large the pack is): fetching the pack whole must not download
/// it, let alone hold it in memory (up to 2 GiB per prefetching thread).
///
/// The fetch is bounded by the pack's size as indexed.
#[test]
fn a_planted_huge_tree_pack_is_not_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let (path, pack) = cached_pack_path(&repo, &index, &blob);
    let key = crate::repository::objects::pack_key(&pack);
    let mut planted = repo.storage().get(&key).unwrap();
    planted.resize(planted.len() + (16 << 20), 0);
    repo.storage().put(&key, planted).unwrap();
    fs::remove_file(&path).unwrap();
    let before = repo.storage_stats().bytes_received;
    repo.load_tree(&index, &blob.id).unwrap();
    let received = repo.storage_stats().bytes_received - before;
    assert!(received < 1 << 20, "{received} bytes received");
}

/// A cache root moved to a larger disk and linked back (`ln -s
/// /big/repo-cache ~/.cache/repo`, common for caches) is used through
/// the user's own link; the repository directories inside are still
/// refused as links.
#[test]
fn a_cache_root_that_is_the_users_own_link_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    fs::create_dir(&big).unwrap();
    let root = dir.path().join("root");
    std::os::unix::fs::symlink(&big, &root).unwrap();
    let c = Cache::open(&root, &id(), false).unwrap();
    let bytes = b"snapshot".to_vec();
    c.put(ObjectKind::Snapshot, &hex_of(&bytes), &[&bytes]);
    assert!(
        big.join(id().to_hex())
            .join("snapshots")
            .join(hex_of(&bytes))
            .is_file()
    );
}

/// An index entry its (sound) pack does not match, as in a damaged
/// repository: every read of it fails, and each must not download the
/// whole pack again (a walk of many directories in that pack would
/// download it once per directory). The pack dropped from the cache is
/// read by span for the rest of the command.
#[test]
fn a_dropped_tree_pack_is_not_fetched_whole_again_by_the_same_command() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let (_, pack) = cached_pack_path(&repo, &index, &blob);
    let wrong = BlobRef {
        length: blob.length - 1,
        ..blob
    };
    let before = repo.storage_stats().requests;
    for _ in 0..3 {
        let fetch = Fetch::Cached {
            pack_size: index.get(blob.kind, &blob.id).unwrap().pack_size,
        };
        repo.load_blobs(&pack, &[wrong], fetch, |_, r| {
            assert!(r.is_err());
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(
        repo.storage_stats().requests - before,
        3,
        "one ranged read each"
    );
}

/// A pack dropped for not holding what the index says is not fetched whole
/// again by a prefetch of the same command either (a subtree in it would
/// otherwise bring the whole pack back on every tree loaded).
#[test]
fn a_dropped_tree_pack_is_not_prefetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, index, blob) = remote_with_a_tree(dir.path());
    let (_, pack) = cached_pack_path(&repo, &index, &blob);
    let size = index.get(blob.kind, &blob.id).unwrap().pack_size;
    let packs = repo.cache.as_ref().unwrap();
    packs.drop_pack(&pack);
    let before = repo.storage_stats().requests;
    packs.prefetch([(pack, size)]);
    // Waits for a fetch the prefetch may have started.
    assert!(!packs.ensure(&pack, size));
    assert_eq!(repo.storage_stats().requests - before, 0);
}
