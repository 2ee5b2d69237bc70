//! Round trips of every metadata case and of a real tree, incremental
//! backups, deduplication.

use super::*;

#[test]
fn round_trip_preserves_every_metadata_case() {
    let t = TestRepo::new();
    let src = t.join("src");
    let tree = rich_tree(&src);
    t.init();

    let report = t.create([&src]);
    assert!(errors_of(&report).is_empty(), "{report:#}");
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let sum = &report["summary"];
    assert_eq!(u(&sum["errors"]), 0);
    let file_mds: Vec<fs::Metadata> = walk_all(&src)
        .iter()
        .map(|r| fs::symlink_metadata(src.join(r)).unwrap())
        .filter(|m| m.is_file())
        .collect();
    let inodes: BTreeSet<u64> = file_mds.iter().map(|m| m.ino()).collect();
    assert_eq!(u(&sum["files_new"]), file_mds.len() as u64, "{report:#}");
    assert_eq!(
        u(&sum["total_bytes"]),
        file_mds.iter().map(|m| m.len()).sum::<u64>()
    );

    let target = t.join("restore");
    let r = t.restore("latest", &target, &["--verify", "--json"]);
    let rr = r.json();
    assert!(errors_of(&rr).is_empty(), "{r}");
    // Every file is read back once; the extra hard-link names are links.
    assert_eq!(u(&rr["verified_files"]), inodes.len() as u64, "{r}");

    let copy = restored(&target, &src);
    let n = assert_same_tree(&src, &copy, Cmp::full());
    assert_eq!(n, walk_all(&src).len() + 1, "entries compared");

    // Hard links: one inode for the three names.
    let mds: Vec<_> = tree
        .hard_links
        .iter()
        .map(|p| fs::metadata(restored(&target, p)).unwrap())
        .collect();
    assert!(mds.iter().all(|m| m.ino() == mds[0].ino()), "not one inode");
    assert_eq!(mds[0].nlink(), 3);

    // The sparse file keeps its holes: all-zero chunks are not written, so
    // at most the two chunks holding data (4 MiB max each by default; the bound
    // below allows the 8 MiB of repositories made before 2026-11-24) are allocated.
    assert!(fs::metadata(&tree.sparse).unwrap().blocks() * 512 < 1024 * 1024);
    let sp = fs::metadata(restored(&target, &tree.sparse)).unwrap();
    assert_eq!(sp.len(), SPARSE_LEN);
    assert!(
        sp.blocks() * 512 <= 2 * 8 * 1024 * 1024 + 256 * 1024,
        "sparse file of {SPARSE_LEN} bytes restored with {} bytes allocated",
        sp.blocks() * 512
    );

    // Symlinks are stored, not followed.
    let to_dir = copy.join("links/to-dir");
    assert!(
        fs::symlink_metadata(&to_dir)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(copy.join("links/bad-target")).unwrap(),
        Path::new(OsStr::from_bytes(b"bad-target-\xfe"))
    );
    assert!(
        copy.join("names")
            .join(OsStr::from_bytes(b"bad\xff\xfename"))
            .is_file()
    );
    if tree.xattrs {
        assert_eq!(
            xattr::get(copy.join("small.txt"), "user.binary").unwrap(),
            Some(vec![0u8, 1, 2, 255, 254, 0])
        );
    }
    if is_root() {
        let m = fs::symlink_metadata(copy.join("owned-by-1234")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let m = fs::symlink_metadata(copy.join("link-owned-by-4321")).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 8765));
    }
    assert_eq!(
        fs::metadata(copy.join("setgid")).unwrap().mode() & 0o7777,
        0o2775
    );
}

// ---------------------------------------------------------------------------
// 2. A real directory tree: /usr/share/doc
// ---------------------------------------------------------------------------

