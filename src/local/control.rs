//! Telling our control folder from somebody else's `.repo`.
//!
//! `.repo` is a common name (every checkout made by Google's `repo` tool has
//! one), so a folder of that name is ours only when it carries our marker
//! file, `.repo/FORMAT`, or (written before the marker existed) a manifest
//! whose header names our format. Anything else is the user's: a run
//! refuses to touch that tree rather than mixing its files into it.
//! Pure logic: the callers read the bytes.

use crate::format::manifest::FORMAT;

/// Name of the control folder at the top of a plain tree.
pub(crate) const CONTROL: &str = ".repo";
/// The manifest inside it: what the tree held after the last run.
pub const MANIFEST: &str = "manifest.jsonl";
/// The marker file inside it.
pub(crate) const MARKER: &str = "FORMAT";
/// The marker's `format` value.
pub(crate) const MARKER_FORMAT: &str = "repo-control";
/// Content written to a new marker.
pub(crate) const MARKER_TEXT: &[u8] = b"{\"format\":\"repo-control\",\"version\":1}\n";
/// Bytes of a marker or manifest head that are enough to recognise it.
pub(crate) const HEAD: usize = 4096;

/// What is at the top of a tree under the control folder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing there yet (or an empty folder): ours to create.
    Absent,
    /// Our control folder.
    Ours,
    /// A file, link or folder of another tool or of the user.
    Foreign,
}

#[derive(serde::Deserialize)]
struct Head {
    format: String,
}

/// Whether `bytes` (the start of `.repo/FORMAT`) is our marker.
pub(crate) fn is_marker(bytes: &[u8]) -> bool {
    first_format(bytes).is_some_and(|f| f == MARKER_FORMAT)
}

/// Whether `bytes` (the start of `.repo/manifest.jsonl`) is one of our
/// manifests: control folders written before the marker existed.
pub(crate) fn is_manifest_head(bytes: &[u8]) -> bool {
    first_format(bytes).is_some_and(|f| f == FORMAT)
}

fn first_format(bytes: &[u8]) -> Option<String> {
    let line = bytes.split(|&c| c == b'\n').next()?;
    serde_json::from_slice::<Head>(line).ok().map(|h| h.format)
}

/// The refusal for a tree whose `.repo` is not ours.
pub(crate) fn foreign_error(where_: &str) -> crate::Error {
    crate::Error::Usage(format!(
        "{where_} exists but is not a control folder of repo (it has no {CONTROL}/{MARKER} \
         marker; it may belong to another tool, such as Google's `repo`). repo keeps its own \
         state in {CONTROL} and will not mix its files into somebody else's: move or rename \
         that folder, or mirror/sync the folder above or below it instead"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_marker_and_legacy_manifest_only() {
        assert!(is_marker(MARKER_TEXT));
        assert!(!is_marker(
            b"{\"format\":\"repo-manifest\",\"version\":1}\n"
        ));
        assert!(is_manifest_head(
            b"{\"format\":\"repo-manifest\",\"version\":1,\"created\":\"x\"}\n{}"
        ));
        assert!(!is_manifest_head(b"<?xml version=\"1.0\"?><manifest>"));
        assert!(!is_marker(b""));
        assert!(!is_marker(&[0xff; 10]));
    }
}
