//! Directories that a walk must not enter and a removal must not reach:
//! a side of a mirror or sync mounted inside a side, the repository a
//! `restore --delete` reads. They are told by device and inode, which see
//! through bind mounts and other aliases that paths do not reveal.

use std::os::unix::fs::MetadataExt;

/// A directory's identity: (device, inode).
pub(crate) type DirId = (u64, u64);

/// The identity of what `md` describes.
pub(crate) fn dir_id(md: &std::fs::Metadata) -> DirId {
    (md.dev(), md.ino())
}

/// Whether the relative path `path` is `top` or lies below it (by whole
/// components: `ab` is not below `a`). The empty path is the top of all.
pub(crate) fn within(path: &[u8], top: &[u8]) -> bool {
    top.is_empty() || (path.starts_with(top) && matches!(path.get(top.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn within_is_by_component() {
        assert!(within(b"a", b"a"));
        assert!(within(b"a/b", b"a"));
        assert!(!within(b"ab", b"a"));
        assert!(!within(b"a", b"a/b"));
        assert!(within(b"a", b""));
    }
}
