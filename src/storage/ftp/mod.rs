//! FTP and FTPS (explicit TLS) repository backend: an [`ObjectStore`](object_store::ObjectStore) over plain
//! FTP commands.
//!
//! Objects map to files below a base directory on the server; `/` in an object path is a
//! directory level. The design follows from what FTP can and cannot promise:
//!
//! * **No partial objects.** `put` uploads to a hidden temporary name (`.tmp-<random>`) in the
//!   destination directory and renames it into place with RNFR/RNTO, which servers implement with
//!   rename(2). Listings hide temporary names, also those a crashed writer left behind.
//! * **No atomic create-if-absent.** FTP has no conditional STOR, so [`PutMode::Create`](object_store::PutMode::Create) checks
//!   first and is racy; repository locks use [`FtpStore::create_dir_exclusive`] (MKD) instead,
//!   which the server performs atomically.
//! * **One transfer per connection.** A small pool of logged-in control connections provides
//!   parallelism; see `pool.rs` for checking, retries and backoff.
//! * **Few round trips.** Commands whose replies the next ones do not depend on go out together
//!   (see `control.rs`); the next transfer's data port is asked for as soon as a transfer is
//!   over (a download's once its data has ended), and its reply read while the connection is
//!   idle (`control/data.rs`, `pool.rs`): a download or a listing is one round trip plus the
//!   data connection, an upload two (STOR, then RNFR + RNTO), a login one after TCP (four
//!   on FTPS).
//! * **Blocking client.** The control connections are blocking sockets (suppaftp's TLS and data
//!   stream types) used from tokio's blocking thread pool.
//!
//! Every error message names the server as `ftp://user@host:port/root` and the remote path; the
//! password never appears in messages or `Debug` output.
//!
//! The parts: `config` (URL, credentials, TLS), `error`, `control` (the control connection,
//! several commands per round trip), `pool` (connections, retries, backoff), `commands` (the
//! command sequences behind each operation), `transfer` (STOR and RETR),
//! `listing` (MLSD and LIST parsing), `store` (the `ObjectStore` impl) and, here, the store type.

mod commands;
mod config;
mod control;
mod error;
mod idle;
mod listing;
mod pool;
mod store;
mod transfer;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::ObjectMeta;
use object_store::path::Path;

use commands::{create_dir_exclusive, delete_file, join, list_dir, normalize_root, remove_dir};
pub use config::FtpConfig;
use config::tls_config;
pub use error::FtpError;
use listing::Entry;
use pool::{Pool, Session, Settings};
pub use transfer::SizeLimit;

/// A directory (relative to the root) and its visible entries.
type Listed = (String, Vec<Entry>);

/// An [`ObjectStore`](object_store::ObjectStore) on an FTP or FTPS server. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct FtpStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    /// Normalised base directory: no trailing slash, except for `/` itself.
    root: String,
    max_connections: usize,
}

impl FtpStore {
    /// Prepares a store; connections are opened lazily by the first operation.
    pub fn new(cfg: FtpConfig) -> Result<FtpStore, FtpError> {
        let server = cfg.to_string();
        let invalid = |message: &str| FtpError::Config {
            server: server.clone(),
            message: message.to_string(),
        };
        if cfg.host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if cfg.port == 0 {
            return Err(invalid("the port is 0"));
        }
        let tls = if cfg.tls {
            Some(tls_config(cfg.ca_cert_pem.as_deref()).map_err(|m| invalid(&m))?)
        } else {
            None
        };
        let max_connections = match cfg.max_connections {
            0 => FtpConfig::DEFAULT_MAX_CONNECTIONS,
            n => n,
        };
        let root = normalize_root(&cfg.root);
        let settings = Settings {
            host: cfg.host,
            port: cfg.port,
            user: cfg.user,
            password: cfg.password,
            tls,
            server: Arc::from(server),
        };
        Ok(FtpStore {
            inner: Arc::new(Inner {
                pool: Arc::new(Pool::new(settings, max_connections)),
                root,
                max_connections,
            }),
        })
    }

