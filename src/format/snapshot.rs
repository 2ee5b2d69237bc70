//! Snapshot objects: what was backed up, when, from where.
//!
//! JSON inside the encryption: snapshots are few and small, and JSON lets
//! future versions add fields that old readers ignore.

use crate::format::error::FormatError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BlobId, SnapshotId};

/// Version of the snapshot payload layout.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Counts from the backup that made a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub others: u64,
    /// Files that could not be read and were left out.
    pub errors: u64,
    /// Plaintext bytes of every file in the snapshot.
    pub total_bytes: u64,
    /// Plaintext bytes of files that were read.
    pub bytes_read: u64,
    /// Blobs and bytes (plaintext / stored) that were new to the repository.
    pub blobs_new: u64,
    pub data_added: u64,
    pub data_added_stored: u64,
    pub duration_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub time: DateTime<Utc>,
    pub host: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Absolute source paths as given (lossy UTF-8 for display; the tree holds the raw names).
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub excludes: Vec<String>,
    pub tree: BlobId,
    pub parent: Option<SnapshotId>,
    pub program_version: String,
    pub summary: Summary,
    /// Set when the snapshot was rewritten (e.g. by `repo tag`): the id of
    /// the snapshot as first written. Absent (= null) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Set by `repo repair snapshots`: the paths whose data was lost and
    /// how the rewritten trees record them. Absent (= empty) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedPath>,
}

/// One path of a repaired snapshot whose data is gone: a file whose
/// content was dropped (its node is kept, with size 0 and no chunks), or a
/// directory whose listing was lost (it is kept as an empty directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPath {
    /// Absolute path in the snapshot (lossy UTF-8, like `paths`).
    pub path: String,
    /// `"file"` or `"dir"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Files: the size before the repair. Directories: 0.
    pub size: u64,
    /// What was missing or damaged, e.g. the blob and pack.
    pub reason: String,
}

/// The tag `repo repair snapshots` adds to every snapshot it rewrites.
pub(crate) const REPAIRED_TAG: &str = "repaired";

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let s: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| FormatError::syntax("a snapshot", e))?;
        if s.version != SNAPSHOT_VERSION {
            return Err(FormatError::UnknownVersion {
                what: "snapshot",
                found: s.version.into(),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            time: Utc::now(),
            host: "h".into(),
            user: "u".into(),
            uid: 1,
            gid: 2,
            paths: vec!["/a".into()],
            tags: vec!["t".into()],
            excludes: vec![],
            tree: BlobId([1; 32]),
            parent: None,
            program_version: "x".into(),
            summary: Summary::default(),
            original: None,
            damaged: Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        let rewritten = Snapshot {
            original: Some(SnapshotId([9; 32])),
            ..sample()
        };
        let json = String::from_utf8(rewritten.encode()).unwrap();
        assert!(json.ends_with(&format!(r#","original":"{}"}}"#, "09".repeat(32))));
        assert_eq!(Snapshot::decode(json.as_bytes()).unwrap(), rewritten);
        assert!(!String::from_utf8(s.encode()).unwrap().contains("original"));
    }

    #[test]
    fn damaged_paths_round_trip_and_are_optional() {
        let repaired = Snapshot {
            damaged: vec![DamagedPath {
                path: "/a/b.bin".into(),
                kind: "file".into(),
                size: 7,
                reason: "gone".into(),
            }],
            ..sample()
        };
        let json = String::from_utf8(repaired.encode()).unwrap();
        assert!(
            json.contains(
                r#""damaged":[{"path":"/a/b.bin","type":"file","size":7,"reason":"gone"}]"#
            )
        );
        assert_eq!(Snapshot::decode(json.as_bytes()).unwrap(), repaired);
        assert!(
            !String::from_utf8(sample().encode())
                .unwrap()
                .contains("damaged")
        );
    }

    proptest! {
        #[test]
        fn truncated_never_panics(cut in 0usize..400) {
            let enc = sample().encode();
            let _ = Snapshot::decode(&enc[..cut.min(enc.len())]);
        }
    }
}
