//! FTP and FTPS (explicit TLS) repository backend: an [`ObjectStore`] over plain FTP commands.
//!
//! Objects map to files below a base directory on the server; `/` in an object path is a
//! directory level. The design follows from what FTP can and cannot promise:
//!
//! * **No partial objects.** `put` uploads to a hidden temporary name (`.tmp-<random>`) in the
//!   destination directory and renames it into place with RNFR/RNTO, which servers implement with
//!   rename(2). Listings hide temporary names, also those a crashed writer left behind.
//! * **No atomic create-if-absent.** FTP has no conditional STOR, so [`PutMode::Create`] checks
//!   first and is racy; repository locks use [`FtpStore::create_dir_exclusive`] (MKD) instead,
//!   which the server performs atomically.
//! * **One transfer per connection.** A small pool of logged-in control connections provides
//!   parallelism; see `pool.rs` for checking, retries and backoff.
//! * **Blocking client.** suppaftp's synchronous API runs in tokio's blocking thread pool.
//!
//! Every error message names the server as `ftp://user@host:port/root` and the remote path; the
//! password never appears in messages or `Debug` output.

mod listing;
mod pool;

use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode, UploadPart,
};
use suppaftp::Status;
use suppaftp::rustls::pki_types::CertificateDer;
use suppaftp::rustls::pki_types::pem::PemObject;
use suppaftp::rustls::{ClientConfig, RootCertStore};

use listing::{Entry, Kind};
use pool::{Pool, Session, Settings, reply_code};

/// The name object_store errors carry for this backend.
const STORE: &str = "FTP";

/// Where and how to connect.
#[derive(Clone)]
pub struct FtpConfig {
    pub host: String,
    /// Usually 21, also for explicit FTPS.
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Base directory on the server, e.g. `/backups/r1`. An absolute path is used as is; a
    /// relative one (or `""`) is relative to the directory the server puts the user in at login.
    /// Missing directories are created on first write.
    pub root: String,
    /// Explicit FTPS: `AUTH TLS` on the control connection and `PROT P` for data connections.
    pub tls: bool,
    /// Upper bound on simultaneous control connections; 0 means the default, 4.
    pub max_connections: usize,
    /// Extra trusted root certificate(s), PEM, in addition to the system's trust store; for
    /// servers with a private CA.
    pub ca_cert_pem: Option<Vec<u8>>,
}

impl FtpConfig {
    pub const DEFAULT_PORT: u16 = 21;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

    /// Parses `ftp://user:password@host:port/root` or `ftps://…` (explicit TLS).
    ///
    /// User, password and path are percent-decoded; the path is the root directory as is, so
    /// `ftp://h/backups` means the absolute `/backups`. A missing password is left empty for the
    /// caller to fill in.
    pub fn from_url(url: &str) -> Result<Self, FtpError> {
        // The message repeats the URL only without its password.
        let invalid = |message: String| FtpError::Config {
            server: redact_url(url),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let tls = match parsed.scheme() {
            "ftp" => false,
            "ftps" => true,
            other => return Err(invalid(format!("unsupported scheme {other:?}"))),
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(invalid("the URL has no host".into())),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|e| invalid(e.to_string()))
        };
        let user = match parsed.username() {
            "" => "anonymous".to_string(),
            user => decode(user)?,
        };
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(Self::DEFAULT_PORT),
            user,
            password: decode(parsed.password().unwrap_or_default())?,
            // Non-special schemes (ftps) may have an empty path; both mean the server root.
            root: match decode(parsed.path())? {
                root if root.is_empty() => "/".to_string(),
                root => root,
            },
            tls,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            ca_cert_pem: None,
        })
    }
}

/// `ftp://user@host:port/root`: what messages call the server; no password.
impl fmt::Display for FtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "ftps" } else { "ftp" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let slash = if self.root.starts_with('/') { "" } else { "/" };
        write!(
            f,
            "{scheme}://{}@{host}:{}{slash}{}",
            self.user, self.port, self.root
        )
    }
}

