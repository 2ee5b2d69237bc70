//! Looking into snapshots: snapshots (grouping), find, diff, dump, tag, cat, stats.

use super::*;

#[test]
fn snapshots_group_by_host_and_tags() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("f"), b"x");
    let a1 = e.create(&src, &["--host", "alpha", "--tag", "daily"]);
    let a2 = e.create(&src, &["--host", "alpha"]);
    let b1 = e.create(&src, &["--host", "beta", "--tag", "daily"]);

    let groups = e.json(["snapshots", "--group-by", "host"]);
    let groups = groups.as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["group"]["host"], "alpha");
    assert!(groups[0]["group"].get("paths").is_none());
    assert_eq!(
        ids_of(&groups[0]["snapshots"]),
        BTreeSet::from([a1.clone(), a2.clone()])
    );
    assert_eq!(
        ids_of(&groups[1]["snapshots"]),
        BTreeSet::from([b1.clone()])
    );

    let by_tags = e.json(["snapshots", "--group-by", "host,tags"]);
    assert_eq!(by_tags.as_array().unwrap().len(), 3);

    let text = e.ok(["snapshots", "--group-by", "host,paths"]).stdout;
    assert!(text.contains("snapshots for host alpha, paths ["), "{text}");
    assert!(text.contains("snapshots for host beta"), "{text}");
    // Filters still apply, and the plain table is unchanged.
    let only = e.json(["snapshots", "--tag", "daily", "--host", "alpha"]);
    assert_eq!(ids_of(&only), BTreeSet::from([a1]));
    assert!(e.ok(["snapshots"]).stdout.contains("3 snapshot(s)"));
    e.run(["snapshots", "--group-by", "colour"]).code(2);
}

