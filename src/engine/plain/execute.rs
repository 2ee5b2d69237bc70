//! Carrying out a plan, in the order that keeps each side consistent:
//! folders and symlinks first (parents before children), then file copies
//! in parallel, then further hard links, then deletions deepest first; at
//! the end each side's new record and log.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::manifest::{Entries, EntryKind, Manifest};

use super::links::{Leader, hard_links};
use super::run::Run;
use super::{Compare, MANIFEST, Options, Prepared, Report, SOURCE_RECORD, Side, a_record, plan};

/// Carries out `p.plan` (conflicts already settled or left alone).
pub fn execute(
    a: &Side,
    b: &Side,
    p: &Prepared,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let now = chrono::Utc::now();
    let stamp = now.format("%Y-%m-%dT%H-%M-%S%.3fZ").to_string();
    let run = Run::new([a, b], stamp, opts.archive, progress);
    // The control folder is made ours before anything goes into it; a
    // side that is only read (a mirror's source) is never touched.
    let a_on_a = a_record(opts.mode).0;
    if a_on_a {
        a.claim_control()?;
    }
    b.claim_control()?;
    let total: u64 = p.plan.actions.iter().map(|a| a.size).sum();
    progress.set_total(p.plan.actions.len() as u64, total);
    let (files, structure): (Vec<_>, Vec<_>) = p
        .plan
        .actions
        .iter()
        .filter(|x| matches!(x.op, plan::Op::Copy { .. }))
        .partition(|x| x.kind == EntryKind::File);
    run.copy_structure(p, &structure);
    let links = hard_links(p, [a, b], &files);
    let (followers, files): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|act| links.contains_key(&act.path));
    let pool = if a.is_remote() { a.pool()? } else { b.pool()? };
    pool.install(|| run.copy_files(p, &files, opts.cancel));
    run.link_followers(p, &followers, &links, opts.cancel);
    run.delete_all(p, opts.cancel);
    let cancelled = opts.cancel.load(Ordering::Relaxed);
    let created = now.to_rfc3339();
    for (i, side) in [a, b].into_iter().enumerate() {
        let entries = run.new_entries(p, i, cancelled, opts.compare);
        let manifest = Manifest::new(created.clone(), entries);
        let (home, name) = match (i, a_on_a) {
            (0, false) => (b, SOURCE_RECORD),
            _ => (side, MANIFEST),
        };
        run.write_records(i, side, &manifest, home, name);
    }
    if cancelled {
        return Err(Error::Interrupted);
    }
    Ok(run.report.into_inner().unwrap_or_default())
}

impl Run<'_> {
    /// Directories and symlinks first, parents before children (path
    /// order), so file copies find their folders.
    fn copy_structure(&self, p: &Prepared, structure: &[&plan::Action]) {
        for act in structure {
            if let plan::Op::Copy { to } = act.op
                && let Err(e) = self.copy(p, to, &act.path)
            {
                self.error(self.side(to), &act.path, e);
            }
        }
    }

    /// File copies, in parallel.
    fn copy_files(&self, p: &Prepared, files: &[&plan::Action], cancel: &AtomicBool) {
        files.par_iter().for_each(|act| {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            if let plan::Op::Copy { to } = act.op
                && let Err(e) = self.copy(p, to, &act.path)
            {
                self.error(self.side(to), &act.path, e);
            }
        })
    }

    /// Further links of a file copied above (or already in place) become
    /// links there too; if the first one failed, they are copied instead.
    fn link_followers(
        &self,
        p: &Prepared,
        followers: &[&plan::Action],
        links: &std::collections::HashMap<Vec<u8>, Leader>,
        cancel: &AtomicBool,
    ) {
        for act in followers {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let plan::Op::Copy { to } = act.op else {
                continue;
            };
            let result = match links.get(&act.path) {
                Some(leader) if self.has(to, leader) => self.link(p, to, &act.path, &leader.path),
                _ => self.copy(p, to, &act.path),
            };
            if let Err(e) = result {
                self.error(self.side(to), &act.path, e);
            }
        }
    }

    /// Deletions last, deepest first, so directories are empty when their
    /// turn comes.
    fn delete_all(&self, p: &Prepared, cancel: &AtomicBool) {
        for act in p.plan.actions.iter().rev() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            if let plan::Op::Delete { on } = act.op
                && let Err(e) = self.delete(on, &act.path, act.kind)
            {
                self.error(self.side(on), &act.path, e);
            }
        }
    }

    /// What side `i` now holds. Paths left undecided keep their old record,
    /// so they come up again next run; after an interruption, paths not yet
    /// done also keep theirs.
    fn new_entries(&self, p: &Prepared, i: usize, cancelled: bool, compare: Compare) -> Entries {
        let (cur, base) = if i == 0 {
            (&p.a, p.a_base.as_ref())
        } else {
            (&p.b, p.b_base.as_ref())
        };
        let written = self.written[i]
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        let mut entries = cur.clone();
        for (rel, rec) in &written {
            match rec {
                Some(e) => entries.insert(rel.clone(), e.clone()),
                None => entries.remove(rel),
            };
        }
        let mut pending: Vec<Vec<u8>> = if cancelled {
            p.plan.actions.iter().map(|x| x.path.clone()).collect()
        } else {
            Vec::new()
        };
        if let Ok(f) = self.failed.lock() {
            pending.extend(f.iter().cloned());
        }
        for rel in p.plan.keep_base.iter().chain(pending.iter()) {
            if written.contains_key(rel) {
                continue;
            }
            match base.and_then(|b| b.get(rel)) {
                Some(e) => entries.insert(rel.clone(), e.clone()),
                None => entries.remove(rel),
            };
        }
        if compare == Compare::Attr {
            // Plain attribute mode records no new hashes; it keeps those it had.
            for (rel, e) in entries.iter_mut() {
                let rec = base.and_then(|b| b.get(rel));
                if rec.is_none_or(|r| r.size != e.size || r.mtime_ns != e.mtime_ns) {
                    e.blake3 = None;
                }
            }
        }
        entries
    }

    /// Writes side `i`'s record as `name` on `home`, and its log on `side`.
    fn write_records(&self, i: usize, side: &Side, manifest: &Manifest, home: &Side, name: &str) {
        if let Err(e) = home.write_control(name, &manifest.encode()) {
            self.error(home, format!(".repo/{name}").as_bytes(), e);
        }
        let lines = self.logs[i]
            .lock()
            .map(|l| l.join("\n"))
            .unwrap_or_default();
        if !lines.is_empty()
            && let Err(e) = side.write_control(
                &format!("log/{}.jsonl", self.stamp),
                format!("{lines}\n").as_bytes(),
            )
        {
            self.error(side, b".repo/log", e);
        }
    }
}
