//! Synchronous storage facade over `object_store`.
//!
//! Everything above this layer moves bytes by key and never sees
//! `object_store` or tokio: one private runtime turns each call into a
//! blocking one, which keeps the engines plain threads-and-rayon code.
//! Every call to `object_store` lives in this module.

pub mod awsconf;
pub mod ftp;
mod localfs;
pub mod location;
pub mod netrc;
mod openfiles;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
pub use location::{BackendOptions, Location};

/// Request and byte counters, so users can see what a command cost.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// A snapshot of [`Stats`] for reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StatsReport {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// A listed object: key relative to the repository root, and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// A listed plain file (see [`Storage::list_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// Blocking access to one repository's objects.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    location: Location,
    stats: Stats,
    connections: usize,
    /// The FTP store again, for the one operation FTP does differently (MKD claims).
    ftp: Option<ftp::FtpStore>,
    /// Local repositories: reads go straight to the file system. Through
    /// object_store each read is handed to a blocking thread and back, which
    /// for the thousands of small tree reads of a backup costs more than
    /// the reads themselves.
    local: Option<std::path::PathBuf>,
    /// The local repository's root directory, which every local read and
    /// listing starts from without following links (see `localfs`).
    root: Option<std::os::fd::OwnedFd>,
    /// Kept descriptors for [`Storage::get_range_immutable`] on local storage.
    open: openfiles::OpenFiles,
}

