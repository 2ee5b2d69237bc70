//! `repo restore`: recreate a snapshot (or part of it) on disk.

use std::path::PathBuf;

use serde::Serialize;

use super::Context;
use crate::archive::Excludes;
use crate::error::Result;
use crate::repo::lock;
use crate::restore::{self, RestoreOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix, optionally `:/path/inside` to restore a subtree.
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Restore only paths matching GLOB (repeatable).
    #[arg(long = "include", short = 'i', value_name = "GLOB")]
    pub includes: Vec<String>,
    /// Do not restore paths matching GLOB (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read every restored file back and compare it with the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Make the target an exact copy of the snapshot: what the snapshot lacks
    /// is moved to TARGET/.repo/trash, overwritten files to TARGET/.repo/archive.
    #[arg(long)]
    pub delete: bool,
    /// With --delete: remove and overwrite without keeping the old versions.
    #[arg(long, requires = "delete")]
    pub no_archive: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub target: String,
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    pub verified_files: u64,
    pub skipped_files: u64,
    pub deleted: u64,
    pub archived: u64,
    pub skipped_unread: u64,
    pub errors: Vec<super::create::PathMessage>,
    pub duration_secs: f64,
    /// Requests and bytes this restore cost.
    pub storage: crate::storage::StatsReport,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let started = std::time::Instant::now();
    let (spec, sub) = match args.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), p.to_string()),
        None => (args.snapshot.clone(), "/".to_string()),
    };
    let include = (!args.includes.is_empty())
        .then(|| Excludes::includes(&args.includes))
        .transpose()?;
    let exclude = (!args.excludes.is_empty())
        .then(|| Excludes::new(&args.excludes, &[], false))
        .transpose()?;
    let repo = ctx.open()?;
    let _lock = lock::lock(&repo, false, "restore")?;
    let (sid, snap) = repo.find_snapshot(&spec)?;
    let index = repo.load_index()?;
    let target = crate::archive::sources::normalize(&args.target)?;
    let opts = RestoreOptions {
        target: target.clone(),
        sub_path: sub,
        include,
        exclude,
        verify: args.verify,
        delete: args.delete,
        archive: !args.no_archive,
        cancel: ctx.cancel,
        damaged: restore::damaged_notes(&snap),
    };
    let r = restore::restore(&repo, &index, snap.tree, &opts, ctx.progress)?;
    Ok(Report {
        snapshot: sid.to_hex(),
        target: target.to_string_lossy().into_owned(),
        files: r.files,
        dirs: r.dirs,
        others: r.others,
        bytes: r.bytes,
        verified_files: r.verified_files,
        skipped_files: r.skipped_files,
        deleted: r.deleted,
        archived: r.archived,
        skipped_unread: r.skipped_unread,
        errors: r
            .errors
            .into_iter()
            .map(|(p, m)| super::create::PathMessage {
                path: p.to_string_lossy().into_owned(),
                message: m,
            })
            .collect(),
        duration_secs: started.elapsed().as_secs_f64(),
        storage: repo.storage().stats(),
    })
}
