//! The S3 client, configured the way self-hosted servers and AWS both accept.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};

use super::awsconf;
use crate::error::{Error, Result};

/// Builds the S3 client: `AWS_*` environment first, then `~/.aws` files,
/// path-style addressing (what self-hosted servers expect), bounded retries.
pub(super) fn store(
    bucket: &str,
    prefix: &str,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>> {
    let store = client(bucket, prefix, endpoint, None)?;
    Ok(with_prefix(store, prefix))
}

/// `store` under `prefix` (none when it is empty).
pub(super) fn with_prefix(store: AmazonS3, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    }
}

/// The client options every S3 client here uses, also those a hand-signed
/// request ([`super::objlock`]) is sent with.
pub(super) fn options(endpoint: Option<&str>) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .with_timeout(std::time::Duration::from_secs(300))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

/// The endpoint the client talks to: the URL's, else the environment's, else `~/.aws`.
pub(super) fn endpoint(endpoint: Option<&str>) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    endpoint
        .map(String::from)
        .or(env("REPO_S3_ENDPOINT"))
        .or(env("AWS_ENDPOINT_URL"))
        .or(env("AWS_ENDPOINT"))
        .or(awsconf::load().endpoint_url)
}

/// The bucket's client (no prefix). `headers` go, signed, on every request
/// but listings (object_store 0.14.2 leaves them unsigned there, which
/// servers refuse): the object-lock writer's, which only writes. AWS wants a
/// checksum on a PUT that sets a lock, so such a client sends SHA-256.
pub(super) fn client(
    bucket: &str,
    prefix: &str,
    endpoint_arg: Option<&str>,
    headers: Option<object_store::HeaderMap>,
) -> Result<AmazonS3> {
    let file = awsconf::load();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = endpoint(endpoint_arg);
    let with_checksum = headers.is_some();
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: std::time::Duration::from_secs(60),
        })
        .with_client_options(match headers {
            Some(h) => options(endpoint.as_deref()).with_default_headers(h),
            None => options(endpoint.as_deref()),
        });
    if with_checksum {
        b = b.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    }
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
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    b.build().map_err(|e| Error::Storage {
        op: "configure S3 for",
        key: format!("s3://{bucket}/{prefix}"),
        message: format!("{e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) and the region"),
    })
}
