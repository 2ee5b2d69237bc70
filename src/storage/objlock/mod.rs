//! S3 object lock: every object but lock files is written with COMPLIANCE
//! retention, so that nobody holding this machine's credentials (nor the
//! bucket's owner) can destroy it before the retention ends.
//!
//! object_store 0.14.2 has no retention field, so the writes go through a
//! second client, the *lock writer*, whose default headers carry the lock
//! mode and retain-until date; default headers are signed on writes but not
//! on listings, so this client only ever writes. Its date is fixed when it
//! is built, so it is rebuilt every half [`refresh`]: an object written at
//! any time stays locked for at least the period (and half a refresh for
//! the upload), at most [`refresh`] longer.
//! The bucket check and an object's retention, which object_store has no
//! call for, are requests signed with object_store's own signer
//! ([`signed`]); maintenance extends locks of old objects ([`retention`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use object_store::signer::Method;
use object_store::{HeaderMap, HeaderValue, ObjectStore};

use super::{Location, Storage, s3};
use crate::error::{Error, Result};
use signed::Requests;

mod retention;
mod signed;

/// Test hook: `REPO_TEST_OBJECT_LOCK_SECS=N` locks objects for N seconds
/// instead of the configured days, so a test can watch a lock expire.
const SECS_ENV: &str = "REPO_TEST_OBJECT_LOCK_SECS";

const HOUR: Duration = Duration::from_secs(3600);

/// How long objects written now are locked, for a config's `object_lock_days`.
/// The test hook that shortens it works in debug builds only: a release
/// build never writes a COMPLIANCE lock shorter than the config says.
pub(crate) fn period(days: u32) -> Duration {
    cfg!(debug_assertions)
        .then(|| std::env::var(SECS_ENV).ok())
        .flatten()
        .and_then(|s| s.trim().parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(u64::from(days) * 86400))
}

/// How long the lock writer keeps one retain-until date: an hour, or the
/// whole period when that is shorter (tests).
fn refresh(period: Duration) -> Duration {
    period.min(HOUR)
}

/// How long after its storage modification time an object written with
/// `period` may still be locked: the period, the writer's [`refresh`], and
/// as much again for the difference between this machine's clock (which
/// sets the date) and the server's (which sets the modification time).
pub(crate) fn hold(period: Duration) -> Duration {
    period + refresh(period) * 2
}

/// The client that writes locked objects, rebuilt as its date ages.
pub(super) struct LockWriter {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    period: Duration,
    /// The client in use and when its date was set.
    current: Mutex<Option<(SystemTime, Arc<dyn ObjectStore>)>>,
    /// For the calls object_store has none for (retention of one object).
    requests: Requests,
}

impl LockWriter {
    fn new(bucket: &str, prefix: &str, endpoint: Option<&str>, period: Duration) -> Result<Self> {
        let w = LockWriter {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: endpoint.map(String::from),
            period,
            current: Mutex::new(None),
            requests: requests(bucket, endpoint)?,
        };
        w.store()?;
        Ok(w)
    }

    /// A client whose retain-until date is at least the period and half a
    /// [`refresh`] from now: an upload may take up to half an hour and its
    /// object still stays locked for the whole period after it lands.
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        if let Some((built, store)) = cur.as_ref()
            && now.duration_since(*built).unwrap_or(Duration::MAX) < refresh(self.period) / 2
        {
            return Ok(store.clone());
        }
        let store = self.build(now)?;
        *cur = Some((now, store.clone()));
        Ok(store)
    }

    /// The retain-until date of what is written at `now`: the period and
    /// [`refresh`] later, RFC 3339.
    fn until(&self, now: SystemTime) -> String {
        let until = chrono::DateTime::<chrono::Utc>::from(now + self.period + refresh(self.period));
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// `key`'s key in the bucket.
    fn bucket_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix.trim_end_matches('/'))
        }
    }

    /// A client that locks what it writes until [`LockWriter::until`].
    fn build(&self, now: SystemTime) -> Result<Arc<dyn ObjectStore>> {
        let date = self.until(now);
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-object-lock-mode",
            HeaderValue::from_static("COMPLIANCE"),
        );
        let value = HeaderValue::from_str(&date).map_err(|e| Error::Internal(e.to_string()))?;
        h.insert("x-amz-object-lock-retain-until-date", value);
        let client = s3::client(
            &self.bucket,
            &self.prefix,
            self.endpoint.as_deref(),
            Some(h),
        )?;
        Ok(s3::with_prefix(client, &self.prefix))
    }
}

impl Storage {
    /// Writes every object but lock files locked for `days` from now on
    /// (see the module docs). Only S3 locks objects: elsewhere (a copy of a
    /// locked repository on disk, say) this warns and writes as usual.
    pub(crate) fn set_object_lock(&mut self, days: u32) -> Result<()> {
        let Location::S3 {
            bucket,
            prefix,
            endpoint,
            ..
        } = &self.location
        else {
            if !matches!(self.location, Location::Memory(_)) {
                crate::error::warnings::warn(format!(
                    "the repository's config asks for S3 object lock, which {} cannot give: \
                     what this command writes there is not locked",
                    self.location
                ));
            }
            return Ok(());
        };
        let w = LockWriter::new(bucket, prefix, endpoint.as_deref(), period(days))?;
        self.objlock = Some(w);
        Ok(())
    }

