//! The local cache of remote repositories, against the real S3 server:
//! filled and tagged, used, never trusted, emptied of what the repository
//! no longer has, bypassed by check, and never needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    Run, TestRepo, flip_byte, repo_command, run, server, simple_tree, unique_url, walk_files,
};

const PASSWORD: &str = "cache-password";

/// One host: the repository at `url` with its own cache directory.
struct Host {
    url: String,
    cache: PathBuf,
}

impl Host {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = repo_command();
        c.args(args)
            .arg("-r")
            .arg(&self.url)
            .env("REPO_PASSWORD", PASSWORD)
            .env("REPO_CACHE_DIR", &self.cache);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.cmd(args))
    }

    /// Cached files of one kind (`index`, `snapshots`, `data`), by name.
    fn cached(&self, kind: &str) -> BTreeSet<String> {
        let dir = self.repo_dir().join(kind);
        walk_files(&dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn repo_dir(&self) -> PathBuf {
        let dirs: Vec<PathBuf> = std::fs::read_dir(&self.cache)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "one repository cached: {dirs:?}");
        dirs[0].clone()
    }
}

/// Two hosts on one new repository on the S3 test server; `None` skips.
fn s3_hosts(tmp: &Path) -> Option<(Host, Host)> {
    let url = unique_url(&server("REPO_TEST_S3_URL")?, "cache");
    let host = |n: &str| Host {
        url: url.clone(),
        cache: tmp.join(n),
    };
    let a = host("cache-a");
    a.run(&["init"]).success();
    Some((a, host("cache-b")))
}

/// Two hosts on a new S3 repository, and a source tree (`seed`) host A
/// has backed up once; `None` skips.
fn backed_up(tmp: &Path, seed: u64) -> Option<(Host, Host, PathBuf)> {
    let (a, b) = s3_hosts(tmp)?;
    let src = tmp.join("src");
    simple_tree(&src, seed);
    a.run(&["create", src.to_str().unwrap()]).success();
    Some((a, b, src))
}

fn storage(r: &Run) -> serde_json::Value {
    r.json()["storage"].clone()
}

#[test]
fn the_cache_is_filled_tagged_and_answers_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, _, src)) = backed_up(tmp.path(), 41) else {
        return;
    };
    let tag = std::fs::read_to_string(a.cache.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    for kind in ["keys", "index", "snapshots", "data"] {
        assert!(!a.cached(kind).is_empty(), "{kind} cached by the backup");
    }
    // A cached key object opens only with the right password.
    let mut wrong = a.cmd(&["snapshots"]);
    wrong.env("REPO_PASSWORD", "not-the-password");
    run(wrong).code(12);
    let listing = a.run(&["ls", "latest"]).success().stdout.clone();
    // Warm: an unchanged backup reads every tree and object from the cache.
    let warm = storage(
        a.run(&["create", "--json", src.to_str().unwrap()])
            .success(),
    );
    assert!(warm["cache_hits"].as_u64().unwrap() > 0, "{warm}");
    assert_eq!(warm["cache_misses"], 0, "{warm}");
    // Cold (a new machine): everything is fetched, then cached again.
    std::fs::remove_dir_all(&a.cache).unwrap();
    let cold = storage(
        a.run(&["create", "--json", src.to_str().unwrap()])
            .success(),
    );
    assert!(cold["cache_misses"].as_u64().unwrap() > 0, "{cold}");
    assert!(
        cold["bytes_received"].as_u64() > warm["bytes_received"].as_u64(),
        "cold {cold} warm {warm}"
    );
    assert_eq!(a.run(&["ls", "latest"]).success().stdout, listing);
    // Without a cache the same answers, and nothing written.
    let none = tmp.path().join("none");
    let mut c = a.cmd(&["ls", "latest", "--no-cache"]);
    c.env("REPO_CACHE_DIR", &none);
    assert_eq!(run(c).success().stdout, listing);
    assert!(!none.exists());
}

