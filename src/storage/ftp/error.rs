//! The FTP backend's errors, and how they become object_store's.

use std::sync::Arc;

use super::pool::reply_code;

/// The name object_store errors carry for this backend.
const STORE: &str = "FTP";

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
    #[error(
        "login to {server} failed: {source}; if the server refused the user or password, check \
         the user in the URL and the password (~/.netrc, REPO_FTP_PASSWORD)"
    )]
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
    pub(crate) fn into_store_error(self, location: &str) -> object_store::Error {
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
    pub(crate) fn reply_code(&self) -> Option<u32> {
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

pub(super) fn not_implemented(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_string(),
        implementer: "FtpStore".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
