//! Where and how to reach an FTP server: URL parsing, credentials, TLS trust.

use std::fmt;
use std::sync::Arc;

use suppaftp::rustls::pki_types::CertificateDer;
use suppaftp::rustls::pki_types::pem::PemObject;
use suppaftp::rustls::{ClientConfig, RootCertStore};

use super::FtpError;

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
    /// Upper bound on simultaneous control connections; 0 means the default, 8 (fewer if the
    /// server refuses more, see `pool/limit.rs`).
    pub max_connections: usize,
    /// Extra trusted root certificate(s), PEM, in addition to the system's trust store; for
    /// servers with a private CA.
    pub ca_cert_pem: Option<Vec<u8>>,
}

impl FtpConfig {
    pub(crate) const DEFAULT_PORT: u16 = 21;
    pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 8;

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

/// The TLS client settings: the system's trust store plus `extra_ca_pem`.
pub(super) fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ftp::FtpStore;

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
        assert!(debug.contains("max_connections: 8"), "{debug}");
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
}
