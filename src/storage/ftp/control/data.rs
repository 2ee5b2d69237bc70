//! Passive data connections and the transfers on them (RETR, STOR, MLSD, LIST).
//!
//! A transfer costs a round trip for the passive reply (the data connection's port) and one for
//! the transfer command's. RFC 959 servers take a transfer command before the data connection
//! exists and wait for it, so once the server has shown it knows the passive command, that and
//! the transfer command (with `REST` before it) go out together: one round trip. Not before: a
//! server that does not know `EPSV` would wait for a data connection forever.
//!
//! Small uploads on plain FTP write their bytes without waiting for the server's `150`, which
//! would cost another round trip: the data connection is open, and a server that refuses the
//! `STOR` never reads them (they fit in the socket buffers, so writing cannot block). The `226`
//! after the last byte still decides whether the object was stored.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use suppaftp::types::Response;
use suppaftp::{DataStream, FtpError, FtpResult, RustlsConnector, TlsConnector};

use super::ahead::{Look, Watch};
use super::login::data_tcp;
use super::{Control, Stream, code};

/// How long closing an upload over TLS waits for the server's end of the connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest line of a listing; servers send a few hundred bytes at most.
const MAX_LISTING_LINE: u64 = 64 * 1024;

/// How long a data port opened ahead is used; see [`Control::arm`].
const FRESH: Duration = Duration::from_secs(10);
/// The age at which a connection holding an unused data port is not reused.
const STALE: Duration = Duration::from_secs(20);

/// A data port the server opened ahead.
pub(super) struct Ready {
    mode: Passive,
    pub(super) addr: SocketAddr,
    /// When the passive command was sent: the server's clock for closing it starts then.
    sent: Instant,
    /// The data connection itself, opened while the control connection was idle (plain FTP,
    /// see `ahead.rs`).
    pub(super) data: Option<TcpStream>,
}

pub(super) fn passive_command(mode: Passive) -> &'static str {
    match mode {
        Passive::Epsv => "EPSV",
        Passive::Pasv => "PASV",
    }
}

/// How the data connection's port is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage::ftp) enum Passive {
    /// RFC 2428, the server's port only.
    Epsv,
    /// RFC 959; the announced address is ignored for the control connection's (servers behind
    /// NAT announce private ones, and a server must not steer us to a third host anyway).
    Pasv,
}

/// Which part of opening a transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage::ftp) enum Step {
    Passive,
    Command,
}

/// An open data connection. [`Control::finish`] closes it and reads the server's verdict; one
/// dropped instead leaves its connection owing replies, so the pool drops that too.
pub(in crate::storage::ftp) struct Transfer {
    data: Stream,
    written: bool,
    /// The transfer command's `150` is still unread (an early upload).
    early: bool,
    /// The server ended the data connection (a download or listing read to its end).
    ended: bool,
    /// The data connection was opened ahead (see `ahead.rs`).
    pub(super) ahead: bool,
    /// Bytes read from it.
    pub(super) received: u64,
    /// A write to it failed.
    write_failed: bool,
}

impl Control {
    /// Opens a data connection for `commands`, the transfer command last (`REST` before it).
    /// `pipelined`: send them with the passive command (see the module comment). `early`: on
    /// plain FTP, return before the transfer command's `150` arrives, to write at once.
    pub(in crate::storage::ftp) fn open(
        &mut self,
        mode: Passive,
        pipelined: bool,
        commands: &[&str],
        early: bool,
    ) -> Result<Transfer, (Step, FtpError)> {
        let command = |e| (Step::Command, e);
        self.absorb().map_err(command)?;
        let ready = self.ready.take();
        let (addr, ahead) = match ready {
            Some(r) if r.mode == mode && r.sent.elapsed() < FRESH && self.usable_ahead(&r) => {
                self.send(commands).map_err(command)?;
                (r.addr, r.data)
            }
            // An older port is forgotten: the next passive command makes the server close it,
            // and a data connection opened to it is closed only once the server has answered
            // that (closing it first could make a server report the transfer it never began).
            unused => {
                let addr = self.passive(mode, pipelined, commands)?;
                drop(unused);
                (addr, None)
            }
        };
        let on_ahead = ahead.is_some();
        let tcp = match ahead {
            Some(tcp) => {
                self.counters.data_ahead.fetch_add(1, Ordering::Relaxed);
                tcp
            }
            None => match data_tcp(addr) {
                Ok(tcp) => tcp,
                // The server may have refused the command already and closed the port.
                Err(e) => return Err(command(self.refusal(commands.len(), e))),
            },
        };
        for _ in 1..commands.len() {
            let reply = self.reply().map_err(command)?;
            if code(&reply) != 350 {
                // The transfer command would start from the wrong place.
                self.settle(1);
                return Err(command(FtpError::UnexpectedResponse(reply)));
            }
        }
        let early_write = early && self.tls.is_none();
        if !early_write {
            let mut watch = on_ahead.then(|| Watch::new(tcp.try_clone().ok(), Look::Closed, false));
            match self.preliminary(watch.as_mut()) {
                Ok(()) => {}
                // The server had closed the data connection opened ahead and says so: the
                // control connection is in step, so the transfer asks for a new port on it.
                Err(FtpError::UnexpectedResponse(r))
                    if on_ahead && matches!(code(&r), 425 | 426) =>
                {
                    self.note_ahead_closed();
                    drop(tcp);
                    return self.open(mode, pipelined, commands, early);
                }
                Err(e) => return Err(command(e)),
            }
        }
        let data = self.secure_data(tcp).map_err(|e| command(self.fail(e)))?;
        Ok(Transfer {
            data,
            written: false,
            early: early_write,
            ended: false,
            ahead: on_ahead,
            received: 0,
            write_failed: false,
        })
    }

