//! Mirror and sync of plain folders, driven by manifests.
//!
//! A run has two steps so the user can see and approve what will happen:
//! [`prepare`] scans both sides, reads their manifests, hashes what the
//! compare mode needs and makes a [`plan::Plan`]; [`execute`] carries it
//! out, moving anything it replaces or deletes aside first, then writes
//! each side's new manifest and a log of what it did.

pub mod local;
pub mod plan;
pub mod remote;
mod side;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::archive::Excludes;
use crate::error::{Error, Result};
use crate::manifest::{Entries, Entry, EntryKind, Manifest};
use crate::progress::Progress;
pub use plan::{Compare, Mode, Plan, Resolve, Select, SideId};
pub use side::Side;

pub const MANIFEST: &str = "manifest.jsonl";

pub struct Options<'a> {
    pub mode: Mode,
    pub select: Select,
    pub compare: Compare,
    /// Move replaced and deleted files to `.repo/archive` / `.repo/trash`.
    pub archive: bool,
    pub filter: Option<Excludes>,
    pub cancel: &'a AtomicBool,
}

/// Both sides scanned, with their records, ready to plan and run.
pub struct Prepared {
    pub a: Entries,
    pub b: Entries,
    pub a_base: Option<Entries>,
    pub b_base: Option<Entries>,
    pub plan: Plan,
    pub warnings: Vec<(String, String)>,
    /// Files hashed for the comparison.
    pub hashed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub copied: u64,
    pub bytes: u64,
    pub deleted: u64,
    pub dirs: u64,
    /// Files moved to `.repo/archive` or `.repo/trash` instead of being lost.
    pub archived: u64,
    pub errors: Vec<(String, String)>,
}

fn load_manifest(side: &Side) -> Result<Option<Entries>> {
    let Some(bytes) = side.read_control(MANIFEST)? else {
        return Ok(None);
    };
    Manifest::decode(&bytes)
        .map(|m| Some(m.entries))
        .map_err(|e| Error::BadManifest {
            path: format!("{}/.repo/{MANIFEST}", side.name().trim_end_matches('/')),
            reason: e.to_string(),
        })
}

/// Hashes in parallel the files whose hash the comparison needs.
fn fill_hashes(
    side: &Side,
    cur: &mut Entries,
    base: Option<&Entries>,
    all: bool,
    warnings: &Mutex<Vec<(String, String)>>,
) -> Result<u64> {
    let count = AtomicU64::new(0);
    let pool = side.pool()?;
    pool.install(|| {
        cur.par_iter_mut().for_each(|(rel, e)| {
            if e.kind != EntryKind::File {
                return;
            }
            // Unchanged since recorded: the recorded hash stands, unless asked to rehash all.
            let rec = base.and_then(|b| b.get(rel)).filter(|r| {
                r.kind == EntryKind::File && r.size == e.size && r.mtime_ns == e.mtime_ns
            });
            if !all {
                e.blake3 = rec.and_then(|r| r.blake3);
                return;
            }
            match side.hash(rel, e) {
                Ok(h) => {
                    e.blake3 = Some(h);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    if let Ok(mut w) = warnings.lock() {
                        w.push((side.display(rel), format!("cannot hash: {err}")));
                    }
                }
            }
        })
    });
    Ok(count.into_inner())
}

/// Scans both sides and plans the run.
pub fn prepare(a: &Side, b: &Side, opts: &Options) -> Result<Prepared> {
    let (a_base, b_base) = (load_manifest(a)?, load_manifest(b)?);
    let mut warnings = Vec::new();
    let mut a_cur = a.scan(a_base.as_ref(), opts.filter.as_ref(), &mut warnings)?;
    let mut b_cur = b.scan(b_base.as_ref(), opts.filter.as_ref(), &mut warnings)?;
    let (mut a_base, mut b_base) = (a_base, b_base);
    if a.is_remote() || b.is_remote() {
        // Object stores hold files only: directories are implied, symlinks impossible.
        for (side, m) in [(a, &mut a_cur), (b, &mut b_cur)] {
            m.retain(|rel, e| match e.kind {
                EntryKind::Dir => false,
                EntryKind::Symlink => {
                    warnings.push((
                        side.display(rel),
                        "skipped: symlinks cannot be stored on S3 or FTP".into(),
                    ));
                    false
                }
                EntryKind::File => true,
            });
        }
        for m in [&mut a_base, &mut b_base].into_iter().flatten() {
            m.retain(|_, e| e.kind == EntryKind::File);
        }
    }
    let all = opts.compare == Compare::Hash;
    let w = Mutex::new(warnings);
    let hashed = fill_hashes(a, &mut a_cur, a_base.as_ref(), all, &w)?
        + fill_hashes(b, &mut b_cur, b_base.as_ref(), all, &w)?;
    if opts.cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let inputs = plan::Inputs {
        a: &a_cur,
        b: &b_cur,
        a_base: a_base.as_ref(),
        b_base: b_base.as_ref(),
    };
    let plan = plan::plan(&inputs, opts.mode, opts.select, opts.compare);
    Ok(Prepared {
        a: a_cur,
        b: b_cur,
        a_base,
        b_base,
        plan,
        warnings: w.into_inner().unwrap_or_default(),
        hashed,
    })
}

