//! One entry of a snapshot listing, as `ls` and `find` show it: shared so
//! that both print (and serialize) a path the same way.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::format::tree::{Node, NodeKind};

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

pub(crate) fn entry(path: &Path, n: &Node) -> Entry {
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
