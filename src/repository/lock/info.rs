//! A lock object's content and the clock rules every reader judges it by:
//! the stale period, the refresh interval and the holder's safe window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::repository::{holder, host_and_user};

/// A lock older than this without a refresh is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// The stale period in force: [`STALE_AFTER`], or a test's shorter one.
pub(crate) fn stale_after() -> Duration {
    crate::testhooks::stale_after_override()
        .filter(|d| !d.is_zero())
        .unwrap_or(STALE_AFTER)
}

/// How often a held lock is rewritten: a sixth of the stale period.
pub(crate) fn refresh_every() -> Duration {
    stale_after() / 6
}

/// How long after its last refresh a holder still trusts its lock: two
/// thirds of the stale period. The last third absorbs clock differences
/// between hosts and the time a write takes.
pub(crate) fn safe_window() -> Duration {
    stale_after() * 2 / 3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    pub host: String,
    pub user: String,
    pub pid: u32,
    pub command: String,
    /// The holder's machine id; absent in locks written by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// The holder's boot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Inode of the holder's pid namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// The holder's start time in clock ticks since boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Random, the same in every refresh of one holding: names the holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl LockInfo {
    /// A lock record for this process, stamped now, with a new nonce.
    pub(crate) fn new(exclusive: bool, command: &str) -> LockInfo {
        let (host, user) = host_and_user();
        let me = holder::me();
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        LockInfo {
            time: Utc::now(),
            exclusive,
            host,
            user,
            pid: std::process::id(),
            command: command.to_string(),
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            start_time: me.start_time,
            nonce: Some(hex::encode(nonce)),
        }
    }

    /// Whether the holder is certainly gone or has stopped refreshing.
    pub(crate) fn is_stale(&self) -> bool {
        self.is_stale_by_age() || self.holder_is_dead()
    }

    /// Not refreshed for the stale period. Its holder may still be alive,
    /// only suspended.
    pub(crate) fn is_stale_by_age(&self) -> bool {
        let age = Utc::now().signed_duration_since(self.time);
        age.to_std().is_ok_and(|a| a > stale_after())
    }

    /// The holder ran on this very boot of this machine, in our pid
    /// namespace, and that process is gone.
    pub(crate) fn holder_is_dead(&self) -> bool {
        holder::certainly_dead(
            self.machine_id.as_deref(),
            self.boot_id.as_deref(),
            self.pid_ns,
            self.pid,
            self.start_time,
        )
    }

    /// What to do about this live lock if its holder is believed gone.
    pub(crate) fn advice(&self) -> String {
        let expires = self.time
            + chrono::Duration::from_std(stale_after())
                .unwrap_or_else(|_| chrono::Duration::zero());
        if holder::same_space(
            self.machine_id.as_deref(),
            self.boot_id.as_deref(),
            self.pid_ns,
        ) {
            format!(
                "That process is still running on this machine; wait for it to finish (its lock \
                 expires at {} if it stops refreshing it)",
                expires.format("%Y-%m-%d %H:%M:%S UTC")
            )
        } else {
            format!(
                "It was taken on another machine, boot or pid namespace, so this process cannot \
                 tell whether its holder still runs; it becomes stale at {} unless refreshed. If \
                 you are sure that process is gone, remove the lock with `repo unlock --remove-all`",
                expires.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} lock held by {}@{} (pid {}, `{}`) since {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.user,
            self.host,
            self.pid,
            self.command,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}