/// One line of a side's log.
#[derive(Serialize)]
struct LogLine<'a> {
    time: &'a str,
    action: &'a str,
    path: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
}

struct Run<'a> {
    sides: [&'a Side; 2],
    stamp: String,
    bin_ok: bool,
    progress: &'a dyn Progress,
    /// New records per side, from what was written.
    written: [Mutex<HashMap<Vec<u8>, Option<Entry>>>; 2],
    logs: [Mutex<Vec<String>>; 2],
    report: Mutex<Report>,
}

impl Run<'_> {
    fn idx(s: SideId) -> usize {
        match s {
            SideId::A => 0,
            SideId::B => 1,
        }
    }

    fn log(&self, on: SideId, action: &str, rel: &[u8], e: Option<&Entry>) {
        let line = LogLine {
            time: &self.stamp,
            action,
            path: String::from_utf8_lossy(rel).into_owned(),
            size: e.map_or(0, |e| e.size),
            blake3: e.and_then(|e| e.blake3).map(hex::encode),
        };
        if let (Ok(text), Ok(mut l)) = (
            serde_json::to_string(&line),
            self.logs[Self::idx(on)].lock(),
        ) {
            l.push(text);
        }
    }

    fn error(&self, side: &Side, rel: &[u8], e: Error) {
        self.progress
            .warn(std::path::Path::new(&side.display(rel)), &e.to_string());
        if let Ok(mut r) = self.report.lock() {
            r.errors.push((side.display(rel), e.to_string()));
        }
    }

    /// Moves an existing entry aside (or deletes it with `--no-archive`).
    fn clear(&self, on: SideId, rel: &[u8], bin: &str) -> Result<()> {
        let side = self.sides[Self::idx(on)];
        let moved = side.remove(rel, self.bin_ok.then_some((bin, self.stamp.as_str())))?;
        if moved {
            self.log(on, if self.bin_ok { bin } else { "delete" }, rel, None);
            if self.bin_ok
                && let Ok(mut r) = self.report.lock()
            {
                r.archived += 1;
            }
        }
        Ok(())
    }

    fn copy(&self, p: &Prepared, to: SideId, rel: &[u8]) -> Result<()> {
        let (from_side, to_side) = (self.sides[Self::idx(to.other())], self.sides[Self::idx(to)]);
        let (src_list, dst_list) = match to {
            SideId::B => (&p.a, &p.b),
            SideId::A => (&p.b, &p.a),
        };
        let src = src_list.get(rel).ok_or_else(|| Error::NotFound {
            what: from_side.display(rel),
            hint: " any more; run again".into(),
        })?;
        let existing = dst_list.get(rel);
        if existing.is_some_and(|d| d.kind == EntryKind::Dir) && src.kind == EntryKind::Dir {
            return Ok(());
        }
        if existing.is_some() {
            self.clear(to, rel, "archive")?;
        }
        let rec = match src.kind {
            EntryKind::File => {
                let mut reader = from_side.reader(rel, src)?;
                let rec = to_side.write(rel, &mut *reader, src)?;
                // The bytes just read are the source's too: record their hash there as well.
                if let Ok(mut w) = self.written[Self::idx(to.other())].lock() {
                    let mut s = src.clone();
                    s.blake3 = rec.blake3;
                    w.insert(rel.to_vec(), Some(s));
                }
                self.progress.add_done(1, src.size);
                if let Ok(mut r) = self.report.lock() {
                    r.copied += 1;
                    r.bytes += src.size;
                }
                rec
            }
            _ => {
                if let Ok(mut r) = self.report.lock() {
                    r.dirs += u64::from(src.kind == EntryKind::Dir);
                    r.copied += u64::from(src.kind == EntryKind::Symlink);
                }
                to_side.make(rel, src)?
            }
        };
        self.log(to, "copy", rel, Some(&rec));
        if let Ok(mut w) = self.written[Self::idx(to)].lock() {
            w.insert(rel.to_vec(), Some(rec));
        }
        Ok(())
    }

    fn delete(&self, on: SideId, rel: &[u8], kind: EntryKind) -> Result<()> {
        let side = self.sides[Self::idx(on)];
        if kind == EntryKind::Dir {
            if !side.remove_empty_dir(rel)? {
                return Err(Error::Usage(format!(
                    "{} is not empty; it was left in place",
                    side.display(rel)
                )));
            }
            self.log(on, "delete", rel, None);
        } else {
            self.clear(on, rel, "trash")?;
        }
        if let Ok(mut r) = self.report.lock() {
            r.deleted += 1;
        }
        if let Ok(mut w) = self.written[Self::idx(on)].lock() {
            w.insert(rel.to_vec(), None);
        }
        Ok(())
    }
}

