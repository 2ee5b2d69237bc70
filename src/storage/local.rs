//! The local-disk backend's direct path: reads and listings go straight to
//! the file system, below the repository root and without following links
//! (see `localfs`). Why: through object_store each read is handed to a
//! blocking thread and back, which for the thousands of small tree reads of
//! a backup costs more than the reads themselves. Writes still go through
//! object_store (atomic rename, fsync).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{Listed, Refuse, errors, localfs, openfiles};
use crate::error::{Error, Result};

pub(super) struct LocalFs {
    path: PathBuf,
    /// The repository's root directory, which every read and listing starts from.
    root: OwnedFd,
    /// Kept descriptors for [`LocalFs::read_immutable`].
    open: openfiles::OpenFiles,
}

impl LocalFs {
    pub(super) fn open(path: &Path) -> Result<LocalFs> {
        let root = localfs::open_root(path)
            .map_err(|e| Error::io("open the repository directory", path, e))?;
        Ok(LocalFs {
            path: path.to_path_buf(),
            root,
            open: Default::default(),
        })
    }

    /// Whether `key` is read here rather than through object_store: keys
    /// whose name object_store would store unchanged (repository object
    /// names are).
    pub(super) fn serves(&self, key: &str) -> bool {
        !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-' | b'_'))
            && !key.split('/').any(str::is_empty)
    }

    /// Reads `len` bytes at `offset` (all of it, at most `limit` bytes,
    /// with `None`).
    pub(super) fn read(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        limit: u64,
        refuse: Refuse,
    ) -> Result<Vec<u8>> {
        let f = localfs::open_object(&self.root, key).map_err(|e| self.err(key, e))?;
        let size = f.metadata().map_err(|e| self.err(key, e))?.len();
        let Some((offset, len)) = range else {
            if size > limit {
                return Err(refuse(key, size, limit));
            }
            // Bounded again while reading: the file may grow after fstat.
            let mut buf = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&f, limit + 1), &mut buf)
                .map_err(|e| self.err(key, e))?;
            if buf.len() as u64 > limit {
                return Err(refuse(key, buf.len() as u64, limit));
            }
            return Ok(buf);
        };
        self.read_at(key, &f, size, offset, len)
    }

    /// Reads `len` bytes at `offset` of an object that never changes once
    /// written; its file stays open for the next read of the same object.
    pub(super) fn read_immutable(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (file, size) = self
            .open
            .get(key, || localfs::open_object(&self.root, key))
            .map_err(|e| self.err(key, e))?;
        self.read_at(key, &file, size, offset, len)
    }

    /// Drops the kept descriptor of an object that is deleted, renamed or rewritten.
    pub(super) fn forget(&self, key: &str) {
        self.open.forget(key);
    }

    /// Reads `len` bytes at `offset` of an open object of `size` bytes.
    fn read_at(
        &self,
        key: &str,
        f: &std::fs::File,
        size: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if size < offset.saturating_add(len) {
            return Err(errors::truncated(key, size, offset, len));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| self.err(key, e))?;
        Ok(buf)
    }

    fn err(&self, key: &str, e: std::io::Error) -> Error {
        let at = self.path.display();
        if e.kind() == std::io::ErrorKind::InvalidInput {
            Error::corrupt(format!("{at}/{key}"), e)
        } else if e.kind() == std::io::ErrorKind::NotFound {
            errors::not_found(&at, key)
        } else {
            Error::Storage {
                op: "read",
                key: format!("{at}/{key}"),
                message: e.to_string(),
            }
        }
    }

    /// Lists the objects under `prefix`, sorted. Links are never followed:
    /// a symlink, FIFO or device found there is reported as a warning and
    /// left out, and so are dot files and object_store's `name#N` files of
    /// writes under way.
    pub(super) fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let at = self.path.display();
        let found = localfs::list(&self.root, prefix).map_err(|e| Error::Storage {
            op: "list",
            key: format!("{at}/{prefix}"),
            message: e.to_string(),
        })?;
        for (key, why) in found.ignored {
            crate::error::warnings::warn(format!("{at}/{key}: ignored: {why}"));
        }
        let mut out: Vec<Listed> = found
            .files
            .into_iter()
            .filter(|(key, _)| {
                let name = key.rsplit('/').next().unwrap_or("");
                !name.starts_with('.')
                    && !name.split_once('#').is_some_and(|(_, n)| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .map(|(key, size)| Listed { key, size })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
