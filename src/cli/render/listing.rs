//! Reports that list what a repository holds: `snapshots`, `ls`, `find`,
//! `diff`, `cat`.

use std::io::Write;

use anyhow::Result;

use repo::commands::entry::Entry;
use repo::commands::{cat, diff, find, human_bytes, ls, snapshots};

use super::{Render, View};
use crate::cli::text::{escape, escape_bytes, local_time, short};

/// Printed even with `-q`: the listing is what was asked for.
impl Render for snapshots::Report {
    type Args = snapshots::Args;
    const TEXT_WHEN_QUIET: bool = true;

    fn text(&self, _: &snapshots::Args, _: &View) -> Result<()> {
        match &self.listing {
            snapshots::Listing::List(list) => snapshot_table(list),
            snapshots::Listing::Groups(groups) => snapshot_groups(groups),
        }
        Ok(())
    }

    /// The JSON is the bare listing: the cost goes to stderr in any format.
    fn outcome(&self, v: &View) -> Result<u8> {
        v.note_storage(&self.storage, false);
        Ok(crate::cli::exit::OK)
    }
}

fn snapshot_table(list: &[snapshots::Entry]) {
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|e| {
            let s = &e.snapshot;
            [
                e.short_id.clone(),
                local_time(&s.time),
                escape(&s.host).into_owned(),
                escape(&s.tags.join(",")).into_owned(),
                escape(&s.paths.join(" ")).into_owned(),
                human_bytes(s.summary.total_bytes),
            ]
        })
        .collect();
    let head = ["ID", "Time", "Host", "Tags", "Paths", "Size"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |c: &[String; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {:>w5$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5]
        )
    };
    println!("{}", line(&head.map(String::from)).trim_end());
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 10));
    for r in &rows {
        println!("{}", line(r).trim_end());
    }
    println!("{} snapshot(s)", rows.len());
}

fn snapshot_groups(groups: &[snapshots::Group]) {
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("snapshots for {}:", escape(&g.group.to_string()));
        snapshot_table(&g.snapshots);
    }
    if groups.is_empty() {
        println!("0 snapshot(s)");
    }
}

/// Printed even with `-q`: the listing is what was asked for.
impl Render for ls::Report {
    type Args = ls::Args;
    const TEXT_WHEN_QUIET: bool = true;

    fn text(&self, a: &ls::Args, _: &View) -> Result<()> {
        let mut out = std::io::stdout().lock();
        for e in &self.entries {
            if a.long {
                let owner = if e.user.is_empty() {
                    e.uid.to_string()
                } else {
                    e.user.clone()
                };
                let group = if e.group.is_empty() {
                    e.gid.to_string()
                } else {
                    e.group.clone()
                };
                let link = match (&e.target_hex, &e.target) {
                    (Some(h), _) => {
                        format!(" -> {}", escape_bytes(&hex::decode(h).unwrap_or_default()))
                    }
                    (None, Some(t)) => format!(" -> {}", escape(t)),
                    (None, None) => String::new(),
                };
                writeln!(
                    out,
                    "{:<8} {:04o} {:>8} {:>8} {:>12} {} {}{link}{}",
                    e.kind,
                    e.mode,
                    owner,
                    group,
                    e.size,
                    &e.mtime[..19.min(e.mtime.len())],
                    entry_path(e),
                    damaged_suffix(&e.damaged)
                )?;
            } else {
                writeln!(out, "{}{}", entry_path(e), damaged_suffix(&e.damaged))?;
            }
        }
        Ok(())
    }

    fn outcome(&self, v: &View) -> Result<u8> {
        v.note_storage(&self.storage, true);
        Ok(crate::cli::exit::OK)
    }
}

impl Render for find::Report {
    type Args = find::Args;

    fn text(&self, _: &find::Args, v: &View) -> Result<()> {
        let mut current = "";
        for m in &self.matches {
            if m.snapshot != current {
                current = &m.snapshot;
                println!("snapshot {}:", short(current));
            }
            let e = &m.entry;
            println!(
                "  {:<8} {:04o} {:>12} {} {}",
                e.kind,
                e.mode,
                e.size,
                &e.mtime[..19.min(e.mtime.len())],
                entry_path(e)
            );
        }
        let hit: std::collections::BTreeSet<&str> =
            self.matches.iter().map(|m| m.snapshot.as_str()).collect();
        println!(
            "{} match(es) in {} of {} snapshot(s) searched",
            self.matches.len(),
            hit.len(),
            self.snapshots.len()
        );
        v.say_storage(&self.storage);
        Ok(())
    }
}

impl Render for diff::Report {
    type Args = diff::Args;

    fn text(&self, _: &diff::Args, v: &View) -> Result<()> {
        println!(
            "comparing snapshot {} to {}:",
            short(&self.snapshot1),
            short(&self.snapshot2)
        );
        for c in &self.diff.changes {
            let fields = if c.fields.is_empty() {
                String::new()
            } else {
                format!("  ({})", c.fields.join(", "))
            };
            println!("{}    {}{fields}", c.change.marker(), escape(&c.path));
        }
        let d = &self.diff;
        println!();
        println!(
            "Files:    {} new, {} removed, {} changed",
            d.added.files, d.removed.files, d.modified.files
        );
        println!("Dirs:     {} new, {} removed", d.added.dirs, d.removed.dirs);
        println!(
            "Others:   {} new, {} removed, {} changed",
            d.added.others, d.removed.others, d.modified.others
        );
        println!(
            "Data:     {} added, {} removed, changed files {} -> {}",
            human_bytes(d.added.bytes),
            human_bytes(d.removed.bytes),
            human_bytes(d.modified.bytes_before),
            human_bytes(d.modified.bytes_after)
        );
        println!(
            "Metadata: {} entries changed only in metadata; {} identical subtrees skipped",
            d.metadata_only, d.identical_subtrees
        );
        v.say_storage(&self.storage);
        Ok(())
    }
}

/// The object is JSON already: printed as it is, with or without `--json`
/// or `-q`.
impl Render for cat::Report {
    type Args = cat::Args;
    const TEXT_WHEN_QUIET: bool = true;

    fn text(&self, _: &cat::Args, _: &View) -> Result<()> {
        self.json()
    }

    fn json(&self) -> Result<()> {
        writeln!(std::io::stdout().lock(), "{}", self.text)?;
        Ok(())
    }
}

/// ` [damaged: …]` after an `ls` entry a repaired snapshot lists as damaged.
fn damaged_suffix(d: &Option<String>) -> String {
    d.as_ref()
        .map(|d| format!("  [damaged: {}]", escape(d)))
        .unwrap_or_default()
}

/// The path of an `ls`/`find` entry for text output: its raw bytes when
/// they are not UTF-8, escaped.
fn entry_path(e: &Entry) -> String {
    match e.path_hex.as_deref().and_then(|h| hex::decode(h).ok()) {
        Some(raw) => escape_bytes(&raw),
        None => escape(&e.path).into_owned(),
    }
}
