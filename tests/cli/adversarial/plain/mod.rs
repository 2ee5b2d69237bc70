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

mod local_details;
mod mounts;
mod peers;
mod remote_and_failures;
mod swaps;

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
