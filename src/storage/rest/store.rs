//! [`ObjectStore`] for [`RestStore`]: each operation is one or two requests.

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use reqwest::{Method, StatusCode};

use super::http::{Answer, Call, V2, generic};
use super::{RestStore, keys};

#[async_trait]
impl ObjectStore for RestStore {
    /// `POST /{type}/{name}`. [`PutMode::Create`] is a HEAD before the POST,
    /// **not race-free**: the protocol has no conditional create.
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let key = location.as_ref();
        let path = self.path_for(key, true)?;
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotSupported {
                    source: "the REST protocol has no conditional update".into(),
                });
            }
        };
        let exists = |key: &str| object_store::Error::AlreadyExists {
            path: key.to_string(),
            source: "the object exists".into(),
        };
        if create && self.head_size(key, &path).await?.is_some() {
            return Err(exists(key));
        }
        let mut call = Call::new(Method::POST, &path, key);
        call.body = Some(&payload);
        let answer = self.http.send(&call).await?;
        match answer.response.status() {
            s if s.is_success() => {}
            StatusCode::FORBIDDEN if create || answer.retried => {
                // Refused because the object exists (append-only, or
                // rest-server never overwriting): for a retry whose first try
                // stored it, that is success, as names are content hashes.
                match self.head_size(key, &path).await? {
                    Some(_) if create => return Err(exists(key)),
                    Some(n) if n == payload.content_length() as u64 => {}
                    _ => return Err(self.http.status_error(StatusCode::FORBIDDEN, &call)),
                }
            }
            s => return Err(self.http.status_error(s, &call)),
        }
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotSupported {
            source: "the REST protocol stores an object with one POST; it has no multipart upload"
                .into(),
        })
    }

    /// `GET` (or `HEAD`) `/{type}/{name}`, with a `Range` for a range. The
    /// body is streamed, so a reader that stops at a size limit stops
    /// reading; a range answered with more or fewer bytes is refused.
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = location.as_ref();
        let path = self.path_for(key, false)?;
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: "the REST protocol has no object versions".into(),
            });
        }
        let range = match options.range {
            None => None,
            Some(GetRange::Bounded(r)) => Some(r),
            Some(other) => {
                return Err(object_store::Error::NotSupported {
                    source: format!("REST reads of range {other} are not implemented").into(),
                });
            }
        };
        let method = if options.head {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut call = Call::new(method, &path, key);
        call.range = range.clone();
        let answer = self.http.send(&call).await?;
        let status = answer.response.status();
        let ok = match &range {
            Some(_) => status == StatusCode::PARTIAL_CONTENT,
            None => status == StatusCode::OK,
        };
        if !ok {
            return Err(match status {
                StatusCode::OK => generic(format!(
                    "GET {}: the server ignored the Range header",
                    self.http.shown(&path)
                )),
                s => self.http.status_error(s, &call),
            });
        }
        let length = answer.response.content_length();
        let (size, want) = match &range {
            Some(r) => (r.end, Some(r.end - r.start)),
            None => (length.unwrap_or(0), None),
        };
        if let (Some(want), Some(got)) = (want, length)
            && want != got
        {
            return Err(generic(format!(
                "GET {}: the server sent {got} bytes for a range of {want}",
                self.http.shown(&path)
            )));
        }
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(body_stream(answer, want, self.http.shown(&path))),
            range: range.unwrap_or(0..size),
            meta,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    /// `DELETE /{type}/{name}`. A retry after a lost response may find the
    /// object gone (404): the facade takes not found as deleted.
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
                    store.delete_one(location.as_ref()).await?;
                    Ok(location)
                }
            })
            .buffered(self.http.config().connections())
            .boxed()
    }

    /// Lists the protocol's directories below `prefix` as our keys.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let store = self.clone();
        let prefix = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        stream::once(async move { store.list_keys(&prefix).await })
            .map_ok(|metas| stream::iter(metas.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let base = prefix
            .map(|p| format!("{}/", p.as_ref()))
            .unwrap_or_default();
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for meta in self.list(prefix).try_collect::<Vec<_>>().await? {
            let rest = meta.location.as_ref()[base.len()..].to_string();
            match rest.split_once('/') {
                None => result.objects.push(meta),
                Some((dir, _)) => {
                    let dir = Path::from(format!("{base}{dir}"));
                    if !result.common_prefixes.contains(&dir) {
                        result.common_prefixes.push(dir);
                    }
                }
            }
        }
        Ok(result)
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(object_store::Error::NotSupported {
            source: "the REST protocol has no server-side copy or rename".into(),
        })
    }
}

impl RestStore {
    async fn delete_one(&self, key: &str) -> object_store::Result<()> {
        let path = self.path_for(key, false)?;
        let call = Call::new(Method::DELETE, &path, key);
        let answer = self.http.send(&call).await?;
        match answer.response.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.http.status_error(s, &call)),
        }
    }

    /// Every object below `prefix` (empty: the whole repository).
    async fn list_keys(&self, prefix: &str) -> object_store::Result<Vec<ObjectMeta>> {
        let mut found = Vec::new();
        if prefix.is_empty()
            && let Some(size) = self.head_size("config", "config").await?
        {
            found.push(("config".to_string(), size));
        }
        for kind in keys::types_below(prefix) {
            found.extend(self.list_type(kind).await?);
        }
        let under = format!("{prefix}/");
        Ok(found
            .into_iter()
            .filter(|(k, _)| prefix.is_empty() || k.starts_with(&under))
            .map(|(key, size)| ObjectMeta {
                location: Path::from(key),
                last_modified: Default::default(),
                size,
                e_tag: None,
                version: None,
            })
            .collect())
    }

    /// `GET /{kind}/` (v2), read up to [`keys::MAX_LISTING`] bytes.
    async fn list_type(&self, kind: &str) -> object_store::Result<Vec<(String, u64)>> {
        let path = format!("{kind}/");
        let mut call = Call::new(Method::GET, &path, kind);
        call.accept = Some(V2);
        let Answer { mut response, .. } = self.http.send(&call).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            s if s.is_success() => {}
            s => return Err(self.http.status_error(s, &call)),
        }
        let too_big = || {
            generic(format!(
                "GET {}: the listing is larger than {} MiB, more than any repository's; \
                 is this a restic REST server?",
                self.http.shown(&path),
                keys::MAX_LISTING >> 20
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > keys::MAX_LISTING as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            generic(format!(
                "GET {}: {}",
                self.http.shown(&path),
                e.without_url()
            ))
        })? {
            if body.len() + chunk.len() > keys::MAX_LISTING {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        keys::parse_listing(kind, &body)
            .map_err(|e| generic(format!("{}: {e}", self.http.shown(&path))))
    }
}

/// The body of `answer` as a stream that keeps its request permit, and
/// fails rather than yield more than `want` bytes (a range).
fn body_stream(
    answer: Answer,
    want: Option<u64>,
    shown: String,
) -> BoxStream<'static, object_store::Result<bytes::Bytes>> {
    let Answer {
        response, permit, ..
    } = answer;
    let mut seen = 0u64;
    response
        .bytes_stream()
        .map(move |part| {
            let _held = &permit;
            let part = part.map_err(|e| generic(format!("GET {shown}: {}", e.without_url())))?;
            seen += part.len() as u64;
            match want {
                Some(w) if seen > w => Err(generic(format!(
                    "GET {shown}: the server sent more than the {w} bytes asked for"
                ))),
                _ => Ok(part),
            }
        })
        .boxed()
}