#[test]
fn find_by_name_and_by_path() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("a.txt"), b"first");
    write_file(&src.join("d/b.txt"), b"second!");
    write_file(&src.join("d/c.log"), b"log");
    let s1 = e.create(&src, &[]);
    fs::remove_file(src.join("a.txt")).unwrap();
    write_file(&src.join("d/e/f.txt"), b"third");
    let s2 = e.create(&src, &[]);

    let r = e.json(["find", "*.txt"]);
    let m = r["matches"].as_array().expect("matches");
    let found: BTreeSet<(String, String)> = m
        .iter()
        .map(|x| {
            (
                x["snapshot"].as_str().unwrap()[..8].to_string(),
                x["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let p = |s: &str| src.join(s).to_string_lossy().into_owned();
    let expect: BTreeSet<(String, String)> = [
        (&s1, "a.txt"),
        (&s1, "d/b.txt"),
        (&s2, "d/b.txt"),
        (&s2, "d/e/f.txt"),
    ]
    .iter()
    .map(|(s, f)| (s[..8].to_string(), p(f)))
    .collect();
    assert_eq!(found, expect);
    let b = m
        .iter()
        .find(|x| x["path"] == p("d/b.txt").as_str())
        .unwrap();
    assert_eq!(b["size"], 7);
    assert_eq!(b["type"], "file");
    assert!(b["mtime"].as_str().is_some_and(|t| t.len() >= 19));

    // A pattern with `/` matches whole paths; `--snapshot` narrows the search.
    let r = e.json(["find", "**/d/*.log", "--snapshot", &s2[..8]]);
    let m = r["matches"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["path"], p("d/c.log").as_str());
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1);
    // Directories match too.
    let r = e.json(["find", "e"]);
    assert_eq!(r["matches"].as_array().unwrap().len(), 1);
    assert_eq!(r["matches"][0]["type"], "dir");
    let text = e.ok(["find", "*.txt"]).stdout;
    assert!(text.contains("4 match(es) in 2 of 2 snapshot(s)"), "{text}");
    e.run(["find", "a["]).code(2);
}

#[test]
fn diff_added_removed_modified_metadata() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("keep/same.bin"), &random_bytes(10_000, 1));
    write_file(&src.join("mod.txt"), b"old content");
    write_file(&src.join("meta.txt"), b"same");
    write_file(&src.join("touch.txt"), b"same too");
    write_file(&src.join("gone.txt"), b"12345");
    write_file(&src.join("gonedir/f1"), b"aa");
    write_file(&src.join("gonedir/f2"), b"bbb");
    let s1 = e.create(&src, &[]);

    write_file(&src.join("mod.txt"), b"new content, longer");
    fs::set_permissions(src.join("meta.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&src.join("touch.txt"), 1_600_000_000, 5);
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_dir_all(src.join("gonedir")).unwrap();
    write_file(&src.join("new.txt"), b"brand new");
    write_file(&src.join("newdir/x"), b"xyz");
    let s2 = e.create(&src, &[]);

    let r = e.json(["diff", &s1[..8], &s2[..8]]);
    let changes: BTreeMap<String, (String, Vec<String>)> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let path = c["path"].as_str().unwrap();
            let rel = Path::new(path)
                .strip_prefix(&src)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.to_string());
            let fields = c["fields"]
                .as_array()
                .map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (rel, (c["change"].as_str().unwrap().to_string(), fields))
        })
        .collect();
    let get = |k: &str| {
        changes
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no change for {k}: {r}"))
    };
    assert_eq!(get("new.txt").0, "added");
    assert_eq!(get("newdir").0, "added");
    assert_eq!(get("newdir/x").0, "added");
    assert_eq!(get("gone.txt").0, "removed");
    assert_eq!(get("gonedir").0, "removed");
    assert_eq!(get("gonedir/f1").0, "removed");
    assert_eq!(get("mod.txt").0, "modified");
    assert!(get("mod.txt").1.contains(&"content".to_string()));
    assert_eq!(get("meta.txt"), ("metadata".into(), vec!["mode".into()]));
    assert_eq!(get("touch.txt"), ("metadata".into(), vec!["mtime".into()]));
    assert!(!changes.contains_key("keep") && !changes.contains_key("keep/same.bin"));

    assert_eq!(r["added"]["files"], 2);
    assert_eq!(r["added"]["dirs"], 1);
    assert_eq!(r["added"]["bytes"], 9 + 3);
    assert_eq!(r["removed"]["files"], 3);
    assert_eq!(r["removed"]["dirs"], 1);
    assert_eq!(r["removed"]["bytes"], 5 + 2 + 3);
    assert_eq!(r["modified"]["files"], 1);
    assert_eq!(r["modified"]["bytes_before"], 11);
    assert_eq!(r["modified"]["bytes_after"], 19);
    // `keep/` has the same subtree id in both and is skipped unread.
    assert!(r["identical_subtrees"].as_u64().unwrap() >= 1, "{r}");

    let text = e.ok(["diff", &s1[..8], &s2[..8]]).stdout;
    assert!(text.contains(&format!("+    {}", src.join("new.txt").display())));
    assert!(text.contains(&format!("-    {}", src.join("gone.txt").display())));
    assert!(text.contains(&format!("M    {}", src.join("mod.txt").display())));
    assert!(text.contains(&format!("U    {}  (mode)", src.join("meta.txt").display())));
    assert!(
        text.contains("Files:    2 new, 3 removed, 1 changed"),
        "{text}"
    );

    // A snapshot compared with itself has no changes.
    let same = e.json(["diff", &s2[..8], "latest"]);
    assert_eq!(same["changes"], Value::Array(vec![]));
    assert_eq!(same["identical_subtrees"], 1);
}

