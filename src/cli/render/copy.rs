//! The report of `copy`.

use anyhow::Result;

use repo::commands::{copy, human_bytes};

use super::{Render, View};
use crate::cli::text::{escape, local_time, short};

impl Render for copy::Report {
    type Args = copy::Args;

    fn text(&self, _: &copy::Args, view: &View) -> Result<()> {
        for c in &self.copy.copied {
            let into = c
                .copy
                .as_deref()
                .map_or_else(|| "(dry run)".to_string(), |id| format!("as {}", short(id)));
            println!(
                "copied {} {}  {}  {into}",
                short(&c.source),
                local_time(&c.time),
                escape(&c.paths.join(", "))
            );
        }
        if view.verbose > 0 {
            for s in &self.copy.skipped {
                println!(
                    "already there: {} (as {})",
                    short(&s.source),
                    short(&s.copy)
                );
            }
        }
        println!(
            "{} snapshot(s) {}copied, {} already there; {} new blobs, {} ({} stored)",
            self.copy.copied.len(),
            if self.dry_run { "would be " } else { "" },
            self.copy.skipped.len(),
            self.copy.blobs_new,
            human_bytes(self.copy.bytes_new),
            human_bytes(self.copy.bytes_stored)
        );
        if view.verbose > 0 {
            println!("Source: {}", super::storage_line(&self.storage_from));
            println!("Destination: {}", super::storage_line(&self.storage_to));
        }
        Ok(())
    }
}
