//! Peers' fixtures: pyftpsync's bidirectional test, BackuPy's matrix of
//! modes, equal starts and equal times.

use super::*;

/// pyftpsync's bidirectional fixture, recreated: identical folders, a first
/// run with nothing to do, then every kind of change on both sides.
#[test]
#[allow(clippy::too_many_lines)] // one multi-peer sync story, step by step
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