#[test]
fn round_trip_of_usr_share_doc() {
    let doc = Path::new("/usr/share/doc");
    let Ok(rd) = fs::read_dir(doc) else {
        eprintln!("skipping: no /usr/share/doc");
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect();
    dirs.sort();
    dirs.truncate(200);
    assert!(!dirs.is_empty());

    let t = TestRepo::new();
    t.init();
    let report = t.create(&dirs);
    assert!(errors_of(&report).is_empty(), "{report:#}");
    let target = t.join("restore");
    t.restore("latest", &target, &["--verify"]);
    let mut n = 0;
    for d in &dirs {
        n += assert_same_tree(d, &restored(&target, d), Cmp::full());
    }
    assert_eq!(
        n as u64,
        u(&report["summary"]["files_new"])
            + u(&report["summary"]["dirs"])
            + u(&report["summary"]["others"])
            // the synthetic parents: the root, /usr, /usr/share, /usr/share/doc
            - 4,
        "entries compared vs. entries in the snapshot"
    );
    // Nothing else was restored next to the chosen directories.
    let restored_doc: BTreeSet<_> = fs::read_dir(restored(&target, doc))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let want: BTreeSet<_> = dirs.iter().map(|d| restored(&target, d)).collect();
    assert_eq!(restored_doc, want);

    t.ok(["check", "--read-data"])
        .stdout_has("no errors were found");
}

// ---------------------------------------------------------------------------
// 3. Incremental backups
// ---------------------------------------------------------------------------

#[test]
fn incremental_backup_reads_only_what_changed() {
    // Every parent directory of a source is recorded in the snapshot, so an
    // unrelated change in /tmp would add a (tiny) new root tree. A directory
    // directly below / has no parent we do not control; use one when we may.
    let (dir, stable_parents) = match tempfile::Builder::new()
        .prefix("repo-cli-incr-")
        .tempdir_in("/")
    {
        Ok(d) => (d, true),
        Err(_) => (tempfile::tempdir().unwrap(), false),
    };
    let t = TestRepo::from_dir(dir);
    let src = t.join("src");
    simple_tree(&src, 300);
    let big = src.join("big.bin");
    let big_content = random_bytes(BIG_LEN, 301);
    fs::write(&big, &big_content).unwrap();
    let nfiles = 7;
    t.init();

    let r1 = t.create([&src]);
    assert_eq!(u(&r1["summary"]["files_new"]), nfiles, "{r1:#}");
    let packs1 = t.objects("data");

    // Nothing changed: nothing is read, nothing is added.
    let r2 = t.create([&src]);
    let s2 = &r2["summary"];
    assert_eq!(r2["parent"], r1["snapshot"], "{r2:#}");
    assert_eq!(u(&s2["files_new"]), 0, "{r2:#}");
    assert_eq!(u(&s2["files_changed"]), 0, "{r2:#}");
    assert_eq!(u(&s2["files_unchanged"]), nfiles, "{r2:#}");
    assert_eq!(u(&s2["bytes_read"]), 0, "{r2:#}");
    if stable_parents {
        assert_eq!(u(&s2["data_added"]), 0, "{r2:#}");
        assert_eq!(u(&s2["blobs_new"]), 0, "{r2:#}");
        assert_eq!(t.objects("data"), packs1, "an unchanged backup wrote packs");
    } else {
        // Only the trees of changed parent directories may be new.
        assert!(u(&s2["data_added"]) < 64 * 1024, "{r2:#}");
        assert!(u(&s2["blobs_new"]) <= 3, "{r2:#}");
    }

    // One small file changed: only it is read.
    let changed = src.join("sub/c.txt");
    write_random(&changed, 1500, 302);
    let r3 = t.create([&src]);
    let s3 = &r3["summary"];
    assert_eq!(u(&s3["files_changed"]), 1, "{r3:#}");
    assert_eq!(u(&s3["files_unchanged"]), nfiles - 1, "{r3:#}");
    assert_eq!(u(&s3["files_new"]), 0, "{r3:#}");
    assert_eq!(u(&s3["bytes_read"]), 1500, "{r3:#}");

    // Insert bytes in the middle of the big file: only the chunks around
    // the edit are new. Also add a file.
    let mut edited = big_content.clone();
    let insert = random_bytes(1000, 303);
    edited.splice(BIG_LEN / 2..BIG_LEN / 2, insert);
    fs::write(&big, &edited).unwrap();
    fs::write(src.join("new.txt"), b"a new file\n").unwrap();
    let r4 = t.create([&src]);
    let s4 = &r4["summary"];
    assert_eq!(u(&s4["files_changed"]), 1, "{r4:#}");
    assert_eq!(u(&s4["files_new"]), 1, "{r4:#}");
    assert_eq!(u(&s4["files_unchanged"]), nfiles - 1, "{r4:#}");
    assert_eq!(u(&s4["bytes_read"]), (BIG_LEN + 1000 + 11) as u64, "{r4:#}");
    let added = u(&s4["data_added"]);
    assert!(
        added > 1000 && added < 5_000_000,
        "inserting 1000 bytes into a {BIG_LEN}-byte file added {added} bytes"
    );

    // --force reads every file again but finds nothing new.
    let r5 = t.create(["--force".as_ref(), src.as_os_str()]);
    let s5 = &r5["summary"];
    assert_eq!(u(&s5["bytes_read"]), u(&s5["total_bytes"]), "{r5:#}");
    assert_eq!(u(&s5["files_unchanged"]), 0, "{r5:#}");
    if stable_parents {
        assert_eq!(u(&s5["data_added"]), 0, "{r5:#}");
    } else {
        assert!(u(&s5["data_added"]) < 64 * 1024, "{r5:#}");
    }

    // The last snapshot restores to exactly the current tree.
    let target = t.join("restore");
    t.restore("latest", &target, &[]);
    assert_same_tree(&src, &restored(&target, &src), Cmp::full());
}

#[test]
fn unchanged_directories_keep_their_trees_and_changes_always_show() {
    // A re-backup names the parent's tree blob for every directory whose
    // entries all came out identical; each kind of change below must still
    // give its directory a new tree, and untouched directories must not.
    let t = TestRepo::new();
    let src = t.join("src");
    for (p, body) in [
        ("a/b/deep.txt", "deep"),
        ("a/keep.txt", "keep"),
        ("c/gone.txt", "gone"),
        ("c/stay.txt", "stay"),
        ("d/x.txt", "x"),
        ("e/ex.log", "log"),
        ("e/ex.txt", "txt"),
    ] {
        let f = src.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, body).unwrap();
    }
    fs::create_dir_all(src.join("f")).unwrap();
    std::os::unix::fs::symlink("a", src.join("f/link")).unwrap();
    t.init();
    let tree = |snap: &Value, dir: &str| -> String {
        let path = if dir.is_empty() {
            src.clone()
        } else {
            src.join(dir)
        };
        let spec = format!("{}:{}", snap.as_str().unwrap(), path.display());
        let v = t.ok(["cat", "tree", spec.as_str()]).json();
        v["id"].as_str().unwrap().to_string()
    };
    let dirs = ["", "a", "a/b", "c", "d", "e", "f"];
    let s1 = t.create([&src])["snapshot"].clone();
    let s2 = t.create([&src])["snapshot"].clone();
    for d in dirs {
        assert_eq!(tree(&s1, d), tree(&s2, d), "unchanged {d:?} got a new tree");
    }

    // A deleted file (with the directory's mtime put back), a chmod deep
    // down, a newly excluded file and a retargeted symlink.
    let c_mtime = fs::metadata(src.join("c")).unwrap().mtime();
    fs::remove_file(src.join("c/gone.txt")).unwrap();
    set_mtime(&src.join("c"), c_mtime, 0);
    chmod(&src.join("a/b/deep.txt"), 0o600);
    fs::remove_file(src.join("f/link")).unwrap();
    std::os::unix::fs::symlink("d", src.join("f/link")).unwrap();
    let s3 =
        t.create(["--exclude".as_ref(), "*.log".as_ref(), src.as_os_str()])["snapshot"].clone();
    for d in ["", "a", "a/b", "c", "e", "f"] {
        assert_ne!(tree(&s2, d), tree(&s3, d), "the change in {d:?} was hidden");
    }
    assert_eq!(tree(&s2, "d"), tree(&s3, "d"), "untouched d got a new tree");

    let target = t.join("restore");
    t.restore(s3.as_str().unwrap(), &target, &[]);
    let back = restored(&target, &src);
    assert!(
        !back.join("e/ex.log").exists(),
        "an excluded file came back"
    );
    let e_mtime = fs::metadata(src.join("e")).unwrap().mtime_nsec();
    let e_secs = fs::metadata(src.join("e")).unwrap().mtime();
    fs::remove_file(src.join("e/ex.log")).unwrap();
    set_mtime(&src.join("e"), e_secs, e_mtime);
    assert_same_tree(&src, &back, Cmp::full());
}

