//! Adversarial part: plain (see tests/cli/adversarial/mod.rs).
//!
//! `mirror` and `sync` over peers' fixtures: the shape of pyftpsync's
//! bidirectional test (two folders synced once, then changed on both sides)
//! and BackuPy's matrix of modes against situations, each started from two
//! identical folders so the first run has nothing to do, which is the run
//! that used to forget to record its history. Then the details: folders
//! trashed, not removed; equal times never settled by argument order; hard
//! links and holes kept; control folders that are not ours and overlapping
//! sides refused; a side bind-mounted inside a side never walked; a copy
//! checked with `b3sum --check` whatever its names.
//!
//! "data lost" counts file versions that a side held when a run started
//! and that are afterwards on no side and in no side's `.repo/archive` or
//! `.repo/trash` (every version's content is unique, so it is found by
//! content).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[allow(unused_imports)]
use crate::support::*;

const T0: i64 = 1_700_000_000;
const T1: i64 = T0 + 1000;

/// Runs the binary with `args` (and `--json` first when asked).
fn repo(args: &[&str]) -> Run {
    let mut c = clean_command(BIN);
    c.args(args);
    run_within(c, Duration::from_secs(120))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn read(root: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(root.join(rel)).ok()
}

/// Every file's content below `root`, `.repo` included (archive and trash).
fn contents(root: &Path, out: &mut HashSet<Vec<u8>>) {
    for p in walk_all(root) {
        let full = root.join(&p);
        if fs::symlink_metadata(&full).is_ok_and(|m| m.is_file()) {
            out.insert(fs::read(full).unwrap());
        }
    }
}

/// Every live file's content on the sides: what a run must not lose.
fn present(roots: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    for r in roots {
        for (_, v) in tree(r) {
            out.push(v);
        }
    }
    out
}

/// Versions (by content) that were written on some side and are found on
/// no side any more, live or kept under `.repo`.
fn lost(versions: &[String], roots: &[&Path]) -> Vec<String> {
    let mut have = HashSet::new();
    for r in roots {
        contents(r, &mut have);
    }
    versions
        .iter()
        .filter(|v| !have.contains(v.as_bytes()))
        .cloned()
        .collect()
}

/// Live files (path -> content) below `root`, `.repo` left out.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in walk_all(root) {
        if p.starts_with(".repo") {
            continue;
        }
        let full = root.join(&p);
        if fs::symlink_metadata(&full).is_ok_and(|m| m.is_file()) {
            out.insert(
                p.to_string_lossy().into_owned(),
                fs::read_to_string(full).unwrap_or_default(),
            );
        }
    }
    out
}

/// Runs the binary over two sides and keeps the count of lost versions.
struct Guard {
    roots: Vec<PathBuf>,
    lost: Vec<String>,
}

impl Guard {
    fn new(roots: [&Path; 2]) -> Self {
        Guard {
            roots: roots.iter().map(|r| r.to_path_buf()).collect(),
            lost: Vec::new(),
        }
    }

    fn run(&mut self, args: &[&str]) -> Run {
        let roots: Vec<&Path> = self.roots.iter().map(PathBuf::as_path).collect();
        let before = present(&roots);
        let r = repo(args);
        self.lost.extend(lost(&before, &roots));
        r
    }
}

