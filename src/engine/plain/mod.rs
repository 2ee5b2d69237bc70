//! Mirror and sync of plain folders, driven by manifests.
//!
//! A run has two steps so the user can see and approve what will happen:
//! [`prepare`] scans both sides, reads their manifests, hashes what the
//! compare mode needs and makes a [`plan::Plan`]; [`execute`] carries it
//! out, moving anything it replaces or deletes aside first, then writes
//! each side's new manifest and a log of what it did.

mod execute;
mod links;
pub mod local;
pub mod plan;
pub mod remote;
mod run;
mod side;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::manifest::{Entries, EntryKind, Manifest};
use crate::local::filter::Excludes;
use crate::local::tree;
pub use execute::execute;
pub use plan::{Compare, Mode, Plan, Resolve, Select, SideId};
pub use side::Side;

pub use crate::local::control::MANIFEST;
/// Mirror and backup: the source's record, kept on the destination so the
/// source is never written (SPEC §15.1).
pub(crate) const SOURCE_RECORD: &str = "source.jsonl";

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
    /// Folders that are a side itself, reached again inside a side (a bind
    /// mount): never entered, and nothing in or above them is touched.
    /// (path, message); the run reports each and ends with exit code 3.
    pub refused: Vec<(String, String)>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub copied: u64,
    pub bytes: u64,
    pub deleted: u64,
    pub dirs: u64,
    /// Files moved to `.repo/archive` or `.repo/trash` instead of being lost.
    pub archived: u64,
    /// Of the files copied, how many were made hard links to another copied
    /// file, as they are on the source (local to local only).
    pub linked: u64,
    pub errors: Vec<(String, String)>,
}

fn load_manifest(side: &Side, name: &str) -> Result<Option<Entries>> {
    let Some(bytes) = side.read_control(name)? else {
        return Ok(None);
    };
    Manifest::decode(&bytes)
        .map(|m| Some(m.entries))
        .map_err(|e| Error::BadManifest {
            path: format!("{}/.repo/{name}", side.name().trim_end_matches('/')),
            reason: e.to_string(),
        })
}

