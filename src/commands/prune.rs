//! `repo prune`: delete data that no snapshot references.

use super::Context;
use super::common::check_max_unused;
use crate::engine::prune::{self, DEFAULT_MAX_UNUSED, PruneOptions, PruneReport};
use crate::error::Result;
use crate::repository::lock;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Repack a partly used pack when more than PERCENT of its bytes are unused
    /// (0: repack every partly used pack; 100: never repack).
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_MAX_UNUSED)]
    pub max_unused: f64,
    /// Only report what would be deleted and repacked.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn run(ctx: &Context, args: &Args) -> Result<PruneReport> {
    check_max_unused(args.max_unused)?;
    let repo = ctx.open()?;
    // A dry run changes nothing, so it only needs what readers need.
    let _lock = lock::lock_to_change(&repo, !args.dry_run, "prune")?;
    prune::prune(
        &repo,
        &PruneOptions {
            max_unused_percent: args.max_unused,
            dry_run: args.dry_run,
            cancel: ctx.cancel,
        },
    )
}