fn count(j: &serde_json::Value, field: &str) -> u64 {
    j["result"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no result.{field} in {j:#}"))
}

/// pyftpsync's bidirectional fixture, recreated: identical folders, a first
/// run with nothing to do, then every kind of change on both sides.
#[test]
fn pyftpsync_bidirectional_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut g = Guard::new([&a, &b]);
    let base = [
        "file1.txt",
        "mod_a.txt",
        "mod_b.txt",
        "del_a.txt",
        "del_b.txt",
        "mod_a_del_b.txt",
        "del_a_mod_b.txt",
        "conflict.txt",
        "both_del.txt",
        "same_edit.txt",
        "folder_del_b/f1.txt",
        "folder_del_b/f2.txt",
        "sub/keep.txt",
    ];
    for root in [&a, &b] {
        for f in base {
            put_file(root, f, &format!("{f} v1"), T0);
        }
        fs::create_dir_all(root.join("empty_del_a")).unwrap();
    }

    // The first run finds nothing to do, and must still record both sides.
    let r = g.run(&["--json", "sync", s(&a), s(&b), "-y"]);
    r.success();
    let j = r.json();
    assert_eq!(j["dry_run"], false, "a real run is not a dry run:\n{r}");
    assert!(j["plan"]["actions"].as_array().unwrap().is_empty(), "{r}");
    for root in [&a, &b] {
        let m = fs::read_to_string(root.join(".repo/manifest.jsonl"))
            .unwrap_or_else(|_| panic!("no manifest on {} after a no-op run\n{r}", root.display()));
        assert!(m.contains("\"path\":\"del_a.txt\""), "{m}");
    }

    // Changes on both sides.
    let edit = |root: &Path, rel: &str, tag: &str, mtime: i64| {
        put_file(root, rel, &format!("{rel} {tag}"), mtime);
    };
    edit(&a, "new_a.txt", "new on a", T1);
    edit(&a, "newdir_a/n.txt", "new on a", T1);
    edit(&b, "new_b.txt", "new on b", T1);
    edit(&a, "mod_a.txt", "v2 a", T1);
    edit(&b, "mod_b.txt", "v2 b", T1);
    edit(&a, "mod_a_del_b.txt", "v2 a", T1);
    edit(&b, "del_a_mod_b.txt", "v2 b", T1);
    edit(&a, "conflict.txt", "v2 a", T1);
    edit(&b, "conflict.txt", "v2 b (longer)", T1 + 5);
    // Edited the same way on both sides: nothing to do.
    put_file(&a, "same_edit.txt", "same_edit.txt v2", T1);
    put_file(&b, "same_edit.txt", "same_edit.txt v2", T1);
    fs::remove_file(a.join("del_a.txt")).unwrap();
    fs::remove_file(b.join("del_b.txt")).unwrap();
    fs::remove_file(b.join("mod_a_del_b.txt")).unwrap();
    fs::remove_file(a.join("del_a_mod_b.txt")).unwrap();
    fs::remove_file(a.join("both_del.txt")).unwrap();
    fs::remove_file(b.join("both_del.txt")).unwrap();
    fs::remove_dir_all(b.join("folder_del_b")).unwrap();
    fs::remove_dir(a.join("empty_del_a")).unwrap();

    let r = g.run(&["--json", "sync", s(&a), s(&b), "-y", "--resolve", "skip"]);
    r.code(3);
    let j = r.json();
    assert_eq!(count(&j, "copied"), 5, "{r}");
    assert_eq!(count(&j, "dirs"), 1, "{r}");
    // del_a, del_b, folder_del_b/f1, f2, folder_del_b, empty_del_a.
    assert_eq!(count(&j, "deleted"), 6, "{r}");
    assert_eq!(j["unresolved"], 3, "{r}");
    let mut kinds: Vec<String> = j["plan"]["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["conflict.txt", "del_a_mod_b.txt", "mod_a_del_b.txt"],
        "{r}"
    );

    let want_both = [
        ("file1.txt", "file1.txt v1"),
        ("mod_a.txt", "mod_a.txt v2 a"),
        ("mod_b.txt", "mod_b.txt v2 b"),
        ("new_a.txt", "new_a.txt new on a"),
        ("new_b.txt", "new_b.txt new on b"),
        ("newdir_a/n.txt", "newdir_a/n.txt new on a"),
        ("same_edit.txt", "same_edit.txt v2"),
        ("sub/keep.txt", "sub/keep.txt v1"),
    ];
    let (ta, tb) = (tree(&a), tree(&b));
    for (rel, want) in want_both {
        assert_eq!(ta.get(rel).map(String::as_str), Some(want), "a/{rel}\n{r}");
        assert_eq!(tb.get(rel).map(String::as_str), Some(want), "b/{rel}\n{r}");
    }
    // Conflicts are left exactly as they were on each side.
    assert_eq!(read(&a, "conflict.txt").unwrap(), "conflict.txt v2 a");
    assert_eq!(
        read(&b, "conflict.txt").unwrap(),
        "conflict.txt v2 b (longer)"
    );
    assert_eq!(read(&a, "mod_a_del_b.txt").unwrap(), "mod_a_del_b.txt v2 a");
    assert!(read(&b, "mod_a_del_b.txt").is_none());
    assert!(read(&a, "del_a_mod_b.txt").is_none());
    assert_eq!(read(&b, "del_a_mod_b.txt").unwrap(), "del_a_mod_b.txt v2 b");
    // Nothing deleted comes back.
    let mut resurrected = 0;
    for root in [&a, &b] {
        for gone in [
            "del_a.txt",
            "del_b.txt",
            "both_del.txt",
            "folder_del_b",
            "empty_del_a",
        ] {
            resurrected += usize::from(root.join(gone).exists());
        }
    }
    assert_eq!(resurrected, 0, "deleted paths came back\n{r}");
    assert_eq!(ta.len(), want_both.len() + 2, "{ta:#?}");
    assert_eq!(tb.len(), want_both.len() + 2, "{tb:#?}");
    // The empty folder went to the trash, not away (SPEC §15.1).
    let trashed: Vec<PathBuf> = walk_all(&b.join(".repo/trash"));
    assert!(
        trashed.iter().any(|p| p.ends_with("empty_del_a")),
        "{trashed:?}"
    );

    // The conflicts come back, and nothing else happens.
    let r2 = g.run(&["--json", "sync", s(&a), s(&b), "-y", "--resolve", "skip"]);
    r2.code(3);
    let j2 = r2.json();
    assert_eq!(j2["unresolved"], 3, "{r2}");
    assert!(j2["plan"]["actions"].as_array().unwrap().is_empty(), "{r2}");

    let missing = g.lost.clone();
    eprintln!(
        "adversarial plain: pyftpsync fixture: 2 runs, 5 copied, 6 deleted, 3 conflicts, resurrected: {resurrected}, data lost: {}",
        missing.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
}

#[derive(Debug, Clone, Copy)]
enum Situation {
    NewOnSource,
    NewOnDest,
    ChangedOnSource,
    ChangedOnDest,
    DeletedOnSource,
    DeletedOnDest,
}

/// One cell: mode, situation, `x.txt` on a and on b afterwards, conflicts left.
type Cell = (
    &'static str,
    Situation,
    Option<&'static str>,
    Option<&'static str>,
    u64,
);

/// BackuPy's matrix: every mode against every situation, from identical
/// folders whose first run had nothing to do.
#[test]
fn backupy_mode_matrix() {
    use Situation::*;
    // (mode, situation, x.txt on a, x.txt on b, conflicts)
    let v1 = Some("x v1");
    let table: [Cell; 18] = [
        ("backup", NewOnSource, Some("x new a"), Some("x new a"), 0),
        ("backup", NewOnDest, None, Some("x new b"), 0),
        ("backup", ChangedOnSource, Some("x v2 a"), Some("x v2 a"), 0),
        ("backup", ChangedOnDest, v1, Some("x v2 b"), 1),
        ("backup", DeletedOnSource, None, v1, 0),
        ("backup", DeletedOnDest, v1, None, 1),
        ("mirror", NewOnSource, Some("x new a"), Some("x new a"), 0),
        ("mirror", NewOnDest, None, Some("x new b"), 1),
        ("mirror", ChangedOnSource, Some("x v2 a"), Some("x v2 a"), 0),
        ("mirror", ChangedOnDest, v1, Some("x v2 b"), 1),
        ("mirror", DeletedOnSource, None, None, 0),
        ("mirror", DeletedOnDest, v1, None, 1),
        ("sync", NewOnSource, Some("x new a"), Some("x new a"), 0),
        ("sync", NewOnDest, Some("x new b"), Some("x new b"), 0),
        ("sync", ChangedOnSource, Some("x v2 a"), Some("x v2 a"), 0),
        ("sync", ChangedOnDest, Some("x v2 b"), Some("x v2 b"), 0),
        ("sync", DeletedOnSource, None, None, 0),
        ("sync", DeletedOnDest, None, None, 0),
    ];
    let mut failures = Vec::new();
    let mut lost_total = 0;
    for (mode, sit, want_a, want_b, want_conflicts) in table {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let mut g = Guard::new([&a, &b]);
        let existing = !matches!(sit, NewOnSource | NewOnDest);
        for root in [&a, &b] {
            put_file(root, "other.txt", "other v1", T0);
            if existing {
                put_file(root, "x.txt", "x v1", T0);
            }
        }
        let first = g.run(&["mirror", "--mode", mode, s(&a), s(&b), "-y"]);
        first.success().stdout_has("already in step");
        match sit {
            NewOnSource => put_file(&a, "x.txt", "x new a", T1),
            NewOnDest => put_file(&b, "x.txt", "x new b", T1),
            ChangedOnSource => put_file(&a, "x.txt", "x v2 a", T1),
            ChangedOnDest => put_file(&b, "x.txt", "x v2 b", T1),
            DeletedOnSource => fs::remove_file(a.join("x.txt")).unwrap(),
            DeletedOnDest => fs::remove_file(b.join("x.txt")).unwrap(),
        }
        let r = g.run(&[
            "--json",
            "mirror",
            "--mode",
            mode,
            s(&a),
            s(&b),
            "-y",
            "--resolve",
            "skip",
        ]);
        let cell = format!("{mode} x {sit:?}");
        let got = (
            read(&a, "x.txt"),
            read(&b, "x.txt"),
            r.json()["unresolved"].as_u64(),
            r.code,
        );
        let want = (
            want_a.map(String::from),
            want_b.map(String::from),
            Some(want_conflicts),
            if want_conflicts > 0 { 3 } else { 0 },
        );
        if got != want {
            failures.push(format!("{cell}: got {got:?}, want {want:?}\n{r}"));
        }
        if mode != "sync" && a.join(".repo").exists() {
            failures.push(format!(
                "{cell}: the source was written: {:?}",
                walk_all(&a.join(".repo"))
            ));
        }
        let missing = g.lost.clone();
        lost_total += missing.len();
        if !missing.is_empty() {
            failures.push(format!("{cell}: lost {missing:?}"));
        }
    }
    eprintln!(
        "adversarial plain: BackuPy matrix: 18 cells (3 modes x 6 situations), wrong: {}, data lost: {lost_total}",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Folders that start equal get their hashes recorded by `--compare hash`,
/// so later rot on one side is caught instead of copied over the good copy;
/// identical edits on both sides leave no stale history behind.
#[test]
fn equal_start_records_hashes_and_identical_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut g = Guard::new([&a, &b]);
    for root in [&a, &b] {
        put_file(root, "photo.jpg", "precious original bytes", T0);
        put_file(root, "notes.txt", "notes v1", T0);
    }
    g.run(&["sync", s(&a), s(&b), "-y", "--compare", "hash"])
        .success();
    // Rot on a, size and mtime kept.
    put_file(&a, "photo.jpg", "precious ORIGINAL bytes", T0);
    let r = g.run(&["sync", s(&a), s(&b), "-y", "--compare", "hash"]);
    r.code(3).stderr_has("CORRUPT: photo.jpg on the first side");
    assert_eq!(
        read(&b, "photo.jpg").unwrap(),
        "precious original bytes",
        "{r}"
    );
    // Repaired from the good side, the bad copy kept aside.
    assert_eq!(
        read(&a, "photo.jpg").unwrap(),
        "precious original bytes",
        "{r}"
    );

    // Both sides edited the same way: in step, and the next one-sided edit
    // is copied without a false conflict.
    put_file(&a, "notes.txt", "notes v2", T1);
    put_file(&b, "notes.txt", "notes v2", T1);
    g.run(&["sync", s(&a), s(&b), "-y"])
        .success()
        .stdout_has("already in step");
    // The same edit made at different times: equal content is no conflict
    // (hashed because both sides changed to the same size).
    put_file(&a, "notes.txt", "notes v2.5", T1 + 3);
    put_file(&b, "notes.txt", "notes v2.5", T1 + 4);
    g.run(&["sync", s(&a), s(&b), "-y", "--resolve", "skip"])
        .success()
        .stdout_has("already in step");
    put_file(&b, "notes.txt", "notes v3", T1 + 10);
    let r = g.run(&["sync", s(&a), s(&b), "-y", "--resolve", "skip"]);
    r.success();
    assert_eq!(read(&a, "notes.txt").unwrap(), "notes v3", "{r}");
    let missing = g.lost.clone();
    eprintln!(
        "adversarial plain: equal start: 1 corruption caught, 0 false conflicts, data lost: {}",
        missing.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
}

/// Same mtime, different size, `--select newer`: neither is newer, so it is
/// a conflict, whichever side is named first; `--resolve new` cannot settle it.
#[test]
fn equal_times_are_a_conflict_not_argument_order() {
    let mut conflicts = 0;
    for flip in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        put_file(&a, "f.txt", "short", T0);
        put_file(&b, "f.txt", "a longer text", T0);
        let (x, y) = if flip { (&b, &a) } else { (&a, &b) };
        for resolve in ["skip", "new", "old"] {
            let r = repo(&[
                "--json",
                "sync",
                s(x),
                s(y),
                "-y",
                "--select",
                "newer",
                "--resolve",
                resolve,
            ]);
            r.code(3);
            // The first run has no history: the equal times are the
            // conflict. Later runs know both sides were never in step.
            let kind = &r.json()["plan"]["conflicts"][0]["kind"];
            let want = if resolve == "skip" {
                "same-time"
            } else {
                "both-created"
            };
            assert_eq!(kind, want, "{r}");
            assert_eq!(r.json()["unresolved"], 1, "{r}");
            conflicts += 1;
            assert_eq!(read(&a, "f.txt").unwrap(), "short");
            assert_eq!(read(&b, "f.txt").unwrap(), "a longer text");
        }
    }
    eprintln!("adversarial plain: equal mtimes: 6 runs, {conflicts} conflicts, data lost: 0");
}

fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// Local to local, links stay links and holes stay holes (`rsync -aHS`).
#[test]
fn mirror_keeps_hard_links_and_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "one/linked.bin", "shared content", T0);
    fs::create_dir_all(a.join("two")).unwrap();
    fs::hard_link(a.join("one/linked.bin"), a.join("two/linked.bin")).unwrap();
    fs::hard_link(a.join("one/linked.bin"), a.join("third.bin")).unwrap();
    // 64 MiB with 4 KiB of data at 1 MiB and at the end.
    let sparse = a.join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 4096], (64 << 20) - 4096).unwrap();
    }
    if allocated(&sparse) > 1 << 20 {
        eprintln!("skipping holes: this file system does not keep the source sparse");
    }
    let r = repo(&["--json", "mirror", s(&a), s(&b), "-y"]);
    r.success();
    assert_eq!(count(&r.json(), "linked"), 2, "{r}");
    let ino = |p: &str| fs::metadata(b.join(p)).unwrap().ino();
    assert_eq!(ino("one/linked.bin"), ino("two/linked.bin"), "{r}");
    assert_eq!(ino("one/linked.bin"), ino("third.bin"), "{r}");
    assert_eq!(fs::metadata(b.join("third.bin")).unwrap().nlink(), 3);
    assert_eq!(
        fs::read(b.join("disk.img")).unwrap(),
        fs::read(&sparse).unwrap()
    );
    let dest_alloc = allocated(&b.join("disk.img"));
    assert!(
        dest_alloc <= allocated(&sparse).max(64 << 10),
        "the copy of a 64 MiB sparse file allocates {dest_alloc} bytes"
    );
    // A new link to a file already mirrored becomes a link there too.
    fs::hard_link(a.join("third.bin"), a.join("fourth.bin")).unwrap();
    let r = repo(&["--json", "mirror", s(&a), s(&b), "-y"]);
    r.success();
    assert_eq!(ino("fourth.bin"), ino("third.bin"), "{r}");
    eprintln!(
        "adversarial plain: links and holes: 3 links kept + 1 added, 64 MiB sparse copy allocates {dest_alloc} bytes, data lost: 0"
    );
}

