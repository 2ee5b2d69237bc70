//! Opening control connections (TCP, TLS, login, features), logging in the pool's connections
//! ahead of need, and telling without a round trip whether an idle one was closed.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use suppaftp::rustls::ClientConfig;
use suppaftp::rustls::client::Resumption;
use suppaftp::types::FileType;
use suppaftp::{Mode, RustlsConnector};

use super::{Conn, Control, Features, FtpError, Pool};

/// Limit for establishing a TCP connection, control or data.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Read and write timeout on every socket, so a stalled server surfaces as a (retried) error
/// instead of hanging a worker thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// TLS sessions remembered per control connection for resuming on its data connections.
const SESSION_CACHE_SIZE: usize = 8;

/// What an idle control connection has received since its last reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Idle {
    /// Nothing: as far as we can tell without asking, the session is alive.
    Quiet,
    /// The server closed it (end of stream or an error): unusable.
    Closed,
    /// Bytes nobody asked for, such as a 421 before the server closes an idle session (or a
    /// late TLS record): only a `NOOP` tells whether it still works.
    Talking,
}

/// Looks at an idle control connection's socket without reading from it or waiting.
pub(super) fn idle_state(ftp: &Control) -> Idle {
    socket_state(&ftp.get_ref())
}

fn socket_state(socket: &TcpStream) -> Idle {
    if socket.set_nonblocking(true).is_err() {
        return Idle::Closed;
    }
    let mut byte = [0u8; 1];
    let state = match socket.peek(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Idle::Quiet,
        Ok(0) | Err(_) => Idle::Closed,
        Ok(_) => Idle::Talking,
    };
    if socket.set_nonblocking(false).is_err() {
        return Idle::Closed;
    }
    state
}

impl Pool {
    /// Logs in the pool's other connections in the background, all at once, when the first
    /// operation starts. A login costs about five round trips (banner, USER, PASS, TYPE, and
    /// FEAT or OPTS); without this, each operation that first runs concurrently with others
    /// pays them in turn, and over a wide-area link that is most of a short command's time.
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
            let pool = Arc::clone(self);
            let login = move || {
                let _permit = permit;
                if let Ok(conn) = pool.connect() {
                    pool.checkin(conn);
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
        let s = &self.settings;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let connect_error = |source| FtpError::Connect {
            server: Arc::clone(&s.server),
            source,
        };
        let stream = open_tcp(&s.host, s.port)
            .map_err(|e| connect_error(suppaftp::FtpError::ConnectionError(e)))?;
        let mut ftp = Control::connect_with_stream(stream)
            .map_err(connect_error)?
            .passive_stream_builder(|addr| {
                data_tcp(addr).map_err(suppaftp::FtpError::ConnectionError)
            });
        // Use the control connection's address for PASV data connections: servers behind NAT
        // announce private addresses, and a server must not steer us to a third host anyway.
        ftp.set_passive_nat_workaround(true);
        let epsv = !self.pasv_only.load(Ordering::Relaxed);
        ftp.set_mode(if epsv {
            Mode::ExtendedPassive
        } else {
            Mode::Passive
        });
        if let Some(tls) = &s.tls {
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
            let mut config = ClientConfig::clone(tls);
            config.resumption = Resumption::in_memory_sessions(SESSION_CACHE_SIZE);
            ftp = ftp
                .into_secure(RustlsConnector::from(Arc::new(config)), &s.host)
                .map_err(|source| FtpError::Tls {
                    server: Arc::clone(&s.server),
                    source,
                })?;
        }
        ftp.login(s.user.as_str(), s.password.as_str())
            .map_err(|source| FtpError::Login {
                server: Arc::clone(&s.server),
                source,
            })?;
        // Binary mode: in the default ASCII mode servers may rewrite line endings and refuse
        // REST and SIZE.
        ftp.transfer_type(FileType::Binary)
            .map_err(|source| FtpError::Command {
                server: Arc::clone(&s.server),
                op: "TYPE I",
                path: String::new(),
                source,
            })?;
        let features = match self.features.get() {
            Some(features) => *features,
            None => {
                let features = ftp.feat().map(|f| {
                    let has = |name: &str| f.keys().any(|k| k.eq_ignore_ascii_case(name));
                    Features {
                        mlst: has("MLST"),
                        mdtm: has("MDTM"),
                        utf8: has("UTF8"),
                    }
                });
                // A server without FEAT supports none of the optional commands we would use.
                *self.features.get_or_init(|| features.unwrap_or_default())
            }
        };
        // Object names are UTF-8. A server that announces UTF8 uses it for path names (RFC
        // 2640), so asking costs a round trip per login for nothing; others are asked, and those
        // that do not know the option use it anyway or refuse it harmlessly, so the reply does
        // not matter.
        if !features.utf8 {
            let _ = ftp.opts("UTF8", Some("ON"));
        }
        Ok(Conn {
            ftp,
            epsv,
            answered: Instant::now(),
        })
    }
}

/// Connects to the first reachable address of `host:port`.
fn open_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                configure(&stream)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    }))
}

/// Opens a passive-mode data connection with the same timeouts as the control connection.
fn data_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    configure(&stream)?;
    Ok(stream)
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn socket_state_tells_quiet_talking_and_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut theirs, _) = listener.accept().unwrap();
        assert_eq!(socket_state(&ours), Idle::Quiet);
        theirs.write_all(b"421 Timeout.\r\n").unwrap();
        let wait = Instant::now();
        while socket_state(&ours) == Idle::Quiet && wait.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(socket_state(&ours), Idle::Talking);
        // The check consumed nothing.
        let mut line = [0u8; 14];
        io::Read::read_exact(&mut &ours, &mut line).unwrap();
        assert_eq!(&line, b"421 Timeout.\r\n");
        drop(theirs);
        let wait = Instant::now();
        while socket_state(&ours) == Idle::Quiet && wait.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(socket_state(&ours), Idle::Closed);
    }
}
