//! The S3 client, configured the way self-hosted servers and AWS both accept.

use std::sync::Arc;

use object_store::ObjectStore;

use super::awsconf;
use crate::error::{Error, Result};

/// Builds the S3 client: `AWS_*` environment first, then `~/.aws` files,
/// path-style addressing (what self-hosted servers expect), bounded retries.
pub(super) fn store(
    bucket: &str,
    prefix: &str,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    let file = awsconf::load();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: std::time::Duration::from_secs(60),
        })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(10))
                .with_timeout(std::time::Duration::from_secs(300)),
        );
    if env("AWS_ACCESS_KEY_ID").is_none()
        && let (Some(k), Some(s)) = (file.access_key_id, file.secret_access_key)
    {
        b = b.with_access_key_id(k).with_secret_access_key(s);
        if let Some(t) = file.session_token {
            b = b.with_token(t);
        }
    }
    let region = env("AWS_REGION")
        .or(env("AWS_DEFAULT_REGION"))
        .or(file.region);
    b = b.with_region(region.unwrap_or_else(|| "us-east-1".into()));
    let endpoint = endpoint
        .map(String::from)
        .or(env("REPO_S3_ENDPOINT"))
        .or(env("AWS_ENDPOINT_URL"))
        .or(env("AWS_ENDPOINT"))
        .or(file.endpoint_url);
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    let store = b.build().map_err(|e| Error::Storage {
        op: "configure S3 for",
        key: format!("s3://{bucket}/{prefix}"),
        message: format!("{e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) and the region"),
    })?;
    if prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store, prefix,
        )))
    }
}
