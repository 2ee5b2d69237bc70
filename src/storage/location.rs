//! Where a repository lives, parsed from `-r/--repo`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::ftp::FtpConfig;
use super::rest::RestConfig;
use crate::error::{Error, Result};

/// Settings that apply to remote backends, from flags and the environment.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// S3 endpoint for self-hosted servers (`--s3-endpoint`, `REPO_S3_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// Extra trusted CA certificate (PEM) for FTPS and HTTPS REST servers with a private CA.
    pub ca_cert: Option<PathBuf>,
    /// Parallel transfers; 0 picks a default per backend.
    pub connections: usize,
}

#[derive(Clone)]
pub enum Location {
    /// A directory on a local file system.
    Local(PathBuf),
    /// A bucket and key prefix on S3-compatible storage.
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        /// Parallel transfers.
        connections: usize,
    },
    /// A directory on an FTP or FTPS server.
    Ftp(Box<FtpConfig>),
    /// A repository on a restic REST server (protocol v2).
    Rest(Box<RestConfig>),
    /// Objects held in this process's memory (see [`Memory`]); never parsed
    /// from a URL, so users cannot name it.
    Memory(Memory),
}

/// An in-process object store, shared by every clone of its [`Location`]:
/// `Repository::init` and a later `Repository::open` of the same location
/// see the same objects. Why: engine tests run in-process without a disk or
/// server; the objects vanish with the last clone.
#[derive(Clone)]
pub struct Memory {
    /// Tells stores apart in messages and comparisons (`memory:3`).
    id: u64,
    store: Arc<object_store::memory::InMemory>,
}

impl Memory {
    /// The shared store itself.
    pub(super) fn store(&self) -> Arc<object_store::memory::InMemory> {
        self.store.clone()
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

fn bad(s: &str, part: &str, hint: &str) -> Error {
    Error::Usage(format!("repository URL {s:?}: {part}; {hint}"))
}

impl Location {
    /// Parses a path, `file:///path`, `s3://bucket/prefix`, `ftp://user@host[:port]/path`,
    /// `ftps://…` or `rest:http(s)://[user@]host:port/path`.
    pub fn parse(s: &str, opts: &BackendOptions) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::Usage(
                "no repository given: pass -r/--repo or set REPO_REPOSITORY".into(),
            ));
        }
        if let Some(url) = s.strip_prefix("rest:") {
            return rest(s, url, opts);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return local(s);
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad(
                        s,
                        "a file:// URL needs an absolute path",
                        "write file:///backups/repo",
                    ));
                }
                Ok(Location::Local(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty()
                    || !bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                {
                    return Err(bad(
                        s,
                        &format!("bucket name {bucket:?} is missing or invalid"),
                        "write s3://bucket/prefix with a lowercase bucket name",
                    ));
                }
                let endpoint = opts.s3_endpoint.clone().filter(|e| !e.is_empty());
                if let Some(e) = &endpoint
                    && !(e.starts_with("http://") || e.starts_with("https://"))
                {
                    return Err(Error::Usage(format!(
                        "S3 endpoint {e:?} must start with http:// or https://"
                    )));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint,
                    connections: if opts.connections > 0 {
                        opts.connections
                    } else {
                        8
                    },
                })
            }
            "ftp" | "ftps" => {
                let mut cfg = FtpConfig::from_url(s).map_err(|e| Error::Usage(e.to_string()))?;
                if cfg.password.is_empty()
                    && let Some(p) = super::netrc::password(&cfg.host, &cfg.user)
                {
                    cfg.password = p;
                }
                if opts.connections > 0 {
                    cfg.max_connections = opts.connections;
                }
                if let Some(ca) = &opts.ca_cert {
                    cfg.ca_cert_pem = Some(
                        std::fs::read(ca).map_err(|e| Error::io("read CA certificate", ca, e))?,
                    );
                }
                Ok(Location::Ftp(Box::new(cfg)))
            }
            other => Err(bad(
                s,
                &format!("scheme {other:?} is not supported"),
                "use a path, file:///path, s3://bucket/prefix, ftp://user@host/path, ftps://user@host/path \
                 or rest:https://user@host:8000/path",
            )),
        }
    }

    /// A new, empty in-memory location (see [`Memory`]).
    #[cfg(test)]
    pub(crate) fn memory() -> Location {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Location::Memory(Memory {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            store: Arc::new(object_store::memory::InMemory::new()),
        })
    }

    /// FTP or REST needs a password that neither the URL nor ~/.netrc gave.
    pub fn needs_password(&self) -> bool {
        match self {
            Location::Ftp(c) => c.password.is_empty() && c.user != "anonymous",
            Location::Rest(c) => c.needs_password(),
            _ => false,
        }
    }

    /// The environment variable that may hold the server password of a
    /// location that [needs one](Location::needs_password), and the kind of
    /// server for a prompt.
    pub fn password_env(&self) -> (&'static str, &'static str) {
        match self {
            Location::Rest(_) => ("REPO_REST_PASSWORD", "REST server"),
            _ => ("REPO_FTP_PASSWORD", "FTP"),
        }
    }

    /// Supplies the FTP or REST password (from the environment or a prompt).
    pub fn set_password(&mut self, password: String) {
        match self {
            Location::Ftp(c) => c.password = password,
            Location::Rest(c) => c.set_password(password),
            _ => {}
        }
    }

    /// Whether plain folders (mirror, sync) can live here: not on a REST
    /// server, which holds repositories only.
    pub fn holds_plain_files(&self) -> bool {
        !matches!(self, Location::Rest(_))
    }
}

