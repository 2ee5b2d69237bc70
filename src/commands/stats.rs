//! `repo stats`: sizes of snapshots and of the repository.

use serde::Serialize;

use super::Context;
use crate::engine::stats::{self, SnapshotStats};
use crate::error::Result;
use crate::id::BlobId;
use crate::storage::StatsReport;

/// Which figures the text output leads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// What a restore of the snapshots would write (files, bytes).
    RestoreSize,
    /// The distinct blobs the snapshots reference: counts, plaintext and
    /// stored bytes, deduplication and compression ratios.
    RawData,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshots to count (`latest` or id prefixes; default: every snapshot).
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Which figures to show first.
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    /// The snapshots counted (full ids).
    pub snapshot_ids: Vec<String>,
    #[serde(flatten)]
    pub stats: SnapshotStats,
    /// The whole repository: packs and their bytes on storage, index objects.
    pub repository_packs: usize,
    pub repository_pack_bytes: u64,
    pub repository_index_objects: usize,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    pub storage: StatsReport,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    let chosen = repo.select_snapshots(&args.snapshots)?;
    let files: Vec<_> = repo.load_index_files()?.into_values().collect();
    let roots: Vec<BlobId> = chosen.iter().map(|(_, s)| s.tree).collect();
    let st = stats::stats(&repo, &files, &roots, ctx.cancel)?;
    let packs = repo.list_pack_objects()?;
    Ok(Report {
        mode: args.mode,
        snapshot_ids: chosen.iter().map(|(id, _)| id.to_hex()).collect(),
        stats: st,
        repository_packs: packs.len(),
        repository_pack_bytes: packs.iter().map(|l| l.size).sum(),
        repository_index_objects: files.len(),
        storage: repo.storage_stats(),
    })
}