/// A `.repo` that is not ours (Google's `repo` tool makes one in every
/// checkout) is never skipped silently nor written into: the run is refused.
#[test]
fn foreign_control_folder_is_refused() {
    let mut refused = 0;
    for (where_, args) in [
        ("source", &["mirror"][..]),
        ("dest", &["mirror"][..]),
        ("source", &["sync"][..]),
        ("dest", &["sync"][..]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        put_file(&a, "src.c", "int main;", T0);
        fs::create_dir_all(&b).unwrap();
        let owner = if where_ == "source" { &a } else { &b };
        put_file(owner, ".repo/manifest.xml", "<manifest/>", T0);
        put_file(owner, ".repo/manifests/default.xml", "<manifest/>", T0);
        let before = walk_all(&owner.join(".repo"));
        let mut cmd = args.to_vec();
        cmd.extend([s(&a), s(&b), "-y"]);
        let r = repo(&cmd);
        r.code(2).stderr_has("is not a control folder of repo");
        refused += 1;
        assert_eq!(walk_all(&owner.join(".repo")), before, "{r}");
        assert!(!b.join("src.c").exists(), "{r}");
    }
    // A `.repo` symlink planted on the destination would carry writes
    // elsewhere: refused, and nothing lands where it points.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, elsewhere) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("elsewhere"),
    );
    put_file(&a, "x", "x", T0);
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.join(".repo")).unwrap();
    repo(&["mirror", s(&a), s(&b), "-y"])
        .code(2)
        .stderr_has("is not a control folder of repo");
    refused += 1;
    assert!(
        walk_all(&elsewhere).is_empty(),
        "{:?}",
        walk_all(&elsewhere)
    );
    // A `.repo` of ours from before the marker (a manifest inside) is accepted,
    // and marked.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x", "x", T0);
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    fs::remove_file(b.join(".repo/FORMAT")).unwrap();
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    assert!(b.join(".repo/FORMAT").exists());
    eprintln!(
        "adversarial plain: foreign .repo: {refused} runs refused, 0 files written into them, data lost: 0"
    );
}

