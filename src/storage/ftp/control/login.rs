//! Opening a control connection: TCP, the greeting, explicit TLS, and the login in one round
//! trip (`PBSZ`, `PROT`, `USER`, `PASS`, `TYPE I`, `FEAT` or `OPTS UTF8`, and `EPSV` or `PASV`
//! for the first transfer, sent together).

use std::cell::Cell;
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use suppaftp::rustls::ClientConfig;
use suppaftp::{DataStream, FtpError, FtpResult, RustlsConnector, TlsConnector};

use super::data::passive_command;
use super::{Control, Counters, Passive, code};
use crate::storage::ftp::pool::Features;

/// Limit for establishing a TCP connection, control or data.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Read and write timeout on every socket, so a stalled server surfaces as a (retried) error
/// instead of hanging a worker thread forever.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a login failed; the pool reports and retries each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage::ftp) enum Stage {
    Connect,
    Tls,
    Login,
    /// `TYPE I` refused.
    Binary,
}

/// What a login needs.
pub(in crate::storage::ftp) struct Login<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    /// Explicit TLS (`AUTH TLS`, then `PBSZ 0`/`PROT P`) with this configuration when set.
    pub tls: Option<Arc<ClientConfig>>,
    /// The server's features if an earlier connection asked already, else `FEAT` is sent.
    pub features: Option<Features>,
    /// Asks for a data port with the login, for the first transfer (see [`Control::arm`]).
    pub arm: Passive,
    pub counters: Arc<Counters>,
    /// Lets the password go out (see [`Gate`]); without one it goes at once.
    pub gate: Option<&'a dyn Gate>,
}

/// Lets one login at a time send the password until one proves it good (see
/// `pool/password.rs`): a wrong password then costs one failed login, not one per connection.
pub(in crate::storage::ftp) trait Gate {
    /// Lets the password go now, if it is proven good or this login is the one to try it;
    /// `None` while another login tries it. An error: it proved wrong (that login's refusal).
    fn try_enter(&self) -> Option<FtpResult<Entry>>;
    /// [`Gate::try_enter`], waiting while another login tries it.
    fn enter(&self) -> FtpResult<Entry>;
    /// Whether this login never waits (an operation's own): it enters before it connects, so
    /// that [`Gate::leave`] hears of any failure, even one before the password.
    fn eager(&self) -> bool;
    /// How the login that entered as [`Entry::Trying`] ended.
    fn leave(&self, failure: Option<&(Stage, FtpError)>);
}

/// Why a login may send the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage::ftp) enum Entry {
    /// Another login proved it good.
    Proven,
    /// This login tries it; it reports the outcome with [`Gate::leave`].
    Trying,
}

