//! The file-backed index (issue 14, bounded memory): with the in-memory
//! limit forced down to 4 entries every command works from the index file,
//! a kept file is reused, and a damaged or stale one is rebuilt.

use super::*;
use crate::support::{Run, simple_tree};

/// Runs `args` with the index in a file kept in `<test>/idx`.
fn with_file(t: &TestRepo, args: &[&str]) -> Run {
    let mut c = t.cmd();
    c.env("REPO_TEST_INDEX_MEMORY_ENTRIES", "4")
        .env("REPO_TEST_INDEX_DIR", t.join("idx"))
        .args(args);
    let r = run(c);
    r.success();
    r
}

#[test]
fn every_command_works_on_a_kept_index_file_and_rebuilds_a_bad_one() {
    let t = TestRepo::new();
    let mut init = vec!["init"];
    init.extend(SMALL_CHUNKS);
    t.ok(init);
    fs::create_dir(t.join("idx")).unwrap();
    let src = t.join("src");
    simple_tree(&src, 1);
    with_file(&t, &["create", src.to_str().unwrap()]);
    // The backup started from an empty index; the next command builds the file.
    with_file(&t, &["ls", "latest"]).stdout_has("deeper");
    let file = t.join("idx/blob-index");
    assert!(file.is_file(), "no index file was kept");

    // Unchanged backup: the file is reused, no blob stored again.
    let again = with_file(&t, &["create", "--json", src.to_str().unwrap()]);
    assert!(!again.stderr.contains("rebuilding"), "{}", again.stderr);
    // No file is read or stored again; only the trees of the source's
    // parents may be new (other tests change /tmp's metadata meanwhile).
    let summary = &again.json()["summary"];
    assert_eq!(summary["bytes_read"].as_u64(), Some(0), "{again}");
    assert!(summary["data_added"].as_u64().unwrap() < 1024, "{again}");

    let target = t.join("restore");
    let target_arg = target.to_str().unwrap();
    with_file(&t, &["restore", "latest", "--target", target_arg]);
    crate::support::assert_same_tree(
        &src,
        &target.join(src.strip_prefix("/").unwrap()),
        Cmp::content_only(),
    );
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
    let target2 = t.join("restore2");
    with_file(
        &t,
        &["restore", "latest", "--target", target2.to_str().unwrap()],
    );
    crate::support::assert_same_tree(
        &src,
        &target2.join(src.strip_prefix("/").unwrap()),
        Cmp::content_only(),
    );
}