#[test]
fn damaged_cache_entries_are_dropped_and_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, _, _)) = backed_up(tmp.path(), 42) else {
        return;
    };
    let listing = a.run(&["ls", "latest"]).success().stdout.clone();
    let files = walk_files(&a.repo_dir());
    let entries: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_name().unwrap().len() == 64)
        .collect();
    assert!(entries.len() >= 3, "{entries:?}");
    for p in &entries {
        let len = std::fs::metadata(p).unwrap().len() as usize;
        flip_byte(p, len - 1);
    }
    assert_eq!(a.run(&["ls", "latest"]).success().stdout, listing);
    // Every entry read again hashes to its name (b3sum of the stored bytes).
    for p in walk_files(&a.repo_dir()) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 64 {
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                name,
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn objects_another_host_deleted_leave_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, b, src)) = backed_up(tmp.path(), 43) else {
        return;
    };
    std::fs::create_dir(src.join("new-dir")).unwrap();
    std::fs::write(src.join("new-dir/f"), b"second").unwrap();
    a.run(&["create", src.to_str().unwrap()]).success();
    a.run(&["ls", "latest"]).success();
    let (snaps, packs) = (a.cached("snapshots"), a.cached("data"));
    assert_eq!(snaps.len(), 2);
    // Host B forgets the first snapshot and prunes everything unused.
    b.run(&["forget", "--keep-last", "1", "--prune", "--max-unused", "0"])
        .success();
    a.run(&["ls", "latest"]).success();
    let (snaps_after, packs_after) = (a.cached("snapshots"), a.cached("data"));
    assert_eq!(snaps_after.len(), 1, "{snaps_after:?}");
    assert!(snaps_after.is_subset(&snaps));
    // The tree pack that held the forgotten snapshot's root was repacked.
    assert!(!packs.is_subset(&packs_after), "{packs:?} {packs_after:?}");
    a.run(&["check"]).success();
}

#[test]
fn check_reads_the_repository_not_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, _, _)) = backed_up(tmp.path(), 44) else {
        return;
    };
    let tree_pack = a.cached("data").into_iter().next().unwrap();
    // Damage the tree pack on the server, with an independent client.
    let key = format!("data/{}/{tree_pack}", &tree_pack[..2]);
    s3_damage(&a.url, &key);
    // And the only key object: check unlocks with the cached copy (a
    // round trip saved), yet judges the one on the server.
    let key_object = a.cached("keys").into_iter().next().unwrap();
    s3_damage(&a.url, &format!("keys/{key_object}"));
    // Other commands read the sound cached copy...
    a.run(&["ls", "latest"]).success();
    // ...but check judges what the repository holds.
    let r = a.run(&["check"]);
    r.code(1);
    for damaged in [&tree_pack, &key_object] {
        assert!(
            r.stdout.contains(&damaged[..8]) || r.stderr.contains(&damaged[..8]),
            "{damaged}: {r}"
        );
    }
}

/// Overwrites the object `key` of the repository at `url` with its bytes
/// reversed, through boto3 (not through repo).
fn s3_damage(url: &str, key: &str) {
    let script = r#"
import boto3, os, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
key = u.path.strip("/") + "/" + sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["REPO_S3_ENDPOINT"], region_name="us-east-1")
body = s3.get_object(Bucket=u.netloc, Key=key)["Body"].read()
s3.put_object(Bucket=u.netloc, Key=key, Body=body[::-1])
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script, url, key]);
    run(c).success();
}

#[test]
fn local_repositories_and_unusable_cache_directories_need_no_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new();
    repo.init();
    let cache = tmp.path().join("cache");
    let src = tmp.path().join("src");
    simple_tree(&src, 45);
    let mut c = repo.cmd();
    c.args(["create", src.to_str().unwrap()])
        .env("REPO_CACHE_DIR", &cache);
    run(c).success();
    assert!(!cache.exists(), "a local repository is not cached");
    let Some((a, _)) = s3_hosts(tmp.path()) else {
        return;
    };
    // A file where the cache should be: a warning, and the backup is made.
    std::fs::write(&a.cache, b"not a directory").unwrap();
    let r = a.run(&["create", src.to_str().unwrap()]);
    r.success()
        .stderr_has("not using a cache")
        .stderr_has("is not a directory");
    a.run(&["ls", "latest", "--no-cache"]).success();
}

