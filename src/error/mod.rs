//! The library's one error type.
//!
//! Each variant carries what the user needs to act: which object or path,
//! and the message says what to do next. The CLI maps variants to the exit
//! codes restic users already script against.

pub mod warnings;

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no repository at {location}: {reason}. Check the -r/--repo path, or create one with `repo init -r {location}`"
    )]
    RepoNotFound { location: String, reason: String },

    #[error("{what} not found{hint}")]
    NotFound { what: String, hint: String },

    #[error(
        "{object} is damaged: {reason}. Run `repo check --read-data` to list every damaged object"
    )]
    Corrupt { object: String, reason: String },

    #[error(
        "wrong password: no key in {location}/keys opens with it. Check REPO_PASSWORD, --password-file or --password-command (or open with a key file: --key-file)"
    )]
    WrongPassword { location: String },

    #[error("cannot use the key file {}: {reason}", file.display())]
    KeyFile { file: PathBuf, reason: String },

    /// No credential could even be tried: a password file, password command
    /// or key file that is missing, unreadable, refused or no credential at
    /// all, or no password source and no terminal to ask on.
    #[error("{0}")]
    NoCredential(String),

    #[error("repository is locked: {detail}")]
    Locked { detail: String },

    /// The lock this process held lapsed (it was suspended past the stale
    /// period, cut off from storage, or its lock was removed), so data it
    /// relies on may have been pruned: it writes nothing more.
    /// Maintenance on storage that refuses deletes (an append-only server):
    /// refused before anything changed (exit 14).
    #[error(
        "`repo {command}` deletes or rewrites objects, but the storage at {location} refuses to delete them (an append-only server, or a storage policy), so nothing was changed. Maintenance runs where the repository is stored: on the server, against the repository's folder there (for example `repo {command} -r /srv/repos/{name}`); clients of an append-only server only add and read backups"
    )]
    AppendOnly {
        command: String,
        location: String,
        /// The repository's last path component, for the example.
        name: String,
    },

    /// A command that writes the new object before it deletes the old one
    /// (so nothing is lost if it stops between the two) wrote it, and then
    /// the delete failed: a storage that refuses deletes only once the
    /// object exists, which its probe (see `lock_to_change`) cannot tell.
    #[error("`repo {command}` {done}, but then could not delete {old}: {cause}. {advice}")]
    HalfDone {
        command: String,
        done: String,
        old: String,
        cause: String,
        /// What the repository holds now and what to do.
        advice: String,
    },

    #[error(
        "`{command}` stopped before {purpose}: it no longer provably holds its repository lock: {reason}. {advice}"
    )]
    LockLost {
        command: String,
        reason: String,
        purpose: String,
        /// What to do next.
        advice: String,
    },

    #[error(
        "the repository's config names format version {found}, which this build does not support (it reads versions 1 to {supported}); upgrade repo, or, if this version of repo wrote the repository, its config object is damaged"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("storage error while trying to {op} {key}: {message}")]
    Storage {
        op: &'static str,
        key: String,
        message: String,
    },

    /// The OS error is part of the message and deliberately not a
    /// `#[source]`: `{:#}` at the CLI edge would print it a second time.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error(
        "{path} cannot be read: {reason}. Move it away to start over (the next run then treats every difference as new)"
    )]
    BadManifest { path: String, reason: String },

    #[error(
        "refusing to save the tree of {}: {reason}, so check and restore would reject it; nothing was written for this snapshot. This is a bug in repo: please report it",
        path.display()
    )]
    InvalidTree { path: PathBuf, reason: String },

    /// The command line or the way the repository is used is wrong (exit 2).
    #[error("{0}")]
    Usage(String),

    /// A fault inside repo itself (a worker thread that panicked, threads
    /// that cannot be started), never the user's doing: exit 1, not the
    /// usage code scripts treat as "fix your command line".
    #[error("internal error: {0}")]
    Internal(String),

    #[error("interrupted; the repository is left consistent and the lock was removed")]
    Interrupted,

    /// The command whose output `create --stdin-from-command` saves could
    /// not be started or failed: its output may be cut short, so no snapshot
    /// names it (exit 1). `stderr` holds the last lines it wrote there,
    /// which the CLI prints one per line.
    #[error(
        "the command `{command}` {status}; no snapshot was written. Fix the command (run it by hand to see why) and run create again; data it already sent is removed by `repo prune`{}",
        stderr_tail(stderr)
    )]
    SourceCommand {
        command: String,
        status: String,
        stderr: Vec<String>,
    },
}

/// The last lines a failed command wrote to its standard error, as the end
/// of [`Error::SourceCommand`]'s message.
fn stderr_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return ". It wrote nothing to its standard error".into();
    }
    format!(". Its standard error ended with:\n{}", lines.join("\n"))
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub(crate) fn corrupt(object: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}
