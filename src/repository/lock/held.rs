//! What a holder knows about its own lock, and the check before every
//! index and snapshot write that the lock is still provably held.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::objects::ObjectKind;

/// What a holder knows about its own lock; shared by the guard, its
/// refresher and the [`Repository`] that checks it before writing.
pub(crate) struct Held {
    pub(super) command: String,
    pub(super) state: Mutex<HeldState>,
}

pub(super) struct HeldState {
    /// Hex id of the newest lock object written.
    pub(super) current: String,
    /// The `time` of the newest lock object for which the lock was
    /// provably continuous (the object before it was still there).
    pub(super) refreshed: DateTime<Utc>,
    /// Why the lock can no longer be trusted; once set, for good: data may
    /// have been pruned while it lapsed, even if later refreshes succeed.
    pub(super) broken: Option<String>,
    /// The last failed refresh, for the message once the window runs out.
    pub(super) last_error: Option<String>,
    /// When a check made right after an object was written last found the
    /// newest lock object present (the instant it asked, by the wall clock
    /// and by the monotonic one): see [`Moment`].
    pub(super) seen_after_write: Option<(DateTime<Utc>, Instant)>,
}

/// Where a check of the lock stands relative to the write it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// Before writing an object; a check made after the previous write
    /// less than [`REUSE_PROOF`] ago stands in for it, so back-to-back
    /// writes (an index object, then the snapshot) cost one request less.
    BeforeWrite,
    /// After writing an object: always asks the storage.
    AfterWrite,
    /// Before deleting (prune): always asks the storage.
    BeforeDelete,
}

/// How old a check after one write may be and still count as the check
/// before the next, by the wall clock (which goes on while a machine
/// sleeps, so a suspension between the two writes forces a new request)
/// and by the monotonic clock (so does a wall clock set back meanwhile).
const REUSE_PROOF: Duration = Duration::from_secs(1);

impl Held {
    pub(super) fn new(command: &str, current: String, refreshed: DateTime<Utc>) -> Held {
        Held {
            command: command.to_string(),
            state: Mutex::new(HeldState {
                current,
                refreshed,
                broken: None,
                last_error: None,
                seen_after_write: None,
            }),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn too_old(since: DateTime<Utc>) -> Option<Duration> {
    let age = Utc::now().signed_duration_since(since).to_std().ok()?;
    (age >= safe_window()).then_some(age)
}

pub(super) fn lapsed(state: &HeldState, age: Duration) -> String {
    format!(
        "it was last refreshed {}s ago, beyond the {}s this holder may trust of the {}s stale \
         period (was the process suspended, or storage unreachable?){}, so another process may \
         have judged it stale and changed the repository meanwhile",
        age.as_secs(),
        safe_window().as_secs(),
        stale_after().as_secs(),
        state
            .last_error
            .as_deref()
            .map(|e| format!("; last refresh failed: {e}"))
            .unwrap_or_default()
    )
}

impl Held {
    /// Hex id of the newest lock object written.
    pub(crate) fn current(&self) -> String {
        self.state().current.clone()
    }
}

/// Proves that `held` is still this process's lock and fresh: never lapsed
/// since taken, its newest object still in storage, and refreshed less than
/// [`safe_window`] ago. Otherwise the lock is broken for good.
pub(crate) fn verify(repo: &Repository, held: &Held, purpose: &str, moment: Moment) -> Result<()> {
    let mut st = held.state();
    let lost = |reason: &str| Error::LockLost {
        command: held.command.clone(),
        reason: reason.to_string(),
        purpose: purpose.to_string(),
        advice: "No snapshot refers to anything it wrote; run it again".into(),
    };
    if let Some(b) = &st.broken {
        return Err(lost(b));
    }
    if let Some(age) = too_old(st.refreshed) {
        st.broken = Some(lapsed(&st, age));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    let seen = st.seen_after_write.take();
    if moment == Moment::BeforeWrite && seen.is_some_and(recent) {
        return Ok(());
    }
    let key = ObjectKind::Lock.key(&st.current);
    let asked = (Utc::now(), Instant::now());
    if repo.storage().size(&key)?.is_none() {
        st.broken = Some(format!(
            "its lock object {key} was removed by another process (`repo unlock --remove-all`?)"
        ));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    // The look-up itself may have been slow.
    if let Some(age) = too_old(st.refreshed) {
        st.broken = Some(lapsed(&st, age));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    if moment == Moment::AfterWrite {
        st.seen_after_write = Some(asked);
    }
    Ok(())
}

/// Whether a check is less than [`REUSE_PROOF`] old by both clocks: the
/// wall clock (`t`, not in the future) goes on while the machine sleeps but
/// may be set back; the monotonic one (`at`) is never set back but stops
/// while the machine sleeps.
fn recent((t, at): (DateTime<Utc>, Instant)) -> bool {
    let wall = Utc::now()
        .signed_duration_since(t)
        .to_std()
        .is_ok_and(|age| age < REUSE_PROOF);
    wall && at.elapsed() < REUSE_PROOF
}