/// One side inside the other is refused before anything is created.
#[test]
fn overlapping_sides_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    put_file(&src, "f.txt", "f", T0);
    fs::create_dir_all(src.join("sub")).unwrap();
    std::os::unix::fs::symlink(&src, tmp.path().join("alias")).unwrap();
    let alias_dest = tmp.path().join("alias/dest2");
    let cases: Vec<(&str, PathBuf, PathBuf)> = vec![
        ("mirror", src.clone(), src.join("dest")),
        ("mirror", src.join("sub"), src.clone()),
        ("sync", src.clone(), src.join("sub")),
        ("mirror", src.clone(), alias_dest.clone()),
        ("mirror", src.clone(), tmp.path().join("src/./x/../dest3")),
    ];
    let n = cases.len();
    for (cmd, a, b) in cases {
        let r = repo(&[cmd, s(&a), s(&b), "-y"]);
        r.code(2).stderr_has("must not overlap");
    }
    assert_eq!(walk_all(&src).len(), 2, "{:?}", walk_all(&src));
    eprintln!(
        "adversarial plain: overlapping sides: {n} runs refused, nothing nested, data lost: 0"
    );
}

/// README's recipe checks a copy with `b3sum --check`, names with newlines
/// and bytes that are not UTF-8 included; the log names them by `path_hex`.
#[test]
fn b3sum_recipe_checks_odd_names() {
    if Command::new("b3sum").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "b3sum is missing (scripts/test installs it)"
        );
        eprintln!("skipping: b3sum is not installed");
        return;
    }
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- b3sum-recipe -->")
        .expect("README has the b3sum recipe");
    let block = &readme[start..];
    let body_start = block.find("```sh\n").unwrap() + 6;
    let body_end = block[body_start..].find("```").unwrap() + body_start;
    let recipe = &block[body_start..body_end];

    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let names: [&[u8]; 5] = [
        b"plain.txt",
        b"new\nline.txt",
        b"bad\xffname",
        b"back\\slash and space",
        b"dir/\xfe\xfd nested",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = a.join(std::ffi::OsStr::from_bytes(n));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content {i}")).unwrap();
    }
    repo(&["mirror", s(&a), s(&b), "-y", "--compare", "attr+"]).success();
    let logs = walk_files(&b.join(".repo/log"));
    let log = fs::read_to_string(&logs[0]).unwrap();
    assert!(
        log.contains(&format!("\"path_hex\":\"{}\"", hex::encode(b"bad\xffname"))),
        "{log}"
    );
    assert!(!log.contains('\u{fffd}'), "{log}");

    let check = |dir: &Path| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(recipe).current_dir(dir);
        run_within(c, Duration::from_secs(60))
    };
    let r = check(&b);
    r.success();
    assert_eq!(r.stdout.matches(": OK").count(), names.len(), "{r}");
    // A damaged copy is caught.
    fs::write(
        b.join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
        "content X",
    )
    .unwrap();
    let r = check(&b);
    r.failure();
    assert_eq!(r.stdout.matches(": FAILED").count(), 1, "{r}");
    eprintln!(
        "adversarial plain: b3sum recipe: {} odd names checked, 1 damage caught, data lost: 0",
        names.len()
    );
}

