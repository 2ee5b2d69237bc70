//! `repo ls`: list the contents of a snapshot.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use crate::error::Result;
use crate::format::index::MemIndex;
use crate::format::tree::{Node, NodeKind};
use crate::repository::{Repository, Step, Walker};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix.
    pub snapshot: String,
    /// Directory inside the snapshot; without it the whole snapshot is listed.
    pub path: Option<String>,
    /// Show mode, owner, size and time.
    #[arg(long, short = 'l')]
    pub long: bool,
    /// With PATH, also list everything below it.
    #[arg(long, short = 'R')]
    pub recursive: bool,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    /// The path as UTF-8; bytes that are not UTF-8 become U+FFFD here, and
    /// `path_hex` then holds the exact bytes.
    pub path: String,
    /// Hex of the path's bytes, only when they are not UTF-8 (two such
    /// names can look alike in `path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Hex of a symlink's target, only when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
    /// Set when a repaired snapshot lists this path as damaged: what was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub entries: Vec<Entry>,
}

pub fn entry(path: &Path, n: &Node) -> Entry {
    let mtime = chrono::DateTime::from_timestamp(n.mtime.secs, n.mtime.nanos)
        .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
        .unwrap_or_default();
    let raw = path.as_os_str().as_bytes();
    Entry {
        path: path.to_string_lossy().into_owned(),
        path_hex: std::str::from_utf8(raw).is_err().then(|| hex::encode(raw)),
        kind: n.kind.name(),
        size: n.size,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        user: n.user.clone(),
        group: n.group.clone(),
        mtime,
        target: (n.kind == NodeKind::Symlink)
            .then(|| String::from_utf8_lossy(&n.target).into_owned()),
        target_hex: (n.kind == NodeKind::Symlink && std::str::from_utf8(&n.target).is_err())
            .then(|| hex::encode(&n.target)),
        damaged: None,
    }
}

/// The entries below `dir` (at `at`), in tree order; below
/// subdirectories too when `recursive`.
fn list(
    repo: &Repository,
    index: &MemIndex,
    dir: &Node,
    at: &Path,
    recursive: bool,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let Some(id) = dir.subtree else { return Ok(()) };
    Walker::new(repo, index).walk(&id, at, &mut |p: &Path, n: &Node| {
        out.push(entry(p, n));
        Ok(if recursive { Step::Descend } else { Step::Skip })
    })
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    let (sid, snap) = repo.find_snapshot(&args.snapshot)?;
    let index = repo.load_index()?;
    let sub = args.path.clone().unwrap_or_else(|| "/".into());
    let (node, at): (Node, PathBuf) = repo.resolve(&index, snap.tree, &sub)?;
    let mut entries = Vec::new();
    if node.kind == NodeKind::Dir {
        list(
            &repo,
            &index,
            &node,
            &at,
            args.path.is_none() || args.recursive,
            &mut entries,
        )?;
    } else {
        entries.push(entry(&at, &node));
    }
    if !snap.damaged.is_empty() {
        let lost: std::collections::HashMap<&str, String> = snap
            .damaged
            .iter()
            .map(|d| {
                let what = if d.kind == "dir" {
                    format!("contents lost: {}", d.reason)
                } else {
                    format!("{} bytes lost: {}", d.size, d.reason)
                };
                (d.path.as_str(), what)
            })
            .collect();
        for e in &mut entries {
            e.damaged = lost.get(e.path.as_str()).cloned();
        }
    }
    Ok(Report {
        snapshot: sid.to_hex(),
        entries,
    })
}