#[test]
fn restore_never_writes_through_a_symlink_in_the_target() {
    // Directories are created level by level in parallel; a symlink found
    // where one belongs must be replaced before anything goes below it.
    let t = TestRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::write(src.join("a/b/c/f.txt"), "inside").unwrap();
    fs::write(src.join("a/g.txt"), "g").unwrap();
    fs::create_dir_all(src.join("x/y/z")).unwrap();
    fs::write(src.join("x/y/z/h.txt"), "h").unwrap();
    t.init();
    t.create([&src]);
    let target = t.join("restore");
    let base = restored(&target, &src);
    let (out1, out2) = (t.join("outside1"), t.join("outside2"));
    fs::create_dir_all(&out1).unwrap();
    fs::create_dir_all(&out2).unwrap();
    fs::create_dir_all(base.join("x")).unwrap();
    std::os::unix::fs::symlink(&out1, base.join("a")).unwrap();
    std::os::unix::fs::symlink(&out2, base.join("x/y")).unwrap();
    t.restore("latest", &target, &[]);
    for out in [&out1, &out2] {
        assert!(
            fs::read_dir(out).unwrap().next().is_none(),
            "restore wrote through a symlink into {}",
            out.display()
        );
    }
    assert_same_tree(&src, &base, Cmp::full());
}

// ---------------------------------------------------------------------------
// 4. Deduplication
// ---------------------------------------------------------------------------

#[test]
fn identical_files_are_stored_once() {
    let t = TestRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("copy")).unwrap();
    let data = random_bytes(5_000_000, 40);
    fs::write(src.join("one.bin"), &data).unwrap();
    fs::write(src.join("copy/two.bin"), &data).unwrap();
    fs::write(src.join("three.bin"), &data).unwrap();
    t.init();
    let before = t.size();
    let r = t.create([&src]);
    let grew = t.size() - before;
    assert!(
        (5_000_000..5_600_000).contains(&grew),
        "three identical 5 MB files grew the repository by {grew} bytes"
    );
    let sum = &r["summary"];
    assert_eq!(u(&sum["total_bytes"]), 15_000_000);
    assert!(
        (5_000_000..5_100_000).contains(&u(&sum["data_added"])),
        "{r:#}"
    );
    let target = t.join("restore");
    t.restore("latest", &target, &[]);
    assert_same_tree(&src, &restored(&target, &src), Cmp::full());
}
