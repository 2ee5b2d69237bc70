//! [`ObjectStore`] for [`FtpStore`]: each operation runs its command
//! sequence on a pooled connection.

use std::collections::VecDeque;
use std::fmt;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode, UploadPart,
};

use super::commands::{join, not_found, refuse_existing, rename_file, stat_file};
use super::error::not_implemented;
use super::listing::Kind;
use super::transfer::{Fetched, fetch, retrieve, upload};
use super::{FtpError, FtpStore, Listed};
use crate::storage::delete_each::{DeleteOne, delete_each};

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
        delete_each(self, locations, self.inner.max_connections)
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
            if create {
                refuse_existing(s, &dst)?;
            }
            let size = stat_file(s, &src)?.ok_or_else(|| not_found(s, &src))?.size;
            let data = retrieve(s, &src, 0..size, true)?;
            upload(s, &dst, &PutPayload::from(data), create)
        })
        .await
        .map_err(|e| from_to_error(e, from, to))
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
            .map_err(|e| from_to_error(e, from, to))
    }
}

#[async_trait]
impl DeleteOne for FtpStore {
    async fn delete_one(&self, location: &Path) -> object_store::Result<()> {
        self.delete_object(location).await
    }
}

/// The error of a copy or rename: an existing target names `to`, anything
/// else `from`.
fn from_to_error(e: FtpError, from: &Path, to: &Path) -> object_store::Error {
    match &e {
        FtpError::AlreadyExists { .. } => e.into_store_error(to.as_ref()),
        _ => e.into_store_error(from.as_ref()),
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