/// The same refusals on a remote side: `.repo/` keys that are not ours, and
/// two places on one server where one holds the other.
fn foreign_control_on_remote(base: &str) -> usize {
    let url = unique_url(base, "plain-foreign");
    let tmp = tempfile::tempdir().unwrap();
    let (src, theirs) = (tmp.path().join("src"), tmp.path().join("theirs"));
    put_file(&src, "x.txt", "x", T0);
    put_file(&theirs, "manifest.xml", "<manifest/>", T0);
    // Somebody else's files under `.repo/` on the server.
    repo(&["mirror", s(&theirs), &format!("{url}/.repo"), "-y"]).success();
    let mut refused = 0;
    for cmd in ["mirror", "sync"] {
        let r = repo(&[cmd, s(&src), &url, "-y"]);
        r.code(2).stderr_has("is not a control folder of repo");
        refused += 1;
    }
    let back = tmp.path().join("back");
    repo(&["mirror", &format!("{url}/.repo"), s(&back), "-y"]).success();
    assert_eq!(tree(&back).len(), 1, "{:?}", tree(&back));
    // Two places on one server, one inside the other.
    let outer = format!("{url}-overlap");
    let inner = format!("{outer}/inner/copy");
    for (x, y) in [
        (outer.as_str(), inner.as_str()),
        (inner.as_str(), outer.as_str()),
    ] {
        repo(&["mirror", x, y, "-y"])
            .code(2)
            .stderr_has("must not overlap");
        refused += 1;
    }
    refused
}

