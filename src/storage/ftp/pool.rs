//! Pooled FTP control connections, retries and error classification.
//!
//! FTP allows one transfer per control connection, so parallelism needs several logged-in
//! connections. The pool logs them all in when first used (see `connect.rs`), hands each
//! operation one connection for its whole duration (an upload is STOR + RNFR + RNTO on the same
//! session), checks idle connections before reuse because servers drop idle sessions, and
//! retries transient failures with exponential backoff, replacing connections that failed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use suppaftp::FtpResult;
use suppaftp::rustls::ClientConfig;
use suppaftp::types::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::FtpError;
use super::control::{Control, Counters};

mod connect;
mod limit;
mod passive;
mod password;
use super::idle::{Idle, idle_state};
use limit::{Live, Refused};

/// Waits before the 2nd, 3rd and 4th attempt of an operation that failed transiently.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1600),
];

/// How to reach and log in to the server; shared by every connection of a pool.
pub(super) struct Settings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Explicit TLS (`AUTH TLS`, then `PBSZ 0`/`PROT P`) with this configuration when set.
    pub tls: Option<Arc<ClientConfig>>,
    /// `ftp://user@host:port/root`, for messages; never contains the password.
    pub server: Arc<str>,
}

/// Optional commands the server announced in `FEAT`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Features {
    pub mlst: bool,
    pub mdtm: bool,
    /// UTF-8 path names (RFC 2640).
    pub utf8: bool,
}

/// A logged-in control connection.
pub(super) struct Conn {
    ftp: Control,
    /// Whether data connections are negotiated with EPSV (else PASV).
    epsv: bool,
    /// When the server last answered on it (see [`TRUSTED_IDLE`]).
    answered: Instant,
    _live: Live,
}

/// A connection the server answered this recently is reused without a `NOOP` first, if it
/// shows no sign of having been closed (see [`idle_state`], which costs no round trip): no
/// server times a session out within seconds, and over a wide-area link the check would cost a
/// round trip per operation. Longer idle, a firewall or NAT gateway may have forgotten the
/// connection silently, and a failing `NOOP` is better than a failing first command, whose
/// outcome would be unknown. If one died anyway, the operation fails on it and is retried on a
/// new one.
const TRUSTED_IDLE: Duration = Duration::from_secs(30);

/// A bounded set of connections to one server.
pub(super) struct Pool {
    settings: Settings,
    idle: Mutex<Vec<Conn>>,
    /// One permit per connection that may exist; an operation holds one for its duration.
    permits: Arc<Semaphore>,
    /// Learned from the first connection's `FEAT`.
    features: OnceLock<Features>,
    /// Set once the server rejected EPSV, so later connections go straight to PASV.
    pasv_only: AtomicBool,
    /// Set once the server answered EPSV (PASV) with a port: from then on transfer commands
    /// are sent together with it (see `control/data.rs`).
    epsv_proven: AtomicBool,
    pasv_proven: AtomicBool,
    /// Round trips and commands of all connections.
    counters: Arc<Counters>,
    /// Testing aid: list with `LIST` even when `MLSD` is available.
    force_list: AtomicBool,
    /// Control connections opened so far, including replacements for broken ones.
    opened: AtomicU64,
    /// Set by the first operation, which starts logging in the other connections.
    warmed: AtomicBool,
    max_connections: usize,
    /// Connections that exist (idle or in use), and how many may (see `limit.rs`).
    live: Arc<AtomicUsize>,
    logging_in: Arc<AtomicUsize>,
    limit: AtomicUsize,
    /// Permits still to give up after the pool shrank while all were in use.
    excess: AtomicUsize,
    /// The lowest `limit` so far, and when the limit may grow again (see `limit.rs`).
    lowest: AtomicUsize,
    growth: Mutex<limit::Growth>,
    /// Whether a login proved the password good (see `password.rs`).
    password: password::Password,
}

/// One operation's view of its connection.
pub(super) struct Session<'a> {
    conn: &'a mut Conn,
    pool: &'a Pool,
    /// An earlier attempt of this operation lost its connection after sending a command, so that
    /// command may have taken effect even though no reply arrived. Operations that are not
    /// idempotent (DELE, RNTO, MKD, RMD) consult this to interpret "not found"/"exists" replies.
    pub reply_lost: bool,
    /// Do not return the connection to the pool, even though the operation succeeded.
    discard: bool,
}

