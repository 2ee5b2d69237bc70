//! Synchronous storage facade over `object_store`.
//!
//! Everything above this layer moves bytes by key and never sees
//! `object_store` or tokio: one private runtime turns each call into a
//! blocking one, which keeps the engines plain threads-and-rayon code.
//! Every call to `object_store` lives in this module and its children;
//! what one kind of storage does differently lives in `backend`.

pub mod awsconf;
mod backend;
mod delete_each;
mod errors;
pub mod ftp;
mod local;
mod localfs;
pub mod location;
pub mod netrc;
mod objlock;
mod openfiles;
pub mod rest;
mod s3;
mod stats;

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use backend::Backend;
use errors::{longer_than_known, too_large, truncated};

/// Makes the error for an object of `size` bytes, over a reader's `limit`.
type Refuse = fn(&str, u64, u64) -> Error;
pub use location::{BackendOptions, Location};
pub(crate) use objlock::check_lockable;
pub use stats::{Stats, StatsReport};

/// A listed object: key relative to the repository root, and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
}

/// A listed plain file (see [`Storage::list_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedFile {
    pub name: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// Blocking access to one repository's objects.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    rt: tokio::runtime::Runtime,
    location: Location,
    stats: Stats,
    connections: usize,
    /// The client writing locked objects, if the repository asks for them.
    objlock: Option<objlock::LockWriter>,
}