    /// How long after its modification time an object may still be locked;
    /// `None` when this storage writes nothing locked.
    pub(crate) fn object_lock_hold(&self) -> Option<Duration> {
        self.objlock.as_ref().map(|w| hold(w.period))
    }

    /// The client that writes `key`: the lock writer for all but lock files.
    pub(super) fn writer(&self, key: &str) -> Result<Arc<dyn ObjectStore>> {
        match &self.objlock {
            Some(w) if !key.starts_with("locks/") => w.store(),
            _ => Ok(self.store.clone()),
        }
    }

    /// The error of a failed write. A locked write into a bucket without
    /// object lock (a copy of a locked repository, say) is refused with a
    /// bare 400 InvalidRequest; the bucket check then says what is wrong.
    pub(super) fn write_err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        let refused = e.to_string().contains("InvalidRequest");
        if self.objlock.is_some()
            && refused
            && !key.starts_with("locks/")
            && let Err(why) = self.check_object_lock()
        {
            return why;
        }
        self.err(op, key, e)
    }

    /// Checks that the bucket can lock objects (`init --object-lock`): S3
    /// only, and the bucket must have been created with object lock, which
    /// cannot be turned on later for an existing unversioned bucket.
    pub(crate) fn check_object_lock(&self) -> Result<()> {
        check_lockable(&self.location)?;
        let Location::S3 {
            bucket, endpoint, ..
        } = &self.location
        else {
            return Ok(());
        };
        let requests = requests(bucket, endpoint.as_deref())?;
        let (status, body) = self
            .rt
            .block_on(requests.send(Method::GET, "", &[("object-lock", "")], &[], Vec::new()))
            .map_err(|e| Error::Storage {
                op: "read the object lock configuration of",
                key: format!("s3://{bucket}"),
                message: e.to_string(),
            })?;
        self.count(0, 0);
        judge_lock_config(bucket, status, &body)
    }
}

/// Refuses `init --object-lock` on storage other than S3, before anything
/// (even a directory) is made there.
pub(crate) fn check_lockable(location: &Location) -> Result<()> {
    if matches!(location, Location::S3 { .. }) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--object-lock needs S3 storage (s3://BUCKET/PREFIX) whose bucket has object lock; \
         {location} cannot lock objects. For other storage, protect backups with an \
         append-only server instead"
    )))
}

/// Signed requests to `bucket`, for the calls object_store has none for.
fn requests(bucket: &str, endpoint: Option<&str>) -> Result<Requests> {
    let client = s3::client(bucket, "", endpoint, None)?;
    let options = s3::options(s3::endpoint(endpoint).as_deref());
    Requests::new(client, &options).map_err(|e| Error::Storage {
        op: "connect to",
        key: format!("s3://{bucket}"),
        message: e.to_string(),
    })
}

/// What the bucket's answer to GET `?object-lock` means for `init`.
fn judge_lock_config(bucket: &str, status: u16, body: &str) -> Result<()> {
    let enabled = body.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>");
    if status == 200 && enabled {
        return Ok(());
    }
    if status == 200 || status == 404 {
        return Err(Error::Usage(format!(
            "bucket {bucket} has no object lock, so nothing written there could be locked. \
             Object lock can only be turned on when a bucket is created: create a new one with \
             `aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket` and init \
             the repository there (or, for a copy of a locked repository, copy it there)"
        )));
    }
    let excerpt: String = body.chars().take(300).collect();
    Err(Error::Storage {
        op: "read the object lock configuration of",
        key: format!("s3://{bucket}"),
        message: format!(
            "the server answered HTTP {status}: {excerpt}; check the credentials may call \
             s3:GetBucketObjectLockConfiguration"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_covers_period_refresh_and_clock_skew() {
        assert_eq!(hold(Duration::from_secs(5)), Duration::from_secs(15));
        let day = Duration::from_secs(86400);
        assert_eq!(hold(day), day + HOUR * 2);
    }

    #[test]
    fn lock_config_answers() {
        let on = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>\
                  </ObjectLockConfiguration>";
        assert!(judge_lock_config("b", 200, on).is_ok());
        let missing = "<Error><Code>ObjectLockConfigurationNotFoundError</Code></Error>";
        let e = judge_lock_config("b", 404, missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--object-lock-enabled-for-bucket"), "{e}");
        assert!(matches!(
            judge_lock_config("b", 200, "<ObjectLockConfiguration/>"),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            judge_lock_config("b", 403, "<Error>AccessDenied</Error>"),
            Err(Error::Storage { .. })
        ));
    }
}
