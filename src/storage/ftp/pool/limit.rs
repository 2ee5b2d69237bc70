//! The server's limit on sessions per client, learned when it refuses one.
//!
//! Servers commonly cap the sessions one client address may hold (pyftpdlib's
//! `max_cons_per_ip`, vsftpd's `max_per_ip`, ProFTPD's `MaxClientsPerHost`; shared hosting
//! often allows 2 to 10) and refuse the next one with 421 or 530. A pool that insisted on more
//! would fail operations on a server that works. So while the pool holds a logged-in connection
//! (which proves address and password good) or another login is under way, such a refusal is
//! taken for the limit: the pool shrinks by one connection (never below one), and the
//! operation waits for one of the connections the pool has.
//!
//! A refusal can also be passing (a server restarting, a limit on new sessions per second), so
//! while operations wait for a connection the pool tries one more, [`GROW_BACK`] after the
//! last refusal, and twice as long after each growth that was refused again (up to
//! [`MAX_GROW_BACK`]): against a real limit that costs a few refused logins per command. A
//! server that is not there at all (the connection refused or timed out) says nothing about its
//! limit and is never taken for one.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::{Conn, FtpError, Pool, about_credentials, reply_code};

/// How long an operation refused a connection waits for one of the pool's to become idle.
const WAIT_FOR_IDLE: Duration = Duration::from_secs(300);
/// How often it looks.
const POLL: Duration = Duration::from_millis(2);
/// How long after the last refusal the pool first tries one connection more.
const GROW_BACK: Duration = Duration::from_secs(10);
/// The longest wait between such tries.
const MAX_GROW_BACK: Duration = Duration::from_secs(600);

/// When the pool may try one connection more (see the module comment).
pub(super) struct Growth {
    /// The last refusal or growth.
    last: Option<Instant>,
    /// The wait after it.
    wait: Duration,
    /// Whether the last was a growth.
    grew: bool,
}

impl Default for Growth {
    fn default() -> Self {
        Self {
            last: None,
            wait: GROW_BACK,
            grew: false,
        }
    }
}

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
/// the connection closed or reset once made, before the login was through (a server refusing
/// with 421 closes at once, and the reset that our login batch, sent with the connection, then
/// meets may discard the 421 before it is read). Not a connection refused or timed out: no
/// server answered.
pub(super) fn refused_session(err: &FtpError) -> bool {
    let (FtpError::Connect { source, .. } | FtpError::Login { source, .. }) = err else {
        return false;
    };
    match source {
        suppaftp::FtpError::UnexpectedResponse(r) => {
            matches!(reply_code(r), 421 | 530) && !about_credentials(r)
        }
        suppaftp::FtpError::ConnectionError(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
        ),
        _ => false,
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

    /// The fewest connections the server allowed so far, if it ever refused one.
    pub(in crate::storage::ftp) fn lowest_limit(&self) -> Option<usize> {
        let lowest = self.lowest.load(Ordering::SeqCst);
        (lowest < self.max_connections).then_some(lowest)
    }

    /// One connection more, up to `--connections`, for an operation about to wait for one,
    /// once the wait since the last refusal or growth is over: see the module comment.
    pub(super) fn grow_back(&self) {
        if self.limit.load(Ordering::SeqCst) >= self.max_connections
            || self.permits.available_permits() > 0
        {
            return;
        }
        let mut growth = self.growth.lock().unwrap_or_else(PoisonError::into_inner);
        if growth.last.is_some_and(|t| t.elapsed() < growth.wait) {
            return;
        }
        let grown = self
            .limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_connections).then_some(n + 1)
            });
        if grown.is_err() {
            return;
        }
        growth.last = Some(Instant::now());
        growth.grew = true;
        let owed = self
            .excess
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if owed.is_err() {
            self.permits.add_permits(1);
        }
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
        {
            let mut growth = self.growth.lock().unwrap_or_else(PoisonError::into_inner);
            if std::mem::take(&mut growth.grew) {
                growth.wait = (growth.wait * 2).min(MAX_GROW_BACK);
            }
            growth.last = Some(Instant::now());
        }
        let lowered = self
            .limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            });
        if let Ok(was) = lowered {
            self.lowest.fetch_min(was - 1, Ordering::SeqCst);
        }
        lowered.is_ok()
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
        let wrong = FtpError::Login {
            server: Arc::from("ftp://u@h:21/"),
            source: suppaftp::FtpError::UnexpectedResponse(Response::new(
                Status::NotLoggedIn,
                b"530 Login incorrect.\r\n".to_vec(),
            )),
        };
        assert!(
            !refused_session(&wrong),
            "a wrong password is no session limit"
        );
        for kind in [ErrorKind::ConnectionRefused, ErrorKind::TimedOut] {
            let absent = FtpError::Connect {
                server: Arc::from("ftp://u@h:21/"),
                source: suppaftp::FtpError::ConnectionError(kind.into()),
            };
            assert!(!refused_session(&absent), "{kind:?}");
        }
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

