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

mod forget;
mod index_file;
mod inspect;
mod keys_locks;
mod prune;

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