#[test]
fn dump_file_streams_and_directory_is_tar() {
    let e = Env::init_small_chunks();
    let src = e.join("src");
    let big = random_bytes(1_500_000, 7);
    write_file(&src.join("big.bin"), &big);
    write_file(&src.join("sub/small.txt"), b"small\n");
    fs::set_permissions(src.join("sub/small.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    write_file(&src.join("exec.sh"), b"#!/bin/sh\n");
    fs::set_permissions(src.join("exec.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/small.txt", src.join("link")).unwrap();
    let weird = src.join(OsStr::from_bytes(b"caf\xe9-not-utf8.txt"));
    write_file(&weird, b"latin-1 name");
    let long_name = "n".repeat(150);
    write_file(&src.join("sub").join(&long_name), b"long name");
    write_file(&src.join("hard1"), b"linked");
    fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    let has_xattr = xattr::set(src.join("sub/small.txt"), "user.repo-test", b"v1").is_ok();
    set_mtime(&src.join("big.bin"), 1_700_000_000, 123_456_789);
    set_mtime(&src.join("sub/small.txt"), 1_600_000_000, 1);
    set_mtime(&src.join("sub"), 1_650_000_000, 987_654_321);
    set_mtime(&src, 1_650_000_001, 0);
    e.create(&src, &[]);

    // A file: exactly its bytes.
    let o = e.ok([
        OsStr::new("dump"),
        OsStr::new("latest"),
        src.join("big.bin").as_os_str(),
    ]);
    assert!(o.stdout_bytes == big, "dumped file differs");
    let o = e.ok([OsStr::new("dump"), OsStr::new("latest"), weird.as_os_str()]);
    assert_eq!(o.stdout_bytes, b"latin-1 name");

    // A directory: a tar archive GNU tar extracts to the same tree.
    let o = e.ok([OsStr::new("dump"), OsStr::new("latest"), src.as_os_str()]);
    let tar_file = e.join("src.tar");
    fs::write(&tar_file, &o.stdout_bytes).unwrap();
    let out = e.join("untar");
    fs::create_dir_all(&out).unwrap();
    let mut c = Command::new("tar");
    if has_xattr {
        c.args(["--xattrs", "--xattrs-include=*"]);
    }
    let st = c
        .arg("-xpf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&out)
        .status()
        .expect("run tar");
    assert!(st.success(), "GNU tar could not extract the dump");
    let x = out.join("src");
    assert_same_tree(&src, &x);
    assert_eq!(
        fs::metadata(x.join("hard1")).unwrap().ino(),
        fs::metadata(x.join("hard2")).unwrap().ino(),
        "hard links are kept"
    );
    if has_xattr {
        assert_eq!(
            xattr::get(x.join("sub/small.txt"), "user.repo-test").unwrap(),
            Some(b"v1".to_vec())
        );
    }

    // The whole snapshot: paths relative to `/`.
    let o = e.ok(["dump", "latest", "/"]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(&o.stdout_bytes)?;
            ch.wait_with_output()
        })
        .expect("tar -t");
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    let rel = src.strip_prefix("/").unwrap().join("exec.sh");
    assert!(names.lines().any(|l| Path::new(l) == rel), "{names}");

    // Symlinks and missing paths are refused with a clear message.
    e.run([
        OsStr::new("dump"),
        OsStr::new("latest"),
        src.join("link").as_os_str(),
    ])
    .code(2);
    let miss = e.run([
        OsStr::new("dump"),
        OsStr::new("latest"),
        src.join("nope").as_os_str(),
    ]);
    miss.code(1);
    assert!(miss.stderr.contains("not found"), "{miss}");
}

#[test]
fn tag_rewrites_snapshot_and_records_original() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("f"), b"x");
    let first = e.create(&src, &["--tag", "a"]);

    let r = e.json(["tag", &first[..8], "--add", "b", "--add", "c"]);
    let second = r["snapshots"][0]["new"].as_str().unwrap().to_string();
    assert_eq!(
        r["snapshots"][0]["tags"],
        serde_json::json!(["a", "b", "c"])
    );
    assert_eq!(
        e.snapshot_ids(),
        vec![second.clone()],
        "old snapshot removed"
    );
    let s: Value =
        serde_json::from_slice(&e.ok(["cat", "snapshot", &second]).stdout_bytes).unwrap();
    assert_eq!(s["original"], first.as_str());
    assert_eq!(s["tags"], serde_json::json!(["a", "b", "c"]));

    let r = e.json(["tag", "latest", "--remove", "a"]);
    let third = r["snapshots"][0]["new"].as_str().unwrap().to_string();
    let s: Value = serde_json::from_slice(&e.ok(["cat", "snapshot", &third]).stdout_bytes).unwrap();
    assert_eq!(s["original"], first.as_str(), "original stays the first id");
    assert_eq!(s["tags"], serde_json::json!(["b", "c"]));

    let r = e.json(["tag", "latest", "--set", "x", "--set", "y"]);
    assert_eq!(r["snapshots"][0]["tags"], serde_json::json!(["x", "y"]));
    // Nothing to change: the snapshot stays as it is.
    let r = e.json(["tag", "latest", "--add", "x"]);
    assert_eq!(r["snapshots"][0]["new"], Value::Null);
    assert_eq!(e.snapshot_ids().len(), 1);
    e.run(["tag", "latest"]).code(2);
    // The rewritten snapshot still restores, and the repository is whole.
    let got = e.restore("latest", &src, "out");
    assert_eq!(fs::read(got.join("f")).unwrap(), b"x");
    e.check_read_data();
}

#[test]
fn cat_prints_decrypted_objects() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("f.txt"), b"hello");
    let snap = e.create(&src, &[]);
    let cat = |args: &[&str]| -> Value {
        let mut a = vec!["cat"];
        a.extend_from_slice(args);
        serde_json::from_slice(&e.ok(a).stdout_bytes).expect("cat prints JSON")
    };
    let config = cat(&["config"]);
    assert_eq!(config["version"], 1);
    assert_eq!(config["cipher"], "xchacha20-poly1305");

    let s = cat(&["snapshot", &snap[..10]]);
    assert_eq!(s["paths"][0], src.to_string_lossy().as_ref());
    let root = s["tree"].as_str().unwrap().to_string();
    let t = cat(&["tree", &root[..12]]);
    assert_eq!(t["id"], root.as_str());
    assert!(t["nodes"].as_array().is_some_and(|n| !n.is_empty()));
    let dir = cat(&["tree", &format!("latest:{}", src.display())]);
    let f = &dir["nodes"][0];
    assert_eq!(f["name"], "f.txt");
    assert_eq!(f["type"], "file");
    assert_eq!(f["size"], 5);
    assert_eq!(f["mode"], "0644");
    assert_eq!(f["content"][0]["len"], 5);
    assert_eq!(f["content"][0]["id"].as_str().map(str::len), Some(64));

    let index_id = e.object_ids("index").into_iter().next().unwrap();
    let idx = cat(&["index", &index_id[..8]]);
    assert_eq!(idx["id"], index_id.as_str());
    let pack = idx["packs"][0]["id"].as_str().unwrap().to_string();
    let blobs = idx["packs"][0]["blobs"].as_array().unwrap().len();
    let p = cat(&["pack", &pack]);
    assert_eq!(p["name_matches"], true);
    assert_eq!(p["entries"].as_array().unwrap().len(), blobs);
    assert_eq!(p["size"], idx["packs"][0]["size"]);

    let key = e.object_ids("keys").into_iter().next().unwrap();
    let k = cat(&["key", &key[..8]]);
    assert_eq!(k["kdf"], "argon2id");

    e.run(["cat", "config", "extra"]).code(2);
    e.run(["cat", "snapshot"]).code(2);
    e.run(["cat", "index", "ffffffffffff"]).code(1);
    e.run(["cat", "masterkey"]).code(2);
}

