//! `repo restore`: recreate a snapshot (or part of it) on disk.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use super::common::{PathMessage, path_messages};
use crate::engine::archive::Excludes;
use crate::engine::restore::{self, RestoreCounts, RestoreOptions};
use crate::error::{Error, Result};
use crate::repository::lock;
use crate::storage::Location;

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
    /// With --delete: remove what the snapshot lacks without asking (for scripts).
    #[arg(long, short = 'y', requires = "delete")]
    pub yes: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub target: String,
    #[serde(flatten)]
    pub counts: RestoreCounts,
    pub errors: Vec<PathMessage>,
    pub duration_secs: f64,
    /// Requests and bytes this restore cost.
    pub storage: crate::storage::StatsReport,
}

/// Refuses a target inside the local repository this restore reads (or the
/// repository itself), which restored files would overwrite or litter (a
/// file named `config` replaced the repository's config); and, with
/// `--delete`, a target that holds it: the repository is not in the
/// snapshot, so `--delete` would remove it. Directories are compared by
/// device and inode, so symlinks and bind mounts do not hide it; a target
/// not yet made is judged by the nearest directory above it that exists. A
/// remote repository has nothing on this machine to protect, and there is
/// no local cache.
fn refuse_repository_in_target(ctx: &Context, target: &Path, delete: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Location::Local(repo_dir) = &ctx.location else {
        return Ok(());
    };
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Ok(repo_dir) = std::fs::canonicalize(repo_dir) else {
        return Ok(());
    };
    if delete
        && let Some(target_id) = id(target)
        && repo_dir.ancestors().any(|a| id(a) == Some(target_id))
    {
        return Err(Error::Usage(format!(
            "{} contains the repository {} that this restore reads: --delete would remove it. \
             Restore into a directory that does not hold the repository",
            target.display(),
            repo_dir.display()
        )));
    }
    let Some(repo_id) = id(&repo_dir) else {
        return Ok(());
    };
    let Some(existing) = target.ancestors().find(|a| id(a).is_some()) else {
        return Ok(());
    };
    let existing = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    if existing.ancestors().any(|a| id(a) == Some(repo_id)) {
        return Err(Error::Usage(format!(
            "{} lies inside the repository {} that this restore reads: restored files would \
             overwrite or mix with repository files. Restore into a directory outside the \
             repository",
            target.display(),
            repo_dir.display()
        )));
    }
    Ok(())
}

/// (device, inode) of the local repository's directory and of every
/// directory above it: `--delete` removes none of them wherever the target
/// reaches one (see [`RestoreOptions::protect`]).
fn repository_dirs(ctx: &Context) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let Location::Local(repo_dir) = &ctx.location else {
        return Vec::new();
    };
    let Ok(repo_dir) = std::fs::canonicalize(repo_dir) else {
        return Vec::new();
    };
    repo_dir
        .ancestors()
        .filter_map(|a| std::fs::metadata(a).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}

/// Asks whether `--delete` may remove these entries (see [`RestoreOptions::confirm`]).
pub(crate) type Confirm<'a> = &'a (dyn Fn(&[restore::mirror::Removal]) -> Result<bool> + Sync);

pub fn run(ctx: &Context, args: &Args, confirm: Confirm) -> Result<Report> {
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
    let target = crate::engine::archive::sources::normalize(&args.target)?;
    refuse_repository_in_target(ctx, &target, args.delete)?;
    let repo = ctx.open()?;
    let _lock = lock::lock(&repo, false, "restore")?;
    let ((sid, snap), index) = repo.with_index(|| repo.find_snapshot(&spec))?;
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
        protect: if args.delete {
            repository_dirs(ctx)
        } else {
            Vec::new()
        },
        confirm: if args.yes { &|_| Ok(true) } else { confirm },
    };
    let r = restore::restore(&repo, &index, snap.tree, &opts, ctx.progress)?;
    Ok(Report {
        snapshot: sid.to_hex(),
        target: target.to_string_lossy().into_owned(),
        counts: r.counts,
        errors: path_messages(r.errors),
        duration_secs: started.elapsed().as_secs_f64(),
        storage: repo.storage_stats(),
    })
}
