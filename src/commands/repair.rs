//! `repo repair index` and `repo repair snapshots`.

use serde::Serialize;

use super::Context;
use crate::engine::check::repair::{
    self, RepairIndexReport, RepairSnapshotsOptions, RepairSnapshotsReport,
};
use crate::error::Result;
use crate::repository::lock;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum What {
    /// Rebuild the index by scanning every pack (after lost or damaged index objects).
    Index {
        /// Scan and report, but write and delete nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Rewrite snapshots whose data is partly lost: damaged files and
    /// directories are recorded in the snapshot, the rest stays restorable.
    Snapshots {
        /// Snapshots to repair: `latest` or id prefixes (default: all).
        #[arg(value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
        /// Report what would change, but write and delete nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Delete each original snapshot once its repaired copy is stored
        /// (without it, the originals are kept and `check` still reports them).
        #[arg(long)]
        forget: bool,
        /// Also read the packs and treat data blobs that fail authentication as lost.
        #[arg(long)]
        read_data: bool,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    Index(RepairIndexReport),
    Snapshots(RepairSnapshotsReport),
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    match &args.what {
        What::Index { dry_run } => {
            let repo = ctx.open_uncached()?;
            let _lock = lock::lock_to_change(&repo, !dry_run, "repair index")?;
            repair::repair_index(&repo, *dry_run).map(Report::Index)
        }
        What::Snapshots {
            snapshots,
            dry_run,
            forget,
            read_data,
        } => {
            let repo = ctx.open_uncached()?;
            let _lock = lock::lock_to_change(&repo, !dry_run, "repair snapshots")?;
            let targets = if snapshots.is_empty() {
                repo.snapshots()?
            } else {
                let mut v: Vec<(crate::id::SnapshotId, crate::format::snapshot::Snapshot)> =
                    Vec::new();
                for s in snapshots {
                    let found = repo.find_snapshot(s)?;
                    if !v.iter().any(|(id, _)| *id == found.0) {
                        v.push(found);
                    }
                }
                v
            };
            let opts = RepairSnapshotsOptions {
                dry_run: *dry_run,
                forget: *forget,
                read_data: *read_data,
            };
            repair::repair_snapshots(&repo, targets, opts).map(Report::Snapshots)
        }
    }
}
