//! Selection, dry runs, snapshot metadata, ls and partial restores;
//! password sources; nothing stored in plaintext.

use super::*;

#[test]
#[allow(clippy::too_many_lines)] // one table of selection cases
fn excludes_caches_and_dry_run() {
    let t = TestRepo::new();
    let src = t.join("src");
    let files = [
        "keep.txt",
        "notes.tmp",
        "sub/keep2.txt",
        "sub/x.tmp",
        "build/out.o",
        "build/deep/more.o",
        "secret-1.key",
        "sub/secret-2.key",
        "deep/node_modules/pkg/index.js",
        "deep/kept.js",
        "cache/blob.bin",
        "cache/nested/blob2.bin",
        "fakecache/data",
    ];
    for f in files {
        let p = src.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, f.as_bytes()).unwrap();
    }
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n",
    )
    .unwrap();
    fs::write(
        src.join("fakecache/CACHEDIR.TAG"),
        b"Signature: not the right one at all, no no\n",
    )
    .unwrap();
    let exclude_file = t.join("excludes.txt");
    fs::write(&exclude_file, "# a comment\n\nsecret-*\n  node_modules  \n").unwrap();
    let build = format!("{}/build", src.display());
    let selection = [
        "--exclude",
        "*.tmp",
        "--exclude",
        &build,
        "--exclude-file",
        exclude_file.to_str().unwrap(),
        "--exclude-caches",
    ];
    t.init();

    // A dry run does everything but write.
    let before = walk_all(&t.repo);
    let mut args: Vec<&str> = vec!["--dry-run"];
    args.extend(selection);
    args.push(src.to_str().unwrap());
    let dry = t.create(&args);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["snapshot"].is_null(), "{dry:#}");
    assert_eq!(walk_all(&t.repo), before, "a dry run changed storage");

    let mut args: Vec<&str> = selection.to_vec();
    args.extend(["--tag", "daily", "--tag", "x-y", "--host", "test-host-1"]);
    args.push(src.to_str().unwrap());
    let real = t.create(&args);
    assert_eq!(
        dry["summary"]["files_new"], real["summary"]["files_new"],
        "dry run and real run disagree"
    );
    assert_eq!(u(&real["summary"]["files_new"]), 6, "{real:#}");

    let listed = ls_paths(&t.ok(["ls", "latest", "--json"]).json());
    let abs = |r: &str| format!("{}/{r}", src.display());
    for want in [
        "keep.txt",
        "sub/keep2.txt",
        "deep",
        "deep/kept.js",
        "cache",
        "cache/CACHEDIR.TAG",
        "fakecache/CACHEDIR.TAG",
        "fakecache/data",
    ] {
        assert!(listed.contains(&abs(want)), "{want} missing: {listed:#?}");
    }
    for gone in [
        "notes.tmp",
        "sub/x.tmp",
        "build",
        "secret-1.key",
        "sub/secret-2.key",
        "deep/node_modules",
        "cache/blob.bin",
        "cache/nested",
    ] {
        assert!(!listed.contains(&abs(gone)), "{gone} not excluded");
    }

    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1, "the dry run wrote a snapshot");
    let snap = &snaps[0];
    assert_eq!(snap["id"], real["snapshot"]);
    assert_eq!(s(&snap["short_id"]), &s(&snap["id"])[..8]);
    assert_eq!(snap["tags"], serde_json::json!(["daily", "x-y"]));
    assert_eq!(snap["host"], "test-host-1");
    assert_eq!(snap["paths"], serde_json::json!([lossy(&src)]));

    // Filters of `snapshots`.
    let count = |args: &[&str]| {
        let mut a = vec!["snapshots", "--json"];
        a.extend(args);
        t.ok(&a).json().as_array().unwrap().len()
    };
    assert_eq!(count(&["--tag", "daily"]), 1);
    assert_eq!(count(&["--tag", "weekly"]), 0);
    assert_eq!(count(&["--host", "another-host"]), 0);
}

