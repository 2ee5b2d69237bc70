//! Request and byte counters, so users can see what a command cost.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every call through one [`super::Storage`].
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// A snapshot of [`Stats`] for reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StatsReport {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Objects the repository's local cache answered, and those it had to
    /// fetch (filled in by the repository; storage itself caches nothing).
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The fewest connections the server allowed at once, if it refused more than
    /// `--connections` (an FTP server's limit on sessions per client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_allowed: Option<usize>,
}

impl Stats {
    /// One request that sent and received these many bytes.
    pub(super) fn count(&self, sent: usize, received: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(received as u64, Ordering::Relaxed);
    }

    pub(super) fn report(&self) -> StatsReport {
        StatsReport {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            ..StatsReport::default()
        }
    }
}