#[test]
fn foreign_control_folder_on_ftp_and_s3_is_refused() {
    let mut refused = 0;
    for var in ["REPO_TEST_FTP_URL", "REPO_TEST_S3_URL"] {
        if let Some(base) = server(var) {
            refused += foreign_control_on_remote(&base);
        }
    }
    eprintln!(
        "adversarial plain: foreign .repo on remote sides: {refused} runs refused, data lost: 0"
    );
}

/// Runs the binary as nobody (through setpriv), for failures root cannot
/// meet (an unreadable file); `None` when that is not possible here.
fn repo_as_nobody(args: &[&str]) -> Option<Run> {
    let sp = if is_root() { setpriv() } else { None };
    let Some(sp) = sp else {
        assert!(
            std::env::var_os("CI").is_none(),
            "root and setpriv are needed under CI"
        );
        eprintln!("skipping: needs root and setpriv to run as nobody");
        return None;
    };
    let mut c = clean_command(sp);
    c.args(AS_NOBODY).arg(BIN);
    c.args(args);
    Some(run_within(c, Duration::from_secs(120)))
}

/// A copy that fails (here: the changed file cannot be read) must not make
/// the next run believe the other side deleted it: the failed path keeps
/// its history, and the destination's old version stays where it was.
#[test]
fn a_failed_copy_is_not_taken_for_a_deletion_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x.txt", "version 1", T0);
    put_file(&b, "x.txt", "version 1", T0);
    let chown = |p: &Path| {
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap()
    };
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "root is needed under CI");
        eprintln!("skipping: needs root");
        return;
    }
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    chown(&a);
    chown(&b);
    let Some(r) = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]) else {
        return;
    };
    r.success();
    // Edited on a, but unreadable to the run (as if locked or on a failing disk).
    put_file(&a, "x.txt", "version 2, the only copy", T1);
    chown(&a);
    fs::set_permissions(a.join("x.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let r = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]).unwrap();
    r.code(3);
    assert_eq!(
        read(&b, "x.txt").as_deref(),
        Some("version 1"),
        "a failed copy must leave the old version in place\n{r}"
    );
    // Readable again: the next run copies the edit; nothing is deleted.
    fs::set_permissions(a.join("x.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]).unwrap();
    let live = (read(&a, "x.txt"), read(&b, "x.txt"));
    eprintln!(
        "adversarial plain: failed copy then rerun: a={:?} b={:?}, data lost: {}",
        live.0,
        live.1,
        usize::from(live.0.is_none())
    );
    r.success();
    assert_eq!(live.0.as_deref(), Some("version 2, the only copy"), "{r}");
    assert_eq!(live.1.as_deref(), Some("version 2, the only copy"), "{r}");
}

/// Names are shown escaped in the plan, notes and conflicts: a newline
/// cannot fake a second line, an escape sequence cannot recolour or move
/// the terminal, and two names that are not UTF-8 do not both show as U+FFFD.
#[test]
fn plan_output_escapes_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let names: [&[u8]; 4] = [b"two\nlines", b"red\x1b[31m", b"\xff\xfe", b"\xfe\xff"];
    for n in names {
        fs::write(a.join(std::ffi::OsStr::from_bytes(n)), b"x").unwrap();
    }
    // A conflict too: different content, equal times.
    put_file(&a, "same.txt", "one", T0);
    put_file(&b, "same.txt", "other", T0);
    let r = repo(&["sync", s(&a), s(&b), "--dry-run"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    let raw = all.contains('\x1b') || all.contains("two\nlines") || all.contains('\u{fffd}');
    eprintln!(
        "adversarial plain: plan output escaped: {}, leaked: {}",
        !raw,
        usize::from(raw)
    );
    assert!(!raw, "raw names in the output:\n{r}");
    for shown in ["two\\nlines", "red\\x1b[31m", "\\xff\\xfe", "\\xfe\\xff"] {
        assert!(all.contains(shown), "{shown} not shown escaped:\n{r}");
    }
}

/// A folder on one side replaced by a symlink to a folder outside both
/// trees (by a user who owns that side): the run must never reach through
/// the symlink, neither moving the outside files into the trash nor writing
/// there; the folder replaced goes aside whole, and nothing is lost.
#[test]
fn folder_replaced_by_symlink_is_never_followed() {
    let mut outside_touched = 0;
    let mut runs = 0;
    for history in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, out) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("outside"),
        );
        put_file(&a, "d/f", "mine", T0);
        put_file(&a, "d/g", "also mine", T0);
        put_file(&out, "f", "precious, not ours", T0);
        put_file(&out, "g", "more of it", T0);
        let mut g = Guard::new([&a, &b]);
        if history {
            g.run(&["sync", s(&a), s(&b), "-y"]).success();
            fs::remove_dir_all(b.join("d")).unwrap();
        } else {
            fs::create_dir_all(&b).unwrap();
        }
        std::os::unix::fs::symlink(&out, b.join("d")).unwrap();
        let r = g.run(&["sync", s(&a), s(&b), "-y"]);
        runs += 1;
        let outside = tree(&out);
        let intact = outside.len() == 2
            && outside.get("f").map(String::as_str) == Some("precious, not ours")
            && outside.get("g").map(String::as_str) == Some("more of it");
        if !intact {
            outside_touched += 1;
            eprintln!("history {history}: outside changed: {outside:?}\n{r}");
        }
        r.success();
    }
    eprintln!(
        "adversarial plain: folder replaced by a symlink: {runs} runs, outside touched: {outside_touched}"
    );
    assert_eq!(outside_touched, 0);
}

/// A file that appears on the destination after the scan (the user saves
/// it while the run copies) is never replaced unseen: it is kept, and the
/// path is left for the next run to decide.
#[test]
fn file_created_during_the_run_is_not_overwritten() {
    let mut lost_total = 0;
    for mode in ["sync", "mirror"] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, pause) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("pause"),
        );
        fs::create_dir_all(&b).unwrap();
        fs::create_dir_all(&pause).unwrap();
        put_file(&a, "n.txt", "from a", T0);
        let mut c = clean_command(BIN);
        c.args([mode, s(&a), s(&b), "-y"])
            .env("REPO_TEST_PAUSE", "plain-copy")
            .env("REPO_TEST_PAUSE_DIR", &pause)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert!(
            wait_until(Duration::from_secs(60), || {
                crate::support::pause::paused_at(&pause, "plain-copy", pid)
            }),
            "{mode} never paused"
        );
        // The user saves a file of the same name on b meanwhile.
        put_file(&b, "n.txt", "the user's own, saved meanwhile", T1);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        let out = child.wait_with_output().unwrap();
        let mut have = HashSet::new();
        contents(&b, &mut have);
        let lost = usize::from(!have.contains(b"the user's own, saved meanwhile".as_slice()));
        if lost > 0 {
            eprintln!(
                "{mode}: the user's file was replaced unseen; exit {:?}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lost_total += lost;
    }
    eprintln!("adversarial plain: files created during a run: 2 runs, data lost: {lost_total}");
    assert_eq!(lost_total, 0);
}

