//! The file-backed index (issue 14, bounded memory): with the in-memory
//! limit forced down to 4 entries every command works from the index file,
//! a kept file is reused, and a damaged or stale one is rebuilt. A local
//! repository keeps only this file in the cache, and only once it has one.

use super::*;
use crate::support::{Run, simple_tree};

/// Runs `args` on `repo` with the index in a file kept in the cache root
/// `<test>/cache`.
fn with_file_on(t: &TestRepo, repo: &Path, args: &[&str]) -> Run {
    let mut c = t.bare();
    c.arg("-r")
        .arg(repo)
        .env("REPO_PASSWORD", PASSWORD)
        .env("REPO_TEST_INDEX_MEMORY_ENTRIES", "4")
        .env("REPO_CACHE_DIR", t.join("cache"))
        .args(args);
    let r = run(c);
    r.success();
    r
}

/// [`with_file_on`] the test's repository.
fn with_file(t: &TestRepo, args: &[&str]) -> Run {
    with_file_on(t, &t.repo, args)
}

/// The kept index file: the only file in the only repository directory
/// of the cache root, beside the `used` mark (no cached objects: the
/// repository is local).
fn kept_file(t: &TestRepo) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(t.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let names: BTreeSet<String> = fs::read_dir(&dirs[0])
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = ["blob-index", "used"].map(String::from).into();
    assert_eq!(names, expected);
    dirs[0].join("blob-index")
}

