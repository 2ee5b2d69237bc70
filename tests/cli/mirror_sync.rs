//! `repo mirror` and `repo sync` on real folders (and a real FTP server).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::support::{
    BIN, Run, clean_command, put_file, repo_command, run, server, set_mtime, trust_test_ca,
    unique_url,
};

const T0: i64 = 1_700_000_000;

fn repo(args: &[&str]) -> Run {
    let mut c = repo_command();
    trust_test_ca(c.args(args));
    run(c)
}

/// Runs and expects `want` as the exit code; returns stdout+stderr.
#[track_caller]
fn expect(args: &[&str], want: i32) -> String {
    let o = repo(args);
    o.code(want);
    format!("{}{}", o.stdout, o.stderr)
}

/// Files (path -> content) below `root`, leaving out `.repo`.
fn files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in crate::support::walk_all(root) {
        let s = p.to_string_lossy().into_owned();
        if s.starts_with(".repo") {
            continue;
        }
        let full = root.join(&p);
        if full.is_file() {
            out.insert(s, fs::read_to_string(full).unwrap_or_default());
        }
    }
    out
}

/// Files below `root`, relative.
fn rel_files(root: &Path) -> Vec<std::path::PathBuf> {
    crate::support::walk_files(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

fn get<'a>(m: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    m.get(k).map(String::as_str)
}

fn manifest(root: &Path) -> Vec<serde_json::Value> {
    let t = fs::read_to_string(root.join(".repo/manifest.jsonl")).expect("manifest");
    t.lines()
        .map(|l| serde_json::from_str(l).expect("manifest line is JSON"))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every mode x selection x compare combination on the same starting pair.
#[test]
#[allow(clippy::too_many_lines)] // one mirror/sync story, step by step
fn every_mode_selection_and_compare() {
    let modes = ["backup", "mirror", "sync"];
    let selects = ["source", "dest", "newer", "none"];
    let compares = ["attr", "attr+", "hash"];
    let mut runs = 0;
    for mode in modes {
        for select in selects {
            for compare in compares {
                let tmp = tempfile::tempdir().unwrap();
                let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
                put_file(&a, "only_a.txt", "A only", T0);
                put_file(&b, "only_b.txt", "B only", T0);
                put_file(&a, "same.txt", "same", T0);
                put_file(&b, "same.txt", "same", T0);
                put_file(&a, "sub/a_newer.txt", "A new", T0 + 100);
                put_file(&b, "sub/a_newer.txt", "B old", T0);
                put_file(&a, "sub/b_newer.txt", "A old", T0);
                put_file(&b, "sub/b_newer.txt", "B new", T0 + 100);
                // Same bytes, different mtimes: only hashing sees they are equal.
                put_file(&a, "touched.txt", "equal", T0 + 5);
                put_file(&b, "touched.txt", "equal!", T0);
                fs::write(b.join("touched.txt"), "equal").unwrap();
                set_mtime(&b.join("touched.txt"), T0, 0);
                let cmd = if mode == "sync" { "sync" } else { "mirror" };
                let args = [
                    cmd,
                    s(&a),
                    s(&b),
                    "--mode",
                    mode,
                    "--select",
                    select,
                    "--compare",
                    compare,
                    "-y",
                ];
                let out = expect(&args, 0);
                runs += 1;
                let (fa, fb) = (files(&a), files(&b));
                let what = format!("{mode}/{select}/{compare}:\n{out}");
                // New files always travel towards where the mode allows.
                assert_eq!(get(&fb, "only_a.txt"), Some("A only"), "{what}");
                match mode {
                    "backup" => {
                        assert_eq!(get(&fb, "only_b.txt"), Some("B only"), "{what}");
                        assert_eq!(get(&fa, "only_b.txt"), None, "{what}");
                    }
                    "mirror" => {
                        assert_eq!(get(&fb, "only_b.txt"), None, "{what}");
                        // ...but it is kept in the trash, not lost.
                        let trashed = rel_files(&b.join(".repo/trash"));
                        assert!(trashed.iter().any(|p| p.ends_with("only_b.txt")), "{what}");
                    }
                    _ => assert_eq!(get(&fa, "only_b.txt"), Some("B only"), "{what}"),
                }
                assert_eq!(get(&fa, "same.txt"), Some("same"));
                assert_eq!(get(&fb, "same.txt"), Some("same"));
                // The source is never written by backup or mirror.
                if mode != "sync" {
                    assert_eq!(get(&fa, "sub/b_newer.txt"), Some("A old"), "{what}");
                    assert_eq!(get(&fa, "sub/a_newer.txt"), Some("A new"), "{what}");
                }
                let a_wins_a_newer = matches!(select, "source" | "newer");
                let a_wins_b_newer = select == "source";
                let b_wins_b_newer = matches!((select, mode), ("dest" | "newer", "sync"));
                let b_wins_a_newer = matches!((select, mode), ("dest", "sync"));
                let expect_b = |k: &str, a_wins: bool, orig: &str, a_text: &str| {
                    let want = if a_wins { a_text } else { orig };
                    assert_eq!(get(&fb, k), Some(want), "{k} on b, {what}");
                };
                expect_b("sub/a_newer.txt", a_wins_a_newer, "B old", "A new");
                expect_b("sub/b_newer.txt", a_wins_b_newer, "B new", "A old");
                if mode == "sync" {
                    let want = |b_wins: bool, orig: &'static str, b_text: &'static str| {
                        if b_wins { b_text } else { orig }
                    };
                    assert_eq!(
                        get(&fa, "sub/b_newer.txt"),
                        Some(want(b_wins_b_newer, "A old", "B new")),
                        "{what}"
                    );
                    assert_eq!(
                        get(&fa, "sub/a_newer.txt"),
                        Some(want(b_wins_a_newer, "A new", "B old")),
                        "{what}"
                    );
                }
                // Differing copies that were replaced are kept in the archive.
                if a_wins_a_newer {
                    let arch = rel_files(&b.join(".repo/archive"));
                    assert!(arch.iter().any(|p| p.ends_with("a_newer.txt")), "{what}");
                }
                // attr sees the touched file as different; hash knows it is equal.
                let touched_copied = compare != "hash" && select != "none";
                let b_mtime = fs::metadata(b.join("touched.txt")).unwrap();
                let moved = std::os::unix::fs::MetadataExt::mtime(&b_mtime) != T0;
                let expect_moved = touched_copied && (select == "source" || (select == "newer"));
                assert_eq!(moved, expect_moved, "touched.txt, {what}");
                // Hashes are recorded for copied files with attr+ and hash only.
                let m = manifest(&b);
                let rec = m
                    .iter()
                    .find(|e| e["path"] == "only_a.txt")
                    .unwrap_or_else(|| panic!("only_a.txt in manifest, {what}"));
                assert_eq!(rec["blake3"].is_string(), compare != "attr", "{what}");
                if compare != "attr" {
                    let h = blake3::hash(b"A only").to_hex().to_string();
                    assert_eq!(rec["blake3"], h.as_str());
                }
                // select none: differing files are reported, and the exit code is still 0.
                if select == "none" {
                    assert!(out.contains("differs (not copied"), "{what}");
                }
                // A second run finds nothing new to copy (undecided files stay undecided).
                let again = expect(&args, 0);
                assert!(
                    again.contains("nothing to do") || again.contains("copied 0 file(s)"),
                    "second run of {mode}/{select}/{compare} still copies:\n{again}"
                );
            }
        }
    }
    eprintln!("plain: {runs} mode x select x compare combinations checked");
    assert_eq!(runs, 36);
}

/// Sets up a synced pair, then applies `change` to each side and syncs.
fn synced_pair(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    put_file(&a, "keep.txt", "keep", T0);
    put_file(&a, "mod_a.txt", "v1", T0);
    put_file(&a, "mod_both.txt", "v1", T0);
    put_file(&a, "del_a_mod_b.txt", "v1", T0);
    put_file(&a, "del_b_mod_a.txt", "v1", T0);
    put_file(&a, "del_a.txt", "v1", T0);
    put_file(&a, "dir/inner.txt", "v1", T0);
    put_file(&a, "dir/other.txt", "v1", T0);
    put_file(&a, "gone/x.txt", "v1", T0);
    fs::create_dir_all(&b).unwrap();
    expect(&["sync", s(&a), s(&b), "-y"], 0);
    assert_eq!(files(&a), files(&b));
    (a, b)
}

#[test]
fn sync_two_sided_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = synced_pair(tmp.path());
    // One-sided changes.
    put_file(&a, "mod_a.txt", "v2 from a", T0 + 10);
    fs::remove_file(a.join("del_a.txt")).unwrap();
    fs::remove_dir_all(a.join("gone")).unwrap();
    // Two-sided ones.
    put_file(&a, "mod_both.txt", "v2 a", T0 + 10);
    put_file(&b, "mod_both.txt", "v2 b", T0 + 20);
    fs::remove_file(a.join("del_a_mod_b.txt")).unwrap();
    put_file(&b, "del_a_mod_b.txt", "v2 b", T0 + 20);
    put_file(&a, "del_b_mod_a.txt", "v2 a", T0 + 20);
    fs::remove_file(b.join("del_b_mod_a.txt")).unwrap();
    put_file(&a, "new_same.txt", "same", T0 + 30);
    put_file(&b, "new_same.txt", "same", T0 + 30);
    put_file(&a, "new_diff.txt", "from a", T0 + 30);
    put_file(&b, "new_diff.txt", "from b", T0 + 40);
    // Folder deleted on A while a file in it changed on B.
    fs::remove_dir_all(a.join("dir")).unwrap();
    put_file(&b, "dir/inner.txt", "v2 b", T0 + 50);

    // One stream for stdout and stderr, to see that conflicts are listed before anything is done.
    let mut c = clean_command("sh");
    c.arg("-c").arg("exec \"$0\" \"$@\" 2>&1").arg(BIN).args([
        "sync",
        s(&a),
        s(&b),
        "-y",
        "--resolve",
        "skip",
    ]);
    let o = run(c);
    o.code(3);
    let out = o.stdout;
    let listed = out.find("conflict(s):").unwrap();
    let done = out.find("synced:").unwrap();
    assert!(listed < done, "{out}");
    for (path, why) in [
        ("mod_both.txt", "changed on both sides"),
        (
            "del_a_mod_b.txt",
            "deleted on the first side but changed on the second",
        ),
        (
            "del_b_mod_a.txt",
            "deleted on the second side but changed on the first",
        ),
        (
            "new_diff.txt",
            "created on both sides with different content",
        ),
        (
            "dir/inner.txt",
            "deleted on the first side but changed on the second",
        ),
    ] {
        assert!(
            out.contains(&format!("{path}: {why}")),
            "{path} not reported as a conflict ({why}):\n{out}"
        );
    }
    let _ = out;
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(get(&fb, "mod_a.txt"), Some("v2 from a"));
    assert_eq!(get(&fb, "del_a.txt"), None);
    assert_eq!(get(&fb, "gone/x.txt"), None);
    assert!(
        !b.join("gone").exists(),
        "the deleted folder is gone from b"
    );
    // Nothing in a conflict was touched.
    assert_eq!(get(&fa, "mod_both.txt"), Some("v2 a"));
    assert_eq!(get(&fb, "mod_both.txt"), Some("v2 b"));
    assert_eq!(get(&fb, "del_a_mod_b.txt"), Some("v2 b"));
    assert_eq!(get(&fa, "del_b_mod_a.txt"), Some("v2 a"));
    assert_eq!(
        get(&fb, "dir/inner.txt"),
        Some("v2 b"),
        "changed file in a deleted folder"
    );
    // The unchanged sibling of the folder was deleted along with it (into the trash).
    assert_eq!(get(&fb, "dir/other.txt"), None);
    assert_eq!(get(&fa, "new_same.txt"), get(&fb, "new_same.txt"));

    // Skipped conflicts come back next time; `new` settles them by mtime.
    let out = expect(&["sync", s(&a), s(&b), "-y", "--resolve", "new"], 0);
    assert!(out.contains("5 conflict(s)"), "{out}");
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa, fb, "after resolving, both sides are equal");
    assert_eq!(get(&fa, "mod_both.txt"), Some("v2 b"));
    assert_eq!(get(&fa, "new_diff.txt"), Some("from b"));
    assert_eq!(get(&fa, "dir/inner.txt"), Some("v2 b"));
    // Everything replaced on the losing side is in its archive.
    let arch = rel_files(&a.join(".repo/archive"));
    assert!(arch.iter().any(|p| p.ends_with("mod_both.txt")), "{arch:?}");
    expect(&["sync", s(&a), s(&b), "-y"], 0);
    let logs = rel_files(&a.join(".repo/log"));
    assert!(!logs.is_empty());
}

