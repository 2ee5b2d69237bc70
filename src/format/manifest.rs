//! Manifests: a plain-text description of a tree of plain files.
//!
//! A manifest is what `mirror`, `sync` and `restore --delete` remember about
//! one side between runs: path, type, size, mtime, mode and (when known) the
//! plain BLAKE3 of the content. It is JSON lines so anyone can read it with
//! `jq` and check a copy with `b3sum`, without this tool. SPEC.md §13 is the
//! contract. Decoding treats the text as untrusted: lines, entries and paths
//! are bounded and validated, and every failure is an error, never a panic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `format` value of the header line.
pub(crate) const FORMAT: &str = "repo-manifest";
/// The manifest layout version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Longest accepted line; a path is at most 4096 bytes, so real lines are far shorter.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Kinds of entries a plain tree holds. Devices, FIFOs and sockets are not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Permission bits (st_mode & 0o7777).
    pub mode: u32,
    /// Plain BLAKE3 of the content, when it was computed.
    pub blake3: Option<[u8; 32]>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// What this side's storage reported when the entry was recorded, so a
    /// change made outside the tool shows even when size and mtime were kept.
    pub seen: Seen,
    /// `restore --delete` only: BLAKE3 of the snapshot node's chunk id list.
    pub chunks: Option<[u8; 32]>,
}

/// Side-specific change stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// Local files: inode and ctime.
    pub ino: Option<u64>,
    pub ctime_ns: Option<i64>,
    /// Remote objects: the store's last-modified time in milliseconds.
    pub stored_ms: Option<i64>,
}

/// Paths are relative, `/`-separated byte strings (Unix names need not be UTF-8).
pub type Entries = BTreeMap<Vec<u8>, Entry>;

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// RFC 3339 time the manifest was written.
    pub created: String,
    pub entries: Entries,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("empty manifest (no header line)")]
    Empty,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    format: String,
    version: u32,
    created: String,
}

#[derive(Serialize, Deserialize)]
struct EntryLine {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    path_hex: Option<String>,
    #[serde(rename = "type")]
    kind: EntryKind,
    size: u64,
    mtime_ns: i64,
    mode: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ino: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ctime_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    stored_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    chunks: Option<String>,
}

/// Text for bytes that are UTF-8, hex otherwise: returns (text, hex).
/// Logs use it too, so a name that is not UTF-8 is never shown lossily.
pub(crate) fn split_bytes(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(hex::encode(b))),
    }
}

fn join_bytes(text: Option<String>, hexed: Option<String>, what: &str) -> Result<Vec<u8>, String> {
    match (text, hexed) {
        (Some(s), None) => Ok(s.into_bytes()),
        (None, Some(h)) => hex::decode(h).map_err(|e| format!("{what}_hex: {e}")),
        (None, None) => Err(format!("missing {what}")),
        (Some(_), Some(_)) => Err(format!("both {what} and {what}_hex")),
    }
}

fn hash_field(h: Option<String>, what: &str) -> Result<Option<[u8; 32]>, String> {
    h.map(|h| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&h, &mut out).map_err(|e| format!("{what}: {e}"))?;
        Ok(out)
    })
    .transpose()
}

/// Whether `p` is a path the tool may act on: relative, no empty, `.` or `..`
/// parts, no NUL, and not inside the `.repo` control directory.
pub fn valid_path(p: &[u8]) -> bool {
    !p.is_empty()
        && p.len() <= 4096
        && !p.contains(&0)
        && p.split(|&c| c == b'/')
            .all(|part| !part.is_empty() && part != b"." && part != b"..")
        && p.split(|&c| c == b'/').next() != Some(b".repo")
}