impl fmt::Debug for FtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpConfig")
            .field("url", &self.to_string())
            .field("password", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

/// Errors of the FTP backend. `server` is always the password-free `ftp://user@host:port/root`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FtpError {
    #[error("invalid FTP configuration for {server}: {message}")]
    Config { server: String, message: String },
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: Arc<str>,
        #[source]
        source: suppaftp::FtpError,
    },
    #[error("TLS negotiation with {server} failed: {source}")]
    Tls {
        server: Arc<str>,
        #[source]
        source: suppaftp::FtpError,
    },
    #[error("login to {server} failed: {source}")]
    Login {
        server: Arc<str>,
        #[source]
        source: suppaftp::FtpError,
    },
    #[error("FTP {op} {path:?} on {server} failed: {source}")]
    Command {
        server: Arc<str>,
        op: &'static str,
        path: String,
        #[source]
        source: suppaftp::FtpError,
    },
    #[error("{path:?} does not exist on {server}")]
    NotFound { server: Arc<str>, path: String },
    #[error("{path:?} already exists on {server}")]
    AlreadyExists { server: Arc<str>, path: String },
    #[error("{path:?} on {server}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        server: Arc<str>,
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "the outcome of {op} {path:?} on {server} is unknown: the connection broke after the \
         command was sent"
    )]
    Ambiguous {
        server: Arc<str>,
        op: &'static str,
        path: String,
    },
    #[error("invalid range for {path:?} on {server}: {message}")]
    Range {
        server: Arc<str>,
        path: String,
        message: String,
    },
    #[error("FTP worker for {server} failed: {message}")]
    Worker { server: Arc<str>, message: String },
}

impl FtpError {
    /// Converts to object_store's error for the object at `location`, keeping `NotFound` and
    /// `AlreadyExists` recognisable to callers.
    pub fn into_store_error(self, location: &str) -> object_store::Error {
        let path = location.to_string();
        match self {
            e @ FtpError::NotFound { .. } => object_store::Error::NotFound {
                path,
                source: Box::new(e),
            },
            e @ FtpError::AlreadyExists { .. } => object_store::Error::AlreadyExists {
                path,
                source: Box::new(e),
            },
            e => object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            },
        }
    }

    /// The FTP reply code, when the server refused a command.
    pub fn reply_code(&self) -> Option<u32> {
        match self {
            FtpError::Command {
                source: suppaftp::FtpError::UnexpectedResponse(r),
                ..
            }
            | FtpError::Login {
                source: suppaftp::FtpError::UnexpectedResponse(r),
                ..
            } => Some(reply_code(r)),
            _ => None,
        }
    }
}

impl From<FtpError> for object_store::Error {
    fn from(e: FtpError) -> Self {
        let path = match &e {
            FtpError::NotFound { path, .. } | FtpError::AlreadyExists { path, .. } => path.clone(),
            _ => String::new(),
        };
        e.into_store_error(&path)
    }
}

/// A directory (relative to the root) and its visible entries.
type Listed = (String, Vec<Entry>);

/// An [`ObjectStore`] on an FTP or FTPS server. Cheap to clone; clones share the pool.
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