#[test]
fn mirror_lists_destination_changes_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("src"), tmp.path().join("dst"));
    put_file(&a, "one.txt", "1", T0);
    put_file(&a, "two.txt", "2", T0);
    expect(&["mirror", s(&a), s(&b), "-y"], 0);
    put_file(&b, "one.txt", "edited on the copy", T0 + 1);
    put_file(&b, "stray.txt", "made on the copy", T0 + 1);
    put_file(&a, "two.txt", "2 again", T0 + 5);
    // Dry run: listed, nothing changes.
    let before = files(&b);
    let out = expect(&["mirror", s(&a), s(&b), "--dry-run"], 3);
    assert!(out.contains("one.txt: changed on the destination"), "{out}");
    assert!(
        out.contains("stray.txt: created on the destination"),
        "{out}"
    );
    assert!(out.contains("two.txt"), "{out}");
    assert_eq!(files(&b), before);
    // Without a terminal and without -y, nothing happens.
    let out = expect(&["mirror", s(&a), s(&b)], 2);
    assert!(out.contains("pass -y"), "{out}");
    assert_eq!(files(&b), before);
    // Default: conflicts skipped (exit 3), the rest done.
    expect(&["mirror", s(&a), s(&b), "-y"], 3);
    let fb = files(&b);
    assert_eq!(get(&fb, "two.txt"), Some("2 again"));
    assert_eq!(get(&fb, "one.txt"), Some("edited on the copy"));
    // Source wins: the edits are overwritten and deleted, but archived.
    expect(&["mirror", s(&a), s(&b), "-y", "--resolve", "local"], 0);
    assert_eq!(files(&a), files(&b));
    let kept: Vec<String> = rel_files(&b.join(".repo"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter()
            .any(|p| p.starts_with("archive/") && p.ends_with("one.txt")),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .any(|p| p.starts_with("trash/") && p.ends_with("stray.txt")),
        "{kept:?}"
    );
    // --no-archive really deletes.
    put_file(&b, "junk.txt", "x", T0);
    expect(
        &[
            "mirror",
            s(&a),
            s(&b),
            "-y",
            "--resolve",
            "local",
            "--no-archive",
        ],
        0,
    );
    assert!(
        !rel_files(&b.join(".repo"))
            .iter()
            .any(|p| p.ends_with("junk.txt"))
    );
    // Include and exclude.
    put_file(&a, "logs/x.log", "log", T0);
    put_file(&a, "keep/x.txt", "txt", T0);
    expect(&["mirror", s(&a), s(&b), "-y", "--exclude", "*.log"], 0);
    assert!(!b.join("logs/x.log").exists() && b.join("keep/x.txt").exists());
    put_file(&a, "keep/y.txt", "y", T0);
    put_file(&a, "other/z.txt", "z", T0);
    expect(&["mirror", s(&a), s(&b), "-y", "--include", "/keep"], 0);
    assert!(b.join("keep/y.txt").exists() && !b.join("other/z.txt").exists());
}

