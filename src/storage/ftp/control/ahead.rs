//! Data connections opened ahead, while the control connection is idle, and what a transfer on
//! one does when the server closed it.
//!
//! A server that accepts a data connection before the transfer command (pyftpdlib does) is free
//! to close it while it waits. A close the transfer sees before sending its command is harmless:
//! it asks for a new port. A close that crosses the command is not: the server then answers
//! `425` or `426`, or `150` and waits for a data connection that never comes, and the transfer
//! on the closed connection moves nothing (a download reads no byte, an upload's bytes are
//! reset). So a transfer on a connection opened ahead waits for the server's replies watchfully.
//! It turns suspect when it moved nothing, when the server closes the data connection before
//! its first reply (see [`Look`]) or resets an upload's: then each reply gets [`SUSPECT_WAIT`]
//! rather than the minute any reply gets, and a `425`/`426`, an out-of-step reply or no reply
//! means the connection opened ahead was lost. The pool then opens no more ahead, and repeats
//! the operation at once (see [`Control::take_ahead_lost`]), which also gets the server's word
//! if it had another reason.

use std::io::{self, BufRead, ErrorKind};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use suppaftp::types::Response;
use suppaftp::{FtpError, FtpResult};

use super::data::{Ready, Transfer};
use super::login::{IO_TIMEOUT, data_tcp};
use super::{Control, code};
use crate::storage::ftp::idle::{Idle, idle_state};

/// How long a suspect transfer (see the module comment) waits for each reply. A server that
/// took the transfer sends its verdict as it closes the data connection, so this is ample; a
/// server that merely answers slowly costs a new connection and no more data connections
/// opened ahead, nothing else. A server that closed the connection and waits for another
/// without a word costs this once per pool.
const SUSPECT_WAIT: Duration = Duration::from_secs(5);
/// How often a transfer waiting for its verdict looks whether its data connection was reset.
const SLICE: Duration = Duration::from_millis(20);

/// What a transfer on a data connection opened ahead has shown so far.
pub(super) struct Watch {
    /// Its data connection, looked at while a reply is awaited.
    data: Option<TcpStream>,
    look: Look,
    /// The transfer moved nothing, a write to its data connection failed, or the look found
    /// the server done with it.
    suspect: bool,
}

/// What of the data connection makes a transfer suspect while it waits for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// Before the transfer command's first reply, when nothing was sent on it: the server
    /// closing it (a server that took the transfer sends the `150` first).
    Closed,
    /// After an upload's last byte, the connection half-closed: a reset (the server never read
    /// the bytes; one that did closes it, and sends its verdict then).
    Reset,
}

impl Watch {
    pub(super) fn new(data: Option<TcpStream>, look: Look, suspect: bool) -> Self {
        Self {
            data,
            look,
            suspect,
        }
    }

    /// Whether the look finds the server done with the data connection.
    fn done(&self) -> bool {
        let Some(data) = &self.data else {
            return false;
        };
        match self.look {
            Look::Closed => idle_state(data) == Idle::Closed,
            Look::Reset => !matches!(data.take_error(), Ok(None)),
        }
    }
}

impl Control {
    /// Opens the data connection to the port the server opened ahead, while this connection is
    /// idle: the transfer command then finds it open, and the server starts sending at once
    /// instead of a round trip later, once the connection's handshake is through. curl does
    /// the same. Plain FTP only: over TLS the data connection's handshake needs the server,
    /// which runs it only for a transfer. Never again once the server closed one.
    pub(super) fn connect_ahead(&mut self) {
        if !self.ahead_allowed() {
            return;
        }
        let Some(ready) = self.ready.as_mut().filter(|r| r.data.is_none()) else {
            return;
        };
        match data_tcp(ready.addr) {
            Ok(tcp) => ready.data = Some(tcp),
            // The port is gone; the next transfer asks for another.
            Err(_) => self.ready = None,
        }
    }

    /// Whether data connections are opened ahead on this pool: plain FTP, and no server close
    /// of one seen yet.
    pub(super) fn ahead_allowed(&self) -> bool {
        self.tls.is_none() && self.counters.data_ahead_closed.load(Ordering::Relaxed) == 0
    }