/// A `rest:` location: the password from the URL, else ~/.netrc.
fn rest(s: &str, url: &str, opts: &BackendOptions) -> Result<Location> {
    let mut cfg = RestConfig::from_url(s, url)?;
    if cfg.needs_password()
        && let Some(p) = super::netrc::password(cfg.host(), cfg.user())
    {
        cfg.set_password(p);
    }
    if opts.connections > 0 {
        cfg.set_connections(opts.connections);
    }
    if let Some(ca) = &opts.ca_cert {
        cfg.set_ca_cert_pem(
            std::fs::read(ca).map_err(|e| Error::io("read CA certificate", ca, e))?,
        );
    }
    Ok(Location::Rest(Box::new(cfg)))
}

fn local(s: &str) -> Result<Location> {
    let p = PathBuf::from(s);
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("read the current directory for", s, e))?
            .join(p)
    };
    Ok(Location::Local(abs))
}

/// Never shows a password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Ftp(c) => write!(f, "{c}"),
            Location::Rest(c) => write!(f, "{c}"),
            Location::Memory(m) => write!(f, "memory:{}", m.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Location> {
        Location::parse(s, &BackendOptions::default())
    }

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(p("/a/b").unwrap(), Location::Local("/a/b".into()));
        assert_eq!(p("file:///a").unwrap(), Location::Local("/a".into()));
        assert!(p("file://a").is_err());
        assert!(p("gopher://x").unwrap_err().to_string().contains("gopher"));
        assert!(p("").is_err());
        assert_eq!(
            p("s3://bkt/some/prefix/").unwrap().to_string(),
            "s3://bkt/some/prefix"
        );
        assert!(p("s3:///x").unwrap_err().to_string().contains("bucket"));
        assert!(p("s3://Bad_Bucket/x").is_err());
        let f = p("ftp://me:secret@127.0.0.1:2121/backups").unwrap();
        assert!(!f.to_string().contains("secret"));
        assert!(f.to_string().contains("me@127.0.0.1:2121"));
        assert!(p("ftp://").is_err());
        let bad_ep = BackendOptions {
            s3_endpoint: Some("localhost:9000".into()),
            ..Default::default()
        };
        assert!(Location::parse("s3://b/p", &bad_ep).is_err());
        assert!(p("memory:1").is_ok_and(|l| matches!(l, Location::Local(_))));
        let r = p("rest:https://me:secret@127.0.0.1:8000/r").unwrap();
        assert_eq!(r.to_string(), "rest:https://me@127.0.0.1:8000/r");
        assert!(!r.needs_password() && !r.holds_plain_files());
        assert!(
            p("rest:ftp://h/x")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
    }

    #[test]
    fn memory_locations_are_distinct_and_shared_by_clones() {
        let (a, b) = (Location::memory(), Location::memory());
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
        assert!(a.to_string().starts_with("memory:"));
    }
}