#[test]
fn hash_compare_reports_silent_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("src"), tmp.path().join("dst"));
    put_file(&a, "photo.jpg", "precious original bytes", T0);
    put_file(&a, "doc.txt", "document", T0);
    expect(&["mirror", s(&a), s(&b), "-y", "--compare", "hash"], 0);
    // Bit rot on the copy: same size, mtime put back.
    put_file(&b, "photo.jpg", "precious ORIGINAL bytes", T0);
    let out = expect(&["mirror", s(&a), s(&b), "-y"], 0);
    assert!(
        !out.contains("CORRUPT"),
        "attr compare cannot see it:\n{out}"
    );
    let out = expect(&["mirror", s(&a), s(&b), "-y", "--compare", "hash"], 3);
    assert!(
        out.contains("CORRUPT: photo.jpg on the destination"),
        "{out}"
    );
    // Repaired from the good source; the bad copy is kept for inspection.
    assert_eq!(
        get(&files(&b), "photo.jpg"),
        Some("precious original bytes")
    );
    // Rot on the source is reported and never copied over the good copy.
    put_file(&a, "doc.txt", "DOCUMENT", T0);
    let out = expect(&["mirror", s(&a), s(&b), "-y", "--compare", "hash"], 3);
    assert!(out.contains("CORRUPT: doc.txt on the source"), "{out}");
    assert_eq!(get(&files(&b), "doc.txt"), Some("document"));
    // The manifest alone lets b3sum-style tools check the copy.
    let m = manifest(&b);
    let rec = m.iter().find(|e| e["path"] == "doc.txt").unwrap();
    assert_eq!(rec["blake3"], blake3::hash(b"document").to_hex().as_str());
}