/// How the pool reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Class {
    /// Worth another attempt after a pause.
    pub transient: bool,
    /// The control connection must not be reused: it is unusable, its state is unknown, or a
    /// fresh session is the better bet for the next attempt.
    pub discard: bool,
    /// The connection failed while a command was in flight, so the command may have been
    /// carried out although no reply arrived.
    pub ambiguous: bool,
    /// Retry on a newly opened connection rather than an idle one, which is likely in the same
    /// state as the failed one.
    pub fresh: bool,
}

const PERMANENT: Class = Class {
    transient: false,
    discard: false,
    ambiguous: false,
    fresh: false,
};

impl Pool {
    pub(super) fn new(settings: Settings, max_connections: usize) -> Self {
        Self {
            settings,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_connections)),
            features: OnceLock::new(),
            pasv_only: AtomicBool::new(false),
            epsv_proven: AtomicBool::new(false),
            pasv_proven: AtomicBool::new(false),
            counters: Arc::default(),
            force_list: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            warmed: AtomicBool::new(false),
            max_connections,
            live: Arc::default(),
            logging_in: Arc::default(),
            limit: AtomicUsize::new(max_connections),
            excess: AtomicUsize::new(0),
            lowest: AtomicUsize::new(max_connections),
            growth: Mutex::default(),
            password: password::Password::default(),
        }
    }

    pub(super) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Logins that sent the password.
    pub(super) fn logins(&self) -> u64 {
        self.counters.logins.load(Ordering::Relaxed)
    }

    /// Command batches sent so far, each a round trip, and the commands in them.
    pub(super) fn round_trips(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.round_trips.load(Ordering::Relaxed),
            c.commands.load(Ordering::Relaxed),
        )
    }

    pub(super) fn server(&self) -> &Arc<str> {
        &self.settings.server
    }

    /// Passive replies read while idle, and early stops' replies read after their operation.
    pub(super) fn replies_read_idle(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.ports_idle.load(Ordering::Relaxed),
            c.verdicts_later.load(Ordering::Relaxed),
        )
    }

    /// Transfers on data connections opened ahead, and those the server had closed.
    pub(super) fn data_connections_ahead(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.data_ahead.load(Ordering::Relaxed),
            c.data_ahead_closed.load(Ordering::Relaxed),
        )
    }

    pub(super) fn set_force_list(&self, on: bool) {
        self.force_list.store(on, Ordering::Relaxed);
    }

    /// Runs `op` on a pooled connection in tokio's blocking thread pool.
    ///
    /// The connection permit is awaited asynchronously, so queued operations do not occupy
    /// blocking threads while they wait.
    pub(super) async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, FtpError>
    where
        T: Send + 'static,
        F: FnMut(&mut Session<'_>) -> Result<T, FtpError> + Send + 'static,
    {
        self.grow_back();
        let permit = loop {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|e| self.worker_error(e.to_string()))?;
            if !self.surplus() {
                break permit;
            }
            permit.forget();
        };
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.run_blocking(op, Some(permit)))
            .await
            .map_err(|e| self.worker_error(e.to_string()))?
    }

    /// Like [`Pool::run`], but on the calling thread, for the synchronous API.
    pub(super) fn run_sync<T>(
        self: &Arc<Self>,
        op: impl FnMut(&mut Session<'_>) -> Result<T, FtpError>,
    ) -> Result<T, FtpError> {
        self.grow_back();
        let _permit = loop {
            let permit = futures::executor::block_on(self.permits.acquire())
                .map_err(|e| self.worker_error(e.to_string()))?;
            if !self.surplus() {
                break permit;
            }
            permit.forget();
        };
        self.run_blocking(op, None)
    }

    fn worker_error(&self, message: String) -> FtpError {
        FtpError::Worker {
            server: Arc::clone(&self.settings.server),
            message,
        }
    }

    /// The retry loop: up to `1 + BACKOFF.len()` attempts, each on a checked connection.
    /// `permit`: the operation's, for [`Pool::release`].
    fn run_blocking<T>(
        self: &Arc<Self>,
        mut op: impl FnMut(&mut Session<'_>) -> Result<T, FtpError>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<T, FtpError> {
        self.warm_up();
        let mut reply_lost = false;
        let mut fresh = false;
        let mut attempt = 0;
        // Whether the operation was repeated once already because the server had closed a data
        // connection opened ahead (see `control/ahead.rs`).
        let mut repeated = false;
        loop {
            // The error, whether it came from `op` (rather than from getting a connection,
            // where no command of the operation was sent yet), and whether it came from a data
            // connection opened ahead that the server had closed.
            let (err, from_op, ahead_lost) = match self.checkout(fresh) {
                Ok(mut conn) => {
                    let mut session = Session {
                        conn: &mut conn,
                        pool: self,
                        reply_lost,
                        discard: false,
                    };
                    let result = op(&mut session);
                    let discard = session.discard;
                    let ahead_lost = conn.ftp.take_ahead_lost();
                    match result {
                        Ok(value) => {
                            if !discard && conn.ftp.reusable() {
                                self.release(conn, permit);
                            }
                            return Ok(value);
                        }
                        Err(err) => {
                            // The permit stays: another attempt may follow. A connection whose
                            // data connection opened ahead was lost is fine if still in step.
                            let drop_it = discard || (!ahead_lost && classify(&err).discard);
                            if !drop_it && conn.ftp.reusable() {
                                self.checkin(conn);
                            }
                            (err, true, ahead_lost)
                        }
                    }
                }
                Err(err) => (err, false, false),
            };
            let class = classify(&err);
            // No data connection is opened ahead any more: once, the operation is repeated at
            // once and the attempt not counted. Every command before the failed transfer was
            // answered, so no reply is lost.
            if ahead_lost && !repeated {
                repeated = true;
                fresh = false;
                continue;
            }
            let Some(pause) = BACKOFF.get(attempt).filter(|_| class.transient) else {
                return Err(err);
            };
            std::thread::sleep(*pause);
            attempt += 1;
            reply_lost |= from_op && class.ambiguous;
            fresh = class.fresh;
        }
    }

    /// Returns a connection to the pool once its next transfer is ready (see
    /// [`Control::prepare`]): on a plain thread of its own that holds the operation's `permit`
    /// meanwhile, so that the operation's result is not held up and no other connection is
    /// opened in its place. Without a permit (the synchronous API), at once.
    fn release(self: &Arc<Self>, mut conn: Conn, permit: Option<OwnedSemaphorePermit>) {
        let Some(permit) = permit.filter(|_| conn.ftp.unprepared()) else {
            self.checkin(conn);
            return;
        };
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("repo-ftp-ready".into())
            .spawn(move || {
                let arm = pool.next_passive(&conn);
                conn.ftp.prepare(arm);
                if conn.ftp.reusable() {
                    pool.checkin(conn);
                }
                // Only now may a waiting operation start, and find this connection idle.
                drop(permit);
            });
        // Without a thread the connection is dropped with the closure; the next operation
        // opens another.
        drop(spawned);
    }

    /// An idle connection that still answers `NOOP`, or a new one (always, with `fresh`,
    /// unless the server refuses more: see `limit.rs`).
    fn checkout(&self, fresh: bool) -> Result<Conn, FtpError> {
        let mut refused: Option<Refused> = None;
        loop {
            let idle = if fresh && refused.is_none() {
                None
            } else {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop()
            };
            let Some(mut conn) = idle else {
                match self.connect_or_wait(&mut refused)? {
                    Some(conn) => return Ok(conn),
                    None => continue,
                }
            };
            // A closed connection or a failed NOOP means the server timed the session out or
            // closed it (some do after a download the client stopped early); the connection is
            // dropped, the next tried. So is one holding a data port opened long ago, which the
            // server may close any moment with a reply nobody asked for.
            if conn.ftp.absorb().is_err() || conn.ftp.stale() {
                continue;
            }
            match idle_state(conn.ftp.socket()) {
                Idle::Closed => continue,
                Idle::Quiet if conn.answered.elapsed() < TRUSTED_IDLE => return Ok(conn),
                Idle::Quiet | Idle::Talking => {
                    if conn.ftp.noop().is_ok() {
                        return Ok(conn);
                    }
                }
            }
        }
    }

    fn checkin(&self, mut conn: Conn) {
        conn.answered = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

impl Session<'_> {
    pub(super) fn server(&self) -> &Arc<str> {
        &self.pool.settings.server
    }

    pub(super) fn features(&self) -> Features {
        self.pool.features.get().copied().unwrap_or_default()
    }

    /// Whether directories are listed with `MLSD` (exact sizes and UTC times) or `LIST`.
    pub(super) fn use_mlsd(&self) -> bool {
        self.features().mlst && !self.pool.force_list.load(Ordering::Relaxed)
    }

    /// Do not return this connection to the pool when the operation ends.
    pub(super) fn discard_connection(&mut self) {
        self.discard = true;
    }

    /// Runs a command and attaches the command name, path and server to its error.
    pub(super) fn command<T>(
        &mut self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&mut Control) -> FtpResult<T>,
    ) -> Result<T, FtpError> {
        f(&mut self.conn.ftp).map_err(|source| self.error(op, path, source))
    }

    pub(super) fn error(
        &self,
        op: &'static str,
        path: &str,
        source: suppaftp::FtpError,
    ) -> FtpError {
        FtpError::Command {
            server: Arc::clone(self.server()),
            op,
            path: path.to_string(),
            source,
        }
    }
}

/// The reply code, also for codes suppaftp has no [`suppaftp::Status`] for (such as 521).
pub(super) fn reply_code(response: &Response) -> u32 {
    match response.status.code() {
        0 => {
            let text = String::from_utf8_lossy(&response.body);
            let last = text.trim_end().lines().last().unwrap_or_default();
            last.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
        }
        code => code,
    }
}

/// Decides whether an error is worth retrying and whether its connection can be reused.
pub(super) fn classify(err: &FtpError) -> Class {
    let transient_if = |transient| Class {
        transient,
        ..PERMANENT
    };
    match err {
        // No command was in flight: retrying a refused or dropped connection is safe.
        FtpError::Connect { source, .. } => transient_if(
            matches!(source, suppaftp::FtpError::ConnectionError(_))
                || matches!(source, suppaftp::FtpError::UnexpectedResponse(r) if reply_code(r) == 421),
        ),
        // A rejected login or certificate will not get better by trying again; a server
        // closing (421) or full (see `server_full`) may, unless it speaks of the credentials.
        FtpError::Login { source, .. } => transient_if(match source {
            suppaftp::FtpError::ConnectionError(_) => true,
            suppaftp::FtpError::UnexpectedResponse(r) => match reply_code(r) {
                421 => !about_credentials(r),
                530 => server_full(r),
                _ => false,
            },
            _ => false,
        }),
        FtpError::Tls { source, .. } => {
            transient_if(matches!(source, suppaftp::FtpError::ConnectionError(_)))
        }
        FtpError::Command { source, .. } => classify_protocol(source),
        // The object changed between size check and download, or the data connection ended
        // early: reading again sees a consistent object.
        FtpError::SizeMismatch { .. } => transient_if(true),
        FtpError::Config { .. }
        | FtpError::NotFound { .. }
        | FtpError::AlreadyExists { .. }
        | FtpError::Ambiguous { .. }
        | FtpError::Range { .. }
        | FtpError::Worker { .. } => PERMANENT,
    }
}

/// Words of a refusal saying the server has all the sessions it allows ("421 Too many
/// connections from this IP", ProFTPD's "530 Sorry, the maximum number of clients (2) from your
/// host are already connected"), unless lockout words say it is about failed logins ("530 Too
/// many failed login attempts").
const FULL: [&str; 2] = ["maximum number of", "too many"];
const LOCKOUT: [&str; 4] = ["fail", "incorrect", "ban", "attempt"];
/// Words of a refusal about the credentials: a wrong password, or a lockout or ban.
const CREDENTIALS: [&str; 8] = [
    "login",
    "password",
    "authentic",
    "incorrect",
    "attempt",
    "fail",
    "ban",
    "denied",
];

fn says_any(reply: &Response, words: &[&str]) -> bool {
    let text = String::from_utf8_lossy(&reply.body).to_lowercase();
    words.iter().any(|w| text.contains(w))
}

/// Whether a refused login says the server is full (see [`FULL`]): the sessions may be another
/// process's, or ours just closed and not yet gone on the server, so it is worth a retry, and
/// is taken for a session limit.
pub(super) fn server_full(reply: &Response) -> bool {
    says_any(reply, &FULL) && !says_any(reply, &LOCKOUT)
}

/// Whether a refused login speaks of the credentials ("530 Login incorrect.", "421 Temporarily
/// banned for too many failed login attempts") and not of a full server. Such a login is never
/// retried, nor taken for a session limit: failed logins repeated can get a client banned.
pub(super) fn about_credentials(reply: &Response) -> bool {
    !server_full(reply) && says_any(reply, &CREDENTIALS)
}

fn classify_protocol(err: &suppaftp::FtpError) -> Class {
    use suppaftp::FtpError as E;
    match err {
        // Resets, EOF and timeouts: the control connection's state is unknown.
        E::ConnectionError(_) | E::BadResponse => Class {
            transient: true,
            discard: true,
            ambiguous: true,
            fresh: false,
        },
        E::UnexpectedResponse(r) => match reply_code(r) {
            // 421: the server is closing the session.
            421 => Class {
                transient: true,
                discard: true,
                ..PERMANENT
            },
            // 425: no data connection. Besides network trouble this is how servers that insist
            // on TLS session reuse refuse a connection out of TLS tickets; the pool's other
            // connections are likely out of tickets too, so start a new session.
            425 => Class {
                transient: true,
                discard: true,
                fresh: true,
                ..PERMANENT
            },
            // Transfer aborted, file busy, local error: try again.
            426 | 450 | 451 => Class {
                transient: true,
                ..PERMANENT
            },
            _ => PERMANENT,
        },
        // A failed TLS handshake on a data connection leaves the session mid-transfer.
        E::SecureError(_) | E::DataConnectionAlreadyOpen => Class {
            discard: true,
            ..PERMANENT
        },
        E::InvalidAddress(_) => PERMANENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use suppaftp::Status;

    fn reply(status: Status, body: &str) -> suppaftp::FtpError {
        suppaftp::FtpError::UnexpectedResponse(Response::new(status, body.as_bytes().to_vec()))
    }

    fn command_error(source: suppaftp::FtpError) -> FtpError {
        FtpError::Command {
            server: Arc::from("ftp://u@h:21/"),
            op: "RETR",
            path: "/x".into(),
            source,
        }
    }

    #[test]
    fn reply_code_of_unknown_status_comes_from_the_text() {
        let r = Response::new(Status::Unknown, b"521-a\r\n521 exists\r\n".to_vec());
        assert_eq!(reply_code(&r), 521);
        let r = Response::new(Status::FileUnavailable, b"550 no\r\n".to_vec());
        assert_eq!(reply_code(&r), 550);
        let r = Response::new(Status::Unknown, b"".to_vec());
        assert_eq!(reply_code(&r), 0);
    }

    #[test]
    fn transient_and_permanent_replies() {
        for (status, transient, discard) in [
            (Status::NotAvailable, true, true),
            (Status::CannotOpenDataConnection, true, true),
            (Status::TransferAborted, true, false),
            (Status::RequestFileActionIgnored, true, false),
            (Status::FileUnavailable, false, false),
            (Status::NotLoggedIn, false, false),
        ] {
            let class = classify(&command_error(reply(status, "x")));
            let expected = Class {
                transient,
                discard,
                ambiguous: false,
                fresh: status == Status::CannotOpenDataConnection,
            };
            assert_eq!(class, expected, "{status:?}");
        }
        let io = suppaftp::FtpError::ConnectionError(io::ErrorKind::TimedOut.into());
        assert_eq!(
            classify(&command_error(io)),
            Class {
                transient: true,
                discard: true,
                ambiguous: true,
                fresh: false
            }
        );
        let login = |text: &str| FtpError::Login {
            server: Arc::from("s"),
            source: reply(Status::NotLoggedIn, text),
        };
        assert!(!classify(&login("530 Login incorrect.")).transient);
        let full = "530 Sorry, the maximum number of clients (2) from your host are already \
                    connected.";
        assert!(classify(&login(full)).transient);
        assert!(classify(&login("530 Too many users, try later.")).transient);
        for lockout in [
            "530 Too many failed login attempts, you are temporarily banned",
            "530 Too many login attempts.",
            "421 Temporarily banned for too many failed login attempts",
        ] {
            assert!(!classify(&login(lockout)).transient, "{lockout}");
        }
        for full in [
            "421 Too many connections from this IP.",
            "421 Too many connections, login later",
            "530 Login denied: too many users",
        ] {
            assert!(classify(&login(full)).transient, "{full}");
        }
    }
}
