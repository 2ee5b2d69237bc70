//! Fault-injection suites, end to end through the real binary:
//!
//! 1. `kill9`: `repo create` killed with SIGKILL at random moments;
//! 2. `damage`: bit flips and truncations of every kind of stored object;
//! 3. `disk_full`: `repo create` on a file system that runs out of space;
//! 4. `concurrent`: two `repo create` runs on one repository at once.
//!
//! Each suite prints one line `fault-suite NAME: ...` with its counts on
//! stderr (shown by `scripts/fault-suites`, which runs this file with
//! `--nocapture`) and asserts those counts, so a failure says how many
//! trials went wrong and which. Randomness comes from a seeded RNG: the
//! seed is printed and `FAULT_SEED=N` repeats a run (kill moments still
//! depend on the machine's speed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

mod concurrent;
mod damaged;
mod disk_full;
mod kill9;
mod repair_snapshots;

/// Seed of every random choice; `FAULT_SEED` overrides it.
fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x5eed_2025)
}

/// Small chunks and 1 MiB packs (the smallest allowed): a few MiB of data
/// then make many blobs and several packs, so faults land in every stage
/// and every kind of object without slow, large test data.
fn small_init() -> Vec<&'static str> {
    [&["init"][..], &SMALL_CHUNKS, &["--pack-size", "1048576"]].concat()
}

fn report(line: String) {
    // Shown with --nocapture; captured (and printed on failure) otherwise.
    eprintln!("{line}");
}

fn id_of(v: &Value) -> String {
    v.as_str().expect("string").to_string()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    walk_files(dir)
        .into_iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .filter(|n| is_hex_id(n))
        .collect()
}

/// Every regular file below `root`, relative.
fn manifest(root: &Path) -> BTreeSet<PathBuf> {
    walk_files(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// Checks that `restored` holds exactly the files of `expected` (relative
/// to `src`) with the same content.
fn same_files(src: &Path, restored: &Path, expected: &BTreeSet<PathBuf>) -> Result<(), String> {
    let got = manifest(restored);
    if &got != expected {
        let missing: Vec<_> = expected.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(expected).take(5).collect();
        return Err(format!(
            "restored files differ: missing {missing:?}, extra {extra:?}"
        ));
    }
    for rel in expected {
        if fs::read(src.join(rel)).ok() != fs::read(restored.join(rel)).ok() {
            return Err(format!("{} restored with other content", rel.display()));
        }
    }
    Ok(())
}

/// Adds a directory of `small` small files and a few larger ones.
fn add_batch(dir: &Path, rng: &mut Rng, small: usize, big: usize, big_max: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..small {
        let len = (rng.next_u64() % 4000) as usize + 1;
        write_random(&dir.join(format!("s{i:03}.txt")), len, rng.next_u64());
    }
    for i in 0..big {
        let len = (rng.next_u64() as usize % big_max) + big_max / 4;
        write_random(&dir.join(format!("b{i}.bin")), len, rng.next_u64());
    }
}
