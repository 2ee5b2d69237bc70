//! Comparing entries: the same thing, changed since the record, or gone
//! bad (same size and time as recorded, another hash).

use crate::format::manifest::{Entry, EntryKind};

use super::Compare;

/// Whether two present entries hold the same thing.
pub fn same(a: &Entry, b: &Entry, compare: Compare) -> bool {
    if a.kind != b.kind {
        return false;
    }
    match a.kind {
        EntryKind::Dir => true,
        EntryKind::Symlink => a.target == b.target,
        EntryKind::File => match (compare, a.blake3, b.blake3) {
            (Compare::Hash, Some(x), Some(y)) => x == y && a.size == b.size,
            _ => a.size == b.size && a.mtime_ns == b.mtime_ns,
        },
    }
}

/// Two files whose hashes are known and equal: the same edit made on both
/// sides at different times is no conflict in a sync.
pub(super) fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == EntryKind::File
        && b.kind == EntryKind::File
        && a.size == b.size
        && matches!((a.blake3, b.blake3), (Some(x), Some(y)) if x == y)
}

/// Whether a side changed since its record.
pub fn changed(cur: Option<&Entry>, base: Option<&Entry>) -> bool {
    match (cur, base) {
        (None, None) => false,
        (Some(c), Some(b)) => {
            c.kind != b.kind
                || match c.kind {
                    EntryKind::Dir => false,
                    EntryKind::Symlink => c.target != b.target,
                    EntryKind::File => c.size != b.size || c.mtime_ns != b.mtime_ns,
                }
        }
        _ => true,
    }
}

/// Same size and mtime as recorded, yet a different hash: the bytes went bad.
pub(super) fn corrupt(cur: Option<&Entry>, base: Option<&Entry>) -> bool {
    match (cur, base) {
        (Some(c), Some(b)) => {
            c.kind == EntryKind::File
                && !changed(cur, base)
                && matches!((c.blake3, b.blake3), (Some(x), Some(y)) if x != y)
        }
        _ => false,
    }
}

pub(super) fn mtime(e: Option<&Entry>) -> i64 {
    e.map_or(i64::MIN, |e| e.mtime_ns)
}
