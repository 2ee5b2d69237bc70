//! The command whose standard output `create --stdin-from-command` saves.
//!
//! The command line is one string run by `sh -c`, as a config file or cron
//! line writes it (`pg_dump app | gzip`). Its output is read as it comes,
//! never held whole (a database dump can be hundreds of GB); its standard
//! error is drained by a thread into a bounded tail, so a command that
//! writes much there cannot block on a full pipe, and the tail explains a
//! failure. Its standard input is /dev/null: an unattended job must not
//! wait for a keyboard. `REPO_PASSWORD` is not passed on: the repository's
//! password is no business of a database dump.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Bytes of the command's standard error kept (its end).
const STDERR_KEEP: usize = 64 << 10;
/// Lines of that tail shown in the error message.
const STDERR_LINES: usize = 20;

/// A started command. Dropped before [`Running::finish`] (the backup
/// failed or was interrupted), it is killed and reaped: nothing is left
/// running that no one reads.
pub(super) struct Running {
    command: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<VecDeque<u8>>>,
    finished: bool,
}

impl Running {
    /// Starts `sh -c COMMAND` with its output piped to us.
    pub(super) fn start(command: &str) -> Result<Running> {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env_remove("REPO_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::SourceCommand {
                command: command.to_string(),
                status: format!("could not be started (sh -c: {e})"),
                stderr: Vec::new(),
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Internal("a piped child process has no pipes".into()));
        };
        let tail = std::thread::Builder::new()
            .name("command-stderr".into())
            .spawn(move || keep_tail(stderr));
        let tail = match tail {
            Ok(t) => t,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Internal(format!("cannot start a thread: {e}")));
            }
        };
        Ok(Running {
            command: command.to_string(),
            child,
            stdout,
            stderr: Some(tail),
            finished: false,
        })
    }

    /// Waits for the command after its output ended: success only when it
    /// exited with code 0.
    pub(super) fn finish(mut self) -> Result<()> {
        self.finished = true;
        let status = self.child.wait();
        let tail = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let status =
            status.map_err(|e| self.failed(format!("could not be waited for ({e})"), &tail))?;
        if status.success() {
            return Ok(());
        }
        Err(self.failed(describe(status), &tail))
    }

    fn failed(&self, status: String, tail: &VecDeque<u8>) -> Error {
        Error::SourceCommand {
            command: self.command.clone(),
            status,
            stderr: last_lines(tail),
        }
    }

    /// Kills the command when the backup stops reading it.
    fn kill(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Read for Running {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a command that did not succeed ended, for messages.
fn describe(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| format!(" ({})", s.as_str()))
            .unwrap_or_default();
        return format!("was killed by signal {sig}{name}");
    }
    match status.code() {
        Some(127) => "exited with code 127 (the shell did not find the program)".into(),
        Some(126) => "exited with code 126 (the program cannot be executed)".into(),
        Some(c) => format!("exited with code {c}"),
        None => format!("ended with status {status}"),
    }
}

/// Reads a stream to its end, keeping only its last [`STDERR_KEEP`] bytes.
fn keep_tail(mut from: impl Read) -> VecDeque<u8> {
    let mut tail = VecDeque::with_capacity(4096);
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend(&buf[..n]);
                let over = tail.len().saturating_sub(STDERR_KEEP);
                tail.drain(..over);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tail
}

/// The last [`STDERR_LINES`] non-empty lines of a stderr tail.
fn last_lines(tail: &VecDeque<u8>) -> Vec<String> {
    let bytes: Vec<u8> = tail.iter().copied().collect();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(STDERR_LINES);
    lines[from..].iter().map(|l| (*l).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_the_last_lines() {
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let tail = keep_tail(text.as_bytes());
        assert_eq!(tail.len(), STDERR_KEEP);
        let lines = last_lines(&tail);
        assert_eq!(lines.len(), STDERR_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("line 19999"));
        assert_eq!(lines[0], "line 19980");
    }
}