    /// Whether the data connection opened ahead for `ready`, if any, may carry the next
    /// transfer: still open, quiet (a server writes nothing before the command), and opened
    /// before this pool saw a server close one. A closed or talking one is counted.
    pub(super) fn usable_ahead(&self, ready: &Ready) -> bool {
        let Some(tcp) = &ready.data else {
            return true;
        };
        if !self.ahead_allowed() {
            return false;
        }
        if idle_state(tcp) == Idle::Quiet {
            return true;
        }
        self.note_ahead_closed();
        false
    }

    /// Counts a data connection opened ahead that the server closed: no more are opened.
    pub(super) fn note_ahead_closed(&self) {
        self.counters
            .data_ahead_closed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The transfer failed because the server closed its data connection opened ahead.
    fn lost_ahead(&mut self) {
        self.note_ahead_closed();
        self.ahead_lost = true;
    }

    /// Whether the last operation failed because the server closed a data connection opened
    /// ahead (then no more are opened, so repeating it at once meets no such failure again);
    /// clears it.
    pub(in crate::storage::ftp) fn take_ahead_lost(&mut self) -> bool {
        std::mem::take(&mut self.ahead_lost)
    }

    /// The next reply of a transfer on a data connection opened ahead (with `watch`), or of any
    /// other transfer (without).
    pub(super) fn read_watched(&mut self, watch: Option<&mut Watch>) -> FtpResult<Response> {
        if let Some(watch) = watch {
            self.absorb()?;
            self.in_step()?;
            if let Err((lost, e)) = self.await_reply(watch) {
                if lost {
                    self.lost_ahead();
                }
                return Err(self.fail(FtpError::ConnectionError(e)));
            }
        }
        self.reply()
    }

    /// Waits for the next reply: at most [`IO_TIMEOUT`], or [`SUSPECT_WAIT`] once the transfer
    /// is suspect (see the module comment). The error says whether the data connection opened
    /// ahead was lost (no reply in time) rather than the control connection.
    fn await_reply(&mut self, watch: &mut Watch) -> Result<(), (bool, io::Error)> {
        if !self.reader.buffer().is_empty() {
            return Ok(());
        }
        let socket = self.socket().try_clone().map_err(|e| (false, e))?;
        socket
            .set_read_timeout(Some(SLICE))
            .map_err(|e| (false, e))?;
        let since = Instant::now();
        let mut suspect_since = watch.suspect.then_some(since);
        let waited = loop {
            match self.reader.fill_buf() {
                Ok(_) => break Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break Err((false, e)),
            }
            if suspect_since.is_none() && watch.done() {
                watch.suspect = true;
                suspect_since = Some(Instant::now());
            }
            let (from, limit) = match suspect_since {
                Some(t) => (t, SUSPECT_WAIT),
                None => (since, IO_TIMEOUT),
            };
            if from.elapsed() >= limit {
                break Err((
                    true,
                    io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "no reply to a transfer in {} s (the server may have closed the \
                             data connection opened ahead)",
                            limit.as_secs()
                        ),
                    ),
                ));
            }
        };
        let restored = socket.set_read_timeout(Some(IO_TIMEOUT));
        waited?;
        restored.map_err(|e| (false, e))
    }

    /// A download on a data connection opened ahead whose first read failed (the server reset
    /// it): lost, as in [`Control::judge_ahead`].
    pub(in crate::storage::ftp) fn read_failed(&mut self, transfer: &Transfer) {
        if transfer.ahead && transfer.received == 0 {
            self.lost_ahead();
        }
    }

    /// Judges a failed transfer on a data connection opened ahead by its reply: `425` (no data
    /// connection), or `426` (it broke) after a transfer that moved nothing or could not write,
    /// says the server had closed that connection. The control connection
    /// is in step; the error stands, and the operation is repeated at once.
    pub(super) fn judge_ahead(&mut self, watch: &Watch, reply: &Response) {
        match code(reply) {
            425 => self.lost_ahead(),
            426 if watch.suspect => self.lost_ahead(),
            _ => {}
        }
    }

    /// A reply where a transfer's final one belongs (`226`, `250`) that is none (say the `229`
    /// of the passive command sent after it: the server never began the transfer) puts the
    /// connection out of step: it is not reused, and the operation is worth repeating.
    pub(super) fn out_of_step(&mut self, reply: Response, ahead: bool) -> FtpError {
        if ahead {
            self.lost_ahead();
        }
        let text = String::from_utf8_lossy(&reply.body).trim_end().to_string();
        self.fail(FtpError::ConnectionError(io::Error::new(
            ErrorKind::InvalidData,
            format!("the server answered a transfer with \"{text}\", out of step"),
        )))
    }
}