#[cfg(test)]
mod grow_back_tests {
    use super::super::Settings;
    use super::*;

    fn pool(max: usize) -> Pool {
        let settings = Settings {
            host: "127.0.0.1".into(),
            port: 21,
            user: "u".into(),
            password: "p".into(),
            tls: None,
            server: Arc::from("ftp://u@127.0.0.1:21/"),
        };
        Pool::new(settings, max)
    }

    /// Moves the last refusal or growth `ago` into the past.
    fn backdate(pool: &Pool, ago: Duration) {
        let mut growth = pool.growth.lock().unwrap();
        growth.last = growth.last.and_then(|t| t.checked_sub(ago));
    }

    /// Every permit the pool has, taken: operations now wait for a connection.
    fn busy(pool: &Pool) -> OwnedSemaphorePermit {
        let all = pool.permits.available_permits() as u32;
        Arc::clone(&pool.permits)
            .try_acquire_many_owned(all)
            .unwrap()
    }

    /// A limit learned from refusals is tried one connection higher while operations wait,
    /// once a while has passed without a refusal, up to `--connections`; the permits follow
    /// the limit. Each growth refused again doubles the wait.
    #[test]
    fn a_learned_limit_grows_back_while_operations_wait() {
        let pool = pool(4);
        pool.shrink();
        pool.shrink();
        assert_eq!(pool.connection_limit(), 2);
        let held = busy(&pool);
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 2, "too soon after the refusal");
        backdate(&pool, GROW_BACK);
        drop(held);
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 2, "no operation waits");
        let held = busy(&pool);
        pool.grow_back();
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 3, "one more, then a new wait");
        drop(held);
        assert_eq!(pool.permits.available_permits(), 3);
        // Refused again: twice the wait before the next try.
        pool.shrink();
        assert_eq!(pool.connection_limit(), 2);
        let held = busy(&pool);
        backdate(&pool, GROW_BACK);
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 2, "the wait doubled");
        backdate(&pool, GROW_BACK);
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 3);
        drop(held);
        let held = busy(&pool);
        backdate(&pool, MAX_GROW_BACK);
        pool.grow_back();
        drop(held);
        let held = busy(&pool);
        backdate(&pool, MAX_GROW_BACK);
        pool.grow_back();
        assert_eq!(pool.connection_limit(), 4, "never above --connections");
        drop(held);
        assert_eq!(pool.permits.available_permits(), 4);
        assert_eq!(pool.lowest_limit(), Some(2));
    }

    /// A shrink while every permit was in use is owed by the next taker; growing back first
    /// cancels that debt instead of adding a permit.
    #[test]
    fn growing_back_pays_off_a_shrink_still_owed() {
        let pool = pool(2);
        let held = busy(&pool);
        pool.shrink();
        assert_eq!(pool.excess.load(Ordering::SeqCst), 1);
        backdate(&pool, GROW_BACK);
        pool.grow_back();
        assert_eq!(pool.excess.load(Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(pool.permits.available_permits(), 2);
        assert_eq!(pool.connection_limit(), 2);
    }
}
