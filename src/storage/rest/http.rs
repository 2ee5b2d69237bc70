//! Requests to a REST server: one shared client (connections kept alive), at
//! most `connections` requests at once, retries of server and transport
//! failures, and HTTP statuses as typed `object_store` errors.
//!
//! Messages name the URL without its password: reqwest's own errors carry
//! the request URL, credentials included, so they are always stripped.

use std::sync::Arc;
use std::time::Duration;

use object_store::PutPayload;
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::RestConfig;

/// Tries of one request: a failed transport or a 5xx is retried after
/// 0.25 s, 1 s, 3 s.
const TRIES: usize = 4;
const BACKOFF_MS: [u64; TRIES - 1] = [250, 1000, 3000];

/// The media type that asks for a listing with sizes (protocol v2).
pub(super) const V2: &str = "application/vnd.x.restic.rest.v2";

pub(super) struct Http {
    client: reqwest::Client,
    cfg: RestConfig,
    permits: Arc<Semaphore>,
}

/// One request to send: the method, the path below the repository URL, and
/// the key it is about (for messages).
pub(super) struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub key: &'a str,
    pub body: Option<&'a PutPayload>,
    pub range: Option<std::ops::Range<u64>>,
    pub accept: Option<&'static str>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str, key: &'a str) -> Self {
        Call {
            method,
            path,
            key,
            body: None,
            range: None,
            accept: None,
        }
    }
}

/// A response with the permit it holds until its body is read, and whether
/// an earlier try may have reached the server (its response was lost).
pub(super) struct Answer {
    pub response: Response,
    pub permit: OwnedSemaphorePermit,
    pub retried: bool,
}

impl Http {
    pub fn new(cfg: RestConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(cfg.connections())
            // Never follow a redirect: a 302 turns a POST into a body-less
            // GET, and a login page's 200 would then count as "stored". A
            // 3xx is an error like any other unexpected status.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &cfg.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("cannot read the CA certificate (--ca-cert): {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up HTTPS for {cfg}: {}", chain(&e)))?;
        let permits = Arc::new(Semaphore::new(cfg.connections()));
        Ok(Http {
            client,
            cfg,
            permits,
        })
    }

    pub fn config(&self) -> &RestConfig {
        &self.cfg
    }

    /// `path` below the repository as shown in messages.
    pub fn shown(&self, path: &str) -> String {
        format!("{}/{path}", self.cfg)
    }

    /// Sends `call`, retrying transport failures and 5xx answers. Any other
    /// answer is returned for the caller to judge by its status.
    pub async fn send(&self, call: &Call<'_>) -> object_store::Result<Answer> {
        let url = self
            .cfg
            .base
            .join(call.path)
            .map_err(|e| generic(format!("{}: {e}", self.shown(call.path))))?;
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(BACKOFF_MS[attempt - 1])).await;
            }
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| generic(e.to_string()))?;
            match self.build(call, url.clone()).send().await {
                Ok(r) if r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(response) => {
                    return Ok(Answer {
                        response,
                        permit,
                        retried: attempt > 0,
                    });
                }
                Err(e) => {
                    last = chain(&e.without_url());
                    // Another try cannot make a certificate trusted.
                    if last.contains("certificate") {
                        return Err(generic(format!(
                            "{} {}: {last}; if the server's certificate is signed by a private \
                             CA, trust it with --ca-cert FILE or REPO_CA_CERT",
                            call.method,
                            self.shown(call.path)
                        )));
                    }
                }
            }
        }
        Err(generic(format!(
            "{} {}: {last} ({TRIES} tries); check that the server is running and reachable",
            call.method,
            self.shown(call.path)
        )))
    }

    fn build(&self, call: &Call<'_>, url: url::Url) -> reqwest::RequestBuilder {
        let mut req = self.client.request(call.method.clone(), url);
        if !self.cfg.user.is_empty() {
            req = req.basic_auth(&self.cfg.user, Some(&self.cfg.password));
        }
        if let Some(accept) = call.accept {
            req = req.header(reqwest::header::ACCEPT, accept);
        }
        if let Some(r) = &call.range {
            let last = r.end.saturating_sub(1).max(r.start);
            req = req.header(reqwest::header::RANGE, format!("bytes={}-{last}", r.start));
        }
        if let Some(payload) = call.body {
            let parts: Vec<bytes::Bytes> = payload.iter().cloned().collect();
            req = req
                .header(reqwest::header::CONTENT_LENGTH, payload.content_length())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(
                    parts.into_iter().map(Ok::<_, std::io::Error>),
                )));
        }
        req
    }

    /// The typed error of an unexpected status.
    pub fn status_error(&self, status: StatusCode, call: &Call<'_>) -> object_store::Error {
        let path = call.key.to_string();
        let at = format!("{} {}", call.method, self.shown(call.path));
        match status {
            StatusCode::NOT_FOUND => object_store::Error::NotFound {
                path,
                source: format!("{at}: 404 Not Found").into(),
            },
            StatusCode::FORBIDDEN => object_store::Error::PermissionDenied {
                path,
                source: format!(
                    "{at}: 403 Forbidden: the server refuses this (an append-only server \
                     refuses deleting and overwriting; a --private-repos server refuses paths \
                     outside the user's own)"
                )
                .into(),
            },
            StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated {
                path,
                source: format!(
                    "{at}: 401 Unauthorized: wrong user or password; check the user in the URL \
                     and the password (in the URL, ~/.netrc or REPO_REST_PASSWORD)"
                )
                .into(),
            },
            other if other.is_redirection() => generic(format!(
                "{at}: HTTP {other}: the server redirects elsewhere, which repo never follows \
                 (a redirected upload would store nothing); give the repository's own URL \
                 (https instead of http? the path?)"
            )),
            other => generic(format!("{at}: HTTP {other}")),
        }
    }
}

/// The Content-Length header. Not reqwest's `content_length()`: that is
/// the body's length, and a HEAD response has no body.
pub(super) fn declared_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(super) fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "REST",
        source: message.into(),
    }
}

/// An error and its causes on one line ("connection refused" is a cause).
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}
