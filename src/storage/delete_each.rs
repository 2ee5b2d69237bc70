//! `ObjectStore::delete_stream` for stores that delete one object per
//! request (FTP, REST): several at once, results in input order.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;

/// A store that deletes one object per request.
#[async_trait]
pub(super) trait DeleteOne: Clone + Send + Sync + 'static {
    async fn delete_one(&self, location: &Path) -> object_store::Result<()>;
}

/// Deletes every location, up to `at_once` at a time, in input order.
pub(super) fn delete_each<S: DeleteOne>(
    store: &S,
    locations: BoxStream<'static, object_store::Result<Path>>,
    at_once: usize,
) -> BoxStream<'static, object_store::Result<Path>> {
    let store = store.clone();
    locations
        .map(move |location| {
            let store = store.clone();
            async move {
                let location = location?;
                store.delete_one(&location).await?;
                Ok(location)
            }
        })
        .buffered(at_once.max(1))
        .boxed()
}