/// Mirror a tree to a remote side, change it, mirror again, and bring it back.
fn remote_round_trip(base: &str) {
    let url = unique_url(base, "plain");
    let tmp = tempfile::tempdir().unwrap();
    let (a, back) = (tmp.path().join("src"), tmp.path().join("back"));
    put_file(&a, "docs/readme.md", "# readme", T0);
    put_file(&a, "docs/space name.txt", "spaces", T0 + 1);
    put_file(&a, "docs/100% ~odd [name].txt", "odd", T0 + 1);
    put_file(&a, "data/big.bin", &"x".repeat(3_000_000), T0 + 2);
    put_file(&a, ".hidden", "dot file", T0 + 3);
    expect(&["mirror", s(&a), &url, "-y", "--compare", "attr+"], 0);
    let out = expect(&["mirror", s(&a), &url, "-y"], 0);
    assert!(
        out.contains("nothing to do"),
        "unchanged second run:\n{out}"
    );
    // Change, delete, add.
    put_file(&a, "docs/readme.md", "# readme v2", T0 + 10);
    fs::remove_file(a.join("docs/space name.txt")).unwrap();
    put_file(&a, "new.txt", "new", T0 + 10);
    expect(&["mirror", s(&a), &url, "-y"], 0);
    // Back into a fresh folder: identical content, and the recorded mtimes
    // travel through the remote side's manifest.
    expect(&["mirror", &url, s(&back), "-y"], 0);
    assert_eq!(files(&a), files(&back));
    let md = fs::metadata(back.join("docs/readme.md")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), T0 + 10);
    // The deleted file went to the remote side's trash, not away.
    let trash = tmp.path().join("trash");
    expect(
        &["mirror", &format!("{url}/.repo/trash"), s(&trash), "-y"],
        0,
    );
    assert!(
        rel_files(&trash)
            .iter()
            .any(|p| p.ends_with("space name.txt"))
    );
    // Sync both ways with the remote side.
    put_file(&back, "from-back.txt", "made in back", T0 + 20);
    expect(&["sync", s(&back), &url, "-y"], 0);
    let again = tmp.path().join("again");
    expect(&["mirror", &url, s(&again), "-y"], 0);
    assert_eq!(get(&files(&again), "from-back.txt"), Some("made in back"));
}

