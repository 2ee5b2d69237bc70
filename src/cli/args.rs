//! The command line's arguments (clap): global options, then one
//! subcommand per command, whose own arguments live with the command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use repo::commands::{
    self, cat, check, copy, create, diff, dump, find, forget, init, key, lock, ls, prune, repair,
    restore, snapshots, stats, tag, unlock,
};

#[derive(Debug, Parser)]
#[command(
    name = "repo",
    version,
    about = "Encrypted, deduplicating snapshots of directory trees",
    after_help = "The password comes from REPO_PASSWORD, --password-file, --password-command, or a prompt on a terminal; --key-file / REPO_KEY_FILE (from `repo key export`) opens without one.\nExit codes: 0 ok, 1 error, 2 usage, 3 snapshot saved but some files unreadable or changed, 10 no repository, 11 locked, 12 wrong password, 13 no usable credential, 14 refused by an append-only server, 129 hung up, 130 interrupted, 141 output closed."
)]
pub(super) struct Cli {
    /// Repository location: a directory, file:///path, s3://, ftp://,
    /// ftps:// or rest:https:// URL, or the name of a repository in the
    /// config file.
    #[arg(
        short = 'r',
        long = "repo",
        env = "REPO_REPOSITORY",
        global = true,
        value_name = "LOCATION"
    )]
    pub(super) repo: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(
        long,
        env = "REPO_PASSWORD_FILE",
        global = true,
        value_name = "FILE",
        value_parser = path_or_empty()
    )]
    pub(super) password_file: Option<PathBuf>,
    /// Run COMMAND with sh -c and use its output as the password.
    #[arg(
        long,
        env = "REPO_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    pub(super) password_command: Option<String>,
    /// Open the repository with the master key in FILE (from `repo key
    /// export`) instead of a password: no prompt and no KDF, for scheduled
    /// backups. The file must not be readable by group or others.
    #[arg(
        long,
        env = "REPO_KEY_FILE",
        global = true,
        value_name = "FILE",
        value_parser = path_or_empty()
    )]
    pub(super) key_file: Option<PathBuf>,
    /// S3 endpoint for self-hosted servers (MinIO, Ceph, Garage, SeaweedFS...).
    #[arg(long, env = "REPO_S3_ENDPOINT", global = true, value_name = "URL")]
    pub(super) s3_endpoint: Option<String>,
    /// Extra CA certificate (PEM) to trust for FTPS and HTTPS REST servers.
    #[arg(long, env = "REPO_CA_CERT", global = true, value_name = "FILE")]
    pub(super) ca_cert: Option<PathBuf>,
    /// Parallel transfers to remote storage (default 8; fewer on an FTP server that refuses more sessions).
    #[arg(
        long,
        env = "REPO_CONNECTIONS",
        global = true,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub(super) connections: usize,
    /// Keep the local cache of remote repositories (and a large local
    /// repository's index file) in DIR (default $XDG_CACHE_HOME/repo, else
    /// ~/.cache/repo).
    #[arg(
        long,
        env = "REPO_CACHE_DIR",
        global = true,
        value_name = "DIR",
        value_parser = path_or_empty()
    )]
    pub(super) cache_dir: Option<PathBuf>,
    /// Use no local cache: every object is read from the repository, and a
    /// large index's file is built again on every run.
    #[arg(long, global = true)]
    pub(super) no_cache: bool,
    /// Read named repositories and jobs from FILE (default
    /// $XDG_CONFIG_HOME/repo/repo.toml, else /etc/repo/repo.toml).
    #[arg(
        long,
        env = "REPO_CONFIG",
        global = true,
        value_name = "FILE",
        value_parser = path_or_empty()
    )]
    pub(super) config: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub(super) quiet: bool,
    /// Print more detail (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Back up files and directories (or standard input, or a command's output) into a new snapshot.
    #[command(alias = "backup")]
    Create(create::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// List files in a snapshot.
    Ls(ls::Args),
    /// Restore a snapshot into a directory.
    Restore(restore::Args),
    /// Verify the repository's structure and, with --read-data, all data.
    Check(check::Args),
    /// Remove stale locks.
    Unlock(unlock::Args),
    /// Search snapshots for paths matching glob patterns.
    Find(find::Args),
    /// Show what changed between two snapshots.
    Diff(diff::Args),
    /// Write a file, or a directory as a tar archive, from a snapshot to stdout.
    Dump(dump::Args),
    /// Add, remove or replace the tags of snapshots.
    Tag(tag::Args),
    /// Print a decrypted repository object as JSON.
    Cat(cat::Args),
    /// Sizes: restore size, stored size, blobs, deduplication and compression.
    Stats(stats::Args),
    /// List, add, change and remove the passwords that open the repository.
    Key(key::Args),
    /// Hold a lock on the repository until interrupted or for --duration.
    Lock(lock::Args),
    /// Remove snapshots by id or by a retention policy (--prune: then prune).
    Forget(forget::Args),
    /// Copy snapshots into another repository (re-encrypted; those already there are skipped).
    Copy(copy::Args),
    /// Delete data no snapshot references; repack partly used packs.
    Prune(prune::Args),
    /// Rebuild damaged or lost parts of the repository from what is intact.
    Repair(repair::Args),
    /// Keep a readable copy of a folder (local, s3://, ftp://) in step with it.
    Mirror(commands::plain::Args),
    /// Two-way sync of plain folders, with conflict detection.
    Sync(commands::plain::Args),
    /// Run jobs of the config file (all, in file order, when none is named).
    Run(super::jobs::RunArgs),
    /// Run a job of the config file on a schedule: a systemd timer (or a crontab line).
    Schedule(super::schedule::ScheduleArgs),
}

/// A path argument that may be empty: `REPO_KEY_FILE=` (set but empty)
/// then means "not given", as an empty variable does for most tools, not
/// "a value is required for '--key-file'".
fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from)
}