/// `REPO_CACHE_DIR=` (set but empty) means "not given", as an empty
/// `REPO_KEY_FILE` does: the default cache, not a warning and none at all.
#[test]
fn an_empty_cache_dir_variable_means_the_default_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, _)) = s3_hosts(tmp.path()) else {
        return;
    };
    let src = tmp.path().join("src");
    simple_tree(&src, 46);
    let xdg = tmp.path().join("xdg");
    let mut c = a.cmd(&["create", src.to_str().unwrap()]);
    c.env("REPO_CACHE_DIR", "").env("XDG_CACHE_HOME", &xdg);
    let r = run(c);
    assert!(!r.stderr.contains("not using a cache"), "{r}");
    r.success();
    assert!(xdg.join("repo/CACHEDIR.TAG").is_file(), "{r}");
}

/// The default cache lies in the home directory most users back up:
/// a backup must not store its own cache (the previous run's metadata, as
/// file data, again each run), so that a run with nothing changed reports
/// nothing changed.
#[test]
fn a_backup_leaves_out_its_own_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("home");
    let Some((a, _)) = s3_hosts(tmp.path()) else {
        return;
    };
    let a = Host {
        cache: src.join(".cache/repo"),
        ..a
    };
    simple_tree(&src.join("docs"), 47);
    a.run(&["create", src.to_str().unwrap()]).success();
    let second = a
        .run(&["create", "--json", src.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(second["summary"]["files_new"], 0, "{second}");
    assert_eq!(second["summary"]["files_changed"], 0, "{second}");
    let listing = a.run(&["ls", "latest"]).success().stdout.clone();
    assert!(!listing.contains(".cache/repo"), "{listing}");
}

/// Every read command reports what it cost, as create does: with `--json`
/// in its report (`snapshots`, whose JSON is the bare list, and `dump`,
/// whose stdout is the data, on stderr with `-v`), with `-v` as a line.
/// Warm, the cache answers everything; cold, it misses.
#[test]
fn read_commands_report_requests_and_cache_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((a, _, src)) = backed_up(tmp.path(), 48) else {
        return;
    };
    std::fs::write(src.join("a.txt"), b"changed for diff").unwrap();
    a.run(&["create", src.to_str().unwrap()]).success();
    a.run(&["ls", "latest"]).success();
    let ids: Vec<String> = a
        .run(&["snapshots", "--json"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let warm_ls = storage(a.run(&["ls", "latest", "--json"]).success());
    for args in [
        vec!["ls", "latest", "--json"],
        vec!["find", "a.txt", "--json"],
        vec!["diff", &ids[0], &ids[1], "--json"],
        vec!["stats", "--json"],
    ] {
        let s = storage(a.run(&args).success());
        assert!(s["requests"].as_u64().unwrap() > 0, "{args:?}: {s}");
        assert!(s["cache_hits"].as_u64().unwrap() > 0, "{args:?}: {s}");
        assert_eq!(s["cache_misses"], 0, "{args:?}: {s}");
    }
    for args in [vec!["snapshots", "-v"], vec!["snapshots", "-v", "--json"]] {
        a.run(&args)
            .success()
            .stderr_has("Storage: ")
            .stderr_has(" hits, 0 misses");
    }
    a.run(&["find", "a.txt", "-v"])
        .success()
        .stdout_has("Storage: ");
    let dump = a.run(&["dump", "latest", &format!("{}/a.txt", src.display()), "-v"]);
    assert_eq!(dump.success().stdout, "changed for diff");
    dump.stderr_has("Storage: ");

    // Cold (a new machine): everything missed, fetched, more bytes moved.
    std::fs::remove_dir_all(&a.cache).unwrap();
    let cold = storage(a.run(&["ls", "latest", "--json"]).success());
    assert!(cold["cache_misses"].as_u64().unwrap() > 0, "{cold}");
    assert!(
        cold["bytes_received"].as_u64() > warm_ls["bytes_received"].as_u64(),
        "cold {cold} warm {warm_ls}"
    );
}
