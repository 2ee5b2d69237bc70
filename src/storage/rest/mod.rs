//! A repository on a restic REST server (protocol v2): restic's rest-server
//! or `rclone serve restic`, also in their append-only modes.
//!
//! The protocol stores whole objects by name and has no conditional create
//! and no server-side copy or rename; [`RestStore`] implements
//! `object_store` over it for the keys a repository writes (see [`keys`]).

mod config;
mod http;
mod keys;
mod store;

use std::sync::Arc;

pub use config::RestConfig;
use http::{Call, Http};
use reqwest::{Method, StatusCode};

/// The `object_store` client of one REST repository; cheap to clone.
#[derive(Clone)]
pub struct RestStore {
    http: Arc<Http>,
}

impl RestStore {
    pub(crate) fn new(cfg: RestConfig) -> Result<Self, String> {
        Ok(RestStore {
            http: Arc::new(Http::new(cfg)?),
        })
    }

    /// `POST /?create=true`: makes the repository's directories on the
    /// server (a no-op where they exist).
    pub(crate) async fn create_repository(&self) -> object_store::Result<()> {
        let call = Call::new(Method::POST, "?create=true", "");
        let answer = self.http.send(&call).await?;
        match answer.response.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.http.status_error(s, &call)),
        }
    }

    /// The key's path on the server, or the error for a key the protocol
    /// cannot express: not found for reads, refused for writes.
    fn path_for(&self, key: &str, write: bool) -> object_store::Result<String> {
        keys::rest_path(key).ok_or_else(|| {
            let message = format!(
                "{key} has no place in the REST protocol, which holds only config, data, keys, \
                 locks, snapshots and index objects"
            );
            if write {
                object_store::Error::NotSupported {
                    source: message.into(),
                }
            } else {
                object_store::Error::NotFound {
                    path: key.to_string(),
                    source: message.into(),
                }
            }
        })
    }

    /// The size of an object by HEAD, or `None` if it does not exist.
    async fn head_size(&self, key: &str, path: &str) -> object_store::Result<Option<u64>> {
        let call = Call::new(Method::HEAD, path, key);
        let answer = self.http.send(&call).await?;
        match answer.response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(answer.response.content_length().ok_or_else(|| {
                http::generic(format!(
                    "HEAD {}: the server sent no Content-Length",
                    self.http.shown(path)
                ))
            })?)),
            s => Err(self.http.status_error(s, &call)),
        }
    }
}

impl std::fmt::Display for RestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.http.config())
    }
}

impl std::fmt::Debug for RestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RestStore({})", self.http.config())
    }
}