/// Where side A's record lives: on A for sync, on the destination for
/// mirror and backup, which never write to their source.
fn a_record(mode: Mode) -> (bool, &'static str) {
    match mode {
        Mode::Sync => (true, MANIFEST),
        Mode::Mirror | Mode::Backup => (false, SOURCE_RECORD),
    }
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

/// Sync: files changed on both sides to the same size would be a conflict
/// by size and mtime alone; hashing them tells the same edit made twice
/// (nothing to do) from a real conflict. Returns how many were hashed.
fn hash_both_changed(
    sides: [&Side; 2],
    cur: [&mut Entries; 2],
    base: [Option<&Entries>; 2],
    warnings: &Mutex<Vec<(String, String)>>,
) -> u64 {
    let [a_cur, b_cur] = cur;
    // Without both records there is no conflict to avoid: `--select` decides.
    if base.iter().any(Option::is_none) {
        return 0;
    }
    let candidates: Vec<Vec<u8>> = a_cur
        .iter()
        .filter_map(|(rel, x)| {
            let y = b_cur.get(rel)?;
            let both_changed = plan::changed(Some(x), base[0].and_then(|m| m.get(rel)))
                && plan::changed(Some(y), base[1].and_then(|m| m.get(rel)));
            (x.kind == EntryKind::File
                && y.kind == EntryKind::File
                && x.size == y.size
                && x.mtime_ns != y.mtime_ns
                && both_changed)
                .then(|| rel.clone())
        })
        .collect();
    let mut count = 0;
    for rel in candidates {
        for (side, list) in [(sides[0], &mut *a_cur), (sides[1], &mut *b_cur)] {
            let Some(e) = list.get_mut(&rel) else {
                continue;
            };
            if e.blake3.is_some() {
                continue;
            }
            match side.hash(&rel, e) {
                Ok(h) => {
                    e.blake3 = Some(h);
                    count += 1;
                }
                Err(err) => {
                    if let Ok(mut w) = warnings.lock() {
                        w.push((side.display(&rel), format!("cannot hash: {err}")));
                    }
                }
            }
        }
    }
    count
}

/// Scans both sides and plans the run.
pub(crate) fn prepare(a: &Side, b: &Side, opts: &Options) -> Result<Prepared> {
    a.check_control()?;
    b.check_control()?;
    let a_base = match a_record(opts.mode) {
        (true, name) => load_manifest(a, name)?,
        (false, name) => load_manifest(b, name)?,
    };
    let b_base = load_manifest(b, MANIFEST)?;
    let mut warnings = Vec::new();
    // A remote source's own manifest (written when it was a destination)
    // holds the mtimes and modes the store cannot; reading it writes nothing.
    let a_own = match (a.is_remote(), a_record(opts.mode)) {
        (true, (false, _)) => load_manifest(a, MANIFEST)?,
        _ => None,
    };
    // Either side's folder met again inside a side is not content.
    let roles = match opts.mode {
        Mode::Sync => ["first side", "second side"],
        Mode::Backup | Mode::Mirror => ["source", "destination"],
    };
    let mut fence = Vec::new();
    let mut fence_names = Vec::new();
    for (side, role) in [a, b].into_iter().zip(roles) {
        if let Some(id) = side.dir_id() {
            fence.push(id);
            fence_names.push(format!("the {role} {}", side.name()));
        }
    }
    let (mut a_fenced, mut b_fenced) = (tree::Fenced::default(), tree::Fenced::default());
    let mut a_cur = a.scan(
        a_own.as_ref().or(a_base.as_ref()),
        opts.filter.as_ref(),
        &fence,
        &mut warnings,
        &mut a_fenced,
    )?;
    let mut b_cur = b.scan(
        b_base.as_ref(),
        opts.filter.as_ref(),
        &fence,
        &mut warnings,
        &mut b_fenced,
    )?;
    let (refused, fenced) = fences([a, b], [&a_fenced, &b_fenced], &fence_names, roles);
    let (mut a_base, mut b_base) = (a_base, b_base);
    if a.is_remote() || b.is_remote() {
        files_only(
            [(a, &mut a_cur), (b, &mut b_cur)],
            [&mut a_base, &mut b_base],
            &mut warnings,
        );
    }
    let all = opts.compare == Compare::Hash;
    let w = Mutex::new(warnings);
    let hashed = fill_hashes(a, &mut a_cur, a_base.as_ref(), all, &w)?
        + fill_hashes(b, &mut b_cur, b_base.as_ref(), all, &w)?;
    let hashed = hashed
        + if opts.mode == Mode::Sync && !all {
            hash_both_changed(
                [a, b],
                [&mut a_cur, &mut b_cur],
                [a_base.as_ref(), b_base.as_ref()],
                &w,
            )
        } else {
            0
        };
    if opts.cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let inputs = plan::Inputs {
        a: &a_cur,
        b: &b_cur,
        a_base: a_base.as_ref(),
        b_base: b_base.as_ref(),
    };
    let mut plan = plan::plan(&inputs, opts.mode, opts.select, opts.compare);
    if !fenced.is_empty() {
        let bases = [a_base.as_ref(), b_base.as_ref()];
        fence_off(&mut plan, &fenced, &bases);
    }
    Ok(Prepared {
        a: a_cur,
        b: b_cur,
        a_base,
        b_base,
        plan,
        warnings: w.into_inner().unwrap_or_default(),
        hashed,
        refused,
    })
}

/// Object stores hold files only: directories are implied, symlinks
/// impossible. Leaves files alone in both listings and records.
fn files_only(
    cur: [(&Side, &mut Entries); 2],
    bases: [&mut Option<Entries>; 2],
    warnings: &mut Vec<(String, String)>,
) {
    for (side, m) in cur {
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
    for m in bases.into_iter().flatten() {
        m.retain(|_, e| e.kind == EntryKind::File);
    }
}

/// What the walks fenced off, as (path, message) for the report and as
/// paths for [`fence_off`]: the sides' own folders met inside a side, and
/// any folder that is on both sides at once (a folder of one side
/// bind-mounted inside the other: deleting it on the destination would
/// delete it on the source). Of nested matches only the top one is named.
fn fences(
    sides: [&Side; 2],
    walks: [&tree::Fenced; 2],
    names: &[String],
    roles: [&str; 2],
) -> (Vec<(String, String)>, Vec<Vec<u8>>) {
    use crate::local::fence::within;
    let what = "(a bind mount, or the same folder reached another way): it was not \
                entered, and nothing in it or above it was changed";
    let mut refused = Vec::new();
    let mut fenced: Vec<Vec<u8>> = Vec::new();
    for (side, walk) in sides.iter().zip(walks) {
        for (rel, i) in &walk.hits {
            let path = side.display(rel);
            let msg = format!(
                "{path} is {} itself {what}; unmount it, or leave it out with --exclude /{}",
                names.get(*i).map_or("a side", String::as_str),
                String::from_utf8_lossy(rel)
            );
            refused.push((path, msg));
            fenced.push(rel.clone());
        }
    }
    let on_a: HashMap<crate::local::fence::DirId, &Vec<u8>> =
        walks[0].dirs.iter().map(|(id, rel)| (*id, rel)).collect();
    let mut shared: Vec<(&Vec<u8>, &Vec<u8>)> = walks[1]
        .dirs
        .iter()
        .filter_map(|(id, rel)| on_a.get(id).map(|a_rel| (*a_rel, rel)))
        .collect();
    shared.sort();
    let mut named: Vec<(&Vec<u8>, &Vec<u8>)> = Vec::new();
    for (a_rel, b_rel) in shared {
        if named
            .iter()
            .any(|(x, y)| within(a_rel, x) && within(b_rel, y))
        {
            continue;
        }
        named.push((a_rel, b_rel));
        let (pa, pb) = (sides[0].display(a_rel), sides[1].display(b_rel));
        let msg = format!(
            "{pb} on the {} and {pa} on the {} are the same folder {what} on either side; \
             unmount it, or leave both out with --exclude",
            roles[1], roles[0]
        );
        refused.push((pb, msg));
        fenced.push(a_rel.clone());
        fenced.push(b_rel.clone());
    }
    (refused, fenced)
}

/// Drops from the plan every action, conflict and note at, below or above
/// a fenced folder (on either side: the same name on the other side would
/// lead a copy into it, and replacing a folder above it would take it
/// along), and keeps the old records of everything there, so the next run,
/// with the mount gone, sees no change it did not make.
fn fence_off(plan: &mut Plan, fenced: &[Vec<u8>], bases: &[Option<&Entries>]) {
    use crate::local::fence::within;
    let near = |p: &[u8]| fenced.iter().any(|f| within(p, f) || within(f, p));
    let mut kept: Vec<Vec<u8>> = Vec::new();
    plan.actions.retain(|x| {
        let drop = near(&x.path);
        if drop {
            kept.push(x.path.clone());
        }
        !drop
    });
    plan.conflicts.retain(|c| {
        let drop = near(&c.path);
        if drop {
            kept.push(c.path.clone());
        }
        !drop
    });
    plan.notes.retain(|n| !near(&n.path));
    for base in bases.iter().flatten() {
        kept.extend(
            base.keys()
                .filter(|p| fenced.iter().any(|f| within(p, f)))
                .cloned(),
        );
    }
    plan.keep_base.extend(kept);
}
