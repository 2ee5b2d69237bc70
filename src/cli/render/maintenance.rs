//! Reports of the commands that keep a repository sound and small:
//! `check`, `forget`, `prune`, `repair`.

use anyhow::{Result, bail};

use repo::commands::{check, forget, human_bytes, prune, repair};
use repo::engine::check::CheckReport;
use repo::engine::check::repair::{RepairIndexReport, RepairSnapshotsReport};
use repo::engine::prune::PruneReport;

use super::{Render, View, print_json};
use crate::cli::exit;
use crate::cli::text::{escape, escape_controls, local_time, short};

/// Problems go to stderr even with `-q`; "no errors" comes last, once
/// nothing was found.
impl Render for CheckReport {
    type Args = check::Args;
    const TEXT_WHEN_QUIET: bool = true;

    fn text(&self, _: &check::Args, v: &View) -> Result<()> {
        v.say(format_args!(
            "checked {} snapshots, {} trees, {} packs, {} blobs; read {} packs ({})",
            self.snapshots,
            self.trees,
            self.packs,
            self.blobs,
            self.packs_read,
            human_bytes(self.bytes_read)
        ));
        v.say_storage(&self.storage);
        for n in &self.notices {
            if v.verbose > 0 {
                eprintln!(
                    "notice: {}: {}",
                    escape_controls(&n.object),
                    escape_controls(&n.message)
                );
            }
        }
        if !self.notices.is_empty() && v.verbose == 0 {
            eprintln!(
                "notice: {} unused pack(s) not referenced by any index (-v lists them)",
                self.notices.len()
            );
        }
        for e in &self.errors {
            eprintln!(
                "error: {}: {}",
                escape_controls(&e.object),
                escape_controls(&e.message)
            );
        }
        if self.errors.is_empty() {
            v.say("no errors were found");
        }
        Ok(())
    }

    fn outcome(&self, _: &View) -> Result<u8> {
        if !self.errors.is_empty() {
            bail!(
                "check found {} problem(s); the objects are listed above",
                self.errors.len()
            );
        }
        Ok(exit::OK)
    }
}

impl Render for forget::Report {
    type Args = forget::Args;

    fn text(&self, _: &forget::Args, _: &View) -> Result<()> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for g in &self.groups {
            println!("snapshots for {}:", escape(&g.group.to_string()));
            println!("  keep {} snapshot(s):", g.keep.len());
            for k in &g.keep {
                println!(
                    "    {}  {}  {}",
                    k.short_id,
                    local_time(&k.time),
                    k.reasons.join(", ")
                );
            }
            if !g.remove.is_empty() {
                println!("  {verb} {} snapshot(s):", g.remove.len());
                for x in &g.remove {
                    println!("    {}  {}", x.short_id, local_time(&x.time));
                }
            }
        }
        if self.groups.is_empty() {
            for id in &self.removed {
                println!("{verb} snapshot {}", short(id));
            }
        }
        println!("{verb} {} snapshot(s) in all", self.removed.len());
        if self.dry_run {
            println!("dry run: nothing was changed");
        }
        if let Some(p) = &self.prune {
            prune_text(p);
        }
        Ok(())
    }
}

impl Render for PruneReport {
    type Args = prune::Args;

    fn text(&self, _: &prune::Args, _: &View) -> Result<()> {
        prune_text(self);
        Ok(())
    }
}

