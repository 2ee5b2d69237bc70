//! The S3 calls of object lock that object_store has no method for (the
//! bucket's lock configuration, an object's retention), as requests signed
//! with object_store's own [`Signer`] and sent with its HTTP client, so no
//! second S3 library is needed.

use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::client::{
    HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector,
};
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};

/// Largest answer read: they are short XML documents, and a server sending
/// something huge costs no memory.
const MAX_ANSWER: usize = 64 * 1024;

/// A bucket's client without prefix, and the HTTP client to send with.
pub(super) struct Requests {
    s3: AmazonS3,
    http: HttpClient,
}

impl Requests {
    pub(super) fn new(
        s3: AmazonS3,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<Self> {
        Ok(Requests {
            s3,
            http: ReqwestConnector::default().connect(options)?,
        })
    }

    /// Sends `method` to `key` (relative to the bucket; empty for the
    /// bucket itself) with `query`, signed `headers` and `body`: the status
    /// and at most [`MAX_ANSWER`] bytes of the answer.
    pub(super) async fn send(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> object_store::Result<(u16, String)> {
        let mut opts = SignedUrlOptions::default().with_query(query.iter().copied());
        let mut signed = Vec::new();
        for (name, value) in headers {
            let v = HeaderValue::from_str(value).map_err(|e| generic(e.to_string()))?;
            opts = opts.with_signed_header(HeaderName::from_static(name), v.clone());
            signed.push((*name, v));
        }
        let path = object_store::path::Path::from(key);
        let url = self
            .s3
            .signed_url_opts(method.clone(), &path, Duration::from_secs(300), &opts)
            .await?;
        let mut req = HttpRequest::new(HttpRequestBody::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = url.as_str().parse().map_err(|e| generic(format!("{e}")))?;
        for (name, value) in signed {
            req.headers_mut().insert(name, value);
        }
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| generic(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut stream = resp.into_body().bytes_stream();
        let mut answer = Vec::new();
        while answer.len() < MAX_ANSWER
            && let Some(part) = stream.next().await
        {
            answer.extend_from_slice(&part.map_err(|e| generic(e.to_string()))?);
        }
        answer.truncate(MAX_ANSWER);
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// The text of the first `<tag>` element of a short XML answer.
pub(super) fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// Body of PutObjectRetention: COMPLIANCE until `until` (RFC 3339).
pub(super) fn retention_body(until: &str) -> Vec<u8> {
    format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode>\
         <RetainUntilDate>{until}</RetainUntilDate></Retention>"
    )
    .into_bytes()
}

/// `Content-MD5` of `body`, which AWS demands on object-lock requests.
pub(super) fn content_md5(body: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

pub(super) fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_bodies() {
        let xml = "<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2026-12-01T22:58:02Z\
                   </RetainUntilDate></Retention>";
        assert_eq!(element(xml, "Mode"), Some("COMPLIANCE"));
        assert_eq!(
            element(xml, "RetainUntilDate"),
            Some("2026-12-01T22:58:02Z")
        );
        assert_eq!(element(xml, "LegalHold"), None);
        assert_eq!(element("<Mode>open", "Mode"), None);
        // MD5 of nothing is d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let body = String::from_utf8(retention_body("2026-12-01T00:00:00Z")).unwrap();
        assert!(body.contains("<RetainUntilDate>2026-12-01T00:00:00Z</RetainUntilDate>"));
    }
}