    /// Asks for the data port and sends `commands`, with it when `pipelined`, else after it.
    fn passive(
        &mut self,
        mode: Passive,
        pipelined: bool,
        commands: &[&str],
    ) -> Result<SocketAddr, (Step, FtpError)> {
        let passive = |e| (Step::Passive, e);
        let mut batch = vec![passive_command(mode)];
        if pipelined {
            batch.extend(commands);
        }
        self.send(&batch).map_err(passive)?;
        let reply = self.reply().map_err(passive)?;
        let Some(addr) = self.passive_address(mode, &reply) else {
            if pipelined {
                self.settle(commands.len());
            }
            return Err(passive(FtpError::UnexpectedResponse(reply)));
        };
        if !pipelined {
            self.send(commands).map_err(|e| (Step::Command, e))?;
        }
        Ok(addr)
    }

    /// Asks for the next transfer's data port now, after a transfer on a server known to
    /// answer `mode`. The reply is read with those of the commands that follow (the rename
    /// after an upload, the next operation's), and the next transfer connects at once and sends
    /// its command alone: a round trip less, and no wait for the port at all.
    pub(in crate::storage::ftp) fn arm(&mut self, mode: Passive) {
        if self.verdict || self.arming.is_some() || self.ready.is_some() || !self.reusable() {
            return;
        }
        let sent = Instant::now();
        if self.write(&[passive_command(mode)]).is_ok() {
            self.arming = Some((mode, sent));
        }
    }

