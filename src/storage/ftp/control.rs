//! The FTP control connection: commands out, replies in, several commands per round trip.
//!
//! suppaftp sends a command and waits for its reply before the next one can be written, and
//! keeps its control stream to itself. Over a wide-area link every wait is a round trip, and an
//! upload was five of them. RFC 959 servers read commands one after another from the stream and
//! answer each in order, so a client may send several at once when it needs none of the earlier
//! replies to write the later commands: the login, `EPSV` + `RETR`, `REST` + `RETR`, `RNFR` +
//! `RNTO`. This channel does that and reads every reply, in order.
//!
//! It owes the server's replies to the commands it sent. A connection that still owes some (an
//! operation ended early) or whose replies did not fit the commands (say, a transfer started
//! although the command before it failed) is [`Control::reusable`] no more: the pool drops it
//! rather than read the next operation's replies out of step. TLS and the data streams are
//! suppaftp's types ([`RustlsConnector`], [`DataStream`]); `login` (connecting, TLS, login) and `data`
//! (passive data connections and transfers) are the submodules.

mod ahead;
mod data;
mod login;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use suppaftp::rustls::ClientConfig;
use suppaftp::types::Response;
use suppaftp::{DataStream, FtpError, FtpResult, RustlsConnector, Status, TlsConnector};

use data::Ready;
pub(super) use data::{Passive, Step, Transfer};
pub(super) use login::{Entry, Gate, Login, Stage};

use super::listing::parse_mlsx_time;

/// The control or a data connection, plain or TLS (suppaftp's rustls stream, which sends
/// close_notify when dropped).
type Stream = DataStream<<RustlsConnector as TlsConnector>::Stream>;

/// The most bytes one reply may have; a `FEAT` or `MLST` reply is a few hundred.
const MAX_REPLY: usize = 256 * 1024;

/// What the pool's connections have sent, for diagnostics and tests.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Batches of commands written, each followed by a wait for replies: round trips.
    pub round_trips: AtomicU64,
    /// Logins that sent the password.
    pub logins: AtomicU64,
    /// Commands sent.
    pub commands: AtomicU64,
    /// Replies to passive commands read while the connection was idle (see
    /// [`Control::prepare`]).
    pub ports_idle: AtomicU64,
    /// Transfers stopped early whose final reply was read after their operation returned.
    pub verdicts_later: AtomicU64,
    /// Transfers that found their data connection opened ahead (see `data.rs`).
    pub data_ahead: AtomicU64,
    /// Data connections opened ahead that the server had closed by the time they were needed:
    /// once there is one, the pool opens no more ahead.
    pub data_ahead_closed: AtomicU64,
}

/// A logged-in control connection.
pub(super) struct Control {
    reader: BufReader<Stream>,
    /// Replies due for commands sent (and the greeting) but not read yet.
    owed: usize,
    /// The replies no longer fit the commands, or reading one failed.
    broken: bool,
    /// The TLS configuration and server name for data connections, on FTPS.
    tls: Option<(Arc<ClientConfig>, String)>,
    counters: Arc<Counters>,
    /// A passive command sent ahead for the next transfer (when), its reply not read yet.
    arming: Option<(Passive, Instant)>,
    /// The final reply of a transfer stopped early is still to be read (see
    /// [`Control::abandon`]); it comes before the armed passive command's.
    verdict: bool,
    /// The data port that reply announced (see `data.rs`).
    ready: Option<Ready>,
    /// The last transfer failed because the server had closed its data connection opened
    /// ahead (see `ahead.rs`): the operation is worth repeating at once.
    ahead_lost: bool,
}

impl Control {
    /// Whether the connection can run another operation: every reply read, all of them fitting.
    pub(super) fn reusable(&self) -> bool {
        self.owed == usize::from(self.arming.is_some()) + usize::from(self.verdict) && !self.broken
    }

    /// The control socket, to look at an idle connection's state without a round trip.
    pub(super) fn socket(&self) -> &TcpStream {
        self.reader.get_ref().get_ref()
    }

