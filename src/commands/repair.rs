//! `repo repair index`: rebuild the index from pack headers.

use super::Context;
use crate::error::Result;
use crate::repair::{self, RepairIndexReport};
use crate::repo::lock;

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
}

pub fn run(ctx: &Context, args: &Args) -> Result<RepairIndexReport> {
    match &args.what {
        What::Index { dry_run } => {
            let repo = ctx.open()?;
            let _lock = lock::lock(&repo, !dry_run, "repair index")?;
            repair::repair_index(&repo, *dry_run)
        }
    }
}
