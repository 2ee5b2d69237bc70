//! Snapshot lifecycle commands, end to end through the real binary:
//! snapshots (grouping), find, diff, dump, tag, cat, stats, key, lock,
//! forget (every retention rule) and prune (space reclaimed, restores
//! identical, and safe when killed at each crash point).
//!
//! Every test works in its own temporary directory; times are interpreted
//! in UTC (`TZ=UTC`) so retention periods are deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Cmp, PASSWORD, SMALL_CHUNKS, TestRepo, copy_tree, random_bytes, run, set_mtime, walk_all,
    write_file,
};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A [`TestRepo`] whose commands run with `TZ=UTC`, plus the lifecycle
/// tests' shorthands.
struct Env(TestRepo);

impl Deref for Env {
    type Target = TestRepo;

    fn deref(&self) -> &TestRepo {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        let mut t = TestRepo::new();
        t.env.push(("TZ".into(), "UTC".into()));
        Env(t)
    }

    /// A new environment with an initialized repository.
    fn init() -> Env {
        let e = Env::new();
        e.ok(["init"]);
        e
    }

    /// Like [`Env::init`], with small chunks so files span many blobs.
    fn init_small_chunks() -> Env {
        let e = Env::new();
        e.ok([&["init"][..], &SMALL_CHUNKS].concat());
        e
    }

    /// The binary with the repository and `password`.
    fn cmd_with_password(&self, password: &str) -> Command {
        let mut c = self.cmd_no_pw();
        c.env("REPO_PASSWORD", password);
        c
    }

