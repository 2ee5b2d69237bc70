//! Exit codes, all in one place: the ones restic users already script
//! against, and what an error or a closed output maps to.

use anyhow::Result;

use repo::Error;

use super::text::escape_controls;

/// Success.
pub(super) const OK: u8 = 0;
/// Asked to confirm planned changes, the user said no (`mirror`, `sync`).
pub(super) const DECLINED: u8 = 1;
/// A snapshot was saved, but some files could not be read or changed
/// while being read; or `mirror`/`sync` left conflicts, errors or
/// corrupt files behind.
pub(super) const PARTIAL: u8 = 3;
/// The reader of our output went away: what a shell shows for SIGPIPE.
const OUTPUT_CLOSED: u8 = 141;

/// Stopped by SIGHUP: exit code 129 (128 + 1), as shells report it.
#[derive(Debug, thiserror::Error)]
#[error("hung up (SIGHUP); the repository is left consistent and the lock was removed")]
pub struct HungUp;

/// The process's exit code for the outcome of a run; an error is printed
/// first, on stderr, unless the output was closed (`| head`): then the run
/// ends quietly, as cat(1) does.
pub fn code(outcome: Result<u8>) -> u8 {
    match outcome {
        Ok(_) if super::stdout_gone() => OUTPUT_CLOSED,
        Err(e) if super::stdout_gone() || is_broken_pipe(&e) => OUTPUT_CLOSED,
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            for_error(&e)
        }
    }
}

/// Prints an error on stderr, control characters escaped; the lines a
/// failed source command wrote to its stderr each on a line of their own
/// (each escaped, so none can pass for a message of ours).
fn print_error(e: &anyhow::Error) {
    let Some(Error::SourceCommand { stderr, .. }) = e.downcast_ref::<Error>() else {
        eprintln!("error: {}", escape_controls(&format!("{e:#}")));
        return;
    };
    let message = format!("{e:#}");
    let lines = format!("\n{}", stderr.join("\n"));
    let head = message.strip_suffix(lines.as_str()).unwrap_or(&message);
    eprintln!("error: {}", escape_controls(head));
    for line in stderr {
        eprintln!("  | {}", escape_controls(line));
    }
}

/// The exit code for an error.
fn for_error(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<HungUp>().is_some() {
        return 129;
    }
    match err.downcast_ref::<Error>() {
        Some(Error::RepoNotFound { .. }) => 10,
        Some(Error::Locked { .. }) => 11,
        Some(Error::WrongPassword { .. } | Error::KeyFile { .. }) => 12,
        Some(Error::NoCredential(_)) => 13,
        Some(Error::AppendOnly { .. }) => 14,
        Some(Error::Usage(_)) => 2,
        Some(Error::Interrupted) => 130,
        _ => 1,
    }
}

/// Whether an error is (or wraps) a write to a closed pipe: the reader of
/// our output went away, as with `| head`.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
            || matches!(e.downcast_ref::<repo::Error>(),
                Some(repo::Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
