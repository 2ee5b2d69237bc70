//! `repo create` (alias `backup`): make a snapshot.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

use super::Context;
use super::common::{PathMessage, path_messages};
use crate::engine::archive::{self, BackupOptions, Excludes, Stream, StreamSource};
use crate::error::Result;
use crate::format::snapshot::Summary;
use crate::repository::lock;
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("stream").args(["stdin", "stdin_from_command"]))]
pub struct Args {
    /// Files and directories to back up.
    #[arg(
        required_unless_present = "stream",
        conflicts_with = "stream",
        value_name = "PATH"
    )]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file (named by --stdin-filename).
    #[arg(long)]
    pub stdin: bool,
    /// Back up the standard output of COMMAND (run by `sh -c`) as one file;
    /// if the command fails, no snapshot is written.
    #[arg(long, value_name = "COMMAND")]
    pub stdin_from_command: Option<String>,
    /// Name of the file that --stdin or --stdin-from-command saves.
    #[arg(long, value_name = "NAME", requires = "stream")]
    pub stdin_filename: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", alias = "tags", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Leave out paths matching GLOB (repeatable; `*.o`, `/home/*/.cache`, `**/target`).
    #[arg(
        long = "exclude",
        short = 'e',
        value_name = "GLOB",
        conflicts_with = "stream"
    )]
    pub excludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` comments).
    #[arg(long = "exclude-file", value_name = "FILE", conflicts_with = "stream")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip the contents of directories holding a valid CACHEDIR.TAG.
    #[arg(long, conflicts_with = "stream")]
    pub exclude_caches: bool,
    /// Do not descend into other file systems.
    #[arg(long, short = 'x', conflicts_with = "stream")]
    pub one_file_system: bool,
    /// Do everything except writing to the repository.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Compare against this snapshot instead of the latest one with the same host and paths.
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file, even those the parent snapshot shows unchanged.
    #[arg(long)]
    pub force: bool,
    /// Full packs that may wait for upload while the next ones fill; memory
    /// grows by one pack size (16 MiB) per step, remote uploads overlap more.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub in_flight_packs: u16,
    /// Record this time (RFC 3339) as the snapshot's time instead of now.
    /// For tests and imports; hidden.
    #[arg(long, hide = true, value_name = "RFC3339")]
    pub time: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: Option<String>,
    pub parent: Option<String>,
    pub dry_run: bool,
    pub summary: Summary,
    pub errors: Vec<PathMessage>,
    pub warnings: Vec<PathMessage>,
    pub storage: StatsReport,
}

/// The stream to back up instead of paths, if one is asked for.
fn stream(args: &Args) -> Option<Stream> {
    let source = match (&args.stdin_from_command, args.stdin) {
        (Some(cmd), _) => StreamSource::Command(cmd.clone()),
        (None, true) => StreamSource::Stdin,
        (None, false) => return None,
    };
    Some(Stream {
        name: args
            .stdin_filename
            .clone()
            .unwrap_or_else(|| "stdin".into()),
        source,
    })
}

pub fn run(ctx: &Context, args: &Args, show_progress: bool) -> Result<Report> {
    if let Some(s) = stream(args) {
        // Before the repository is opened and locked.
        s.check()?;
    }
    let time = args
        .time
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    crate::Error::Usage(format!(
                        "--time {t:?} is not an RFC 3339 time ({e}); write it like 2024-05-01T12:00:00Z"
                    ))
                })
        })
        .transpose()?;
    let mut excludes = Excludes::new(&args.excludes, &args.exclude_files, args.exclude_caches)?;
    let repo = ctx.open()?;
    // The default cache lies in the home directory most users back up.
    excludes.own_cache = ctx
        .cache
        .as_deref()
        .filter(|_| repo.cache().is_some())
        .and_then(|root| std::fs::metadata(root).ok())
        .map(|m| (m.dev(), m.ino()));
    let _lock = if args.dry_run {
        None
    } else {
        Some(lock::lock(&repo, false, "create")?)
    };
    crate::testhooks::pause_point("create-locked");
    let opts = BackupOptions {
        paths: args.paths.clone(),
        excludes,
        one_file_system: args.one_file_system,
        dry_run: args.dry_run,
        tags: args.tags.clone(),
        host: args.host.clone(),
        parent: args.parent.clone(),
        force: args.force,
        scan: show_progress,
        in_flight: args.in_flight_packs as usize,
        time,
        cancel: ctx.cancel,
    };
    let r = match stream(args) {
        Some(stream) => archive::backup_stream(&repo, &opts, &stream, ctx.progress)?,
        None => archive::backup(&repo, &opts, ctx.progress)?,
    };
    Ok(Report {
        snapshot: r.snapshot.map(|s| s.to_hex()),
        parent: r.parent.map(|s| s.to_hex()),
        dry_run: args.dry_run,
        summary: r.summary,
        errors: path_messages(r.errors),
        warnings: path_messages(r.warnings),
        storage: r.storage,
    })
}