    /// Closes the data connection of a download that has read all it wanted, without waiting
    /// for the server's final reply: that is `426` or `451` (the transfer broke off), or `226`
    /// if the server had sent everything already, and whichever it is the bytes read are the
    /// same. It is read before anything else on this connection (see [`Control::absorb`]),
    /// usually while the connection is idle ([`Control::prepare`]), so the download costs no
    /// round trip for it.
    pub(in crate::storage::ftp) fn abandon(&mut self, transfer: Transfer) {
        if transfer.early || self.arming.is_some() || self.verdict {
            // Not a download on an idle connection: wait for the verdict as for any transfer.
            let _ = self.finish(transfer, None);
            return;
        }
        drop(transfer);
        self.verdict = true;
        self.counters.verdicts_later.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the replies owed for an early-stopped download and a passive command sent ahead,
    /// if that is still to do. Any reply ends the download; none (the server closed the
    /// connection, as ProFTPD may over TLS) leaves the connection unusable.
    pub(in crate::storage::ftp) fn absorb(&mut self) -> FtpResult<()> {
        if self.verdict {
            self.verdict = false;
            self.read()?;
        }
        let Some((mode, sent)) = self.arming.take() else {
            return Ok(());
        };
        let reply = self.read()?;
        self.ready = self.passive_address(mode, &reply).map(|addr| Ready {
            mode,
            addr,
            sent,
            data: None,
        });
        Ok(())
    }

    /// Readies the next transfer while the connection is idle, off any operation's way: reads
    /// the final reply of a download stopped early and the reply to the passive command sent
    /// ahead, so that the next operation finds the data port known and nothing owed. A failed
    /// read leaves the connection out of step (the pool then drops it).
    ///
    /// `arm`: the passive command to send if none is on its way (the server has answered it
    /// before); after an early stop that is only now, once the transfer is over.
    /// Then, on plain FTP, the data connection is opened too (see `ahead.rs`).
    pub(in crate::storage::ftp) fn prepare(&mut self, arm: Option<Passive>) {
        let waiting = self.arming.is_some();
        if self.absorb().is_err() {
            return;
        }
        let mut read = usize::from(waiting);
        if let Some(mode) = arm {
            self.arm(mode);
            if self.arming.is_some() {
                if self.absorb().is_err() {
                    return;
                }
                read += 1;
            }
        }
        let read = read as u64;
        self.counters.ports_idle.fetch_add(read, Ordering::Relaxed);
        self.connect_ahead();
    }

    /// Whether [`Control::prepare`] has anything to do.
    pub(in crate::storage::ftp) fn unprepared(&self) -> bool {
        self.verdict
            || self.arming.is_some()
            || (self.ahead_allowed() && self.ready.as_ref().is_some_and(|r| r.data.is_none()))
    }

    /// Whether this connection holds a data port opened ahead too long ago to be reused: the
    /// server may close it and say so any moment (pyftpdlib after 30 s, with a 421).
    pub(in crate::storage::ftp) fn stale(&self) -> bool {
        self.ready
            .as_ref()
            .is_some_and(|r| r.sent.elapsed() > STALE)
    }

    /// Closes the data connection and reads the server's word on the transfer: `226` (or
    /// `250`) after the last byte, anything else an error.
    ///
    /// `arm`: the passive command for the next transfer (see [`Control::arm`]). Once the server
    /// has ended the data connection of a download or listing it is done with the transfer, so
    /// the command goes out now, before the `226` is read: its reply comes a round trip sooner.
    /// Not after an upload, which the server may still be writing when its data connection
    /// ends: a passive command then could close that.
    pub(in crate::storage::ftp) fn finish(
        &mut self,
        transfer: Transfer,
        arm: Option<Passive>,
    ) -> FtpResult<()> {
        let Transfer {
            data,
            written,
            early,
            ended,
            ahead,
            received,
            write_failed,
        } = transfer;
        // After an upload over TLS the server may have sent data never read (TLS 1.3 session
        // tickets); closing a socket with unread data sends a reset, which can reach the server
        // before our close_notify and fail the upload with a 426.
        let drain = (written && matches!(data, DataStream::Ssl(_)))
            .then(|| data.get_ref().try_clone().ok())
            .flatten();
        // An upload's data connection opened ahead is half-closed and kept until the verdict:
        // its reset says the server never read the bytes (see `ahead.rs`).
        let kept = match data {
            DataStream::Tcp(tcp) if ahead && written => {
                let _ = tcp.shutdown(Shutdown::Write);
                Some(tcp)
            }
            other => {
                drop(other);
                None
            }
        };
        if let Some(socket) = drain {
            drain_until_eof(&socket);
        }
        let moved_nothing = received == 0 && !written;
        let mut watch = ahead.then(|| Watch::new(kept, Look::Reset, moved_nothing || write_failed));
        if early && let Err(e) = self.preliminary(watch.as_mut()) {
            if let (Some(watch), FtpError::UnexpectedResponse(reply)) = (&watch, &e) {
                self.judge_ahead(watch, reply);
            }
            return Err(e);
        }
        let next = arm.filter(|_| {
            ended && !written && !self.verdict && self.arming.is_none() && self.ready.is_none()
        });
        let sent = Instant::now();
        if let Some(mode) = next {
            // The passive reply comes after the transfer's, which is read first.
            self.write(&[passive_command(mode)])?;
        }
        let reply = self.read_watched(watch.as_mut())?;
        if let Some(mode) = next {
            self.arming = Some((mode, sent));
        }
        match code(&reply) {
            226 | 250 => Ok(()),
            // The server may never have begun a transfer on a data connection opened ahead that
            // moved nothing, and this be the passive command's reply (a 229, or a refusal).
            _ if ahead && moved_nothing && next.is_some() => Err(self.out_of_step(reply, true)),
            100..=299 => Err(self.out_of_step(reply, ahead)),
            _ => {
                if let Some(watch) = &watch {
                    self.judge_ahead(watch, &reply);
                }
                Err(FtpError::UnexpectedResponse(reply))
            }
        }
    }

    /// The transfer command's `150` (or `125`); its completion reply is owed from then on.
    /// `watch`: on a data connection opened ahead (see `ahead.rs`).
    fn preliminary(&mut self, watch: Option<&mut Watch>) -> FtpResult<()> {
        let reply = self.read_watched(watch)?;
        if !matches!(code(&reply), 150 | 125) {
            return Err(FtpError::UnexpectedResponse(reply));
        }
        self.owed += 1;
        Ok(())
    }

    /// After the data connection failed: the reply to the transfer command (and those before
    /// it), which is the better error if the server refused. Else the connection is out of step.
    fn refusal(&mut self, count: usize, connect: io::Error) -> FtpError {
        let mut last = None;
        for _ in 0..count {
            match self.reply() {
                Ok(reply) if !(100..200).contains(&code(&reply)) => last = Some(reply),
                _ => break,
            }
        }
        match last {
            Some(reply) if code(&reply) >= 400 && self.owed == 0 => {
                FtpError::UnexpectedResponse(reply)
            }
            _ => self.fail(FtpError::ConnectionError(connect)),
        }
    }

    /// The data connection's address: the port from the reply, the control connection's host.
    fn passive_address(&self, mode: Passive, reply: &Response) -> Option<SocketAddr> {
        let mut addr = self.socket().peer_addr().ok()?;
        addr.set_port(passive_port(mode, reply)?);
        Some(addr)
    }

    /// The data connection as a stream, over TLS on FTPS (resuming the control connection's
    /// session, as servers such as ProFTPD require).
    fn secure_data(&self, tcp: TcpStream) -> FtpResult<Stream> {
        match &self.tls {
            None => Ok(DataStream::Tcp(tcp)),
            Some((config, host)) => {
                let stream = RustlsConnector::from(Arc::clone(config)).connect(host, tcp)?;
                Ok(DataStream::Ssl(Box::new(stream)))
            }
        }
    }
}

impl Transfer {
    /// The lines of a listing, `\r\n` removed, decoded leniently.
    pub(in crate::storage::ftp) fn lines(&mut self) -> io::Result<Vec<String>> {
        let mut reader = BufReader::new(self);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_LISTING_LINE)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(lines);
            }
            if line.last() != Some(&b'\n') && read as u64 == MAX_LISTING_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a listing line over 64 KiB",
                ));
            }
            let text = String::from_utf8_lossy(&line);
            lines.push(text.trim_end_matches(['\r', '\n']).to_string());
        }
    }
}

