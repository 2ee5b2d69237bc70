//! `repo unlock`: remove stale locks left by crashed processes.

use serde::Serialize;

use super::Context;
use crate::error::Result;
use crate::repository::lock;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remove every lock, also those of processes that may still run.
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub removed: Vec<String>,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    Ok(Report {
        removed: lock::unlock(&repo, args.remove_all)?,
    })
}