impl Login<'_> {
    /// Connects and logs in: two round trips on plain FTP (TCP, then the greeting and the
    /// login together), five on FTPS (TCP, greeting, `AUTH TLS`, the handshake, login). A server that does not announce UTF8 is asked
    /// to use it (RFC 2640); one that does not know the option uses it anyway or refuses
    /// harmlessly, so that reply does not matter.
    pub(in crate::storage::ftp) fn run(self) -> Result<(Control, Features), (Stage, FtpError)> {
        let trying = Cell::new(false);
        let result = self.log_in(&trying);
        if let Some(gate) = self.gate.filter(|_| trying.get()) {
            gate.leave(result.as_ref().err());
        }
        result
    }

    fn log_in(&self, trying: &Cell<bool>) -> Result<(Control, Features), (Stage, FtpError)> {
        let at = |stage| move |e| (stage, e);
        let entered = match self.gate {
            Some(gate) if gate.eager() => self.gate_now(trying)?,
            _ => false,
        };
        let tcp = open_tcp(self.host, self.port)
            .map_err(|e| (Stage::Connect, FtpError::ConnectionError(e)))?;
        let mut control = Control {
            reader: BufReader::new(DataStream::Tcp(tcp)),
            owed: 1,
            broken: false,
            tls: None,
            counters: Arc::clone(&self.counters),
            arming: None,
            verdict: false,
            ready: None,
            ahead_lost: false,
        };
        let mut batch = Vec::new();
        if self.tls.is_some() {
            batch.extend(["PBSZ 0".to_string(), "PROT P".to_string()]);
        }
        batch.push(format!("USER {}", self.user));
        batch.push(format!("PASS {}", self.password));
        batch.push("TYPE I".to_string());
        match self.features {
            None => batch.push("FEAT".to_string()),
            Some(f) if !f.utf8 => batch.push("OPTS UTF8 ON".to_string()),
            Some(_) => {}
        }
        batch.push(passive_command(self.arm).to_string());
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        let mut sent = Instant::now();
        // On plain FTP the login goes out with the TCP connection, not a round trip later
        // after the greeting: servers read commands only once they have greeted, and the
        // greeting is still read and checked first (a refusal such as 421 ends the login
        // before any of the replies to the batch is taken for one). FTPS first needs the
        // greeting, AUTH TLS and the handshake.
        // A login that has to wait for another to prove the password reads the greeting
        // meanwhile: a server refusing it (421) then ends it at once.
        let now = self.tls.is_none() && (entered || self.gate_now(trying)?);
        if now {
            self.count_login();
            control.send(&batch).map_err(at(Stage::Login))?;
        }
        control.expect(&[220]).map_err(at(Stage::Connect))?;
        if self.tls.is_none() && !now {
            self.gate_wait(trying)?;
            sent = Instant::now();
            self.count_login();
            control.send(&batch).map_err(at(Stage::Login))?;
        }
        if let Some(tls) = &self.tls {
            control
                .command("AUTH TLS", &[234])
                .map_err(at(Stage::Tls))?;
            control = control.secure(tls, self.host).map_err(at(Stage::Tls))?;
            if !entered {
                self.gate_wait(trying)?;
            }
            sent = Instant::now();
            self.count_login();
            control.send(&batch).map_err(at(Stage::Tls))?;
        }
        if self.tls.is_some() {
            control.expect(&[200]).map_err(at(Stage::Tls))?;
            control.expect(&[200]).map_err(at(Stage::Tls))?;
        }
        control.authenticate().map_err(at(Stage::Login))?;
        // Binary mode: in the default ASCII mode servers may rewrite line endings and refuse
        // REST and SIZE.
        control.expect(&[200]).map_err(at(Stage::Binary))?;
        let features = match self.features {
            Some(features) if !features.utf8 => {
                control.reply().map_err(at(Stage::Login))?;
                features
            }
            Some(features) => features,
            None => control.features().map_err(at(Stage::Login))?,
        };
        // The passive command's reply is next, read with the next command's.
        control.arming = Some((self.arm, sent));
        if self.features.is_none() && !features.utf8 {
            let _ = control.command("OPTS UTF8 ON", &[200]);
        }
        // The passive reply came with the others: read now, the first transfer has its port
        // (a failed read leaves the connection out of step, refused below).
        let _ = control.absorb();
        if !control.reusable() {
            return Err((Stage::Login, FtpError::BadResponse));
        }
        Ok((control, features))
    }
}

impl Login<'_> {
    /// Whether the password may go out at once (see [`Gate`]).
    fn gate_now(&self, trying: &Cell<bool>) -> Result<bool, (Stage, FtpError)> {
        let Some(gate) = self.gate else {
            return self.sending(trying, Entry::Proven).map(|()| true);
        };
        match gate.try_enter() {
            None => Ok(false),
            Some(entry) => self
                .sending(trying, entry.map_err(|e| (Stage::Login, e))?)
                .map(|()| true),
        }
    }

    /// Waits until the password may go out (see [`Gate`]).
    fn gate_wait(&self, trying: &Cell<bool>) -> Result<(), (Stage, FtpError)> {
        let entry = match self.gate {
            None => Entry::Proven,
            Some(gate) => gate.enter().map_err(|e| (Stage::Login, e))?,
        };
        self.sending(trying, entry)
    }

    fn sending(&self, trying: &Cell<bool>, entry: Entry) -> Result<(), (Stage, FtpError)> {
        trying.set(entry == Entry::Trying);
        Ok(())
    }

    fn count_login(&self) {
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
    }
}

impl Control {
    /// Continues over TLS after the server's `234`.
    fn secure(self, tls: &Arc<ClientConfig>, host: &str) -> FtpResult<Control> {
        // Anything the server sent after its 234 would be plaintext it should not have sent.
        if !self.reader.buffer().is_empty() {
            return Err(FtpError::BadResponse);
        }
        let tcp = self.reader.into_inner().into_tcp_stream()?;
        let stream = RustlsConnector::from(Arc::clone(tls)).connect(host, tcp)?;
        Ok(Control {
            reader: BufReader::new(DataStream::Ssl(Box::new(stream))),
            tls: Some((Arc::clone(tls), host.to_string())),
            ..self
        })
    }