#[test]
fn mirror_to_ftp_and_back() {
    if let Some(base) = server("REPO_TEST_FTP_URL") {
        remote_round_trip(&base);
    }
}

#[test]
fn mirror_to_s3_and_back() {
    if let Some(base) = server("REPO_TEST_S3_URL") {
        remote_round_trip(&base);
    }
}

/// `restore --delete` makes the target an exact copy, keeps what it
/// replaces, and trusts the target's manifest to skip untouched files.
#[test]
fn restore_delete_mirrors_the_snapshot() {
    let t = crate::support::TestRepo::new();
    t.init();
    let src = t.join("src");
    put_file(&src, "a.txt", "alpha", T0);
    put_file(&src, "sub/b.txt", "beta", T0);
    put_file(&src, "sub/c.txt", "gamma", T0);
    put_file(&src, "keep/d.txt", "delta", T0);
    t.create(["src"]);
    let target = t.join("target");
    let spec = "latest:/".to_string() + src.strip_prefix("/").unwrap().to_str().unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec!["--delete", "-y", "--json"];
        args.extend_from_slice(extra);
        t.restore(&spec, &target, &args).json()
    };
    restore(&[]);
    let leaf = target.clone();
    assert_eq!(files(&src), files(&leaf));
    // Damage the target: an extra file and folder, an edited file, a folder where a file was.
    put_file(&leaf, "extra.txt", "not in the snapshot", T0);
    put_file(&leaf, "sub/new/deep.txt", "not either", T0);
    put_file(&leaf, "a.txt", "edited", T0 + 9);
    fs::remove_file(leaf.join("sub/c.txt")).unwrap();
    put_file(&leaf, "sub/c.txt/inside", "a folder in the way", T0);
    let r = restore(&[]);
    assert_eq!(files(&src), files(&leaf), "{r}");
    assert!(r["deleted"].as_u64().unwrap() >= 3, "{r}");
    let kept: Vec<String> = rel_files(&target.join(".repo"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for name in ["extra.txt", "deep.txt", "inside"] {
        assert!(
            kept.iter()
                .any(|p| p.starts_with("trash/") && p.ends_with(name)),
            "{name} kept in the trash: {kept:?}"
        );
    }
    assert!(
        kept.iter()
            .any(|p| p.starts_with("archive/") && p.ends_with("a.txt")),
        "{kept:?}"
    );
    // Untouched target: every file skipped on the manifest's word, nothing read or written.
    let r = restore(&[]);
    assert_eq!(r["skipped_unread"], 4, "{r}");
    assert_eq!(r["bytes"], 0, "{r}");
    // A changed ctime means "look again": compared by content, still identical.
    crate::support::chmod(&leaf.join("sub/b.txt"), 0o600);
    let r = restore(&[]);
    assert_eq!(r["skipped_unread"], 3, "{r}");
    assert_eq!(r["skipped_files"], 4, "{r}");
    // Filters limit what --delete may remove.
    put_file(&leaf, "keep/local-note.txt", "mine", T0);
    put_file(&leaf, "sub/stray.txt", "stray", T0);
    let sub_glob = format!("{}/sub", src.display());
    restore(&["--include", &sub_glob]);
    assert!(
        leaf.join("keep/local-note.txt").exists(),
        "outside the include"
    );
    assert!(!leaf.join("sub/stray.txt").exists());
    // --no-archive deletes for real.
    put_file(&leaf, "gone.txt", "x", T0);
    restore(&["--no-archive"]);
    assert!(!leaf.join("gone.txt").exists());
    assert!(
        !rel_files(&target.join(".repo"))
            .iter()
            .any(|p| p.ends_with("gone.txt"))
    );
}

/// `--resolve ask` asks per conflict on a terminal, then asks to go ahead.
#[test]
fn ask_prompts_per_conflict_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x.txt", "one", T0);
    put_file(&a, "y.txt", "one", T0);
    expect(&["sync", s(&a), s(&b), "-y"], 0);
    put_file(&a, "x.txt", "a side", T0 + 1);
    put_file(&b, "x.txt", "b side!", T0 + 2);
    put_file(&a, "y.txt", "a side", T0 + 1);
    put_file(&b, "y.txt", "b side!", T0 + 2);
    // script(1) gives the command a terminal and feeds it our answers:
    // keep the second side's x, the first side's y, then confirm.
    let cmd = format!("'{}' sync '{}' '{}'", BIN, a.display(), b.display());
    let mut child = clean_command("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"2\n1\ny\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    assert_eq!(
        out.matches("keep [1] first side / [2] second side").count(),
        2,
        "{out}"
    );
    assert!(out.contains("go ahead? [y/N]"), "{out}");
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(get(&fa, "x.txt"), Some("b side!"));
    assert_eq!(get(&fb, "y.txt"), Some("a side"));
    assert_eq!(fa, fb);
}

/// A manifest planted on the other side (any server can write one) is
/// checked before use: an unsafe path stops the run with advice, touching nothing.
#[test]
fn hostile_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x.txt", "x", T0);
    fs::create_dir_all(b.join(".repo")).unwrap();
    fs::write(
        b.join(".repo/manifest.jsonl"),
        "{\"format\":\"repo-manifest\",\"version\":1,\"created\":\"x\"}\n\
         {\"path\":\"../evil\",\"type\":\"file\",\"size\":1,\"mtime_ns\":0,\"mode\":\"0644\"}\n",
    )
    .unwrap();
    let out = expect(&["sync", s(&a), s(&b), "-y"], 1);
    assert!(out.contains("unsafe path \"../evil\""), "{out}");
    assert!(out.contains("Move it away to start over"), "{out}");
    assert!(!b.join("x.txt").exists() && !tmp.path().join("evil").exists());
}