#[async_trait]
impl ObjectStore for FtpStore {
    /// Uploads to a temporary name and renames it into place.
    ///
    /// [`PutMode::Create`] is a check followed by the upload, **not race-free**: two writers can
    /// both pass the check, and the later rename wins. Use [`FtpStore::create_dir_exclusive`] for
    /// mutual exclusion. [`PutMode::Update`] and attributes are not supported; tags are ignored.
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !opts.attributes.is_empty() {
            return Err(not_implemented("put_opts with attributes"));
        }
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => return Err(not_implemented("put_opts with PutMode::Update")),
        };
        let remote = self.remote(location.as_ref());
        self.run(move |s| upload(s, &remote, &payload, create))
            .await
            .map_err(|e| e.into_store_error(location.as_ref()))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    /// Collects the parts in memory and uploads them as one object on completion.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(not_implemented("put_multipart_opts with attributes"));
        }
        Ok(Box::new(BufferedUpload {
            store: self.clone(),
            location: location.clone(),
            parts: Vec::new(),
        }))
    }

    /// Reads a whole object or a range with REST + RETR. The data is buffered in memory.
    ///
    /// A range that ends before the end of the object stops reading early and closes the data
    /// connection without ABOR (which some servers handle badly); a server that then also drops
    /// the control connection only costs a reconnect.
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: "FTP has no object versions".into(),
            });
        }
        let remote = self.remote(location.as_ref());
        let loc = location.clone();
        let fetched = self
            .run(move |s| fetch(s, &loc, &remote, &options))
            .await
            .map_err(|e| e.into_store_error(location.as_ref()))??;
        let Fetched { meta, range, data } = fetched;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(data) }).boxed()),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    /// Deletes one object per DELE, up to `max_connections` at a time, in input order.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    store.delete_object(&location).await?;
                    Ok(location)
                }
            })
            .buffered(self.inner.max_connections)
            .boxed()
    }

    /// Walks the directory tree below `prefix`, listing up to `max_connections` directories at a
    /// time. Uses MLSD when the server announces MLST, else LIST.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        struct Walk {
            store: FtpStore,
            queue: VecDeque<String>,
            running: FuturesUnordered<BoxFuture<'static, Result<Listed, FtpError>>>,
        }
        let start = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        let walk = Walk {
            store: self.clone(),
            queue: VecDeque::from([start]),
            running: FuturesUnordered::new(),
        };
        stream::try_unfold(walk, |mut walk| async move {
            loop {
                while walk.running.len() < walk.store.inner.max_connections {
                    let Some(dir) = walk.queue.pop_front() else {
                        break;
                    };
                    let store = walk.store.clone();
                    walk.running
                        .push(Box::pin(async move { store.read_dir(dir).await }));
                }
                let Some(listed) = walk.running.next().await else {
                    return Ok::<_, object_store::Error>(None);
                };
                let (dir, entries) = listed?;
                let mut objects = Vec::new();
                for entry in &entries {
                    match entry.kind {
                        Kind::Dir => walk.queue.push_back(join(&dir, &entry.name)),
                        Kind::File => objects.extend(Self::object_meta(&dir, entry)),
                        Kind::Other => {}
                    }
                }
                if !objects.is_empty() {
                    return Ok(Some((objects, walk)));
                }
            }
        })
        .map_ok(|objects| stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let rel = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        let (rel, entries) = self.read_dir(rel).await?;
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for entry in &entries {
            match entry.kind {
                Kind::Dir => result
                    .common_prefixes
                    .extend(Path::parse(join(&rel, &entry.name)).ok()),
                Kind::File => result.objects.extend(Self::object_meta(&rel, entry)),
                Kind::Other => {}
            }
        }
        Ok(result)
    }

    /// Downloads and re-uploads: FTP has no server-side copy.
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let create = options.mode == CopyMode::Create;
        let (src, dst) = (self.remote(from.as_ref()), self.remote(to.as_ref()));
        self.run(move |s| {
            if create && stat_file(s, &dst)?.is_some() {
                return Err(already_exists(s, &dst));
            }
            let size = stat_file(s, &src)?.ok_or_else(|| not_found(s, &src))?.size;
            let data = retrieve(s, &src, 0..size, true)?;
            upload(s, &dst, &PutPayload::from(data), create)
        })
        .await
        .map_err(|e| match &e {
            FtpError::AlreadyExists { .. } => e.into_store_error(to.as_ref()),
            _ => e.into_store_error(from.as_ref()),
        })
    }

    /// RNFR/RNTO. [`RenameTargetMode::Create`] checks first and is not race-free.
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let create = options.target_mode == RenameTargetMode::Create;
        let (src, dst) = (self.remote(from.as_ref()), self.remote(to.as_ref()));
        self.run(move |s| rename_file(s, &src, &dst, create))
            .await
            .map_err(|e| match &e {
                FtpError::AlreadyExists { .. } => e.into_store_error(to.as_ref()),
                _ => e.into_store_error(from.as_ref()),
            })
    }
}

/// [`MultipartUpload`] that keeps the parts in memory and stores them with one `put`.
struct BufferedUpload {
    store: FtpStore,
    location: Path,
    parts: Vec<PutPayload>,
}