impl Storage {
    /// Connects to `location`. With `create`, a missing local directory is made.
    pub(crate) fn open(location: &Location, create: bool) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("repo-storage")
            .build()
            .map_err(|e| Error::io("start the storage runtime for", location.to_string(), e))?;
        let (store, backend) = backend::connect(location, create)?;
        if create && let Backend::Rest(rest) = &backend {
            rt.block_on(rest.create_repository()).map_err(|e| {
                errors::from_store(location, "create the repository at", "?create=true", e)
            })?;
        }
        Ok(Storage {
            store,
            backend,
            rt,
            location: location.clone(),
            stats: Stats::default(),
            connections: backend::connections(location),
            objlock: None,
        })
    }

    /// A new, empty repository store in this process's memory, for tests
    /// that run engines without a disk or server. Open its
    /// [`location`](Storage::location) again (or pass `Location::memory()`
    /// to `Repository::init`/`open`) to reach the same objects.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Result<Self> {
        Self::open(&Location::memory(), true)
    }

    /// How many transfers may usefully run at once.
    pub(crate) fn connections(&self) -> usize {
        self.connections
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    pub(crate) fn stats(&self) -> StatsReport {
        let connections_allowed = match &self.backend {
            Backend::Ftp(ftp) => ftp.lowest_connection_limit(),
            _ => None,
        };
        StatsReport {
            connections_allowed,
            ..self.stats.report()
        }
    }

    fn count(&self, sent: usize, received: usize) {
        self.stats.count(sent, received);
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        errors::from_store(&self.location, op, key, e)
    }

    /// The local backend, when it reads `key` itself.
    fn local_for(&self, key: &str) -> Option<&local::LocalFs> {
        match &self.backend {
            Backend::Local(fs) if fs.serves(key) => Some(fs),
            _ => None,
        }
    }

    /// Drops what the backend keeps of an object that changes.
    fn forget(&self, key: &str) {
        if let Backend::Local(fs) = &self.backend {
            fs.forget(key);
        }
    }

    /// Reads a whole object of at most [`MAX_OBJECT_SIZE`] bytes (any pack).
    pub(crate) fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_bounded(key, MAX_OBJECT_SIZE)
    }

    /// Reads a whole object of at most `limit` bytes. Its size is checked
    /// before anything is read (fstat, or the response's length), and the
    /// read stops at `limit + 1` bytes anyway, since storage may lie about
    /// sizes: a planted 8 GiB object costs one request, not 8 GiB of memory.
    pub(crate) fn get_bounded(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        self.get_limited(key, limit, too_large)
    }

    /// Reads a whole object whose size the reader knows (a pack: its size
    /// in the index, or in the listing): bounded like
    /// [`Storage::get_bounded`], and an answer longer than `size` is an
    /// error naming the object, whatever the storage claims.
    pub(crate) fn get_sized(&self, key: &str, size: u64) -> Result<Vec<u8>> {
        self.get_limited(key, size, longer_than_known)
    }

    /// [`Storage::get_bounded`], with `refuse` making the error for an
    /// object of more than `limit` bytes.
    fn get_limited(&self, key: &str, limit: u64, refuse: Refuse) -> Result<Vec<u8>> {
        if let Some(fs) = self.local_for(key) {
            let bytes = fs.read(key, None, limit, refuse)?;
            self.count(0, bytes.len());
            return Ok(bytes);
        }
        let path = StorePath::from(key);
        // The FTP store fetches a whole object before handing it over, so
        // it is told the limit and stops a larger object at limit + 1 bytes.
        let mut opts = object_store::GetOptions::default();
        if let Backend::Ftp(_) = self.backend {
            opts.extensions.insert(ftp::SizeLimit(limit));
        }
        let bytes = self
            .rt
            .block_on(async {
                let got = self.store.get_opts(&path, opts).await?;
                if got.meta.size > limit {
                    return Ok(Err(refuse(key, got.meta.size, limit)));
                }
                let mut stream = got.into_stream();
                let mut buf = Vec::new();
                while let Some(part) = stream.try_next().await? {
                    if (buf.len() + part.len()) as u64 > limit {
                        return Ok(Err(refuse(key, (buf.len() + part.len()) as u64, limit)));
                    }
                    buf.extend_from_slice(&part);
                }
                Ok(Ok(buf))
            })
            .map_err(|e| self.err("read", key, e))??;
        self.count(0, bytes.len());
        Ok(bytes)
    }

    /// Reads `len` bytes at `offset` of an object that never changes once
    /// written (a pack: its name is its hash). On local storage the file
    /// stays open for the next read of the same object.
    pub(crate) fn get_range_immutable(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let Some(fs) = self.local_for(key) else {
            return self.get_range(key, offset, len);
        };
        let bytes = fs.read_immutable(key, offset, len)?;
        self.count(0, bytes.len());
        Ok(bytes)
    }

    /// Reads `len` bytes at `offset`.
    pub(crate) fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(fs) = self.local_for(key) {
            let bytes = fs.read(key, Some((offset, len)), MAX_OBJECT_SIZE, too_large)?;
            self.count(0, bytes.len());
            return Ok(bytes);
        }
        let path = StorePath::from(key);
        let mut opts = object_store::GetOptions::default().with_range(Some(offset..offset + len));
        // Only the bytes are needed: the FTP store then skips its stat.
        if let Backend::Ftp(_) = self.backend {
            opts.extensions.insert(ftp::SizeLimit(len));
        }
        let bytes = self
            .rt
            .block_on(async { self.store.get_opts(&path, opts).await?.bytes().await })
            .map_err(|e| {
                // A range past the end means the object is shorter than its
                // reader knows it to be: damage, not a storage failure.
                if !matches!(e, object_store::Error::NotFound { .. })
                    && let Ok(Some(size)) = self.size(key)
                    && size < offset + len
                {
                    return truncated(key, size, offset, len);
                }
                self.err("read", key, e)
            })?;
        self.count(0, bytes.len());
        if bytes.len() as u64 != len {
            return Err(Error::corrupt(
                key,
                format!(
                    "short read: {} of {len} bytes at offset {offset}",
                    bytes.len()
                ),
            ));
        }
        Ok(Vec::from(bytes))
    }

    /// Writes an object atomically, replacing any existing one.
    pub(crate) fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.forget(key);
        let n = bytes.len();
        let path = StorePath::from(key);
        let store = self.writer(key)?;
        self.rt
            .block_on(store.put(&path, PutPayload::from(bytes)))
            .map_err(|e| self.write_err("write", key, e))?;
        self.count(n, 0);
        Ok(())
    }

    /// Writes an object given as consecutive parts, without joining them in memory.
    pub(crate) fn put_parts(&self, key: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        self.forget(key);
        let n: usize = parts.iter().map(Vec::len).sum();
        let path = StorePath::from(key);
        let payload: PutPayload = parts.into_iter().map(bytes::Bytes::from).collect();
        let store = self.writer(key)?;
        self.rt
            .block_on(store.put(&path, payload))
            .map_err(|e| self.write_err("write", key, e))?;
        self.count(n, 0);
        Ok(())
    }

    /// Writes an object only if none exists under `key`; `false` if one did.
    pub(crate) fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let n = bytes.len();
        let path = StorePath::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let store = self.writer(key)?;
        let r = self
            .rt
            .block_on(store.put_opts(&path, PutPayload::from(bytes), opts));
        self.count(n, 0);
        match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.write_err("create", key, e)),
        }
    }

    /// Whether [`Storage::claim`] works here: a REST server has no
    /// conditional create, so exclusive lockers there rely on the listing
    /// after writing their own lock (SPEC.md §10), which its read-after-write
    /// consistent listings make sound.
    pub(crate) fn can_claim(&self) -> bool {
        !matches!(self.backend, Backend::Rest(_))
    }

    /// Atomically claims `dir` and stores `bytes` as `dir/name`; `false` if
    /// another claim exists. Conditional create where the backend has it
    /// (local disk, S3 `If-None-Match`); on FTP, which has none, MKD of `dir`
    /// is the atomic step.
    pub(crate) fn claim(&self, dir: &str, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = format!("{dir}/{name}");
        let Backend::Ftp(ftp) = &self.backend else {
            return self.put_new(&key, bytes);
        };
        self.count(0, 0);
        let created = backend::ftp_claim(&self.rt, ftp, dir).map_err(|message| Error::Storage {
            op: "claim",
            key: key.clone(),
            message,
        })?;
        if !created {
            return Ok(false);
        }
        self.put(&key, bytes)?;
        Ok(true)
    }

    /// Releases a claim made by [`Storage::claim`].
    pub(crate) fn release(&self, dir: &str, name: &str) -> Result<()> {
        self.delete(&format!("{dir}/{name}"))?;
        if let Backend::Ftp(ftp) = &self.backend {
            backend::ftp_release(&self.rt, ftp, dir);
        }
        Ok(())
    }

    /// Lists every object under `prefix` (a directory such as `snapshots`).
    /// In a local repository links are never followed: a symlink, FIFO or
    /// device found there is reported as a warning and left out.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = if let Backend::Local(fs) = &self.backend {
            fs.list(prefix)?
        } else {
            let path = StorePath::from(prefix);
            let metas: Vec<object_store::ObjectMeta> = self
                .rt
                .block_on(self.store.list(Some(&path)).try_collect())
                .map_err(|e| self.err("list", prefix, e))?;
            metas
                .into_iter()
                .map(|m| Listed {
                    key: m.location.to_string(),
                    size: m.size,
                })
                .filter(|l| !l.key.rsplit('/').next().unwrap_or("").starts_with('.'))
                .collect()
        };
        self.count(0, 0);
        // A server may name one object twice (a REST server was seen to):
        // each key counts once, or forget would keep one snapshot twice.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    /// Lists every object under `prefix` (empty for the whole store) with its
    /// modification time, dot files included: plain trees (mirror and sync)
    /// need both. Names come back as the user wrote them, undoing the
    /// percent-encoding `object_store` applies to unusual characters.
    pub(crate) fn list_files(&self, prefix: &str) -> Result<Vec<ListedFile>> {
        let path = (!prefix.is_empty()).then(|| StorePath::from(prefix));
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(path.as_ref()).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        self.count(0, 0);
        let mut out: Vec<ListedFile> = metas
            .into_iter()
            .map(|m| ListedFile {
                name: m
                    .location
                    .parts()
                    .map(|p| {
                        percent_encoding::percent_decode_str(p.as_ref())
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect::<Vec<_>>()
                    .join("/"),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect();
        // Each name once, whatever the server's listing repeats.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    /// Size and modification time of one object, or `None` if it does not exist.
    pub(crate) fn stat(&self, key: &str) -> Result<Option<ListedFile>> {
        let path = StorePath::from(key);
        let r = self.rt.block_on(self.store.head(&path));
        self.count(0, 0);
        match r {
            Ok(m) => Ok(Some(ListedFile {
                name: key.to_string(),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    /// Moves an object to a new key (server-side where the backend can).
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.forget(from);
        self.forget(to);
        let (src, dst) = (StorePath::from(from), StorePath::from(to));
        self.rt
            .block_on(self.store.rename(&src, &dst))
            .map_err(|e| self.err("rename", from, e))?;
        self.count(0, 0);
        Ok(())
    }

    /// Size of an object, or `None` if it does not exist.
    pub(crate) fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = StorePath::from(key);
        let r = self.rt.block_on(self.store.head(&path));
        self.count(0, 0);
        match r {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    /// Whether the storage refuses to delete objects other than locks: an
    /// append-only server (`rest-server --append-only`, `rclone serve restic
    /// --append-only`) or a storage policy. Maintenance asks before it
    /// changes anything, so it can refuse whole instead of failing half way.
    /// The probe deletes a random snapshot name that never existed, which
    /// such servers refuse before they look whether it exists; elsewhere it
    /// is a harmless "not found".
    pub(crate) fn refuses_deletes(&self) -> Result<bool> {
        let mut name = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut name);
        let key = format!("snapshots/{}", hex::encode(name));
        let r = self
            .rt
            .block_on(self.store.delete(&StorePath::from(key.as_str())));
        self.count(0, 0);
        match r {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(object_store::Error::PermissionDenied { .. }) => Ok(true),
            Err(e) => Err(self.err("delete", &key, e)),
        }
    }

    /// Removes an object; removing a missing object is not an error.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        self.forget(key);
        let path = StorePath::from(key);
        let r = self.rt.block_on(self.store.delete(&path));
        self.count(0, 0);
        match r {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }
}

/// Largest object [`Storage::get`] reads whole: a pack is at most 1 GiB
/// (the largest pack size) plus one blob, and nothing else comes near.
pub(crate) const MAX_OBJECT_SIZE: u64 = 2 << 30;

#[cfg(test)]
mod tests;
