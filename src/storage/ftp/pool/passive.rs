//! Transfers on a session: the data connection opened with EPSV, or PASV on servers without it,
//! and the transfer command sent with it once the server has shown it knows the mode.

use std::sync::atomic::{AtomicBool, Ordering};

use suppaftp::FtpError::UnexpectedResponse;

use super::{FtpError, Pool, Session, reply_code};
use crate::storage::ftp::control::{Passive, Step, Transfer};

impl Pool {
    /// The passive command for `conn`'s next transfer, if the server has answered it before.
    pub(super) fn next_passive(&self, conn: &super::Conn) -> Option<Passive> {
        let mode = if conn.epsv {
            Passive::Epsv
        } else {
            Passive::Pasv
        };
        self.proven(mode).load(Ordering::Relaxed).then_some(mode)
    }

    fn proven(&self, mode: Passive) -> &AtomicBool {
        match mode {
            Passive::Epsv => &self.epsv_proven,
            Passive::Pasv => &self.pasv_proven,
        }
    }
}

impl Session<'_> {
    /// Opens a data connection and sends `commands` (the transfer command last, `REST` before
    /// it) for `op` on `path`. `early`: see [`Control::open`](crate::storage::ftp::control::Control::open).
    pub(in crate::storage::ftp) fn transfer(
        &mut self,
        op: &'static str,
        path: &str,
        commands: &[&str],
        early: bool,
    ) -> Result<Transfer, FtpError> {
        loop {
            let mode = if self.conn.epsv {
                Passive::Epsv
            } else {
                Passive::Pasv
            };
            let proven = self.pool.proven(mode);
            let pipelined = proven.load(Ordering::Relaxed);
            let result = self.conn.ftp.open(mode, pipelined, commands, early);
            let error = match result {
                Ok(transfer) => {
                    proven.store(true, Ordering::Relaxed);
                    return Ok(transfer);
                }
                Err((Step::Command, e)) => {
                    proven.store(true, Ordering::Relaxed);
                    e
                }
                Err((Step::Passive, e)) => e,
            };
            match &error {
                // EPSV (RFC 2428) is not universal; a server that does not know it says 500-502.
                UnexpectedResponse(r)
                    if mode == Passive::Epsv
                        && !pipelined
                        && matches!(reply_code(r), 500..=502) =>
                {
                    self.conn.epsv = false;
                    self.pool.pasv_only.store(true, Ordering::Relaxed);
                }
                _ => return Err(self.error(op, path, error)),
            }
        }
    }

    /// Closes a transfer's data connection and reads the server's verdict; then asks for the
    /// next transfer's data port (see [`Control::arm`](crate::storage::ftp::control::Control::arm)).
    pub(in crate::storage::ftp) fn finish(
        &mut self,
        op: &'static str,
        path: &str,
        transfer: Transfer,
    ) -> Result<(), FtpError> {
        // A refused transfer leaves the connection in step all the same (an early stop's 426
        // too), so the next port is asked for either way; `arm` skips a broken connection.
        let next = self.next_passive();
        let finished = self.conn.ftp.finish(transfer, next);
        if let Some(mode) = next {
            self.conn.ftp.arm(mode);
        }
        finished.map_err(|e| self.error(op, path, e))
    }

    /// Ends a download that has read all it wanted; see
    /// [`Control::abandon`](crate::storage::ftp::control::Control::abandon).
    pub(in crate::storage::ftp) fn abandon(&mut self, transfer: Transfer) {
        self.conn.ftp.abandon(transfer);
        if self.conn.ftp.reusable() {
            return;
        }
        // Waited for after all, and no reply came: keep the data, drop the connection.
        self.discard_connection();
    }

    /// A download's data connection failed; see
    /// [`Control::read_failed`](crate::storage::ftp::control::Control::read_failed).
    pub(in crate::storage::ftp) fn read_failed(&mut self, transfer: &Transfer) {
        self.conn.ftp.read_failed(transfer);
    }

    /// The passive command to ask for the next data port with, once the server has answered it.
    pub(in crate::storage::ftp) fn next_passive(&self) -> Option<Passive> {
        self.pool.next_passive(self.conn)
    }

    /// The lines of a listing command (`MLSD`, `LIST`).
    pub(in crate::storage::ftp) fn listing(
        &mut self,
        op: &'static str,
        path: &str,
        command: &str,
    ) -> Result<Vec<String>, FtpError> {
        let mut transfer = self.transfer(op, path, &[command], false)?;
        let lines = transfer.lines();
        let finished = self.finish(op, path, transfer);
        let lines =
            lines.map_err(|e| self.error(op, path, suppaftp::FtpError::ConnectionError(e)))?;
        finished.map(|()| lines)
    }
}
