//! Reports of the commands that manage the repository itself: `init`,
//! `unlock`, `key`, `lock`, `tag`, `stats`.

use std::io::Write;

use anyhow::Result;

use repo::commands::{human_bytes, init, key, lock, stats, tag, unlock};

use super::{Render, View};
use crate::cli::text::{escape, local_time, short};

impl Render for init::Report {
    type Args = init::Args;

    fn text(&self, _: &init::Args, _: &View) -> Result<()> {
        println!(
            "created repository {} at {}",
            short(&self.id),
            self.location
        );
        if let Some(days) = self.object_lock_days {
            println!(
                "Every object but lock files is written locked for {days} day(s) (S3 object lock, \
                 COMPLIANCE mode)."
            );
        }
        println!("Keep the password safe: without it the data cannot be recovered.");
        Ok(())
    }
}

impl Render for unlock::Report {
    type Args = unlock::Args;

    fn text(&self, _: &unlock::Args, _: &View) -> Result<()> {
        println!("removed {} lock(s)", self.removed.len());
        Ok(())
    }
}

/// `repo lock` says the lock is held before it waits, so that a script
/// reading the line knows it may go ahead.
pub(in crate::cli) fn lock_held(r: &lock::Report, a: &lock::Args, v: &View) -> repo::Result<()> {
    if v.json {
        return Ok(());
    }
    v.say(format_args!(
        "holding {} lock (pid {}){}; Ctrl-C or SIGTERM releases it",
        if r.exclusive {
            "an exclusive"
        } else {
            "a shared"
        },
        r.pid,
        a.duration
            .map(|d| format!(" for {}s", d.as_secs()))
            .unwrap_or_default()
    ));
    std::io::stdout()
        .flush()
        .map_err(|e| repo::Error::io("cannot write to", "stdout", e))
}

impl Render for lock::Report {
    type Args = lock::Args;

    fn text(&self, _: &lock::Args, _: &View) -> Result<()> {
        println!("lock released after {:.1}s", self.held_secs);
        Ok(())
    }
}

impl Render for key::Report {
    type Args = key::Args;

    fn text(&self, _: &key::Args, _: &View) -> Result<()> {
        if !self.keys.is_empty() {
            println!(" {:<8}  {:<19}  {:<16}  User", "ID", "Created", "Host");
            for k in &self.keys {
                let created = k
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| local_time(&t.with_timezone(&chrono::Utc)))
                    .unwrap_or_else(|| "?".into());
                let mut line = format!(
                    "{}{:<8}  {:<19}  {:<16}  {}",
                    if k.current { "*" } else { " " },
                    short(&k.id),
                    created,
                    escape(&k.host),
                    escape(&k.user)
                );
                if let Some(e) = &k.error {
                    line.push_str(&format!("  (unreadable: {})", escape(e)));
                }
                println!("{}", line.trim_end());
            }
            println!("* the key that opened the repository now");
        }
        match (&self.added, &self.removed) {
            (Some(a), Some(rm)) => println!(
                "password changed: added key {}, removed key {}",
                short(a),
                short(rm)
            ),
            (Some(a), None) => println!("added key {}", short(a)),
            (None, Some(rm)) => println!("removed key {}", short(rm)),
            (None, None) => {}
        }
        if let Some(f) = &self.exported {
            println!(
                "wrote the master key to {} (mode 0600); use it with --key-file or REPO_KEY_FILE.\n\
                 Anyone who holds this file can read and change the repository, and changing or \
                 removing passwords does not revoke it: keep it like an SSH private key.",
                f.display()
            );
        }
        Ok(())
    }
}

impl Render for tag::Report {
    type Args = tag::Args;

    fn text(&self, _: &tag::Args, _: &View) -> Result<()> {
        for c in &self.snapshots {
            match &c.new {
                Some(new) => println!(
                    "snapshot {} saved as {}: tags [{}]",
                    short(&c.old),
                    short(new),
                    c.tags.join(", ")
                ),
                None => println!(
                    "snapshot {} unchanged: tags [{}]",
                    short(&c.old),
                    c.tags.join(", ")
                ),
            }
        }
        Ok(())
    }
}

impl Render for stats::Report {
    type Args = stats::Args;

    fn text(&self, _: &stats::Args, v: &View) -> Result<()> {
        let s = &self.stats;
        println!("Snapshots:       {}", s.snapshots);
        match self.mode {
            stats::Mode::RestoreSize => {
                println!(
                    "Restore size:    {} ({} files, {} dirs, {} others)",
                    human_bytes(s.restore_size),
                    s.files,
                    s.dirs,
                    s.others
                );
            }
            stats::Mode::RawData => {
                println!(
                    "Blobs:           {} data, {} tree",
                    s.data_blobs, s.tree_blobs
                );
                println!(
                    "Raw data:        {} (+ {} of trees)",
                    human_bytes(s.raw_data),
                    human_bytes(s.raw_trees)
                );
                println!("Stored size:     {}", human_bytes(s.stored_size));
                println!("Restore size:    {}", human_bytes(s.restore_size));
                println!("Dedup ratio:     {:.2}x", s.dedup_ratio);
                println!("Compression:     {:.2}x", s.compression_ratio);
            }
        }
        println!(
            "Repository:      {} packs, {}; {} index object(s)",
            self.repository_packs,
            human_bytes(self.repository_pack_bytes),
            self.repository_index_objects
        );
        v.say_storage(&self.storage);
        Ok(())
    }
}
