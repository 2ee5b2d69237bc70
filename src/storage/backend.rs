//! The kinds of storage, and what each does differently from the rest.
//!
//! Every backend is reached through one `object_store` client; [`Backend`]
//! carries what a kind needs beyond it, so the facade picks a path with one
//! `match` instead of checking optional fields: local disk reads and lists
//! directly, FTP claims with MKD and sizes a read before it starts.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;

use super::local::LocalFs;
use super::{Location, ftp, rest, s3};
use crate::error::{Error, Result};

pub(super) enum Backend {
    /// A local directory: reads and listings go straight to the file system.
    Local(LocalFs),
    /// S3-compatible storage: object_store does everything.
    S3,
    /// An FTP or FTPS server; the store again, for what FTP does differently.
    Ftp(ftp::FtpStore),
    /// A restic REST server: no conditional create, so no claim (SPEC.md §10).
    Rest(rest::RestStore),
    /// This process's memory (tests): object_store does everything.
    Memory,
}

/// Connects to `location`: its object_store client and its [`Backend`].
/// With `create`, a missing local directory is made.
pub(super) fn connect(
    location: &Location,
    create: bool,
) -> Result<(Arc<dyn ObjectStore>, Backend)> {
    Ok(match location {
        Location::Local(path) => {
            let store = local_store(location, path, create)?;
            (store, Backend::Local(LocalFs::open(path)?))
        }
        Location::S3 {
            bucket,
            prefix,
            endpoint,
            ..
        } => (s3::store(bucket, prefix, endpoint.as_deref())?, Backend::S3),
        Location::Ftp(cfg) => {
            let store = ftp::FtpStore::new((**cfg).clone()).map_err(|e| Error::Storage {
                op: "connect to",
                key: location.to_string(),
                message: e.to_string(),
            })?;
            (Arc::new(store.clone()), Backend::Ftp(store))
        }
        Location::Rest(cfg) => {
            let store =
                rest::RestStore::new((**cfg).clone()).map_err(|message| Error::Storage {
                    op: "connect to",
                    key: location.to_string(),
                    message,
                })?;
            (Arc::new(store.clone()), Backend::Rest(store))
        }
        Location::Memory(m) => (m.store(), Backend::Memory),
    })
}

/// How many transfers to `location` may usefully run at once.
pub(super) fn connections(location: &Location) -> usize {
    match location {
        Location::Local(_) | Location::Memory(_) => rayon::current_num_threads(),
        Location::S3 { connections, .. } => *connections,
        Location::Ftp(c) => c.max_connections.max(1),
        Location::Rest(c) => c.connections(),
    }
}

/// object_store's client for a local directory, which must exist unless
/// `create` makes it.
fn local_store(location: &Location, path: &Path, create: bool) -> Result<Arc<dyn ObjectStore>> {
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
    Ok(Arc::new(fs))
}

/// FTP has no conditional create, so a claim is MKD of `dir` (after its
/// parent, which may already exist): `false` if another claim made it.
pub(super) fn ftp_claim(
    rt: &tokio::runtime::Runtime,
    ftp: &ftp::FtpStore,
    dir: &str,
) -> std::result::Result<bool, String> {
    let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let (ftp, parent, dir) = (ftp.clone(), parent.to_string(), dir.to_string());
    rt.block_on(async {
        tokio::task::spawn_blocking(move || {
            if !parent.is_empty() {
                let _ = ftp.create_dir_exclusive(&parent);
            }
            ftp.create_dir_exclusive(&dir)
        })
        .await
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Removes the directory of an FTP claim whose object is already deleted;
/// a failure here is ignored, as it always was.
pub(super) fn ftp_release(rt: &tokio::runtime::Runtime, ftp: &ftp::FtpStore, dir: &str) {
    let (ftp, dir) = (ftp.clone(), dir.to_string());
    let _ = rt.block_on(async { tokio::task::spawn_blocking(move || ftp.remove_dir(&dir)).await });
}