/// Also the tail of `forget --prune`.
fn prune_text(r: &PruneReport) {
    let would = if r.dry_run { "would be " } else { "" };
    println!(
        "{} snapshot(s) use {} blobs; {} unused blob entries ({})",
        r.snapshots,
        r.blobs_used,
        r.blobs_unused,
        human_bytes(r.bytes_unused)
    );
    println!(
        "packs: {} ({}) before; {} {would}removed, {} {would}repacked, {} unindexed {would}removed, {} kept",
        r.packs_before,
        human_bytes(r.bytes_before),
        r.packs_removed,
        r.packs_repacked,
        r.packs_unindexed,
        r.packs_kept
    );
    if r.packs_unindexed_kept > 0 {
        println!(
            "kept: {} unindexed pack(s) younger than {} min, since a lock that is stale only by its age exists (a suspended backup may still index them; the next prune removes them once older)",
            r.packs_unindexed_kept,
            r.unindexed_grace_secs.div_ceil(60)
        );
    }
    if let (true, Some(until)) = (r.locked_kept > 0, &r.locked_until) {
        println!(
            "kept: {} pack(s) ({}) that S3 object lock may still protect, until {until} at the latest (deleting them would only hide them; a prune after then removes them)",
            r.locked_kept,
            human_bytes(r.locked_kept_bytes)
        );
    }
    if r.copies_damaged > 0 {
        println!(
            "set aside: {} damaged copie(s) of blobs that have a sound copy too, which was kept (a damaged pack, or junk indexed by a client holding the key: run `repo check --read-data`)",
            r.copies_damaged
        );
    }
    if r.locks_extended > 0 {
        println!(
            "object lock: extended for {} object(s) written more than half the lock period ago",
            r.locks_extended
        );
    }
    if r.blobs_repacked > 0 {
        println!(
            "repack: {} blobs ({}) {}copied{}",
            r.blobs_repacked,
            human_bytes(r.bytes_repacked),
            if r.dry_run { "would be " } else { "" },
            if r.dry_run {
                String::new()
            } else {
                format!(" into {} new pack(s)", r.packs_written)
            }
        );
    }
    if !r.dry_run && (r.index_written > 0 || r.index_removed > 0) {
        println!(
            "index: wrote {} object(s), removed {}",
            r.index_written, r.index_removed
        );
    }
    println!(
        "{}: {} packs, {} ({} freed)",
        if r.dry_run {
            "estimated after"
        } else {
            "after"
        },
        r.packs_after,
        human_bytes(r.bytes_after),
        human_bytes(r.bytes_before.saturating_sub(r.bytes_after))
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}

/// Packs found damaged while rebuilding the index are warned about on
/// stderr in any format.
impl Render for repair::Report {
    type Args = repair::Args;
    const TEXT_WHEN_QUIET: bool = true;

    fn text(&self, _: &repair::Args, v: &View) -> Result<()> {
        warn_damaged(self);
        if v.quiet {
            return Ok(());
        }
        match self {
            repair::Report::Index(r) => repair_index_text(r),
            repair::Report::Snapshots(r) => repair_snapshots_text(r),
        }
        Ok(())
    }

    fn json(&self) -> Result<()> {
        warn_damaged(self);
        print_json(self)
    }
}

fn warn_damaged(r: &repair::Report) {
    if let repair::Report::Index(r) = r {
        for d in &r.damaged {
            eprintln!(
                "warning: {}: {}",
                escape_controls(&d.object),
                escape_controls(&d.message)
            );
        }
    }
}

fn repair_index_text(r: &RepairIndexReport) {
    println!(
        "scanned {} packs: {} blobs; {} damaged pack(s)",
        r.packs_scanned,
        r.blobs_indexed,
        r.damaged.len()
    );
    match &r.new_index {
        Some(id) => println!(
            "wrote index {} replacing {} old index object(s); run `repo check` next",
            short(id),
            r.old_indexes
        ),
        None => println!(
            "dry run: would replace {} index object(s) with one",
            r.old_indexes
        ),
    }
}

fn repair_snapshots_text(r: &RepairSnapshotsReport) {
    if r.packs_read > 0 || r.blobs_failed > 0 {
        println!(
            "read {} pack(s): {} data blob(s) failed authentication",
            r.packs_read, r.blobs_failed
        );
    }
    for s in &r.repaired {
        println!(
            "snapshot {}: {} damaged path(s)",
            short(&s.old),
            s.damaged.len()
        );
        for d in &s.damaged {
            if d.kind == "dir" {
                println!("  dir  {}: contents lost ({})", escape(&d.path), d.reason);
            } else {
                println!(
                    "  file {}: {} bytes lost ({})",
                    escape(&d.path),
                    d.size,
                    d.reason
                );
            }
        }
        match &s.new {
            None => println!(
                "  would be rewritten{}",
                if r.forget {
                    " and the original deleted"
                } else {
                    ""
                }
            ),
            Some(new) => println!(
                "  rewritten as {}; original {}",
                short(new),
                if s.forgotten {
                    "deleted"
                } else {
                    "kept (delete it with `repo forget` once you no longer need it)"
                }
            ),
        }
    }
    if r.repaired.is_empty() {
        println!(
            "no damage found in {} snapshot(s){}",
            r.snapshots_checked,
            if r.packs_read == 0 {
                " (add --read-data to also authenticate the data)"
            } else {
                ""
            }
        );
    } else if r.dry_run {
        println!(
            "dry run: {} of {} snapshot(s) would be rewritten; nothing was changed",
            r.repaired.len(),
            r.snapshots_checked
        );
    } else {
        println!(
            "rewrote {} of {} snapshot(s) ({} new tree blobs); run `repo prune` to remove the damaged data{}",
            r.repaired.len(),
            r.snapshots_checked,
            r.trees_written,
            if r.forget {
                ""
            } else {
                " once the originals are forgotten"
            }
        );
    }
}