/// Carries out `p.plan` (conflicts already settled or left alone).
pub fn execute(
    a: &Side,
    b: &Side,
    p: &Prepared,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let now = chrono::Utc::now();
    let run = Run {
        sides: [a, b],
        stamp: now.format("%Y-%m-%dT%H-%M-%S%.3fZ").to_string(),
        bin_ok: opts.archive,
        progress,
        written: [Mutex::new(HashMap::new()), Mutex::new(HashMap::new())],
        logs: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
        report: Mutex::new(Report::default()),
    };
    let total: u64 = p.plan.actions.iter().map(|a| a.size).sum();
    progress.set_total(p.plan.actions.len() as u64, total);
    let side_of = |s: SideId| if s == SideId::A { a } else { b };
    let (files, structure): (Vec<_>, Vec<_>) = p
        .plan
        .actions
        .iter()
        .filter(|x| matches!(x.op, plan::Op::Copy { .. }))
        .partition(|x| x.kind == EntryKind::File);
    // Directories and symlinks first, parents before children (path order),
    // so file copies find their folders.
    for act in &structure {
        if let plan::Op::Copy { to } = act.op
            && let Err(e) = run.copy(p, to, &act.path)
        {
            run.error(side_of(to), &act.path, e);
        }
    }
    let pool = if a.is_remote() { a.pool()? } else { b.pool()? };
    pool.install(|| {
        files.par_iter().for_each(|act| {
            if opts.cancel.load(Ordering::Relaxed) {
                return;
            }
            if let plan::Op::Copy { to } = act.op
                && let Err(e) = run.copy(p, to, &act.path)
            {
                run.error(side_of(to), &act.path, e);
            }
        })
    });
    // Deletions last, deepest first, so directories are empty when their turn comes.
    for act in p.plan.actions.iter().rev() {
        if opts.cancel.load(Ordering::Relaxed) {
            break;
        }
        if let plan::Op::Delete { on } = act.op
            && let Err(e) = run.delete(on, &act.path, act.kind)
        {
            run.error(side_of(on), &act.path, e);
        }
    }
    let cancelled = opts.cancel.load(Ordering::Relaxed);
    // Record what each side now holds. Paths left undecided keep their old
    // record, so they come up again next run; after an interruption, paths
    // not yet done also keep theirs.
    let created = now.to_rfc3339();
    for (i, side) in [a, b].into_iter().enumerate() {
        let (cur, base) = if i == 0 {
            (&p.a, p.a_base.as_ref())
        } else {
            (&p.b, p.b_base.as_ref())
        };
        let written = run.written[i].lock().map(|w| w.clone()).unwrap_or_default();
        let mut entries = cur.clone();
        for (rel, rec) in &written {
            match rec {
                Some(e) => entries.insert(rel.clone(), e.clone()),
                None => entries.remove(rel),
            };
        }
        let pending: Vec<&Vec<u8>> = if cancelled {
            p.plan.actions.iter().map(|x| &x.path).collect()
        } else {
            Vec::new()
        };
        for rel in p.plan.keep_base.iter().chain(pending) {
            if written.contains_key(rel) {
                continue;
            }
            match base.and_then(|b| b.get(rel)) {
                Some(e) => entries.insert(rel.clone(), e.clone()),
                None => entries.remove(rel),
            };
        }
        if opts.compare == Compare::Attr {
            // Plain attribute mode records no new hashes; it keeps those it had.
            for (rel, e) in entries.iter_mut() {
                let rec = base.and_then(|b| b.get(rel));
                if rec.is_none_or(|r| r.size != e.size || r.mtime_ns != e.mtime_ns) {
                    e.blake3 = None;
                }
            }
        }
        let manifest = Manifest::new(created.clone(), entries);
        if let Err(e) = side.write_control(MANIFEST, &manifest.encode()) {
            run.error(side, b".repo/manifest.jsonl", e);
        }
        let lines = run.logs[i].lock().map(|l| l.join("\n")).unwrap_or_default();
        if !lines.is_empty()
            && let Err(e) = side.write_control(
                &format!("log/{}.jsonl", run.stamp),
                format!("{lines}\n").as_bytes(),
            )
        {
            run.error(side, b".repo/log", e);
        }
    }
    if cancelled {
        return Err(Error::Interrupted);
    }
    Ok(run.report.into_inner().unwrap_or_default())
}
