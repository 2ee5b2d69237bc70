//! Reports of the commands that move data: `create`, `restore`, `dump`;
//! and the question `restore --delete` asks.

use std::io::IsTerminal;

use anyhow::{Result, bail};

use repo::commands::{create, dump, human_bytes, restore};

use super::{Render, View};
use crate::cli::exit;
use crate::cli::text::{escape_bytes, short};

impl Render for create::Report {
    type Args = create::Args;

    fn text(&self, _: &create::Args, v: &View) -> Result<()> {
        let s = &self.summary;
        println!(
            "Files:   {} new, {} changed, {} unchanged",
            s.files_new, s.files_changed, s.files_unchanged
        );
        println!("Dirs:    {}   Others: {}", s.dirs, s.others);
        println!(
            "Added:   {} ({} stored) in {} new blobs",
            human_bytes(s.data_added),
            human_bytes(s.data_added_stored),
            s.blobs_new
        );
        println!(
            "Processed {} files, {} in {:.1}s ({} read)",
            s.files_new + s.files_changed + s.files_unchanged,
            human_bytes(s.total_bytes),
            s.duration_secs,
            human_bytes(s.bytes_read)
        );
        v.say_storage(&self.storage);
        match (&self.snapshot, self.dry_run) {
            (Some(id), _) => println!(
                "snapshot {} saved{}",
                short(id),
                self.parent
                    .as_deref()
                    .map(|p| format!(" (parent {})", short(p)))
                    .unwrap_or_default()
            ),
            (None, true) => println!("dry run: nothing was written"),
            (None, false) => {}
        }
        Ok(())
    }

    /// Each path was already reported on stderr as it happened.
    fn outcome(&self, _: &View) -> Result<u8> {
        if !self.errors.is_empty() {
            eprintln!(
                "{} file(s) could not be read and are missing from the snapshot; fix access and run create again",
                self.errors.len()
            );
        }
        if !self.warnings.is_empty() {
            eprintln!(
                "{} file(s) changed while being read; the snapshot holds what was read, run create again for a consistent copy",
                self.warnings.len()
            );
        }
        Ok(if self.errors.is_empty() && self.warnings.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        })
    }
}

impl Render for restore::Report {
    type Args = restore::Args;

    fn text(&self, a: &restore::Args, v: &View) -> Result<()> {
        println!(
            "restored snapshot {} to {}: {} files ({} already identical), {} dirs, {} others, {} in {:.1}s{}",
            short(&self.snapshot),
            self.target,
            self.counts.files,
            self.counts.skipped_files,
            self.counts.dirs,
            self.counts.others,
            human_bytes(self.counts.bytes),
            self.duration_secs,
            if a.verify {
                format!(", {} files verified", self.counts.verified_files)
            } else {
                String::new()
            }
        );
        if a.delete {
            println!(
                "--delete: {} entries not in the snapshot removed, {} old versions kept under {}/.repo/",
                self.counts.deleted, self.counts.archived, self.target
            );
        }
        v.say_storage(&self.storage);
        Ok(())
    }

    fn outcome(&self, _: &View) -> Result<u8> {
        if !self.errors.is_empty() {
            bail!(
                "{} problem(s) during restore (listed above); those files may be missing or incomplete",
                self.errors.len()
            );
        }
        Ok(exit::OK)
    }
}

/// The data itself went to stdout; only notes follow, on stderr.
impl Render for dump::Report {
    type Args = dump::Args;

    fn text(&self, _: &dump::Args, _: &View) -> Result<()> {
        Ok(())
    }

    fn json(&self) -> Result<()> {
        Ok(())
    }

    fn outcome(&self, v: &View) -> Result<u8> {
        if v.verbose > 0 {
            eprintln!(
                "dumped {} of snapshot {} ({}): {} files, {} dirs, {} others, {}",
                self.path,
                short(&self.snapshot),
                self.format,
                self.stats.files,
                self.stats.dirs,
                self.stats.others,
                human_bytes(self.stats.bytes)
            );
        }
        v.note_storage(&self.storage, false);
        if self.stats.skipped > 0 {
            eprintln!(
                "note: {} socket(s) left out: tar cannot hold them",
                self.stats.skipped
            );
        }
        Ok(exit::OK)
    }
}

/// `restore --delete`: shows what would be removed and asks on a terminal,
/// as `mirror` does; without a terminal only `-y` goes ahead.
pub(in crate::cli) fn confirm_removals(
    gone: &[repo::engine::restore::mirror::Removal],
    target: &std::path::Path,
    quiet: bool,
) -> repo::Result<bool> {
    const SHOWN: usize = 200;
    // The list is part of the question: with --json or --quiet it goes to
    // stderr (stdout stays clean) rather than nowhere.
    let line = |l: String| {
        if quiet {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    };
    line(format!(
        "--delete: {} entr{} in {} that the snapshot lacks would be removed:",
        gone.len(),
        if gone.len() == 1 { "y" } else { "ies" },
        target.display()
    ));
    for g in gone.iter().take(SHOWN) {
        // Names come from the target, which other users may own:
        // escaped, so none can fake a line or erase one.
        let slash = if g.dir { "/" } else { "" };
        line(format!("  - {}{slash}", escape_bytes(&g.rel)));
    }
    if gone.len() > SHOWN {
        line(format!("  ... and {} more", gone.len() - SHOWN));
    }
    if !std::io::stdin().is_terminal() {
        return Err(repo::Error::Usage(format!(
            "--delete would remove {} entr{} from {} (listed above) but there is no terminal to \
             confirm: pass -y to go ahead",
            gone.len(),
            if gone.len() == 1 { "y" } else { "ies" },
            target.display()
        )));
    }
    crate::cli::plain::confirm()
        .map_err(|e| repo::Error::Usage(format!("cannot ask for confirmation: {e}")))
}