/// The folder just made on the destination is swapped for a symlink to a
/// file outside (by the user who owns that side) before its mode is set:
/// the mode must not land on the outside file (root would make it readable
/// to everyone).
#[test]
fn folder_mode_is_not_set_through_a_swapped_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, pause, secret) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("pause"),
        tmp.path().join("secret"),
    );
    fs::create_dir_all(a.join("d")).unwrap();
    fs::set_permissions(a.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&pause).unwrap();
    fs::write(&secret, "shadow").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = clean_command(BIN);
    c.args(["mirror", s(&a), s(&b), "-y"])
        .env("REPO_TEST_PAUSE", "plain-dir-made")
        .env("REPO_TEST_PAUSE_DIR", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    assert!(
        wait_until(Duration::from_secs(60), || {
            crate::support::pause::paused_at(&pause, "plain-dir-made", pid)
        }),
        "mirror never paused"
    );
    fs::remove_dir(b.join("d")).unwrap();
    std::os::unix::fs::symlink(&secret, b.join("d")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = child.wait_with_output().unwrap();
    let mode = fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
    let leaked = usize::from(mode != 0o600);
    eprintln!(
        "adversarial plain: folder mode through a swapped symlink: secret mode {mode:o}, leaked: {leaked}"
    );
    assert_eq!(leaked, 0, "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs the binary with `args` in a mount namespace of its own where
/// `from` is bind-mounted on `on` (so the mount ends with the run and never
/// outlives a failed test); `None` when mounts are not permitted here.
fn repo_with_bind(from: &Path, on: &Path, args: &[&str]) -> Option<Run> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "root (bind mounts) is needed under CI"
        );
        eprintln!("SKIPPED: bind-mount tests need root");
        return None;
    }
    let mut c = clean_command("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" \"$1\" || exit 99; shift; exec \"$@\"")
        .arg(from)
        .arg(on)
        .arg(BIN)
        .args(args);
    let r = run_within(c, Duration::from_secs(60));
    if r.code == 99 {
        assert!(
            std::env::var_os("CI").is_none(),
            "mount --bind must work under CI\n{r}"
        );
        eprintln!("SKIPPED: mount --bind is not permitted here\n{r}");
        return None;
    }
    Some(r)
}

