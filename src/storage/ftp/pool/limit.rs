//! The server's limit on sessions per client, learned when it refuses one.
//!
//! Servers commonly cap the sessions one client address may hold (pyftpdlib's
//! `max_cons_per_ip`, vsftpd's `max_per_ip`, ProFTPD's `MaxClientsPerHost`; shared hosting
//! often allows 2 to 10) and refuse the next one with 421 or 530. A pool that insisted on more
//! would fail operations on a server that works. So while the pool holds a logged-in connection
//! (which proves address and password good) or another login is under way, such a refusal is
//! taken for the limit: the pool shrinks by one connection for good (never below one), and the
//! operation waits for one of the connections the pool has.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::{Conn, FtpError, Pool, reply_code};

/// How long an operation refused a connection waits for one of the pool's to become idle.
const WAIT_FOR_IDLE: Duration = Duration::from_secs(300);
/// How often it looks.
const POLL: Duration = Duration::from_millis(2);

/// Counts a connection (or a login under way) while it exists.
pub(super) struct Live(Arc<AtomicUsize>);

impl Live {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `err` is the server refusing a session at its greeting or login: 421 or 530, or
/// the connection closed or reset before the login was through (a server refusing with 421
/// closes at once, and the reset that our login batch, sent with the connection, then meets may
/// discard the 421 before it is read).
pub(super) fn refused_session(err: &FtpError) -> bool {
    let (FtpError::Connect { source, .. } | FtpError::Login { source, .. }) = err else {
        return false;
    };
    match source {
        suppaftp::FtpError::UnexpectedResponse(r) => matches!(reply_code(r), 421 | 530),
        other => matches!(
            other,
            suppaftp::FtpError::ConnectionError(_) | suppaftp::FtpError::BadResponse
        ),
    }
}

/// An operation that was refused a new connection, waiting for an idle one.
pub(super) struct Refused {
    error: FtpError,
    since: Instant,
}

impl Pool {
    /// Connections the pool may hold now: `--connections`, less those the server refused.
    pub(in crate::storage::ftp) fn connection_limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// A new connection for an operation that found none idle. After a refusal that shows the
    /// server's limit (see the module comment), `None` after a short pause, for the caller to
    /// look for an idle connection again, until none is left to wait for.
    pub(super) fn connect_or_wait(
        &self,
        refused: &mut Option<Refused>,
    ) -> Result<Option<Conn>, FtpError> {
        if let Some(r) = refused.take() {
            if !self.others() || r.since.elapsed() > WAIT_FOR_IDLE {
                return Err(r.error);
            }
            *refused = Some(r);
            std::thread::sleep(POLL);
            return Ok(None);
        }
        match self.connect() {
            Err(error) if refused_session(&error) && self.others() => {
                self.shrink();
                *refused = Some(Refused {
                    error,
                    since: Instant::now(),
                });
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Whether the pool has a connection, or a login under way, to wait for.
    fn others(&self) -> bool {
        self.live.load(Ordering::SeqCst) > 0 || self.logging_in.load(Ordering::SeqCst) > 0
    }

    /// One connection fewer from now on, never fewer than one. The permit goes at once if one
    /// is free, else the next operation to take one gives it up (see [`Pool::surplus`]).
    fn shrink(&self) {
        if self.lower_limit() && self.permits.forget_permits(1) == 0 {
            self.excess.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A login made ahead of need (`connect.rs`) was refused: its permit goes if the pool can
    /// shrink, whatever the reason (a refused login can only mean fewer connections are useful).
    pub(super) fn refused_ahead(&self, permit: OwnedSemaphorePermit) {
        if self.lower_limit() {
            permit.forget();
        }
    }

    fn lower_limit(&self) -> bool {
        self.limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok()
    }

    /// Whether a permit just acquired is one the pool no longer has: the caller forgets it and
    /// waits for another.
    pub(super) fn surplus(&self) -> bool {
        self.excess
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;
    use suppaftp::types::Response;

    fn refusal(status: Status, at_login: bool) -> FtpError {
        let source = suppaftp::FtpError::UnexpectedResponse(Response::new(status, b"x".to_vec()));
        let server = Arc::from("ftp://u@h:21/");
        if at_login {
            FtpError::Login { server, source }
        } else {
            FtpError::Connect { server, source }
        }
    }

    #[test]
    fn refusals_that_may_mean_the_session_limit() {
        for at_login in [false, true] {
            assert!(refused_session(&refusal(Status::NotAvailable, at_login)));
            assert!(refused_session(&refusal(Status::NotLoggedIn, at_login)));
            assert!(!refused_session(&refusal(
                Status::FileUnavailable,
                at_login
            )));
        }
        let reset = FtpError::Login {
            server: Arc::from("ftp://u@h:21/"),
            source: suppaftp::FtpError::ConnectionError(std::io::ErrorKind::ConnectionReset.into()),
        };
        assert!(refused_session(&reset));
        let command = FtpError::Command {
            server: Arc::from("ftp://u@h:21/"),
            op: "RETR",
            path: "/x".into(),
            source: suppaftp::FtpError::UnexpectedResponse(Response::new(
                Status::NotAvailable,
                b"x".to_vec(),
            )),
        };
        assert!(!refused_session(&command));
    }
}