    /// Sends `commands` in one write; their replies are owed from then on.
    ///
    /// Nothing is sent if a command contains a line break, which would smuggle in another
    /// command (object names come from callers).
    pub(super) fn send(&mut self, commands: &[&str]) -> FtpResult<()> {
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        self.write(commands)
    }

    /// [`Control::send`] without counting a round trip: for commands whose replies are read
    /// with those of later ones.
    fn write(&mut self, commands: &[&str]) -> FtpResult<()> {
        self.in_step()?;
        let mut batch = Vec::new();
        for command in commands {
            if command.contains(['\r', '\n', '\0']) {
                return Err(refused_locally(command));
            }
            batch.extend_from_slice(command.as_bytes());
            batch.extend_from_slice(b"\r\n");
        }
        self.owed += commands.len();
        let count = commands.len() as u64;
        self.counters.commands.fetch_add(count, Ordering::Relaxed);
        let stream = self.reader.get_mut();
        let written = stream.write_all(&batch).and_then(|()| stream.flush());
        written.map_err(|e| self.fail(FtpError::ConnectionError(e)))
    }

    /// Reads the next reply, whatever its code.
    pub(super) fn reply(&mut self) -> FtpResult<Response> {
        self.absorb()?;
        self.read()
    }

    /// Reads the next reply off the connection.
    fn read(&mut self) -> FtpResult<Response> {
        self.in_step()?;
        match read_reply(&mut self.reader) {
            Ok(reply) => {
                self.owed = self.owed.saturating_sub(1);
                Ok(reply)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads the next reply and fails unless its code is one of `codes`.
    pub(super) fn expect(&mut self, codes: &[u32]) -> FtpResult<Response> {
        let reply = self.reply()?;
        if codes.contains(&code(&reply)) {
            Ok(reply)
        } else {
            Err(FtpError::UnexpectedResponse(reply))
        }
    }

    /// One command, one reply with one of `codes`.
    pub(super) fn command(&mut self, command: &str, codes: &[u32]) -> FtpResult<Response> {
        self.send(&[command])?;
        self.expect(codes)
    }

    /// Reads the replies to commands that must all have been refused, after an earlier command
    /// of their batch failed. Any other reply, or a failure, leaves the connection out of step.
    pub(super) fn settle(&mut self, count: usize) {
        for _ in 0..count {
            match self.reply() {
                Ok(reply) if code(&reply) >= 400 => {}
                _ => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    /// Fails once the connection is out of step: a reply read now might answer another command.
    fn in_step(&self) -> FtpResult<()> {
        if self.broken {
            return Err(FtpError::ConnectionError(io::Error::other(
                "the control connection is out of step after an unexpected reply",
            )));
        }
        Ok(())
    }

    /// Marks the connection out of step, passing `e` on.
    pub(super) fn fail(&mut self, e: FtpError) -> FtpError {
        self.broken = true;
        e
    }

    pub(super) fn noop(&mut self) -> FtpResult<()> {
        self.command("NOOP", &[200]).map(drop)
    }

    pub(super) fn mkdir(&mut self, path: &str) -> FtpResult<()> {
        self.command(&format!("MKD {path}"), &[257]).map(drop)
    }

    pub(super) fn rmdir(&mut self, path: &str) -> FtpResult<()> {
        self.command(&format!("RMD {path}"), &[250, 200]).map(drop)
    }

    pub(super) fn rm(&mut self, path: &str) -> FtpResult<()> {
        self.command(&format!("DELE {path}"), &[250, 200]).map(drop)
    }

    /// The facts line of an `MLST` reply (RFC 3659 §7.2: the reply's second line).
    pub(super) fn mlst(&mut self, path: &str) -> FtpResult<String> {
        let reply = self.command(&format!("MLST {path}"), &[250])?;
        let text = String::from_utf8_lossy(&reply.body);
        match text.lines().nth(1).map(str::trim) {
            Some(line) if !line.is_empty() => Ok(line.to_string()),
            _ => Err(FtpError::BadResponse),
        }
    }

    /// `SIZE`: `213 <bytes>`.
    pub(super) fn size(&mut self, path: &str) -> FtpResult<u64> {
        let reply = self.command(&format!("SIZE {path}"), &[213])?;
        last_word(&reply)
            .and_then(|w| w.parse().ok())
            .ok_or(FtpError::BadResponse)
    }

    /// `MDTM`: `213 YYYYMMDDHHMMSS[.sss]`, in UTC.
    pub(super) fn mdtm(&mut self, path: &str) -> FtpResult<DateTime<Utc>> {
        let reply = self.command(&format!("MDTM {path}"), &[213])?;
        last_word(&reply)
            .and_then(|w| parse_mlsx_time(&w))
            .ok_or(FtpError::BadResponse)
    }
}

/// The reply's code (suppaftp's [`Status`] has no variant for some, such as 521).
pub(super) fn code(reply: &Response) -> u32 {
    super::pool::reply_code(reply)
}

/// The last word of a one-line reply such as `213 1234`.
fn last_word(reply: &Response) -> Option<String> {
    let text = String::from_utf8_lossy(&reply.body);
    text.split_whitespace().nth(1).map(str::to_string)
}

/// The error for a command that is not sent: a 501 ("syntax error in parameters"), which is
/// what a server would answer and what makes the pool give up rather than retry.
fn refused_locally(command: &str) -> FtpError {
    let verb = command.split(' ').next().unwrap_or_default();
    let text = format!("501 not sent: the {verb} argument contains a line break or NUL\r\n");
    FtpError::UnexpectedResponse(Response::new(Status::from(501), text.into_bytes()))
}

/// Reads one reply, single- or multi-line (RFC 959 §4.2): lines up to one that starts with
/// three digits and a space. At most [`MAX_REPLY`] bytes are read.
fn read_reply(reader: &mut impl BufRead) -> FtpResult<Response> {
    let mut body = Vec::new();
    loop {
        let start = body.len();
        let room = (MAX_REPLY - start) as u64 + 1;
        let read = reader
            .take(room)
            .read_until(b'\n', &mut body)
            .map_err(FtpError::ConnectionError)?;
        if read == 0 {
            let eof = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            );
            return Err(FtpError::ConnectionError(eof));
        }
        if body.len() > MAX_REPLY {
            return Err(FtpError::ConnectionError(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent a reply of over {MAX_REPLY} bytes"),
            )));
        }
        let line = &body[start..];
        let coded = line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit);
        if start == 0 && !(coded && matches!(line[3], b' ' | b'-')) {
            return Err(FtpError::BadResponse);
        }
        if coded && line[3] == b' ' {
            let code = line[..3]
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            return Ok(Response::new(Status::from(code), body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> FtpResult<Response> {
        read_reply(&mut io::Cursor::new(bytes.to_vec()))
    }

    #[test]
    fn replies_single_and_multi_line() {
        let r = read(b"226 Done.\r\n150 next").unwrap();
        assert_eq!(code(&r), 226);
        assert_eq!(r.body, b"226 Done.\r\n");
        let r = read(b"211-Features:\r\n MLST type*;\r\n 211 not the end\r\n211 End\r\n").unwrap();
        assert_eq!(code(&r), 211);
        assert!(String::from_utf8_lossy(&r.body).contains("MLST"));
        let r = read(b"521 exists\r\n").unwrap();
        assert_eq!(code(&r), 521);
    }

    #[test]
    fn bad_and_endless_replies_fail_without_reading_on() {
        assert!(matches!(read(b"hello\r\n"), Err(FtpError::BadResponse)));
        assert!(matches!(read(b"22"), Err(FtpError::BadResponse)));
        assert!(matches!(read(b""), Err(FtpError::ConnectionError(_))));
        assert!(matches!(
            read(b"211-a\r\n b\r\n"),
            Err(FtpError::ConnectionError(_))
        ));
        let mut endless = b"211-x\r\n".to_vec();
        endless.extend(b" line\r\n".repeat(MAX_REPLY / 7 + 1));
        assert!(matches!(read(&endless), Err(FtpError::ConnectionError(_))));
    }

    #[test]
    fn line_breaks_in_arguments_are_never_sent() {
        let e = refused_locally("RETR a\r\nDELE b");
        assert!(
            matches!(&e, FtpError::UnexpectedResponse(r) if code(r) == 501),
            "{e}"
        );
    }
}
