//! Opening control connections (TCP, TLS, login, features) and logging in the pool's
//! connections ahead of need.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use suppaftp::rustls::ClientConfig;
use suppaftp::rustls::client::Resumption;

use super::limit::{self, Live};
use super::{Conn, FtpError, Pool};
use crate::storage::ftp::control::{Login, Passive, Stage};
/// TLS sessions remembered per control connection for resuming on its data connections.
const SESSION_CACHE_SIZE: usize = 8;
impl Pool {
    /// Logs in the pool's other connections in the background, all at once, when the first
    /// operation starts. A login costs two round trips (TCP, then the greeting and the login
    /// commands together; five with TLS); without this, each operation that first runs
    /// concurrently with others pays them in turn, and over a wide-area link that is most of a short command's time.
    ///
    /// Each login holds a permit, so the pool never has more than `max_connections`
    /// connections; an operation that finds none idle waits for the login already under way
    /// rather than starting another. A failed login is dropped silently: the operation that
    /// needs a connection then logs in itself and reports the error. Plain threads, not
    /// tokio's blocking pool, so that a process ending meanwhile does not wait for them.
    pub(super) fn warm_up(self: &Arc<Self>) {
        if self.warmed.swap(true, Ordering::Relaxed) {
            return;
        }
        for _ in 1..self.max_connections {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                break;
            };
            if self.surplus() {
                permit.forget();
                break;
            }
            let pool = Arc::clone(self);
            let login = move || {
                match pool.connect_as(true) {
                    Ok(mut conn) => {
                        // Nothing waits for this connection yet: its first transfer's data
                        // connection is opened now (see `Control::prepare`).
                        conn.ftp.prepare(None);
                        if conn.ftp.reusable() {
                            pool.checkin(conn);
                        }
                        drop(permit);
                    }
                    Err(e) if limit::refused_session(&e) => pool.refused_ahead(permit),
                    Err(_) => drop(permit),
                }
            };
            if std::thread::Builder::new()
                .name("repo-ftp-login".into())
                .spawn(login)
                .is_err()
            {
                break;
            }
        }
    }

    /// Connects, secures (for FTPS), logs in and prepares a new control connection.
    pub(super) fn connect(&self) -> Result<Conn, FtpError> {
        self.connect_as(false)
    }

    /// [`Pool::connect`]; `ahead`: made ahead of need (see `password.rs`).
    fn connect_as(&self, ahead: bool) -> Result<Conn, FtpError> {
        let s = &self.settings;
        let gate = self.password.gate(ahead);
        self.opened.fetch_add(1, Ordering::Relaxed);
        let _logging_in = Live::new(&self.logging_in);
        // A connection made while EPSV is not known to fail tries it (see `passive.rs`).
        let epsv = !self.pasv_only.load(Ordering::Relaxed);
        let login = Login {
            host: &s.host,
            port: s.port,
            user: &s.user,
            password: &s.password,
            // Servers such as ProFTPD and vsftpd (by default) accept a data connection only if
            // it resumes the TLS session of its own control connection. A session cache shared
            // by the whole pool would offer tickets of other control connections, so each
            // connection gets a cache of its own.
            //
            // rustls uses a TLS 1.3 ticket only once, and OpenSSL-based servers issue a new one
            // on a data connection only if they write to it: downloads replace their ticket,
            // uploads use one up. Once a connection has run out, such servers refuse the data
            // connection with 425, which discards this connection; the retry logs in afresh
            // and gets new tickets.
            tls: s.tls.as_ref().map(|tls| {
                let mut config = ClientConfig::clone(tls);
                config.resumption = Resumption::in_memory_sessions(SESSION_CACHE_SIZE);
                Arc::new(config)
            }),
            features: self.features.get().copied(),
            arm: if epsv { Passive::Epsv } else { Passive::Pasv },
            counters: Arc::clone(&self.counters),
            gate: Some(&gate),
        };
        let (ftp, features) = login.run().map_err(|(stage, source)| {
            let server = Arc::clone(&s.server);
            match stage {
                Stage::Connect => FtpError::Connect { server, source },
                Stage::Tls => FtpError::Tls { server, source },
                Stage::Login => FtpError::Login { server, source },
                Stage::Binary => FtpError::Command {
                    server,
                    op: "TYPE I",
                    path: String::new(),
                    source,
                },
            }
        })?;
        self.features.get_or_init(|| features);
        Ok(Conn {
            ftp,
            epsv,
            answered: Instant::now(),
            _live: Live::new(&self.live),
        })
    }
}