    /// The replies to `USER` and `PASS`: 331 then 230 (or 202), or 230 at once, when the
    /// server answers the needless `PASS` with anything.
    fn authenticate(&mut self) -> FtpResult<()> {
        let user = self.expect(&[230, 232, 331])?;
        if code(&user) == 331 {
            self.expect(&[230, 202])?;
        } else {
            self.reply()?;
        }
        Ok(())
    }

    /// The reply to `FEAT`; a server without it supports none of the optional commands.
    fn features(&mut self) -> FtpResult<Features> {
        let reply = self.reply()?;
        if code(&reply) != 211 {
            return Ok(Features::default());
        }
        let text = String::from_utf8_lossy(&reply.body);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(' ')?.split_whitespace().next())
            .collect();
        let has = |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
        Ok(Features {
            mlst: has("MLST"),
            mdtm: has("MDTM"),
            utf8: has("UTF8"),
        })
    }
}

/// Connects to the first reachable address of `host:port`.
pub(in crate::storage::ftp) fn open_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
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
pub(super) fn data_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
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
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;

    /// The login commands reach the server before it greets: one round trip less per
    /// connection. The greeting is still read first.
    #[test]
    fn plain_login_goes_out_before_the_greeting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            let mut first = String::new();
            // Nothing sent yet: the client must not have waited for a greeting.
            reader.read_line(&mut first).unwrap();
            let mut rest = Vec::new();
            for _ in 0..4 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                rest.push(line.trim_end().to_string());
            }
            socket
                .write_all(
                    b"220 hello\r\n331 pw\r\n230 in\r\n200 binary\r\n211-Features:\r\n MLST type*;\r\n UTF8\r\n211 End\r\n229 Entering Extended Passive Mode (|||2121|)\r\n",
                )
                .unwrap();
            (first.trim_end().to_string(), rest)
        });
        let login = login(port, None, &Arc::default());
        let (control, features) = login.run().map_err(|(_, e)| e).unwrap();
        let (first, rest) = server.join().unwrap();
        assert_eq!(first, "USER u");
        assert_eq!(rest, ["PASS p", "TYPE I", "FEAT", "EPSV"]);
        assert!(features.mlst && features.utf8);
        assert!(control.reusable());
        assert_eq!(control.counters.round_trips.load(Ordering::Relaxed), 1);
    }

    /// A gate that records what it heard.
    #[derive(Default)]
    struct Recorder {
        wrong: bool,
        left: std::sync::Mutex<Vec<bool>>,
    }

    impl Gate for Recorder {
        fn try_enter(&self) -> Option<FtpResult<Entry>> {
            Some(self.enter())
        }
        fn enter(&self) -> FtpResult<Entry> {
            if self.wrong {
                return Err(FtpError::BadResponse);
            }
            Ok(Entry::Trying)
        }
        fn eager(&self) -> bool {
            true
        }
        fn leave(&self, failure: Option<&(Stage, FtpError)>) {
            self.left.lock().unwrap().push(failure.is_some());
        }
    }

    /// A plain login as user `u` with password `p` to 127.0.0.1:`port`.
    fn login<'a>(port: u16, gate: Option<&'a dyn Gate>, counters: &Arc<Counters>) -> Login<'a> {
        Login {
            host: "127.0.0.1",
            port,
            user: "u",
            password: "p",
            tls: None,
            features: None,
            arm: Passive::Epsv,
            counters: Arc::clone(counters),
            gate,
        }
    }

    /// An operation's own login enters the gate before it connects, so that a failure before
    /// the password (here the connection refused; over TLS a refusal at the greeting) is
    /// reported, and the logins made ahead waiting at the gate may try (they waited 120 s).
    /// A password proven wrong fails a login before it connects.
    #[test]
    fn an_eager_login_reports_failures_before_the_password() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let counters = Arc::default();
        let gate = Recorder::default();
        assert!(login(port, Some(&gate), &counters).run().is_err());
        assert_eq!(
            *gate.left.lock().unwrap(),
            [true],
            "the failure was reported"
        );
        assert_eq!(
            counters.logins.load(Ordering::Relaxed),
            0,
            "no password sent"
        );

        let wrong = Recorder {
            wrong: true,
            ..Recorder::default()
        };
        let (stage, _) = login(port, Some(&wrong), &counters).run().err().unwrap();
        assert_eq!(stage, Stage::Login);
        assert!(wrong.left.lock().unwrap().is_empty());
    }
}
