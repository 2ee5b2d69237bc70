//! Reading and extending the retention of objects already written.
//!
//! A snapshot taken today still refers to packs written long ago (unchanged
//! files are stored once), whose locks have ended: whoever holds the
//! credentials could destroy those for good and damage today's snapshot.
//! So maintenance extends the lock of every object still there that was
//! written more than half a period ago (as kopia's `--extend-object-locks`
//! does), and, since an extended lock outlives what the modification time
//! says, asks the object itself before deleting one that looks free.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::StreamExt;
use object_store::signer::Method;

use super::signed::{content_md5, element, retention_body};
use super::{LockWriter, refresh};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// What one retention request told or did, per key.
type Answers<T> = Result<Vec<(String, T)>>;

impl Storage {
    /// Until when (ms since the epoch) each of `keys` may be locked: its
    /// retain-until date plus [`refresh`] for the difference between the
    /// clocks; `None` for one with no lock (or no longer there). Empty
    /// without object lock.
    pub(crate) fn object_locks_until(&self, keys: Vec<String>) -> Answers<Option<i64>> {
        let Some(w) = &self.objlock else {
            return Ok(Vec::new());
        };
        let n = self.connections.max(1);
        let out = self.rt.block_on(
            futures::stream::iter(keys)
                .map(|key| async move {
                    let until = read_until(w, &key).await;
                    until.map(|u| (key, u))
                })
                .buffer_unordered(n)
                .collect::<Vec<_>>(),
        );
        self.count(0, 0);
        out.into_iter().collect()
    }

    /// Extends to a full period from now the lock of every object but lock
    /// files and `skip` written more than half a period ago; returns how many
    /// it extended. One whose lock already reaches as far (an earlier run
    /// with a longer period or a clock ahead, an administrator) is left as
    /// it is and not counted; one listed but gone when asked is not counted
    /// either, and named in a warning.
    pub(crate) fn extend_object_locks(&self, skip: &HashSet<String>) -> Result<usize> {
        let Some(w) = &self.objlock else {
            return Ok(0);
        };
        let half = i64::try_from((w.period / 2).as_millis()).unwrap_or(i64::MAX);
        let cutoff = chrono::Utc::now().timestamp_millis().saturating_sub(half);
        let old: Vec<String> = self
            .list_files("")?
            .into_iter()
            .filter(|f| !f.name.starts_with("locks/") && f.modified_ms < cutoff)
            .filter(|f| !skip.contains(&f.name))
            .map(|f| f.name)
            .collect();
        let until = w.until(SystemTime::now());
        let n = self.connections.max(1);
        let done: Vec<Result<Extended>> = self.rt.block_on(
            futures::stream::iter(&old)
                .map(|key| extend(w, key, &until))
                .buffer_unordered(n)
                .collect(),
        );
        self.count(0, 0);
        let mut extended = 0;
        for outcome in done {
            if outcome? == Extended::Yes {
                extended += 1;
            }
        }
        Ok(extended)
    }
}

/// GET `key?retention`: the retain-until date plus [`refresh`] (for the
/// difference between the clocks), `None` without a lock.
async fn read_until(w: &LockWriter, key: &str) -> Result<Option<i64>> {
    let skew = i64::try_from(refresh(w.period).as_millis()).unwrap_or(i64::MAX);
    Ok(retain_until(w, key)
        .await?
        .map(|until| until.saturating_add(skew)))
}

/// GET `key?retention`: the retain-until date as the server has it (ms
/// since the epoch), `None` without a lock (or no longer there).
async fn retain_until(w: &LockWriter, key: &str) -> Result<Option<i64>> {
    let op = "read the object lock of";
    let (status, answer) = retention(w, key, op, Method::GET, None).await?;
    match status {
        200 => {
            let date = element(&answer, "RetainUntilDate").unwrap_or_default();
            let until = chrono::DateTime::parse_from_rfc3339(date.trim())
                .map_err(|e| failed(op, key, format!("date {date:?}: {e}")))?;
            Ok(Some(until.timestamp_millis()))
        }
        // No lock configured on it, or the object is gone.
        404 => Ok(None),
        _ => Err(failed(op, key, http(status, &answer))),
    }
}

/// What [`extend`] did to one object.
#[derive(Debug, PartialEq, Eq)]
enum Extended {
    /// Its lock now reaches the new date.
    Yes,
    /// Its lock already reached at least as far, and stays as it was.
    Already,
    /// It was listed but is no longer there.
    Gone,
}

/// PUT `key?retention`: COMPLIANCE until `until` (RFC 3339). A lock can
/// only be made longer: the server refuses an earlier date than the one
/// the object has (HTTP 403 from AWS and SeaweedFS), so a refusal is
/// checked against the object's own date before it counts as one.
async fn extend(w: &LockWriter, key: &str, until: &str) -> Result<Extended> {
    let op = "extend the object lock of";
    let target = chrono::DateTime::parse_from_rfc3339(until)
        .map_err(|e| failed(op, key, format!("date {until:?}: {e}")))?
        .timestamp_millis();
    let body = retention_body(until);
    let (status, answer) = retention(w, key, op, Method::PUT, Some(body)).await?;
    match status {
        200 | 204 => Ok(Extended::Yes),
        404 => {
            crate::error::warnings::warn(format!(
                "could not extend the object lock of {key}: it was listed but the server \
                 says it is not there (HTTP 404)"
            ));
            Ok(Extended::Gone)
        }
        _ => match retain_until(w, key).await? {
            // Locked as long already (or longer): nothing to do, and the
            // refusal was the server declining to shorten it.
            Some(current) if current >= target => Ok(Extended::Already),
            // Locked less long, or not at all: the refusal stands.
            _ => Err(failed(op, key, http(status, &answer))),
        },
    }
}

/// Sends `method` to `key?retention`, with `body` (and its `Content-MD5`).
async fn retention(
    w: &LockWriter,
    key: &str,
    op: &'static str,
    method: Method,
    body: Option<Vec<u8>>,
) -> Result<(u16, String)> {
    let md5 = body.as_deref().map(|b| ("content-md5", content_md5(b)));
    w.requests
        .send(
            method,
            &w.bucket_key(key),
            &[("retention", "")],
            md5.as_slice(),
            body.unwrap_or_default(),
        )
        .await
        .map_err(|e| failed(op, key, e.to_string()))
}

fn http(status: u16, answer: &str) -> String {
    let excerpt: String = answer.chars().take(300).collect();
    format!(
        "the server answered HTTP {status}: {excerpt}; the credentials need \
         s3:GetObjectRetention and s3:PutObjectRetention"
    )
}

fn failed(op: &'static str, key: &str, message: String) -> Error {
    Error::Storage {
        op,
        key: key.to_string(),
        message,
    }
}