/// One side bind-mounted inside the other (or inside itself): the walk
/// must not take that folder for content. Without the guard a mirror finds
/// `b/sub` (the source itself) missing from the source and deletes what is
/// in it, the source's files; a sync copies the source into itself. The
/// folder is reported (exit 3), nothing in it or above it is touched, and
/// the rest of the run goes on.
#[test]
fn a_side_mounted_inside_a_side_is_never_walked() {
    // (what is mounted, where, command): a = source, b = destination.
    // (what is mounted, where, command, a flag, message): a is the source,
    // b the destination; deletions go to .repo/trash unless --no-archive
    // (`--exclude=/none` leaves nothing out).
    let cases: [(&str, &str, &str, &str, &str); 9] = [
        ("a", "b/sub", "mirror", "--no-archive", "is the source"),
        ("a", "b/sub", "mirror", "--exclude=/none", "is the source"),
        ("a", "b/sub", "sync", "--no-archive", "is the first side"),
        ("b", "a/sub", "mirror", "--no-archive", "is the destination"),
        (
            "b",
            "a/sub",
            "sync",
            "--exclude=/none",
            "is the second side",
        ),
        ("a", "a/sub", "mirror", "--no-archive", "is the source"),
        ("a", "b/deep/sub", "mirror", "--no-archive", "is the source"),
        // A folder of the source, not its top, mounted in the destination.
        (
            "a/d",
            "b/sub",
            "mirror",
            "--no-archive",
            "on the destination and",
        ),
        (
            "a/d",
            "b/sub",
            "sync",
            "--no-archive",
            "on the second side and",
        ),
    ];
    let mut trials = 0;
    let mut lost_total = 0;
    for (from, on, cmd, flag, says) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        put_file(&a, "keep.txt", "a's only copy", T0);
        put_file(&a, "d/inner.txt", "a's inner file", T0);
        put_file(&b, "old.txt", "b's stale file", T0);
        fs::create_dir_all(tmp.path().join(on)).unwrap();
        let before_a = tree(&a);
        let Some(r) = repo_with_bind(
            &tmp.path().join(from),
            &tmp.path().join(on),
            &[cmd, s(&a), s(&b), "-y", flag],
        ) else {
            return;
        };
        trials += 1;
        let after_a = tree(&a);
        let mut lost = 0;
        for (k, v) in &before_a {
            if after_a.get(k) != Some(v) && !(on.starts_with("a/") && k.starts_with("sub/")) {
                lost += 1;
            }
        }
        // Nothing new appears in a, but b's own file when syncing (no copy
        // of a into itself below the mount point).
        let grown = after_a
            .keys()
            .filter(|k| !(before_a.contains_key(*k) || (cmd == "sync" && *k == "old.txt")))
            .count();
        // Nor does b get a copy of a side under the mount point's name
        // (found below it once the mount is gone).
        let rel = on.split_once('/').map_or("", |(_, r)| r);
        let nested = tree(&b)
            .keys()
            .filter(|k| k.starts_with(&format!("{rel}/")))
            .count();
        lost_total += lost;
        eprintln!(
            "{cmd} {flag} with {from} on {on}: exit {}, changed in a: {lost}, new in a: {grown}, \
             nested in b: {nested}",
            r.code
        );
        assert_eq!(
            nested, 0,
            "{cmd} {flag} {from} on {on}: a side copied into b\n{r}"
        );
        assert_eq!(
            lost, 0,
            "{cmd} {flag} {from} on {on}: a's files changed\n{r}"
        );
        assert_eq!(
            grown, 0,
            "{cmd} {flag} {from} on {on}: files appeared in a\n{r}"
        );
        r.code(3);
        r.stderr_has(&format!("{} {says}", tmp.path().join(on).display()));
        r.stderr_has("unmount it");
        if cmd == "mirror" && from.starts_with('a') {
            // The rest of the run went on: b is a copy of a (mount point aside).
            assert_eq!(
                read(&b, "keep.txt").as_deref(),
                Some("a's only copy"),
                "{r}"
            );
            assert_eq!(read(&b, "old.txt"), None, "{r}");
        }
    }
    eprintln!(
        "adversarial plain: sides mounted inside sides: {trials} trials, data lost: {lost_total}"
    );
    assert_eq!(lost_total, 0);
}

/// A sync with history, then the first side mounted over the second's
/// `sub` (hiding what `sub` holds): `sub` must not look deleted (which would
/// delete the first side's copy) nor changed, and once the mount is gone
/// the next run finds nothing to do.
#[test]
fn a_mount_does_not_look_like_a_deletion_to_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "top.txt", "top", T0);
    put_file(&a, "sub/mine.txt", "in sub", T0);
    fs::create_dir_all(&b).unwrap();
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    assert_eq!(read(&b, "sub/mine.txt").as_deref(), Some("in sub"));
    let before = present(&[&a, &b]);
    let Some(r) = repo_with_bind(&a, &b.join("sub"), &["sync", s(&a), s(&b), "-y"]) else {
        return;
    };
    let after = repo(&["sync", s(&a), s(&b), "-y"]);
    let lost = lost(&before, &[&a, &b]);
    let (ta, tb) = (tree(&a), tree(&b));
    eprintln!(
        "adversarial plain: sync across a mount: exit {}, then {}, data lost: {}",
        r.code,
        after.code,
        lost.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}\n{r}\n{after}");
    r.code(3);
    r.stderr_has("is the first side");
    after.success();
    after.stdout_has("already in step");
    let want: BTreeMap<String, String> = [("sub/mine.txt", "in sub"), ("top.txt", "top")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(ta, want, "{r}\n{after}");
    assert_eq!(tb, want, "{r}\n{after}");
}