#[test]
fn ls_partial_restores_and_snapshot_ids() {
    let t = TestRepo::new();
    let src = t.join("src");
    simple_tree(&src, 90);
    let a_txt = src.join("a.txt");
    let old_a = fs::read(&a_txt).unwrap();
    t.init();
    let r1 = t.create([&src]);
    fs::write(&a_txt, b"changed\n").unwrap();
    // A relative source path names the same absolute path (cwd is the test dir).
    let r2 = t.create(["./src/../src"]);
    let (id1, id2) = (s(&r1["snapshot"]), s(&r2["snapshot"]));
    let prefix1 = &id1[..8];

    let snaps = t.snapshots();
    let ids: Vec<&str> = snaps.iter().map(|v| s(&v["id"])).collect();
    assert_eq!(ids, vec![id1, id2], "snapshots are listed oldest first");
    assert_eq!(snaps[1]["parent"], r1["snapshot"]);

    // ls of a directory lists its entries; --recursive everything below.
    let sub = src.join("sub");
    let abs = |r: &str| format!("{}/{r}", src.display());
    let mut c = t.cmd();
    c.args(["ls", prefix1]).arg(&sub).arg("--json");
    let ls = run(c);
    ls.success();
    let v = ls.json();
    assert_eq!(v["snapshot"], r1["snapshot"]);
    assert_eq!(
        ls_paths(&v),
        BTreeSet::from([abs("sub/c.txt"), abs("sub/deeper"), abs("sub/e.log")])
    );
    let mut c = t.cmd();
    c.args(["ls", "latest"]).arg(&sub).arg("--recursive");
    let ls = run(c);
    ls.success();
    let lines: BTreeSet<&str> = ls.stdout.lines().collect();
    assert_eq!(
        lines,
        BTreeSet::from([
            abs("sub/c.txt").as_str(),
            abs("sub/deeper").as_str(),
            abs("sub/deeper/d.bin").as_str(),
            abs("sub/e.log").as_str()
        ]),
        "{ls}"
    );

    // SNAP:/sub/path restores that directory's contents into the target.
    let t1 = t.join("r-sub");
    t.restore(&format!("{prefix1}:{}", sub.display()), &t1, &[]);
    assert_same_tree(&sub, &t1, Cmp::full());
    // ...and a single file from the older snapshot gets its older content.
    // (The target exists: see restore_of_a_single_file_creates_the_target.)
    let t2 = t.join("r-file");
    fs::create_dir(&t2).unwrap();
    t.restore(&format!("{prefix1}:{}", a_txt.display()), &t2, &[]);
    assert_eq!(walk_all(&t2), vec![PathBuf::from("a.txt")]);
    assert_eq!(fs::read(t2.join("a.txt")).unwrap(), old_a);

    // --include keeps matching paths (and the directories leading to them).
    let t3 = t.join("r-include");
    t.restore("latest", &t3, &["--include", "*.txt"]);
    let got: BTreeSet<PathBuf> = walk_all(&t3)
        .into_iter()
        .filter(|p| t3.join(p).is_file())
        .collect();
    let want: BTreeSet<PathBuf> = ["a.txt", "sub/c.txt", "other/f.txt"]
        .iter()
        .map(|r| restored(Path::new(""), &src.join(r)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(fs::read(restored(&t3, &a_txt)).unwrap(), b"changed\n");

    // --exclude drops a directory and everything below it.
    let t4 = t.join("r-exclude");
    t.restore("latest", &t4, &["--exclude", "sub", "--exclude", "*.bin"]);
    let got: BTreeSet<PathBuf> = walk_all(&restored(&t4, &src)).into_iter().collect();
    let want: BTreeSet<PathBuf> = ["a.txt", "other", "other/f.txt"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(got, want);

    // An explicit --parent (by prefix) is used instead of the latest.
    let r3 = t.create([OsStr::new("--parent"), OsStr::new(prefix1), src.as_os_str()]);
    assert_eq!(r3["parent"], r1["snapshot"], "{r3:#}");
    assert_eq!(u(&r3["summary"]["files_changed"]), 1, "{r3:#}");
    assert_eq!(u(&r3["summary"]["bytes_read"]), 8, "{r3:#}");

    // Unknown snapshots are reported as such.
    t.run(["ls", "nonexistent"]).code(1).stderr_has("not found");
}

// ---------------------------------------------------------------------------
// 11. Password sources
// ---------------------------------------------------------------------------

#[test]
fn password_sources() {
    let t = TestRepo::new();
    t.init();
    let pw_file = t.join("pw.txt");
    fs::write(&pw_file, format!("{PASSWORD}\nthe rest is ignored\n")).unwrap();

    // --password-file
    let mut c = t.cmd_no_pw();
    c.arg("--password-file").arg(&pw_file).arg("snapshots");
    run(c).success();

    // REPO_PASSWORD_FILE, and the repository from REPO_REPOSITORY.
    let mut c = t.bare();
    c.env("REPO_PASSWORD_FILE", &pw_file)
        .env("REPO_REPOSITORY", &t.repo)
        .arg("snapshots");
    run(c).success();

    // --password-command
    let mut c = t.cmd_no_pw();
    c.arg("--password-command")
        .arg(format!("printf '%s\\n' '{PASSWORD}'"))
        .arg("snapshots");
    run(c).success();

    // REPO_PASSWORD_COMMAND giving the wrong password.
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD_COMMAND", "echo wrong")
        .arg("snapshots");
    run(c).code(12);

    // A failing password command.
    let mut c = t.cmd_no_pw();
    c.args(["--password-command", "exit 3", "snapshots"]);
    run(c).code(13).stderr_has("password command");

    // A missing password file.
    let mut c = t.cmd_no_pw();
    c.arg("--password-file")
        .arg(t.join("no-such-file"))
        .arg("snapshots");
    run(c).code(13).stderr_has("no-such-file");

    // No password at all and no terminal.
    let mut c = t.cmd_no_pw();
    c.arg("snapshots");
    run(c).code(13).stderr_has("REPO_PASSWORD");
}

// ---------------------------------------------------------------------------
// 12. Nothing is stored in plaintext
// ---------------------------------------------------------------------------

#[test]
fn storage_contains_no_plaintext() {
    const MARKER: &str = "PLAINTEXT-MARKER-7f3a";
    let t = TestRepo::new();
    let src = t.join(format!("dir-{MARKER}"));
    let sub = src.join(format!("sub-{MARKER}"));
    fs::create_dir_all(&sub).unwrap();
    // Short (stored uncompressed), compressible, and incompressible content.
    fs::write(src.join(format!("{MARKER}.txt")), MARKER).unwrap();
    fs::write(sub.join("doc.txt"), MARKER.repeat(2000)).unwrap();
    let mut noisy = random_bytes(300_000, 120);
    for at in [0usize, 1000, 150_000, 299_000] {
        noisy[at..at + MARKER.len()].copy_from_slice(MARKER.as_bytes());
    }
    fs::write(src.join("noisy.bin"), &noisy).unwrap();
    std::os::unix::fs::symlink(format!("/target/{MARKER}"), src.join("link")).unwrap();
    let _ = xattr::set(
        src.join("noisy.bin"),
        format!("user.{MARKER}"),
        MARKER.as_bytes(),
    );
    t.init();
    let tag = format!("tag-{MARKER}");
    let host = format!("host-{MARKER}");
    let mut c = t.cmd();
    c.args(["create", "--tag", &tag, "--host", &host]).arg(&src);
    run(c).success();
    // The owner of the password sees everything.
    t.ok(["ls", "latest"]).stdout_has(MARKER);

    let hits = files_containing(&t.repo, MARKER.as_bytes());
    assert!(hits.is_empty(), "plaintext marker stored in {hits:?}");
    let names: Vec<PathBuf> = walk_all(&t.repo)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(MARKER))
        .collect();
    assert!(names.is_empty(), "marker in storage names: {names:?}");
    // Nor any stretch of the random data.
    let hits = files_containing(&t.repo, &noisy[5000..5032]);
    assert!(
        hits.is_empty(),
        "file content stored in plaintext in {hits:?}"
    );
    // Sanity: the scan does look at every object.
    assert!(t.objects("data").len() >= 2);
    assert_eq!(t.objects("snapshots").len(), 1);
    assert!(t.objects("locks").is_empty());
}
