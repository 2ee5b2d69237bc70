//! What a holder knows about its own lock, and the check before every
//! index and snapshot write that the lock is still provably held.

use std::sync::Mutex;
use std::time::Duration;

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
}

impl Held {
    pub(super) fn new(command: &str, current: String, refreshed: DateTime<Utc>) -> Held {
        Held {
            command: command.to_string(),
            state: Mutex::new(HeldState {
                current,
                refreshed,
                broken: None,
                last_error: None,
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
pub(crate) fn verify(repo: &Repository, held: &Held, purpose: &str) -> Result<()> {
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
    let key = ObjectKind::Lock.key(&st.current);
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
    Ok(())
}