    /// Creates the directory `path` (relative to the root) with MKD, creating missing parents.
    ///
    /// Returns `Ok(false)` if it already exists. MKD is atomic on the server, so exactly one of
    /// several concurrent callers gets `Ok(true)`: this is the primitive for repository locks on
    /// FTP, where object creation cannot be made exclusive.
    ///
    /// If the connection breaks after MKD was sent and the retry finds the directory, it cannot
    /// be told whether this call created it; that is reported as [`FtpError::Ambiguous`] rather
    /// than guessed. Blocking: call it from a plain thread or `spawn_blocking`, not from async
    /// code.
    pub fn create_dir_exclusive(&self, path: &str) -> Result<bool, FtpError> {
        let remote = self.remote(path.trim_matches('/'));
        self.inner
            .pool
            .run_sync(|s| create_dir_exclusive(s, &remote))
    }

    /// Removes the empty directory `path` (relative to the root) with RMD, e.g. to release a
    /// lock taken with [`FtpStore::create_dir_exclusive`]. Blocking, like that method.
    pub fn remove_dir(&self, path: &str) -> Result<(), FtpError> {
        let remote = self.remote(path.trim_matches('/'));
        self.inner.pool.run_sync(|s| remove_dir(s, &remote))
    }

    /// How many control connections this store has opened, counting reconnects after broken
    /// or timed-out sessions; a diagnostic for connection churn.
    pub fn connections_opened(&self) -> u64 {
        self.inner.pool.connections_opened()
    }

    /// How many logins sent the password (a wrong one is sent once, not once per connection).
    pub fn logins(&self) -> u64 {
        self.inner.pool.logins()
    }

    /// Round trips to the server so far (batches of commands sent, each followed by a wait for
    /// replies), and the commands sent in them: a diagnostic for latency.
    pub fn round_trips(&self) -> (u64, u64) {
        self.inner.pool.round_trips()
    }

    /// Replies read while a connection was idle, off any operation's way: to passive
    /// commands (the next transfer's data port), and the final replies of ranged reads stopped
    /// early. A diagnostic for latency, like [`FtpStore::round_trips`].
    pub fn replies_read_idle(&self) -> (u64, u64) {
        self.inner.pool.replies_read_idle()
    }

    /// Connections the store may hold now: its `max_connections`, less those the server
    /// refused once the store had one (a limit on sessions per client).
    pub fn connection_limit(&self) -> usize {
        self.inner.pool.connection_limit()
    }

    /// The fewest connections the server allowed at once, if it ever refused one (see
    /// [`FtpStore::connection_limit`]; the store tries one more now and then).
    pub fn lowest_connection_limit(&self) -> Option<usize> {
        self.inner.pool.lowest_limit()
    }

    /// Transfers that found their data connection opened while the control connection was
    /// idle, and such connections the server had closed by then (after which the store opens
    /// none ahead). A diagnostic for latency, like [`FtpStore::round_trips`].
    pub fn data_connections_ahead(&self) -> (u64, u64) {
        self.inner.pool.data_connections_ahead()
    }

    /// Testing aid: list directories with `LIST` even if the server supports `MLSD`, to exercise
    /// the parser used for servers without it.
    #[doc(hidden)]
    pub fn force_list_command(&self, on: bool) {
        self.inner.pool.set_force_list(on);
    }

    fn server(&self) -> &Arc<str> {
        self.inner.pool.server()
    }

    /// The server path of `rel`, a path relative to the root.
    fn remote(&self, rel: &str) -> String {
        join(&self.inner.root, rel)
    }

    async fn run<T, F>(&self, op: F) -> Result<T, FtpError>
    where
        T: Send + 'static,
        F: FnMut(&mut Session<'_>) -> Result<T, FtpError> + Send + 'static,
    {
        self.inner.pool.run(op).await
    }

    async fn delete_object(&self, location: &Path) -> object_store::Result<()> {
        let remote = self.remote(location.as_ref());
        self.run(move |s| delete_file(s, &remote))
            .await
            .map_err(|e| e.into_store_error(location.as_ref()))
    }

    /// Lists one directory (relative to the root); a missing directory is empty.
    async fn read_dir(&self, rel: String) -> Result<Listed, FtpError> {
        let remote = self.remote(&rel);
        let entries = self.run(move |s| list_dir(s, &remote)).await?;
        Ok((rel, entries))
    }

    fn object_meta(rel_dir: &str, entry: &Entry) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            location: Path::parse(join(rel_dir, &entry.name)).ok()?,
            last_modified: entry.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            size: entry.size,
            e_tag: None,
            version: None,
        })
    }
}

impl fmt::Display for FtpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.server())
    }
}

impl fmt::Debug for FtpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpStore")
            .field("server", &self.server())
            .field("max_connections", &self.inner.max_connections)
            .finish()
    }
}