impl Storage {
    /// Connects to `location`. With `create`, a missing local directory is made.
    pub fn open(location: &Location, create: bool) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("repo-storage")
            .build()
            .map_err(|e| Error::io("start the storage runtime for", location.to_string(), e))?;
        let mut ftp_store = None;
        let store: Arc<dyn ObjectStore> = match location {
            Location::Local(path) => {
                if create {
                    std::fs::create_dir_all(path)
                        .map_err(|e| Error::io("create repository directory", path, e))?;
                } else if !path.is_dir() {
                    return Err(Error::RepoNotFound {
                        location: location.to_string(),
                        reason: match std::fs::metadata(path) {
                            Ok(_) => "it is not a directory".into(),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                "the directory does not exist".into()
                            }
                            Err(e) => format!("it cannot be opened ({e})"),
                        },
                    });
                }
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| Error::Storage {
                        op: "open",
                        key: path.display().to_string(),
                        message: e.to_string(),
                    })?
                    .with_fsync(true)
                    .with_automatic_cleanup(false);
                Arc::new(fs)
            }
            Location::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => s3_store(bucket, prefix, endpoint.as_deref())?,
            Location::Ftp(cfg) => {
                let store = ftp::FtpStore::new((**cfg).clone()).map_err(|e| Error::Storage {
                    op: "connect to",
                    key: location.to_string(),
                    message: e.to_string(),
                })?;
                ftp_store = Some(store.clone());
                Arc::new(store)
            }
            Location::Memory(m) => m.store(),
        };
        let root = match location {
            Location::Local(path) => Some(
                localfs::open_root(path)
                    .map_err(|e| Error::io("open the repository directory", path, e))?,
            ),
            _ => None,
        };
        let connections = match location {
            Location::Local(_) | Location::Memory(_) => rayon::current_num_threads(),
            Location::S3 { connections, .. } => *connections,
            Location::Ftp(c) => c.max_connections.max(1),
        };
        Ok(Storage {
            store,
            rt,
            location: location.clone(),
            stats: Stats::default(),
            connections,
            ftp: ftp_store,
            open: Default::default(),
            root,
            local: match location {
                Location::Local(p) => Some(p.clone()),
                _ => None,
            },
        })
    }

    /// A new, empty repository store in this process's memory, for tests
    /// that run engines without a disk or server. Open its
    /// [`location`](Storage::location) again (or pass `Location::memory()`
    /// to `Repository::init`/`open`) to reach the same objects.
    pub fn in_memory() -> Result<Self> {
        Self::open(&Location::memory(), true)
    }

    /// How many transfers may usefully run at once.
    pub fn connections(&self) -> usize {
        self.connections
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn stats(&self) -> StatsReport {
        StatsReport {
            requests: self.stats.requests.load(Ordering::Relaxed),
            bytes_sent: self.stats.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.stats.bytes_received.load(Ordering::Relaxed),
        }
    }

    fn count(&self, sent: usize, received: usize) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(received as u64, Ordering::Relaxed);
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                what: format!("object {key} in {}", self.location),
                hint: String::new(),
            },
            other => {
                let mut message = other.to_string();
                if is_out_of_space(&other) {
                    message.push_str(
                        ". The storage is full: free space there (or raise the quota) and run the \
                         command again. Objects are written atomically, so what was stored before \
                         is intact; `repo check` reports leftovers of the interrupted run as notices",
                    );
                } else if message.contains("169.254.169.254") {
                    // No credentials anywhere, so the AWS client fell back to the
                    // cloud instance metadata service, which is not there.
                    message.push_str(
                        ". No S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                         (or ~/.aws/credentials), and --s3-endpoint / REPO_S3_ENDPOINT for a \
                         self-hosted server",
                    );
                }
                Error::Storage {
                    op,
                    key: format!("{}/{key}", self.location),
                    message,
                }
            }
        }
    }

    /// The file holding `key` in a local repository, for keys whose name
    /// object_store would store unchanged (repository object names are).
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        let root = self.local.as_ref()?;
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-' | b'_'))
            && !key.split('/').any(str::is_empty);
        plain.then(|| root.join(key))
    }

    /// Opens a local object below the root without following links.
    fn local_open(&self, key: &str) -> Result<std::fs::File> {
        let root = self.root.as_ref().ok_or_else(|| Error::Storage {
            op: "read",
            key: format!("{}/{key}", self.location),
            message: "the repository directory is not open".into(),
        })?;
        localfs::open_object(root, key).map_err(|e| self.local_err(key, e))
    }

    /// Direct read of `len` bytes at `offset` (all of it, at most `limit`
    /// bytes, with `None`) from a local file.
    fn local_read(&self, key: &str, range: Option<(u64, u64)>, limit: u64) -> Result<Vec<u8>> {
        let f = self.local_open(key)?;
        let size = f.metadata().map_err(|e| self.local_err(key, e))?.len();
        let Some((offset, len)) = range else {
            if size > limit {
                return Err(too_large(key, size, limit));
            }
            // Bounded again while reading: the file may grow after fstat.
            let mut buf = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&f, limit + 1), &mut buf)
                .map_err(|e| self.local_err(key, e))?;
            if buf.len() as u64 > limit {
                return Err(too_large(key, buf.len() as u64, limit));
            }
            self.count(0, buf.len());
            return Ok(buf);
        };
        self.read_at(key, &f, size, offset, len)
    }

    /// Reads `len` bytes at `offset` of an open local object of `size` bytes.
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
            return Err(truncated(key, size, offset, len));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| self.local_err(key, e))?;
        self.count(0, buf.len());
        Ok(buf)
    }

    fn local_err(&self, key: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            Error::corrupt(format!("{}/{key}", self.location), e)
        } else if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: format!("object {key} in {}", self.location),
                hint: String::new(),
            }
        } else {
            Error::Storage {
                op: "read",
                key: format!("{}/{key}", self.location),
                message: e.to_string(),
            }
        }
    }

    /// Reads a whole object of at most [`MAX_OBJECT_SIZE`] bytes (any pack).
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_bounded(key, MAX_OBJECT_SIZE)
    }

    /// Reads a whole object of at most `limit` bytes. Its size is checked
    /// before anything is read (fstat, or the response's length), and the
    /// read stops at `limit + 1` bytes anyway, since storage may lie about
    /// sizes: a planted 8 GiB object costs one request, not 8 GiB of memory.
    pub fn get_bounded(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        if self.local_file(key).is_some() {
            return self.local_read(key, None, limit);
        }
        let path = StorePath::from(key);
        // The FTP store fetches a whole object before handing it over, so
        // there the size is asked first and the transfer itself bounded.
        let mut opts = object_store::GetOptions::default();
        if self.ftp.is_some() {
            match self.size(key)? {
                None => {
                    return Err(Error::NotFound {
                        what: format!("object {key} in {}", self.location),
                        hint: String::new(),
                    });
                }
                Some(size) if size > limit => return Err(too_large(key, size, limit)),
                Some(0) => {}
                Some(size) => opts.range = Some((0..size.min(limit + 1)).into()),
            }
        }
        let bytes = self
            .rt
            .block_on(async {
                let got = self.store.get_opts(&path, opts).await?;
                if got.meta.size > limit {
                    return Ok(Err(too_large(key, got.meta.size, limit)));
                }
                let mut stream = got.into_stream();
                let mut buf = Vec::new();
                while let Some(part) = stream.try_next().await? {
                    if (buf.len() + part.len()) as u64 > limit {
                        return Ok(Err(too_large(key, (buf.len() + part.len()) as u64, limit)));
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
    pub fn get_range_immutable(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if self.local_file(key).is_none() {
            return self.get_range(key, offset, len);
        }
        let (file, size) = self
            .open
            .get(key, || match &self.root {
                Some(root) => localfs::open_object(root, key),
                None => Err(std::io::ErrorKind::NotFound.into()),
            })
            .map_err(|e| self.local_err(key, e))?;
        self.read_at(key, &file, size, offset, len)
    }

    /// Reads `len` bytes at `offset`.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if self.local_file(key).is_some() {
            return self.local_read(key, Some((offset, len)), MAX_OBJECT_SIZE);
        }
        let path = StorePath::from(key);
        let bytes = self
            .rt
            .block_on(self.store.get_range(&path, offset..offset + len))
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
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.open.forget(key);
        let n = bytes.len();
        let path = StorePath::from(key);
        self.rt
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(|e| self.err("write", key, e))?;
        self.count(n, 0);
        Ok(())
    }

    /// Writes an object given as consecutive parts, without joining them in memory.
    pub fn put_parts(&self, key: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        self.open.forget(key);
        let n: usize = parts.iter().map(Vec::len).sum();
        let path = StorePath::from(key);
        let payload: PutPayload = parts.into_iter().map(bytes::Bytes::from).collect();
        self.rt
            .block_on(self.store.put(&path, payload))
            .map_err(|e| self.err("write", key, e))?;
        self.count(n, 0);
        Ok(())
    }

    /// Writes an object only if none exists under `key`; `false` if one did.
    pub fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let n = bytes.len();
        let path = StorePath::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let r = self
            .rt
            .block_on(self.store.put_opts(&path, PutPayload::from(bytes), opts));
        self.count(n, 0);
        match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err("create", key, e)),
        }
    }

    /// Atomically claims `dir` and stores `bytes` as `dir/name`; `false` if
    /// another claim exists. Conditional create where the backend has it
    /// (local disk, S3 `If-None-Match`); on FTP, which has none, MKD of `dir`
    /// is the atomic step.
    pub fn claim(&self, dir: &str, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = format!("{dir}/{name}");
        if let Some(ftp) = &self.ftp {
            let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            self.count(0, 0);
            let created = self
                .rt
                .block_on(async {
                    let ftp = ftp.clone();
                    let (parent, dir) = (parent.to_string(), dir.to_string());
                    tokio::task::spawn_blocking(move || {
                        if !parent.is_empty() {
                            let _ = ftp.create_dir_exclusive(&parent);
                        }
                        ftp.create_dir_exclusive(&dir)
                    })
                    .await
                })
                .map_err(|e| Error::Storage {
                    op: "claim",
                    key: key.clone(),
                    message: e.to_string(),
                })?
                .map_err(|e| Error::Storage {
                    op: "claim",
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            if !created {
                return Ok(false);
            }
            self.put(&key, bytes)?;
            return Ok(true);
        }
        self.put_new(&key, bytes)
    }

    /// Releases a claim made by [`Storage::claim`].
    pub fn release(&self, dir: &str, name: &str) -> Result<()> {
        self.delete(&format!("{dir}/{name}"))?;
        if let Some(ftp) = &self.ftp {
            let (ftp, dir) = (ftp.clone(), dir.to_string());
            let _ = self.rt.block_on(async {
                tokio::task::spawn_blocking(move || ftp.remove_dir(&dir)).await
            });
        }
        Ok(())
    }

    /// Lists every object under `prefix` (a directory such as `snapshots`).
    /// In a local repository links are never followed: a symlink, FIFO or
    /// device found there is reported as a warning and left out.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        if let Some(root) = &self.root {
            let found = localfs::list(root, prefix).map_err(|e| Error::Storage {
                op: "list",
                key: format!("{}/{prefix}", self.location),
                message: e.to_string(),
            })?;
            self.count(0, 0);
            for (key, why) in found.ignored {
                crate::error::warnings::warn(format!("{}/{key}: ignored: {why}", self.location));
            }
            let mut out: Vec<Listed> = found
                .files
                .into_iter()
                .filter(|(key, _)| {
                    let name = key.rsplit('/').next().unwrap_or("");
                    // Dot files, and object_store's `name#N` files of writes under way.
                    !name.starts_with('.')
                        && !name.split_once('#').is_some_and(|(_, n)| {
                            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .map(|(key, size)| Listed { key, size })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            return Ok(out);
        }
        let path = StorePath::from(prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        self.count(0, 0);
        let mut out: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed {
                key: m.location.to_string(),
                size: m.size,
            })
            .filter(|l| !l.key.rsplit('/').next().unwrap_or("").starts_with('.'))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Lists every object under `prefix` (empty for the whole store) with its
    /// modification time, dot files included: plain trees (mirror and sync)
    /// need both. Names come back as the user wrote them, undoing the
    /// percent-encoding `object_store` applies to unusual characters.
    pub fn list_files(&self, prefix: &str) -> Result<Vec<ListedFile>> {
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
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Size and modification time of one object, or `None` if it does not exist.
    pub fn stat(&self, key: &str) -> Result<Option<ListedFile>> {
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
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.open.forget(from);
        self.open.forget(to);
        let (src, dst) = (StorePath::from(from), StorePath::from(to));
        self.rt
            .block_on(self.store.rename(&src, &dst))
            .map_err(|e| self.err("rename", from, e))?;
        self.count(0, 0);
        Ok(())
    }

    /// Size of an object, or `None` if it does not exist.
    pub fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = StorePath::from(key);
        let r = self.rt.block_on(self.store.head(&path));
        self.count(0, 0);
        match r {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    /// Removes an object; removing a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.open.forget(key);
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
pub const MAX_OBJECT_SIZE: u64 = 2 << 30;

/// An object larger than any of its kind may be: refused unread.
fn too_large(key: &str, size: u64, limit: u64) -> Error {
    Error::corrupt(
        key,
        format!(
            "it has {size} bytes, more than the {limit} bytes an object of its kind may have, \
             so it was not read (planted or damaged); move it out of the repository"
        ),
    )
}

/// An object shorter than a reader knows it to be: damage, not a storage failure.
fn truncated(key: &str, size: u64, offset: u64, len: u64) -> Error {
    Error::corrupt(
        key,
        format!(
            "it has {size} bytes, but {len} bytes at offset {offset} were expected (truncated?)"
        ),
    )
}

/// Whether an error (or any error it wraps) is "no space left on device" or
/// "disk quota exceeded".
fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        {
            return true;
        }
        cur = err.source();
    }
    // Some layers keep only the message of the I/O error.
    let text = e.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

/// Builds the S3 client: `AWS_*` environment first, then `~/.aws` files,
/// path-style addressing (what self-hosted servers expect), bounded retries.
fn s3_store(bucket: &str, prefix: &str, endpoint: Option<&str>) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    let file = awsconf::load();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: std::time::Duration::from_secs(60),
        })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(10))
                .with_timeout(std::time::Duration::from_secs(300)),
        );
    if env("AWS_ACCESS_KEY_ID").is_none()
        && let (Some(k), Some(s)) = (file.access_key_id, file.secret_access_key)
    {
        b = b.with_access_key_id(k).with_secret_access_key(s);
        if let Some(t) = file.session_token {
            b = b.with_token(t);
        }
    }
    let region = env("AWS_REGION")
        .or(env("AWS_DEFAULT_REGION"))
        .or(file.region);
    b = b.with_region(region.unwrap_or_else(|| "us-east-1".into()));
    let endpoint = endpoint
        .map(String::from)
        .or(env("REPO_S3_ENDPOINT"))
        .or(env("AWS_ENDPOINT_URL"))
        .or(env("AWS_ENDPOINT"))
        .or(file.endpoint_url);
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    let store = b.build().map_err(|e| Error::Storage {
        op: "configure S3 for",
        key: format!("s3://{bucket}/{prefix}"),
        message: format!("{e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) and the region"),
    })?;
    if prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store, prefix,
        )))
    }
}

#[cfg(test)]
mod tests;