impl fmt::Debug for BufferedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedUpload")
            .field("store", &self.store)
            .field("location", &self.location)
            .field("parts", &self.parts.len())
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for BufferedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.push(data);
        Box::pin(futures::future::ready(Ok(())))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let payload: PutPayload = std::mem::take(&mut self.parts)
            .into_iter()
            .flatten()
            .collect();
        self.store
            .put_opts(&self.location, payload, PutOptions::default())
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.clear();
        Ok(())
    }
}

/// The URL without its password, for messages; a URL that does not parse is not repeated at all,
/// since there is no telling where its password is.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

fn not_implemented(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_string(),
        implementer: "FtpStore".to_string(),
    }
}

fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are not fatal: a private CA may be all that is needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("cannot read the CA certificate PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("cannot use the CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("the CA certificate PEM contains no certificate".into());
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates: none in the system store and none given".into());
    }
    // Name the crypto provider instead of relying on a process-wide default, which panics if
    // another dependency enables a second rustls provider.
    let provider = Arc::new(suppaftp::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `"/a/b/"` → `"/a/b"`, `"/"` → `"/"`, `""` → `""` (the login directory).
fn normalize_root(root: &str) -> String {
    match root.trim_end_matches('/') {
        "" if root.starts_with('/') => "/".to_string(),
        trimmed => trimmed.to_string(),
    }
}

/// Joins with exactly one `/`; an empty side yields the other.
fn join(base: &str, rel: &str) -> String {
    match (base, rel) {
        (base, "") => base.to_string(),
        ("", rel) => rel.to_string(),
        (base, rel) if base.ends_with('/') => format!("{base}{rel}"),
        (base, rel) => format!("{base}/{rel}"),
    }
}

/// `"/a/b"` → `("/a", "b")`, `"/b"` → `("/", "b")`, `"b"` → `("", "b")`.
fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The directories to create, outermost first: `"/a/b"` → `["/a", "/a/b"]`.
fn ancestors_top_down(dir: &str) -> Vec<&str> {
    dir.match_indices('/')
        .map(|(i, _)| &dir[..i])
        .chain(std::iter::once(dir))
        .filter(|p| !p.is_empty() && *p != "/")
        .collect()
}

/// `None` for the login directory, which FTP commands address by omitting the path.
fn dir_arg(dir: &str) -> Option<&str> {
    (!dir.is_empty()).then_some(dir)
}

fn temp_name() -> String {
    format!("{}{:016x}", listing::TEMP_PREFIX, rand::random::<u64>())
}

fn not_found(s: &Session<'_>, path: &str) -> FtpError {
    FtpError::NotFound {
        server: Arc::clone(s.server()),
        path: path.to_string(),
    }
}

fn already_exists(s: &Session<'_>, path: &str) -> FtpError {
    FtpError::AlreadyExists {
        server: Arc::clone(s.server()),
        path: path.to_string(),
    }
}

/// Whether the server refused with one of `codes` (as opposed to a connection failure).
fn refused_with(e: &FtpError, codes: &[u32]) -> bool {
    e.reply_code().is_some_and(|c| codes.contains(&c))
}

/// A permanent negative reply (5xx): the server refused, the connection is fine.
fn refused_permanently(e: &FtpError) -> bool {
    e.reply_code().is_some_and(|c| (500..600).contains(&c))
}

/// Size and modification time of a regular file, `None` if there is none at `remote`.
struct FileStat {
    size: u64,
    modified: Option<DateTime<Utc>>,
}

fn stat_file(s: &mut Session<'_>, remote: &str) -> Result<Option<FileStat>, FtpError> {
    let features = s.features();
    if features.mlst {
        return match s.command("MLST", remote, |ftp| ftp.mlst(Some(remote))) {
            Ok(line) => {
                let entry = listing::parse_mlsx(&line)
                    .ok_or_else(|| s.error("MLST", remote, suppaftp::FtpError::BadResponse))?;
                Ok((entry.kind == Kind::File).then_some(FileStat {
                    size: entry.size,
                    modified: entry.modified,
                }))
            }
            Err(e) if refused_with(&e, &[550]) => Ok(None),
            Err(e) => Err(e),
        };
    }
    // SIZE fails with 550 for directories too, which is what a file lookup wants.
    let size = match s.command("SIZE", remote, |ftp| ftp.size(remote)) {
        Ok(size) => size as u64,
        Err(e) if refused_with(&e, &[550]) => return Ok(None),
        Err(e) => return Err(e),
    };
    let modified = if features.mdtm {
        match s.command("MDTM", remote, |ftp| ftp.mdtm(remote)) {
            Ok(t) => Some(t.and_utc()),
            Err(e) if refused_permanently(&e) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    Ok(Some(FileStat { size, modified }))
}

/// The kind of whatever is at `remote`, `None` if nothing is.
fn stat_kind(s: &mut Session<'_>, remote: &str) -> Result<Option<Kind>, FtpError> {
    // The top (or login) directory exists by definition; this also ends the recursion through
    // list_dir below.
    if remote.is_empty() || remote == "/" {
        return Ok(Some(Kind::Dir));
    }
    if s.features().mlst {
        return match s.command("MLST", remote, |ftp| ftp.mlst(Some(remote))) {
            Ok(line) => Ok(listing::parse_mlsx(&line).map(|e| e.kind)),
            Err(e) if refused_with(&e, &[550]) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let (parent, name) = split_parent(remote);
    Ok(list_dir(s, parent)?
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.kind))
}

/// Lists a directory; hidden entries are dropped and a missing directory is empty.
fn list_dir(s: &mut Session<'_>, dir: &str) -> Result<Vec<Entry>, FtpError> {
    let mlsd = s.use_mlsd();
    let (op, parse): (_, fn(&str) -> Option<Entry>) = if mlsd {
        ("MLSD", listing::parse_mlsx)
    } else {
        ("LIST", listing::parse_list)
    };
    let lines = match s.data_command(op, dir, |ftp| {
        if mlsd {
            ftp.mlsd(dir_arg(dir))
        } else {
            ftp.list(dir_arg(dir))
        }
    }) {
        Ok(lines) => lines,
        // Servers disagree on how to say "no such directory" (550, 450, pyftpdlib's 501 for
        // MLSD); these codes also mean other things, so look before calling it empty.
        Err(e) if refused_with(&e, &[450, 501, 550]) => {
            return match stat_kind(s, dir)? {
                Some(Kind::Dir) => Err(e),
                _ => Ok(Vec::new()),
            };
        }
        Err(e) => return Err(e),
    };
    Ok(lines
        .iter()
        .filter_map(|line| parse(line))
        .filter(|e| !listing::is_hidden(&e.name) && !e.name.contains('/'))
        .collect())
}

/// Creates every missing directory of `dir`, outermost first.
///
/// MKD of an existing directory fails with a 5xx reply like many other problems, so failures are
/// ignored here; the command that needed the directory reports the real error.
fn make_dirs(s: &mut Session<'_>, dir: &str) -> Result<(), FtpError> {
    for path in ancestors_top_down(dir) {
        match s.command("MKD", path, |ftp| ftp.mkdir(path)) {
            Ok(()) => {}
            Err(e) if e.reply_code().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_dir_exclusive(s: &mut Session<'_>, remote: &str) -> Result<bool, FtpError> {
    let mut created_parents = false;
    loop {
        match s.command("MKD", remote, |ftp| ftp.mkdir(remote)) {
            Ok(()) => return Ok(true),
            Err(e) if refused_permanently(&e) => {
                if stat_kind(s, remote)?.is_some() {
                    if s.reply_lost {
                        // The first MKD may have succeeded before the connection broke.
                        return Err(FtpError::Ambiguous {
                            server: Arc::clone(s.server()),
                            op: "MKD",
                            path: remote.to_string(),
                        });
                    }
                    return Ok(false);
                }
                if created_parents {
                    return Err(e);
                }
                make_dirs(s, split_parent(remote).0)?;
                created_parents = true;
            }
            Err(e) => return Err(e),
        }
    }
}

fn remove_dir(s: &mut Session<'_>, remote: &str) -> Result<(), FtpError> {
    match s.command("RMD", remote, |ftp| ftp.rmdir(remote)) {
        Ok(()) => Ok(()),
        Err(e) if refused_with(&e, &[550]) && stat_kind(s, remote)?.is_none() => {
            // Gone: either it never existed or an earlier attempt removed it.
            if s.reply_lost {
                Ok(())
            } else {
                Err(not_found(s, remote))
            }
        }
        Err(e) => Err(e),
    }
}

fn delete_file(s: &mut Session<'_>, remote: &str) -> Result<(), FtpError> {
    match s.command("DELE", remote, |ftp| ftp.rm(remote)) {
        Ok(()) => Ok(()),
        // 550 also means "permission denied" or "is a directory"; only a missing file is
        // NotFound.
        Err(e) if refused_with(&e, &[550]) && stat_kind(s, remote)?.is_none() => {
            if s.reply_lost {
                // An earlier attempt's DELE went through before its connection broke.
                Ok(())
            } else {
                Err(not_found(s, remote))
            }
        }
        Err(e) => Err(e),
    }
}

/// RNFR + RNTO as separate commands, so an error names the step that failed.
fn rnfr_rnto(s: &mut Session<'_>, from: &str, to: &str) -> Result<(), FtpError> {
    s.command("RNFR", from, |ftp| {
        ftp.custom_command(format!("RNFR {from}"), &[Status::RequestFilePending])
    })?;
    s.command("RNTO", to, |ftp| {
        ftp.custom_command(
            format!("RNTO {to}"),
            &[Status::RequestedFileActionOk, Status::CommandOk],
        )
    })?;
    Ok(())
}

/// Renames `from` onto `to`, creating `to`'s directory if needed.
///
/// Servers implement RNTO with rename(2) and replace an existing target atomically. Some (such
/// as a ProFTPD without `AllowOverwrite on`, or Windows servers) refuse to; then, with `replace`,
/// the target is deleted and the rename repeated, leaving a short window without the object,
/// and without `replace` the refusal is reported as [`FtpError::AlreadyExists`].
fn move_into_place(
    s: &mut Session<'_>,
    from: &str,
    to: &str,
    replace: bool,
) -> Result<(), FtpError> {
    match rnfr_rnto(s, from, to) {
        Err(e) if refused_permanently(&e) && matches!(&e, FtpError::Command { op: "RNTO", .. }) => {
            if stat_file(s, to)?.is_some() {
                if !replace {
                    return Err(already_exists(s, to));
                }
                delete_file(s, to)?;
            } else {
                make_dirs(s, split_parent(to).0)?;
            }
            rnfr_rnto(s, from, to)
        }
        other => other,
    }
}

fn rename_file(s: &mut Session<'_>, from: &str, to: &str, create: bool) -> Result<(), FtpError> {
    if create && stat_file(s, to)?.is_some() {
        return Err(already_exists(s, to));
    }
    match move_into_place(s, from, to, !create) {
        Err(e)
            if matches!(&e, FtpError::Command { op: "RNFR", .. }) && refused_with(&e, &[550]) =>
        {
            if stat_file(s, from)?.is_some() {
                return Err(e);
            }
            // A rename whose reply was lost leaves the source gone and the target present.
            if s.reply_lost && stat_file(s, to)?.is_some() {
                return Ok(());
            }
            Err(not_found(s, from))
        }
        other => other,
    }
}

/// STOR of the whole payload to `remote`.
fn store(s: &mut Session<'_>, remote: &str, payload: &PutPayload) -> Result<(), FtpError> {
    let mut transfer = s.data_command("STOR", remote, |ftp| ftp.put_with_stream(remote))?;
    for chunk in payload {
        if let Err(e) = transfer.write_all(chunk) {
            return Err(s.error("STOR", remote, suppaftp::FtpError::ConnectionError(e)));
        }
    }
    if let Err(e) = transfer.flush() {
        return Err(s.error("STOR", remote, suppaftp::FtpError::ConnectionError(e)));
    }
    // finish() closes the data connection and reads the 226 that confirms the file is stored.
    transfer.finish().map_err(|e| s.error("STOR", remote, e))
}

/// The object upload: temp file, optional size check, rename into place.
fn upload(
    s: &mut Session<'_>,
    remote: &str,
    payload: &PutPayload,
    create: bool,
) -> Result<(), FtpError> {
    if create && stat_file(s, remote)?.is_some() {
        return Err(already_exists(s, remote));
    }
    let (dir, _) = split_parent(remote);
    let temp = join(dir, &temp_name());
    match store(s, &temp, payload) {
        // 550/553: usually the directory does not exist yet; create it (and the root).
        Err(e) if refused_with(&e, &[550, 553]) => {
            make_dirs(s, dir)?;
            store(s, &temp, payload)?;
        }
        other => other?,
    }
    let result = verify_size(s, &temp, payload.content_length() as u64)
        .and_then(|()| move_into_place(s, &temp, remote, !create));
    if result.is_err() {
        // Best effort: a leftover temporary file is hidden from listings anyway.
        let _ = s.command("DELE", &temp, |ftp| ftp.rm(&temp));
    }
    result
}

/// Checks the stored size when the server supports SIZE, catching truncated uploads.
fn verify_size(s: &mut Session<'_>, remote: &str, expected: u64) -> Result<(), FtpError> {
    if !s.features().size {
        return Ok(());
    }
    let actual = s.command("SIZE", remote, |ftp| ftp.size(remote))? as u64;
    if actual == expected {
        Ok(())
    } else {
        Err(FtpError::SizeMismatch {
            server: Arc::clone(s.server()),
            path: remote.to_string(),
            expected,
            actual,
        })
    }
}

/// Downloads `range` of `remote`; `to_end` says the range ends at the end of the file.
fn retrieve(
    s: &mut Session<'_>,
    remote: &str,
    range: Range<u64>,
    to_end: bool,
) -> Result<Bytes, FtpError> {
    let len = range.end - range.start;
    let offset = usize::try_from(range.start).map_err(|_| FtpError::Range {
        server: Arc::clone(s.server()),
        path: remote.to_string(),
        message: "offset too large for this platform".into(),
    })?;
    let capacity = usize::try_from(len).map_err(|_| FtpError::Range {
        server: Arc::clone(s.server()),
        path: remote.to_string(),
        message: "range too large for this platform".into(),
    })?;
    let mut transfer = match s.data_command("RETR", remote, |ftp| {
        // REST must directly precede RETR; suppaftp sends it then, and again on an EPSV retry.
        ftp.resume_transfer(offset)?;
        ftp.retr_as_stream(remote)
    }) {
        Ok(transfer) => transfer,
        Err(e) if refused_with(&e, &[550]) => return Err(not_found(s, remote)),
        Err(e) => return Err(e),
    };
    let mut data = Vec::with_capacity(capacity);
    let read = if to_end {
        transfer.read_to_end(&mut data)
    } else {
        (&mut transfer).take(len).read_to_end(&mut data)
    };
    if let Err(e) = read {
        return Err(s.error("RETR", remote, suppaftp::FtpError::ConnectionError(e)));
    }
    let actual = data.len() as u64;
    if to_end || actual < len {
        // The server sent everything it had: its 226 (or 426) tells whether that is the file.
        transfer.finish().map_err(|e| s.error("RETR", remote, e))?;
    } else {
        // Enough read. Closing the data connection early makes the server answer 426 or 451
        // (or 226 if it had already sent everything). Any reply is fine. No reply at all means
        // it dropped the control connection too (ProFTPD may, over TLS): keep the data, drop
        // the connection.
        match transfer.finish() {
            Ok(()) | Err(suppaftp::FtpError::UnexpectedResponse(_)) => {}
            Err(_) => s.discard_connection(),
        }
    }
    if actual != len {
        return Err(FtpError::SizeMismatch {
            server: Arc::clone(s.server()),
            path: remote.to_string(),
            expected: len,
            actual,
        });
    }
    Ok(Bytes::from(data))
}

struct Fetched {
    meta: ObjectMeta,
    range: Range<u64>,
    data: Bytes,
}

/// get_opts on a connection. The inner error is final (preconditions, invalid range); the outer
/// one goes through the pool's retry logic.
fn fetch(
    s: &mut Session<'_>,
    location: &Path,
    remote: &str,
    options: &GetOptions,
) -> Result<object_store::Result<Fetched>, FtpError> {
    let stat = stat_file(s, remote)?.ok_or_else(|| not_found(s, remote))?;
    let meta = ObjectMeta {
        location: location.clone(),
        last_modified: stat.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        size: stat.size,
        e_tag: None,
        version: None,
    };
    if let Err(e) = options.check_preconditions(&meta) {
        return Ok(Err(e));
    }
    let range = match &options.range {
        None => 0..stat.size,
        Some(r) => match r.as_range(stat.size) {
            Ok(range) => range,
            Err(e) => {
                let err = FtpError::Range {
                    server: Arc::clone(s.server()),
                    path: remote.to_string(),
                    message: e.to_string(),
                };
                return Ok(Err(err.into_store_error(location.as_ref())));
            }
        },
    };
    let data = if options.head || range.is_empty() {
        Bytes::new()
    } else {
        retrieve(s, remote, range.clone(), range.end == stat.size)?
    };
    Ok(Ok(Fetched { meta, range, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FtpConfig {
        FtpConfig {
            host: "ftp.example.org".into(),
            port: 2121,
            user: "backup".into(),
            password: "s3cret-pw".into(),
            root: "/backups/r1".into(),
            tls: false,
            max_connections: 0,
            ca_cert_pem: None,
        }
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let cfg = config();
        assert_eq!(
            cfg.to_string(),
            "ftp://backup@ftp.example.org:2121/backups/r1"
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let store = FtpStore::new(cfg).unwrap();
        assert_eq!(
            store.to_string(),
            "ftp://backup@ftp.example.org:2121/backups/r1"
        );
        let debug = format!("{store:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("max_connections: 4"), "{debug}");
    }

    #[test]
    fn url_parsing() {
        let cfg = FtpConfig::from_url("ftps://us%40er:p%3Ass@[::1]:990/back%20ups/r1").unwrap();
        assert_eq!(cfg.host, "::1");
        assert_eq!(cfg.port, 990);
        assert_eq!(cfg.user, "us@er");
        assert_eq!(cfg.password, "p:ss");
        assert_eq!(cfg.root, "/back ups/r1");
        assert!(cfg.tls);
        assert_eq!(cfg.to_string(), "ftps://us@er@[::1]:990/back ups/r1");
        let cfg = FtpConfig::from_url("ftp://h").unwrap();
        assert_eq!(
            (cfg.port, cfg.user.as_str(), cfg.root.as_str()),
            (21, "anonymous", "/")
        );
        let err = FtpConfig::from_url("sftp://u:hunter2@h/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize_root("/a/b/"), "/a/b");
        assert_eq!(normalize_root("///"), "/");
        assert_eq!(normalize_root(""), "");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("/r", ""), "/r");
        assert_eq!(join("/r", "a/b"), "/r/a/b");
        assert_eq!(split_parent("/r/a/b"), ("/r/a", "b"));
        assert_eq!(split_parent("/b"), ("/", "b"));
        assert_eq!(split_parent("b"), ("", "b"));
        assert_eq!(ancestors_top_down("/r/a/b"), ["/r", "/r/a", "/r/a/b"]);
        assert_eq!(ancestors_top_down("r/a"), ["r", "r/a"]);
        assert!(ancestors_top_down("/").is_empty());
        assert!(ancestors_top_down("").is_empty());
    }

    #[test]
    fn store_errors_keep_their_kind() {
        let server: Arc<str> = Arc::from("ftp://u@h:21/");
        let e = FtpError::NotFound {
            server: Arc::clone(&server),
            path: "/r/x".into(),
        };
        assert!(matches!(
            e.into_store_error("x"),
            object_store::Error::NotFound { path, .. } if path == "x"
        ));
        let e = FtpError::AlreadyExists {
            server,
            path: "/r/x".into(),
        };
        let e = object_store::Error::from(e);
        assert!(matches!(e, object_store::Error::AlreadyExists { .. }));
        assert!(e.to_string().contains("ftp://u@h:21/"), "{e}");
    }
}
