//! Transfers on a session: the data connection opened with EPSV, or PASV on servers without it,
//! and the transfer command sent with it once the server has shown it knows the mode.

use std::sync::atomic::{AtomicBool, Ordering};

use suppaftp::FtpError::UnexpectedResponse;

use super::{FtpError, Pool, Session, reply_code};
use crate::storage::ftp::control::{Passive, Step, Transfer};

impl Pool {
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
        let finished = self.conn.ftp.finish(transfer);
        let mode = if self.conn.epsv {
            Passive::Epsv
        } else {
            Passive::Pasv
        };
        if self.pool.proven(mode).load(Ordering::Relaxed) {
            self.conn.ftp.arm(mode);
        }
        finished.map_err(|e| self.error(op, path, e))
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