#[test]
fn stats_restore_size_and_raw_data() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("a"), &random_bytes(200_000, 3));
    write_file(&src.join("b"), &random_bytes(100_000, 4));
    write_file(&src.join("zeros"), &vec![0u8; 300_000]);
    let s1 = e.create(&src, &[]);
    e.create(&src, &["--force"]);
    let logical = 600_000u64;

    let one = e.json(["stats", &s1[..8]]);
    assert_eq!(one["snapshots"], 1);
    assert_eq!(one["restore_size"], logical);
    assert_eq!(one["files"], 3);
    assert_eq!(one["mode"], "restore-size");

    let all = e.json(["stats", "--mode", "raw-data"]);
    assert_eq!(all["mode"], "raw-data");
    assert_eq!(all["snapshots"], 2);
    assert_eq!(all["restore_size"], 2 * logical);
    // Both snapshots reference the same blobs.
    assert_eq!(all["data_blobs"], one["data_blobs"]);
    assert_eq!(all["raw_data"], logical);
    assert_eq!(all["dedup_ratio"].as_f64(), Some(2.0));
    // The zeros compress well, the random data not at all.
    let c = all["compression_ratio"].as_f64().unwrap();
    assert!(c > 1.3, "compression ratio {c}");
    let stored = all["stored_size"].as_u64().unwrap();
    assert!(stored < logical && stored > 300_000, "stored {stored}");
    assert!(all["repository_pack_bytes"].as_u64().unwrap() >= stored);

    let text = e.ok(["stats", "--mode", "raw-data"]).stdout;
    assert!(text.contains("Dedup ratio:     2.00x"), "{text}");
    assert!(e.ok(["stats"]).stdout.contains("Restore size:"));
}
