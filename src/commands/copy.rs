//! `repo copy`: snapshots into another repository, re-encrypted under its
//! keys; those already there are skipped (see [`crate::engine::copy`]).

use std::path::PathBuf;

use super::Context;
use super::filter::SnapshotFilter;
use crate::engine::copy::{self, CopyReport};
use crate::error::{Error, Result};
use crate::repository::{CacheUse, Credentials, Repository, lock};
use crate::storage::Location;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshots to copy: `latest` or id prefixes; every snapshot (that
    /// the filters let through) when none is given.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// The repository to copy into: a location, or the name of a
    /// repository in the config file.
    #[arg(long, value_name = "LOCATION")]
    pub to: String,
    /// Read the destination's password from the first line of FILE.
    #[arg(long, env = "REPO_TO_PASSWORD_FILE", value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Run COMMAND with sh -c and use its output as the destination's password.
    #[arg(long, env = "REPO_TO_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub to_password_command: Option<String>,
    /// Open the destination with the master key in FILE (from `repo key export`).
    #[arg(long, env = "REPO_TO_KEY_FILE", value_name = "FILE")]
    pub to_key_file: Option<PathBuf>,
    /// Show what would be copied; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// The destination, opened by the caller's credentials.
pub struct Destination {
    pub location: Location,
    pub credentials: Credentials,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    #[serde(flatten)]
    pub copy: CopyReport,
    /// Requests and bytes at the source and at the destination.
    pub storage_from: crate::storage::StatsReport,
    pub storage_to: crate::storage::StatsReport,
}

pub fn run(ctx: &Context, args: &Args, to: &Destination) -> Result<Report> {
    let src = ctx.open()?;
    let dst = Repository::open_cached(
        &to.location,
        &to.credentials,
        ctx.cache.as_deref(),
        CacheUse::Read,
    )?;
    if src.config().id == dst.config().id {
        return Err(Error::Usage(format!(
            "{} and {} are the same repository (id {}); copy into another one",
            ctx.location,
            to.location,
            src.config().id.short()
        )));
    }
    let _src_lock = lock::lock(&src, false, "copy")?;
    let _dst_lock = if args.dry_run {
        None
    } else {
        Some(lock::lock(&dst, false, "copy")?)
    };
    let (mut chosen, src_index) = src.with_index(|| src.select_snapshots(&args.snapshots))?;
    chosen.retain(|(_, s)| args.filter.matches(s));
    // Oldest first, so a copy's parent is copied before it.
    chosen.sort_by_key(|(_, s)| s.time);
    let dst_index = dst.load_index()?;
    let report = copy::copy(
        (&src, &src_index),
        (&dst, &dst_index),
        chosen,
        args.dry_run,
        ctx.cancel,
    )?;
    Ok(Report {
        dry_run: args.dry_run,
        copy: report,
        storage_from: src.storage_stats(),
        storage_to: dst.storage_stats(),
    })
}
