//! End-to-end tests of the `repo` binary: every test runs the real
//! executable against a repository in its own temporary directory.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::Value;

mod failures;
mod pinned;
mod round_trip;
mod selection;

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn errors_of(report: &Value) -> &Vec<Value> {
    report["errors"].as_array().expect("errors array")
}

/// Paths listed by `ls --json`.
fn ls_paths(v: &Value) -> BTreeSet<String> {
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| s(&e["path"]).to_string())
        .collect()
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