impl Manifest {
    pub fn new(created: String, entries: Entries) -> Self {
        Manifest { created, entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 128);
        let header = HeaderLine {
            format: FORMAT.into(),
            version: VERSION,
            created: self.created.clone(),
        };
        // Serializing plain structs of strings and integers cannot fail.
        out.extend(serde_json::to_vec(&header).unwrap_or_default());
        out.push(b'\n');
        for (path, e) in &self.entries {
            let (path, path_hex) = split_bytes(path);
            let (target, target_hex) = match &e.target {
                Some(t) => split_bytes(t),
                None => (None, None),
            };
            let line = EntryLine {
                path,
                path_hex,
                kind: e.kind,
                size: e.size,
                mtime_ns: e.mtime_ns,
                mode: format!("{:04o}", e.mode),
                blake3: e.blake3.map(hex::encode),
                target,
                target_hex,
                ino: e.seen.ino,
                ctime_ns: e.seen.ctime_ns,
                stored_ms: e.seen.stored_ms,
                chunks: e.chunks.map(hex::encode),
            };
            out.extend(serde_json::to_vec(&line).unwrap_or_default());
            out.push(b'\n');
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut lines = bytes.split(|&c| c == b'\n').enumerate();
        let bad = |line: usize, reason: String| ManifestError::Line {
            line: line + 1,
            reason,
        };
        let (_, first) = lines.next().ok_or(ManifestError::Empty)?;
        if first.is_empty() {
            return Err(ManifestError::Empty);
        }
        if first.len() > MAX_LINE {
            return Err(bad(0, "header line too long".into()));
        }
        let header: HeaderLine =
            serde_json::from_slice(first).map_err(|e| bad(0, format!("header: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(
                0,
                format!("format is {:?}, not {FORMAT:?}", header.format),
            ));
        }
        if header.version != VERSION {
            return Err(bad(
                0,
                format!(
                    "version {} is not supported (this build reads {VERSION}); upgrade repo",
                    header.version
                ),
            ));
        }
        let mut entries = Entries::new();
        for (no, line) in lines {
            if line.is_empty() {
                continue;
            }
            if line.len() > MAX_LINE {
                return Err(bad(no, format!("line longer than {MAX_LINE} bytes")));
            }
            let l: EntryLine = serde_json::from_slice(line).map_err(|e| bad(no, e.to_string()))?;
            let path = join_bytes(l.path, l.path_hex, "path").map_err(|e| bad(no, e))?;
            if !valid_path(&path) {
                return Err(bad(
                    no,
                    format!("unsafe path {:?}", String::from_utf8_lossy(&path)),
                ));
            }
            let mode = u32::from_str_radix(&l.mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    bad(
                        no,
                        format!("mode {:?} is not octal permission bits", l.mode),
                    )
                })?;
            let target = match (l.target, l.target_hex) {
                (None, None) => None,
                (t, h) => Some(join_bytes(t, h, "target").map_err(|e| bad(no, e))?),
            };
            let entry = Entry {
                kind: l.kind,
                size: l.size,
                mtime_ns: l.mtime_ns,
                mode,
                blake3: hash_field(l.blake3, "blake3").map_err(|e| bad(no, e))?,
                target,
                seen: Seen {
                    ino: l.ino,
                    ctime_ns: l.ctime_ns,
                    stored_ms: l.stored_ms,
                },
                chunks: hash_field(l.chunks, "chunks").map_err(|e| bad(no, e))?,
            };
            if entries.insert(path.clone(), entry).is_some() {
                return Err(bad(
                    no,
                    format!("path {:?} listed twice", String::from_utf8_lossy(&path)),
                ));
            }
        }
        Ok(Manifest {
            created: header.created,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            kind,
            size: 12,
            mtime_ns: 1_700_000_000_123_456_789,
            mode: 0o644,
            blake3: Some(*blake3::hash(b"hello world\n").as_bytes()),
            target: None,
            seen: Seen::default(),
            chunks: None,
        }
    }

    #[test]
    fn round_trip_with_odd_names() {
        let mut entries = Entries::new();
        entries.insert(b"a/b.txt".to_vec(), entry(EntryKind::File));
        entries.insert(b"bad\xffname".to_vec(), entry(EntryKind::File));
        entries.insert(b"new\nline".to_vec(), entry(EntryKind::Dir));
        let mut link = entry(EntryKind::Symlink);
        link.target = Some(b"../x\xfe".to_vec());
        link.seen.stored_ms = Some(5);
        entries.insert(b"l".to_vec(), link);
        let m = Manifest::new("2026-11-23T00:00:00Z".into(), entries);
        let text = m.encode();
        assert_eq!(text.iter().filter(|&&c| c == b'\n').count(), 5);
        assert_eq!(Manifest::decode(&text).unwrap(), m);
    }

    #[test]
    fn rejects_unsafe_and_duplicate_paths() {
        let head = "{\"format\":\"repo-manifest\",\"version\":1,\"created\":\"x\"}\n";
        for p in [
            "../etc/passwd",
            "/abs",
            "a//b",
            ".repo/manifest",
            "a/./b",
            "",
        ] {
            let text = format!(
                "{head}{{\"path\":{p:?},\"type\":\"file\",\"size\":1,\"mtime_ns\":0,\"mode\":\"0644\"}}\n"
            );
            assert!(Manifest::decode(text.as_bytes()).is_err(), "{p}");
        }
        let line =
            "{\"path\":\"a\",\"type\":\"file\",\"size\":1,\"mtime_ns\":0,\"mode\":\"0644\"}\n";
        let text = format!("{head}{line}{line}");
        assert!(Manifest::decode(text.as_bytes()).is_err());
        let text = format!("{head}{line}");
        assert_eq!(Manifest::decode(text.as_bytes()).unwrap().entries.len(), 1);
        let wrong = "{\"format\":\"repo-manifest\",\"version\":9,\"created\":\"x\"}\n";
        assert!(Manifest::decode(wrong.as_bytes()).is_err());
        assert!(Manifest::decode(b"").is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::decode(&bytes);
        }
    }
}