impl Read for Transfer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.data.read(buf)?;
        self.ended |= read == 0 && !buf.is_empty();
        self.received += read as u64;
        Ok(read)
    }
}

impl Write for Transfer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = true;
        let written = self.data.write(buf);
        self.write_failed |= written.is_err();
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()
    }
}

/// The port of a `229 ... (|||port|)` or `227 ... (h1,h2,h3,h4,p1,p2)` reply.
fn passive_port(mode: Passive, reply: &Response) -> Option<u16> {
    let text = String::from_utf8_lossy(&reply.body);
    let inner = text.split_once('(')?.1.split_once(')')?.0;
    match (mode, code(reply)) {
        (Passive::Epsv, 229) => inner.strip_prefix("|||")?.strip_suffix('|')?.parse().ok(),
        (Passive::Pasv, 227) => {
            let numbers: Option<Vec<u8>> =
                inner.split(',').map(|n| n.trim().parse().ok()).collect();
            let [_, _, _, _, high, low] = numbers?[..] else {
                return None;
            };
            Some(u16::from(high) << 8 | u16::from(low))
        }
        _ => None,
    }
}

/// Half-closes `socket` and reads until the server closes its side, so that closing it does not
/// reset the connection. Best effort: gives up after [`DRAIN_TIMEOUT`] without data.
fn drain_until_eof(mut socket: &TcpStream) {
    if socket.shutdown(Shutdown::Write).is_err()
        || socket.set_read_timeout(Some(DRAIN_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = [0u8; 1024];
    while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;

    fn reply(code: u32, text: &str) -> Response {
        Response::new(
            Status::from(code),
            format!("{code} {text}\r\n").into_bytes(),
        )
    }

    #[test]
    fn passive_ports_from_replies() {
        let epsv = reply(229, "Entering Extended Passive Mode (|||6446|)");
        assert_eq!(passive_port(Passive::Epsv, &epsv), Some(6446));
        let pasv = reply(227, "Entering Passive Mode (10,0,0,7,25,10).");
        assert_eq!(passive_port(Passive::Pasv, &pasv), Some(25 * 256 + 10));
        for (mode, bad) in [
            (
                Passive::Pasv,
                reply(227, "Entering Passive Mode (10,0,0,7,256,10)"),
            ),
            (
                Passive::Pasv,
                reply(227, "Entering Passive Mode (10,0,7,25,10)"),
            ),
            (Passive::Pasv, reply(227, "no address")),
            (Passive::Epsv, reply(229, "(|||99999|)")),
            (Passive::Epsv, reply(229, "(|||6446)")),
            (Passive::Epsv, reply(200, "(|||6446|)")),
            (Passive::Pasv, epsv.clone()),
        ] {
            assert_eq!(
                passive_port(mode, &bad),
                None,
                "{:?}",
                String::from_utf8_lossy(&bad.body)
            );
        }
    }
}
