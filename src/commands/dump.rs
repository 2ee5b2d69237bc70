//! `repo dump`: write a file from a snapshot, or a directory as a tar
//! archive, to a stream (the CLI passes standard output).

use std::io::Write;

use serde::Serialize;

use super::Context;
use crate::engine::dump::{self, DumpStats};
use crate::error::{Error, Result};
use crate::format::tree::NodeKind;
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix.
    pub snapshot: String,
    /// Path inside the snapshot: a file is written as is, a directory
    /// (`/` for everything) as a tar archive.
    pub path: std::path::PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub path: String,
    /// `file` or `tar`.
    pub format: &'static str,
    #[serde(flatten)]
    pub stats: DumpStats,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    pub storage: StatsReport,
}

pub fn run(ctx: &Context, args: &Args, out: &mut dyn Write) -> Result<Report> {
    let repo = ctx.open()?;
    let ((sid, snap), index) = repo.with_index(|| repo.find_snapshot(&args.snapshot))?;
    let (node, at) = repo.resolve(&index, snap.tree, &args.path)?;
    let (format, stats) = match node.kind {
        NodeKind::File => {
            let bytes = dump::write_file(&repo, &index, &node, &at, out, ctx.cancel)?;
            (
                "file",
                DumpStats {
                    files: 1,
                    bytes,
                    ..Default::default()
                },
            )
        }
        NodeKind::Dir => (
            "tar",
            dump::write_tar(&repo, &index, &node, out, ctx.cancel)?,
        ),
        _ => {
            return Err(Error::Usage(format!(
                "{} in snapshot {} is a {}, not a file or directory; dump a file or a directory (for a tar archive)",
                at.display(),
                sid.short(),
                node.kind.name()
            )));
        }
    };
    Ok(Report {
        snapshot: sid.to_hex(),
        path: at.to_string_lossy().into_owned(),
        format,
        stats,
        storage: repo.storage_stats(),
    })
}