    /// Runs with `--json`, must succeed.
    #[track_caller]
    fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.args(args).arg("--json");
        let o = run(c);
        o.success();
        o.json()
    }

    /// `create SRC [extra]`, returns the snapshot id.
    #[track_caller]
    fn create(&self, src: &Path, extra: &[&str]) -> String {
        let mut args: Vec<&OsStr> = vec![OsStr::new("create"), src.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let v = self.json(args);
        v["snapshot"].as_str().expect("snapshot id").to_string()
    }

    fn snapshot_ids(&self) -> Vec<String> {
        self.json(["snapshots"])
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[track_caller]
    fn check_read_data(&self) -> Value {
        let v = self.json(["check", "--read-data"]);
        assert_eq!(v["errors"], Value::Array(vec![]), "check found errors: {v}");
        v
    }

    /// Restores `snap` and returns where `src` ended up in the target.
    #[track_caller]
    fn restore(&self, snap: &str, src: &Path, name: &str) -> PathBuf {
        let target = self.join(name);
        self.ok([
            OsStr::new("restore"),
            OsStr::new(snap),
            OsStr::new("--target"),
            target.as_os_str(),
        ]);
        target.join(src.strip_prefix("/").expect("absolute"))
    }

    /// Names of the objects under `<repo>/<dir>`.
    fn object_ids(&self, dir: &str) -> BTreeSet<String> {
        self.objects(dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect()
    }
}

/// Names, types, contents, symlink targets, permission bits and mtimes
/// must all be the same.
#[track_caller]
fn assert_same_tree(expected: &Path, actual: &Path) {
    let cmp = Cmp {
        mode: true,
        mtime: true,
        root_mtime: true,
        ..Cmp::content_only()
    };
    crate::support::assert_same_tree(expected, actual, cmp);
}

fn ids_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// snapshots, find, diff, dump, tag, cat, stats
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// key, lock
// ---------------------------------------------------------------------------

#[test]
fn key_add_list_passwd_remove() {
    let e = Env::init();
    let with = |pw: &str, args: &[&str]| {
        let mut c = e.cmd_with_password(pw);
        c.args(args);
        run(c)
    };
    let keys = |pw: &str| -> Vec<Value> {
        let o = with(pw, &["key", "list", "--json"]);
        o.code(0);
        o.json()["keys"].as_array().unwrap().clone()
    };
    let first = keys(PASSWORD);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["current"], true);
    let original = first[0]["id"].as_str().unwrap().to_string();

    let pw_file = e.join("second");
    fs::write(&pw_file, "second password\n").unwrap();
    let added = e.json([
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        pw_file.as_os_str(),
    ])["added"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = keys("second password");
    assert_eq!(listed.len(), 2);
    for k in &listed {
        assert_eq!(k["current"], k["id"] == added.as_str(), "{k}");
    }
    // The key in use cannot be removed.
    let o = with("second password", &["key", "remove", &added[..8]]);
    o.code(2);
    assert!(o.stderr.contains("opened the repository"), "{o}");
    // Another one can.
    let r = with(
        "second password",
        &["key", "remove", &original[..8], "--json"],
    );
    r.code(0);
    assert_eq!(r.json()["removed"], original.as_str());
    with(PASSWORD, &["key", "list"]).code(12);
    // The last key cannot be removed either (it is also the one in use).
    with("second password", &["key", "remove", &added]).code(2);

    // passwd: a new key for the new password, the old key gone.
    let third = e.join("third");
    fs::write(&third, "third password").unwrap();
    let mut c = e.cmd_with_password("second password");
    c.args(["key", "passwd", "--json", "--new-password-file"])
        .arg(&third);
    let o = run(c);
    o.code(0);
    assert_eq!(o.json()["removed"], added.as_str());
    with("second password", &["snapshots"]).code(12);
    assert_eq!(keys("third password").len(), 1);
    // Without a file and without a terminal there is no new password.
    with("third password", &["key", "add"]).code(2);
    let empty = e.join("empty");
    fs::write(&empty, "\n").unwrap();
    let mut c = e.cmd_with_password("third password");
    c.args(["key", "add", "--new-password-file"]).arg(&empty);
    run(c).code(2);
}

#[test]
fn lock_holds_off_other_commands_until_released() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("f"), b"x");
    e.create(&src, &[]);

    let mut c = e.cmd();
    c.arg("lock")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let holder = c.spawn().expect("spawn lock");
    let start = Instant::now();
    while e.object_ids("locks").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lock never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = e.run(["prune"]);
    o.code(11);
    assert!(o.stderr.contains("exclusive lock"), "{o}");
    e.run([OsStr::new("create"), src.as_os_str()]).code(11);
    e.run(["forget", "--keep-last", "1"]).code(11);
    // Listing needs no lock.
    e.ok(["snapshots"]);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = holder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lock exits cleanly on SIGTERM: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("holding an exclusive lock"));
    assert!(e.object_ids("locks").is_empty(), "lock removed");
    e.ok(["prune"]);

    // --duration ends by itself.
    let t = Instant::now();
    let r = e.json(["lock", "--duration", "1s"]);
    assert_eq!(r["interrupted"], false);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(e.object_ids("locks").is_empty());

    // A killed holder leaves a stale lock: ignored by others, removed by unlock.
    let mut c = e.cmd();
    c.args(["lock", "--shared"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = c.spawn().unwrap();
    while e.object_ids("locks").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "lock never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A shared lock keeps out exclusive users only.
    e.run(["prune"]).code(11);
    e.ok([OsStr::new("create"), src.as_os_str()]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(e.object_ids("locks").len(), 1);
    // Prune removes the stale lock it ignores (SPEC.md §10.1), so nothing
    // is left for `unlock`.
    e.ok(["prune"]);
    assert!(e.object_ids("locks").is_empty());
    let r = e.json(["unlock"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------------------
// forget: retention rules
// ---------------------------------------------------------------------------

/// Snapshot times of the retention fixture (host `alpha`), oldest first.
const TIMES: [&str; 10] = [
    "2022-03-10T10:00:00Z", // 0
    "2023-12-31T23:00:00Z", // 1
    "2024-01-15T08:00:00Z", // 2
    "2024-01-31T09:00:00Z", // 3
    "2024-02-05T10:00:00Z", // 4  Monday, ISO week 6
    "2024-02-06T10:00:00Z", // 5  week 6
    "2024-02-12T10:00:00Z", // 6  Monday, week 7
    "2024-02-12T15:00:00Z", // 7  same day
    "2024-02-12T15:30:00Z", // 8  same hour
    "2024-02-13T09:00:00Z", // 9  newest
];

struct Fixture {
    env: Env,
    src: PathBuf,
    /// Snapshot ids by index into TIMES.
    ids: Vec<String>,
    /// The snapshot of host `beta`.
    beta: String,
}

fn retention_fixture() -> Fixture {
    let env = Env::init();
    let src = env.join("src");
    write_file(&src.join("f"), b"retention");
    let mut ids = Vec::new();
    for (i, t) in TIMES.iter().enumerate() {
        let mut extra = vec!["--host", "alpha", "--time", t];
        if i == 0 || i == 4 {
            extra.extend(["--tag", "keep"]);
        }
        if i == 4 {
            extra.extend(["--tag", "monthly-report"]);
        }
        ids.push(env.create(&src, &extra));
    }
    let beta = env.create(&src, &["--host", "beta", "--time", "2024-02-01T00:00:00Z"]);
    Fixture {
        env,
        src,
        ids,
        beta,
    }
}

impl Fixture {
    /// Runs `forget --dry-run --host alpha POLICY`; returns kept indices and their reasons.
    #[track_caller]
    fn kept(&self, policy: &[&str]) -> BTreeMap<usize, Vec<String>> {
        let mut args = vec!["forget", "--dry-run", "--host", "alpha"];
        args.extend_from_slice(policy);
        let r = self.env.json(args);
        assert_eq!(r["dry_run"], true);
        let groups = r["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{r}");
        let mut out = BTreeMap::new();
        for k in groups[0]["keep"].as_array().unwrap() {
            let id = k["id"].as_str().unwrap();
            let i = self.ids.iter().position(|x| x == id).expect("known id");
            let reasons = k["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            out.insert(i, reasons);
        }
        let removed = groups[0]["remove"].as_array().unwrap().len();
        assert_eq!(out.len() + removed, TIMES.len(), "{r}");
        out
    }

    #[track_caller]
    fn kept_set(&self, policy: &[&str]) -> Vec<usize> {
        self.kept(policy).into_keys().collect()
    }
}

#[test]
fn forget_keep_last_hourly_daily_weekly() {
    let f = retention_fixture();
    assert_eq!(f.kept_set(&["--keep-last", "3"]), vec![7, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-hourly", "3"]), vec![6, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-daily", "3"]), vec![5, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-weekly", "2"]), vec![5, 9]);
    // More periods than snapshots: the newest of each period.
    assert_eq!(
        f.kept_set(&["--keep-daily", "100"]),
        vec![0, 1, 2, 3, 4, 5, 8, 9]
    );
    let k = f.kept(&[
        "--keep-last",
        "1",
        "--keep-daily",
        "2",
        "--keep-weekly",
        "2",
    ]);
    assert_eq!(
        k[&9],
        vec!["last snapshot", "daily snapshot", "weekly snapshot"]
    );
    assert_eq!(k[&8], vec!["daily snapshot"]);
    assert_eq!(k[&5], vec!["weekly snapshot"]);
    assert_eq!(k.len(), 3);
    // Dry runs changed nothing.
    assert_eq!(f.env.snapshot_ids().len(), TIMES.len() + 1);
}

#[test]
fn forget_keep_monthly_yearly_within_tag() {
    let f = retention_fixture();
    assert_eq!(f.kept_set(&["--keep-monthly", "3"]), vec![1, 3, 9]);
    assert_eq!(f.kept_set(&["--keep-yearly", "2"]), vec![1, 9]);
    assert_eq!(f.kept_set(&["--keep-yearly", "5"]), vec![0, 1, 9]);
    // Within a span of the newest snapshot (2024-02-13T09:00), strictly after.
    assert_eq!(f.kept_set(&["--keep-within", "2d"]), vec![6, 7, 8, 9]);
    assert_eq!(
        f.kept_set(&["--keep-within", "1m"]),
        vec![2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        f.kept_set(&["--keep-within", "1y"]),
        (1..10).collect::<Vec<_>>()
    );
    assert_eq!(f.kept(&["--keep-within", "1d2h"])[&9], vec!["within 1d2h"]);
    assert_eq!(f.kept_set(&["--keep-tag", "keep"]), vec![0, 4]);
    assert_eq!(f.kept(&["--keep-tag", "keep"])[&0], vec!["tag keep"]);
    // A comma-separated list needs every tag.
    assert_eq!(f.kept_set(&["--keep-tag", "keep,monthly-report"]), vec![4]);
    assert_eq!(
        f.kept_set(&["--keep-tag", "nothing", "--keep-tag", "monthly-report"]),
        vec![4]
    );
    f.env.run(["forget", "--keep-within", "3w"]).code(2);
}

#[test]
fn forget_groups_removes_and_explains() {
    let f = retention_fixture();
    let e = &f.env;
    // Without a policy nothing is forgotten.
    e.run(["forget"]).code(2);
    e.run(["forget", "--keep-last", "1", &f.ids[0][..8]])
        .code(2);
    e.run(["forget", "--keep-last", "1", "--group-by", "planet"])
        .code(2);

    // Grouped by host (the default groups by host and paths): each keeps its newest.
    let r = e.json(["forget", "--dry-run", "--keep-last", "1"]);
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let kept: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g["keep"].as_array().unwrap().clone())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, BTreeSet::from([f.ids[9].clone(), f.beta.clone()]));
    assert_eq!(groups[0]["group"]["host"], "alpha");
    assert_eq!(
        groups[0]["group"]["paths"][0],
        f.src.to_string_lossy().as_ref()
    );
    // One group for everything: only the overall newest.
    let r = e.json(["forget", "--dry-run", "--keep-last", "1", "--group-by", ""]);
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r["groups"][0]["keep"][0]["id"], f.ids[9].as_str());
    assert_eq!(r["removed"].as_array().unwrap().len(), TIMES.len());

    // The text of a dry run names what is kept and why.
    let text = e
        .ok([
            "forget",
            "--dry-run",
            "--keep-daily",
            "2",
            "--keep-tag",
            "keep",
        ])
        .stdout;
    assert!(text.contains("snapshots for host alpha, paths ["), "{text}");
    assert!(
        text.contains(&format!(
            "{}  2024-02-13 09:00:00  daily snapshot",
            &f.ids[9][..8]
        )),
        "{text}"
    );
    assert!(text.contains("tag keep"), "{text}");
    assert!(text.contains("would remove"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(e.snapshot_ids().len(), TIMES.len() + 1);

    // For real: alpha keeps its policy, beta (another group) its newest.
    let r = e.json(["forget", "--keep-daily", "2", "--keep-tag", "keep"]);
    assert_eq!(r["dry_run"], false);
    let left: BTreeSet<String> = e.snapshot_ids().into_iter().collect();
    let expect: BTreeSet<String> = [0, 4, 8, 9]
        .iter()
        .map(|&i| f.ids[i].clone())
        .chain([f.beta.clone()])
        .collect();
    assert_eq!(left, expect);

    // Forget by id.
    let r = e.json(["forget", &f.ids[0][..8], &f.beta[..8]]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 2);
    assert_eq!(e.snapshot_ids().len(), 3);
    e.check_read_data();
}

// ---------------------------------------------------------------------------
// forget --prune and prune
// ---------------------------------------------------------------------------

#[test]
fn forget_prune_keeps_every_kept_snapshot_intact() {
    let e = Env::init_small_chunks();
    let src = e.join("src");
    let mut expected: Vec<(String, PathBuf)> = Vec::new();
    for round in 0..4u64 {
        // Each round replaces some files, keeps others, and adds new ones.
        write_file(
            &src.join(format!("round{round}.bin")),
            &random_bytes(300_000, 100 + round),
        );
        write_file(&src.join("shared.bin"), &random_bytes(200_000, 1));
        write_file(
            &src.join("changing.txt"),
            format!("round {round}\n").as_bytes(),
        );
        if round >= 1 {
            let _ = fs::remove_file(src.join(format!("round{}.bin", round - 1)));
        }
        fs::create_dir_all(src.join(format!("dir{round}"))).unwrap();
        write_file(
            &src.join(format!("dir{round}/inner")),
            &random_bytes(50_000, round),
        );
        let _ = std::os::unix::fs::symlink("shared.bin", src.join("link"));
        let id = e.create(
            &src,
            &["--time", &format!("2024-01-0{}T12:00:00Z", round + 1)],
        );
        let copy = e.join(format!("expected{round}"));
        copy_tree(&src, &copy);
        expected.push((id, copy));
    }
    let before = e.size();
    let r = e.json(["forget", "--keep-last", "2", "--prune"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 2);
    let p = &r["prune"];
    assert!(
        p["packs_removed"].as_u64().unwrap() + p["packs_repacked"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(e.size() < before, "prune freed nothing: {r}");
    assert_eq!(
        e.snapshot_ids(),
        vec![expected[2].0.clone(), expected[3].0.clone()]
    );

    e.check_read_data();
    for (i, (id, copy)) in expected.iter().enumerate().skip(2) {
        let got = e.restore(&id[..8], &src, &format!("restored{i}"));
        assert_same_tree(copy, &got);
    }
    // A second prune finds nothing more to do.
    let again = e.json(["prune"]);
    assert_eq!(again["packs_removed"], 0);
    assert_eq!(again["packs_repacked"], 0);
    assert_eq!(again["index_written"], 0);
}

#[test]
fn prune_dry_run_changes_nothing() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("a"), &random_bytes(100_000, 1));
    let s1 = e.create(&src, &[]);
    write_file(&src.join("a"), &random_bytes(100_000, 2));
    e.create(&src, &[]);
    e.ok(["forget", &s1[..8]]);
    let files = |e: &Env| -> BTreeSet<PathBuf> { walk_all(&e.repo).into_iter().collect() };
    let before = files(&e);
    let r = e.json(["prune", "--dry-run"]);
    assert_eq!(r["dry_run"], true);
    assert!(r["packs_removed"].as_u64().unwrap() + r["packs_repacked"].as_u64().unwrap() >= 1);
    assert!(
        r["bytes_after"].as_u64() < r["bytes_before"].as_u64(),
        "{r}"
    );
    assert_eq!(files(&e), before);
    let text = e.ok(["prune", "-n"]).stdout;
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    e.run(["prune", "--max-unused", "150"]).code(2);
}

/// A repository where prune has packs to delete (only used by forgotten
/// snapshots), packs to repack (partly used) and packs to keep, with the
/// kept snapshots' expected contents.
fn prune_fixture() -> (Env, PathBuf, Vec<(String, PathBuf)>) {
    let e = Env::init_small_chunks();
    let src = e.join("src");
    // s0: only Z (forgotten: its data pack becomes unused).
    write_file(&src.join("z.bin"), &random_bytes(400_000, 10));
    let s0 = e.create(&src, &[]);
    // s1: A and B in one pack (forgotten: the pack becomes partly used by s2).
    fs::remove_file(src.join("z.bin")).unwrap();
    write_file(&src.join("a.bin"), &random_bytes(400_000, 11));
    write_file(&src.join("b.bin"), &random_bytes(300_000, 12));
    let s1 = e.create(&src, &[]);
    // s2: B and C (kept), s3: B, C and D (kept).
    fs::remove_file(src.join("a.bin")).unwrap();
    write_file(&src.join("c.bin"), &random_bytes(300_000, 13));
    let s2 = e.create(&src, &[]);
    let c2 = e.join("expected2");
    copy_tree(&src, &c2);
    write_file(&src.join("sub/d.txt"), b"d");
    let s3 = e.create(&src, &[]);
    let c3 = e.join("expected3");
    copy_tree(&src, &c3);
    e.ok(["forget", &s0[..8], &s1[..8]]);
    (e, src, vec![(s2, c2), (s3, c3)])
}

#[track_caller]
fn assert_all_restorable(e: &Env, src: &Path, kept: &[(String, PathBuf)], tag: &str) {
    assert_eq!(
        e.snapshot_ids().into_iter().collect::<BTreeSet<_>>(),
        kept.iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
    );
    for (i, (id, copy)) in kept.iter().enumerate() {
        let got = e.restore(&id[..8], src, &format!("{tag}-restored{i}"));
        assert_same_tree(copy, &got);
    }
}

fn crash_at(point: &str) {
    let (e, src, kept) = prune_fixture();
    let index_before = e.object_ids("index");
    let packs_before = e.object_ids("data");

    let mut c = e.cmd();
    c.args(["prune", "--max-unused", "0"])
        .env("REPO_TEST_PRUNE_CRASH_AT", point);
    let o = run(c);
    o.code(1);
    let index_now = e.object_ids("index");
    let packs_now = e.object_ids("data");
    match point {
        "after-repack" => {
            // New packs and their index written; nothing deleted yet.
            assert!(index_before.is_subset(&index_now));
            assert!(
                index_now.len() > index_before.len(),
                "repack wrote an index"
            );
            assert!(packs_before.is_subset(&packs_now));
            assert!(packs_now.len() > packs_before.len(), "repack wrote packs");
        }
        "after-index" => {
            // The new index supersedes the old ones, which are still there.
            assert!(index_before.is_subset(&index_now));
            assert!(packs_before.is_subset(&packs_now));
        }
        "before-delete" => {
            // Old index objects gone, unneeded packs not yet.
            assert!(index_before.is_disjoint(&index_now));
            assert_eq!(index_now.len(), 1);
            assert!(packs_before.is_subset(&packs_now));
        }
        other => panic!("unknown crash point {other}"),
    }
    // The crashed prune left its lock behind; nobody waits for a dead process.
    assert_eq!(e.object_ids("locks").len(), 1);
    e.check_read_data();
    assert_all_restorable(&e, &src, &kept, "crashed");

    // Running prune again completes the job.
    let r = e.json(["prune", "--max-unused", "0"]);
    assert_eq!(r["packs_repacked"], 0, "{r}");
    let v = e.check_read_data();
    assert_eq!(
        v["notices"],
        Value::Array(vec![]),
        "no unused packs remain: {v}"
    );
    assert_eq!(e.object_ids("index").len(), 1);
    assert_all_restorable(&e, &src, &kept, "finished");
}

#[test]
fn prune_crash_after_repack_is_safe() {
    crash_at("after-repack");
}

#[test]
fn prune_crash_after_index_is_safe() {
    crash_at("after-index");
}

#[test]
fn prune_crash_before_delete_is_safe() {
    crash_at("before-delete");
}

#[test]
fn prune_without_crash_deletes_repacks_and_keeps() {
    let (e, src, kept) = prune_fixture();
    let r = e.json(["prune", "--max-unused", "0"]);
    assert!(r["packs_removed"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["packs_kept"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["blobs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["index_written"], 1);
    let index = e.object_ids("index");
    assert_eq!(index.len(), 1);
    let idx: Value = serde_json::from_slice(
        &e.ok(["cat", "index", index.iter().next().unwrap()])
            .stdout_bytes,
    )
    .unwrap();
    assert!(idx["supersedes"].as_array().unwrap().len() >= 4, "{idx}");
    let v = e.check_read_data();
    assert_eq!(v["notices"], Value::Array(vec![]));
    assert_all_restorable(&e, &src, &kept, "pruned");
}

#[test]
fn prune_reclaims_space_like_a_fresh_backup() {
    let e = Env::init();
    let src = e.join("src");
    // s1: A (4 MiB) and B (2 MiB); s2: B and C (2 MiB). Forgetting s1 leaves
    // A unreferenced: half of the 8 MiB stored, in a pack shared with B.
    write_file(&src.join("a.bin"), &random_bytes(4 << 20, 21));
    write_file(&src.join("b.bin"), &random_bytes(2 << 20, 22));
    let s1 = e.create(&src, &[]);
    fs::remove_file(src.join("a.bin")).unwrap();
    write_file(&src.join("c.bin"), &random_bytes(2 << 20, 23));
    let s2 = e.create(&src, &[]);
    let total = e.size();

    let r = e.json(["forget", &s1[..8], "--prune"]);
    let p = &r["prune"];
    assert!(
        p["packs_repacked"].as_u64().unwrap() >= 1,
        "the shared pack is repacked: {r}"
    );
    let pruned = e.size();

    let fresh = Env::init();
    fresh.create(&src, &[]);
    let reference = fresh.size();
    assert!(
        pruned as f64 <= reference as f64 * 1.10 && pruned as f64 >= reference as f64 * 0.90,
        "pruned repository has {pruned} bytes, a fresh backup {reference} (before prune: {total})"
    );
    assert!(pruned < total * 6 / 10, "{pruned} of {total}");
    e.check_read_data();
    let got = e.restore(&s2[..8], &src, "out");
    assert_same_tree(&src, &got);
}

#[test]
fn prune_refuses_when_a_snapshot_is_damaged() {
    let (e, _src, _kept) = prune_fixture();
    let snap = e.object_ids("snapshots").into_iter().next().unwrap();
    let path = e.repo.join("snapshots").join(&snap);
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let files_before: BTreeSet<PathBuf> = walk_all(&e.repo).into_iter().collect();
    let o = e.run(["prune", "--max-unused", "0"]);
    o.code(1);
    assert!(o.stderr.contains(&snap), "{o}");
    assert!(o.stderr.contains("deleted nothing"), "{o}");
    let files_after: BTreeSet<PathBuf> = walk_all(&e.repo)
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .collect();
    let files_before: BTreeSet<PathBuf> = files_before
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .collect();
    assert_eq!(files_after, files_before, "prune changed the repository");
}
