//! Where and how to reach a restic REST server: `rest:http(s)://[user[:password]@]host:port/path`.

use std::fmt;

use crate::error::{Error, Result};

/// Where and how to connect.
#[derive(Clone)]
pub struct RestConfig {
    /// The repository's URL without credentials, always ending in `/`.
    pub(super) base: url::Url,
    /// User for HTTP basic authentication; empty for none.
    pub(super) user: String,
    pub(super) password: String,
    /// Simultaneous requests at most.
    pub(super) connections: usize,
    /// Extra trusted root certificate(s), PEM, in addition to the system's roots.
    pub(super) ca_cert_pem: Option<Vec<u8>>,
}

impl RestConfig {
    pub(crate) const DEFAULT_CONNECTIONS: usize = 8;

    /// Parses the URL after `rest:`. User and password are percent-decoded;
    /// a missing password is left empty for the caller to fill in. Errors
    /// repeat the URL only without its password.
    pub(crate) fn from_url(full: &str, url: &str) -> Result<Self> {
        let bad = |part: &str, hint: &str| {
            Error::Usage(format!(
                "repository URL {:?}: {part}; {hint}",
                redact(full, url)
            ))
        };
        let mut parsed = url::Url::parse(url).map_err(|e| {
            bad(
                &format!("the URL after rest: is invalid ({e})"),
                "write rest:https://user@host:8000/path",
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(
                &format!("scheme {:?} after rest: is not supported", parsed.scheme()),
                "write rest:http://host:8000/path or rest:https://host:8000/path",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(
                "the URL has no host",
                "write rest:https://host:8000/path",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(
                "a query (?…) or fragment (#…) is not part of a repository path",
                "write rest:https://host:8000/path",
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("user or password is not valid UTF-8", "check the URL"))
        };
        let user = decode(parsed.username())?;
        let password = decode(parsed.password().unwrap_or_default())?;
        if user.is_empty() && !password.is_empty() {
            return Err(bad(
                "a password without a user",
                "write rest:https://user:password@host/path",
            ));
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        Ok(RestConfig {
            base: parsed,
            user,
            password,
            connections: Self::DEFAULT_CONNECTIONS,
            ca_cert_pem: None,
        })
    }

    pub(crate) fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn needs_password(&self) -> bool {
        !self.user.is_empty() && self.password.is_empty()
    }

    pub(crate) fn set_password(&mut self, password: String) {
        self.password = password;
    }

    pub(crate) fn set_connections(&mut self, n: usize) {
        self.connections = n.max(1);
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections
    }

    pub(crate) fn set_ca_cert_pem(&mut self, pem: Vec<u8>) {
        self.ca_cert_pem = Some(pem);
    }
}

/// `rest:` and the URL with any password removed, for messages about an
/// URL that may not even parse.
fn redact(full: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            format!("rest:{u}")
        }
        Err(_) if url.contains('@') => "rest:<URL with credentials, not shown>".into(),
        Err(_) => full.to_string(),
    }
}

/// `rest:https://user@host:port/path`: never the password, nor a trailing
/// slash (messages append `/key`).
impl fmt::Display for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.base.clone();
        if !self.user.is_empty() {
            let _ = shown.set_username(&self.user);
        }
        write!(f, "rest:{}", shown.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestConfig({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Result<RestConfig> {
        RestConfig::from_url(&format!("rest:{url}"), url)
    }

    #[test]
    fn parses_and_hides_the_password() {
        let c = p("https://me:s%40cret@host:8000/a/b").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("me", "s@cret"));
        assert_eq!(c.to_string(), "rest:https://me@host:8000/a/b");
        assert_eq!(c.base.as_str(), "https://host:8000/a/b/");
        let c = p("http://127.0.0.1:9/").unwrap();
        assert!(!c.needs_password());
        assert!(p("https://me@h/x").unwrap().needs_password());
    }

    #[test]
    fn names_the_wrong_part_without_the_password() {
        let e = p("ftp://me:pw@h/x").unwrap_err().to_string();
        assert!(e.contains("scheme") && !e.contains("pw@"), "{e}");
        let e = p("https://me:pw@h/x?y").unwrap_err().to_string();
        assert!(e.contains("query") && !e.contains(":pw"), "{e}");
        let e = p("https://:pw@h/x").unwrap_err().to_string();
        assert!(e.contains("without a user") && !e.contains(":pw"), "{e}");
        let e = p("https://me:pw@[::1/x").unwrap_err().to_string();
        assert!(e.contains("invalid") && !e.contains("pw"), "{e}");
        assert!(p("http://").is_err());
    }
}