/// `restore latest` into `<test>/<name>` gives back `src`.
fn restores_as(t: &TestRepo, src: &Path, name: &str) {
    let target = t.join(name);
    with_file(
        t,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    crate::support::assert_same_tree(
        src,
        &target.join(src.strip_prefix("/").unwrap()),
        Cmp::content_only(),
    );
}

/// Which file is there: replaced files get a new inode.
fn identity(p: &Path) -> (u64, i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[test]
fn every_command_works_on_a_kept_index_file_and_rebuilds_a_bad_one() {
    let t = TestRepo::new();
    let mut init = vec!["init"];
    init.extend(SMALL_CHUNKS);
    t.ok(init);
    let src = t.join("src");
    simple_tree(&src, 1);
    with_file(&t, &["create", src.to_str().unwrap()]);
    // The backup started from an empty index; the next command builds the file.
    with_file(&t, &["ls", "latest"]).stdout_has("deeper");
    let file = kept_file(&t);
    let built = identity(&file);
    with_file(&t, &["ls", "latest"]);
    assert_eq!(identity(&file), built, "the second run rebuilt the file");

    // Unchanged backup: the file is reused, no blob stored again.
    let again = with_file(&t, &["create", "--json", src.to_str().unwrap()]);
    assert!(!again.stderr.contains("rebuilding"), "{}", again.stderr);
    assert_eq!(identity(&file), built, "the backup rebuilt the file");
    // No file is read or stored again; only the trees of the source's
    // parents may be new (other tests change /tmp's metadata meanwhile).
    let summary = &again.json()["summary"];
    assert_eq!(summary["bytes_read"].as_u64(), Some(0), "{again}");
    assert!(summary["data_added"].as_u64().unwrap() < 1024, "{again}");

    restores_as(&t, &src, "restore");
    let check = with_file(&t, &["check", "--read-data", "--json"]).json();
    assert_eq!(
        check["errors"].as_array().map(Vec::len),
        Some(0),
        "{check:#}"
    );
    assert!(check["blobs"].as_u64().unwrap() > 8, "{check:#}");

    // A flipped byte: refused, rebuilt, and the commands still work.
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&file, &bytes).unwrap();
    with_file(&t, &["ls", "latest"]).stderr_has("rebuilding the local index file");
    assert_ne!(fs::read(&file).unwrap(), bytes, "the damaged file was kept");

    // After prune replaced index objects the file is stale: rebuilt quietly.
    fs::write(src.join("a.txt"), b"changed").unwrap();
    with_file(&t, &["create", src.to_str().unwrap()]);
    t.ok(["forget", "--keep-last", "1", "--prune"]);
    let before = fs::read(&file).unwrap();
    let ls = with_file(&t, &["ls", "latest"]);
    assert!(!ls.stderr.contains("rebuilding"), "{ls}");
    assert_ne!(fs::read(&file).unwrap(), before, "the stale file was kept");
    restores_as(&t, &src, "restore2");
}

/// A copied repository folder has the same id, so the same kept file: a
/// backup into the copy makes the file name an index object the original
/// lacks, and the original must rebuild it rather than deduplicate against
/// blobs it does not hold.
#[test]
fn a_copied_repository_does_not_trust_the_other_copys_file() {
    let t = TestRepo::new();
    t.ok([&["init"][..], &SMALL_CHUNKS].concat());
    let src = t.join("src");
    simple_tree(&src, 2);
    with_file(&t, &["create", src.to_str().unwrap()]);
    with_file(&t, &["ls", "latest"]);
    let file = kept_file(&t);
    let copy = t.join("copy");
    copy_tree(&t.repo, &copy);
    let new = t.join("new");
    write_file(&new.join("data.bin"), &random_bytes(300_000, 7));
    with_file_on(&t, &copy, &["create", new.to_str().unwrap()]);
    // The copy's next run merges the backup's index object into the file.
    with_file_on(&t, &copy, &["ls", "latest"]);
    let after_copy = identity(&file);
    with_file_on(&t, &copy, &["ls", "latest"]);
    assert_eq!(identity(&file), after_copy, "the copy reuses its file");

    // The original stores the same data itself: the file is rebuilt
    // quietly (out of date, not damaged) and every blob lands here.
    let r = with_file(&t, &["create", "--json", new.to_str().unwrap()]);
    assert!(!r.stderr.contains("rebuilding"), "{r}");
    assert_ne!(identity(&file), after_copy, "the copy's file was trusted");
    assert!(
        r.json()["summary"]["data_added"].as_u64().unwrap() >= 300_000,
        "{r}"
    );
    let check = with_file(&t, &["check", "--read-data", "--json"]).json();
    assert_eq!(check["errors"], Value::Array(vec![]), "{check:#}");
    restores_as(&t, &new, "restored");
}

/// A repository small enough for memory (the default limit) leaves nothing
/// in the cache root; a large one with `--no-cache` neither; an unusable
/// cache root is one warning and the index is built in a temporary file.
#[test]
fn only_a_large_local_index_touches_the_cache() {
    let t = TestRepo::new();
    t.ok(["init"]);
    let src = t.join("src");
    simple_tree(&src, 3);
    let cache = t.join("cache");
    for args in [
        vec!["create", src.to_str().unwrap()],
        vec!["ls", "latest"],
        vec!["find", "a.txt"],
    ] {
        let mut c = t.cmd();
        c.args(&args).env("REPO_CACHE_DIR", &cache);
        run(c).success();
    }
    assert!(!cache.exists(), "a small local repository made {cache:?}");
    with_file(&t, &["ls", "latest", "--no-cache"]).stdout_has("a.txt");
    assert!(!cache.exists(), "--no-cache made {cache:?}");

    fs::write(&cache, b"not a directory").unwrap();
    let r = with_file(&t, &["ls", "latest"]);
    r.stdout_has("a.txt")
        .stderr_has("not keeping the index file in the cache")
        .stderr_has("is not a directory");
    assert_eq!(r.stderr.matches("not keeping").count(), 1, "{r}");
}

/// A kept file in a directory that is not the user's own (someone could
/// have planted it) is neither read nor replaced: one warning, and the
/// index is built in a temporary file.
#[test]
fn a_kept_file_in_another_users_directory_is_not_used() {
    if !crate::support::is_root() {
        return;
    }
    let t = TestRepo::new();
    t.ok(["init"]);
    let src = t.join("src");
    simple_tree(&src, 4);
    with_file(&t, &["create", src.to_str().unwrap()]);
    with_file(&t, &["ls", "latest"]);
    let file = kept_file(&t);
    let kept = identity(&file);
    std::os::unix::fs::chown(file.parent().unwrap(), Some(65534), Some(65534)).unwrap();
    let r = with_file(&t, &["ls", "latest"]);
    r.stdout_has("a.txt").stderr_has("belongs to another user");
    assert_eq!(r.stderr.matches("not keeping").count(), 1, "{r}");
    assert_eq!(identity(&file), kept, "the file was replaced");
}
