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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::manifest::{Entries, Entry, EntryKind, Manifest};
use crate::local::filter::Excludes;
use crate::local::tree;
pub use plan::{Compare, Mode, Plan, Resolve, Select, SideId};
pub use side::Side;

pub use crate::local::control::MANIFEST;
/// Mirror and backup: the source's record, kept on the destination so the
/// source is never written (SPEC §15.1).
pub const SOURCE_RECORD: &str = "source.jsonl";

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
pub fn prepare(a: &Side, b: &Side, opts: &Options) -> Result<Prepared> {
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

/// One line of a side's log.
#[derive(Serialize)]
struct LogLine<'a> {
    time: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// The path's bytes in hex when they are not UTF-8, as in the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
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
    /// Paths whose action failed: like undone ones, they keep their old
    /// records, or the next run would take a half-done copy for a change
    /// (a destination moved aside for a deletion, say).
    failed: Mutex<HashSet<Vec<u8>>>,
}

impl Run<'_> {
    /// Whether `leader` on side `to` holds the file to link to: written in
    /// this run, or (an anchor) already there and left alone.
    fn has(&self, to: SideId, leader: &Leader) -> bool {
        self.written[Self::idx(to)]
            .lock()
            .map(|w| match w.get(&leader.path) {
                Some(rec) => rec.is_some(),
                None => leader.anchor,
            })
            .unwrap_or(false)
    }

    fn idx(s: SideId) -> usize {
        match s {
            SideId::A => 0,
            SideId::B => 1,
        }
    }

    fn log(&self, on: SideId, action: &str, rel: &[u8], e: Option<&Entry>) {
        let (path, path_hex) = crate::format::manifest::split_bytes(rel);
        let line = LogLine {
            time: &self.stamp,
            action,
            path,
            path_hex,
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
        if let Ok(mut f) = self.failed.lock() {
            f.insert(rel.to_vec());
        }
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
        // Opened before the old version is moved aside, so an unreadable
        // source leaves the destination as it was.
        let mut reader = match src.kind {
            EntryKind::File => Some(from_side.reader(rel, src)?),
            _ => None,
        };
        if existing.is_some() {
            self.clear(to, rel, "archive")?;
        }
        crate::testhooks::pause_point("plain-copy");
        let rec = match (src.kind, reader.as_mut()) {
            (EntryKind::File, Some(reader)) => {
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

    /// Gives `rel` on side `to` as another hard link to `leader` there, as
    /// the two are links of one file on the other side.
    fn link(&self, p: &Prepared, to: SideId, rel: &[u8], leader: &[u8]) -> Result<()> {
        let Side::Local(root) = self.sides[Self::idx(to)] else {
            return self.copy(p, to, rel);
        };
        let (src_list, dst_list) = match to {
            SideId::B => (&p.a, &p.b),
            SideId::A => (&p.b, &p.a),
        };
        if dst_list.get(rel).is_some() {
            self.clear(to, rel, "archive")?;
        }
        let mut rec = local::link_into(root, leader, rel)?;
        let leader_hash = self.written[Self::idx(to)]
            .lock()
            .ok()
            .and_then(|w| w.get(leader).cloned().flatten())
            .or_else(|| dst_list.get(leader).cloned())
            .and_then(|e| e.blake3);
        rec.blake3 = leader_hash;
        if let (Some(src), Ok(mut w)) = (
            src_list.get(rel),
            self.written[Self::idx(to.other())].lock(),
        ) {
            let mut s = src.clone();
            s.blake3 = leader_hash;
            w.insert(rel.to_vec(), Some(s));
        }
        // Counted as done in full: the plan's byte total includes it.
        self.progress.add_done(1, rec.size);
        if let Ok(mut r) = self.report.lock() {
            r.copied += 1;
            r.linked += 1;
        }
        self.log(to, "link", rel, Some(&rec));
        if let Ok(mut w) = self.written[Self::idx(to)].lock() {
            w.insert(rel.to_vec(), Some(rec));
        }
        Ok(())
    }

    fn delete(&self, on: SideId, rel: &[u8], kind: EntryKind) -> Result<()> {
        let side = self.sides[Self::idx(on)];
        if kind == EntryKind::Dir {
            // Everything below went first; the folder itself (its mode and
            // times) goes to the trash too, as SPEC §15.1 asks.
            let gone = if self.bin_ok {
                side.trash_empty_dir(rel, "trash", &self.stamp)?
            } else {
                side.remove_empty_dir(rel)?
            };
            if !gone {
                return Err(Error::Usage(format!(
                    "{} is not empty; it was left in place",
                    side.display(rel)
                )));
            }
            self.log(on, if self.bin_ok { "trash" } else { "delete" }, rel, None);
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

/// The path a further hard link is made to.
struct Leader {
    path: Vec<u8>,
    /// Already on the destination and not written by this run.
    anchor: bool,
}

/// Local to local: for file copies whose source has further hard links,
/// which copy should become a link to which path on the destination (the
/// follower's path maps to its leader's). A group's leader is a link already
/// in place and unchanged on the destination when there is one, else the
/// group's first copy. Files are matched by device and inode, as `rsync -H`
/// does, so links stay links and their bytes are stored once.
fn hard_links(
    p: &Prepared,
    sides: [&Side; 2],
    files: &[&plan::Action],
) -> HashMap<Vec<u8>, Leader> {
    let mut groups: HashMap<(SideId, u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for act in files {
        let plan::Op::Copy { to } = act.op else {
            continue;
        };
        let from = to.other();
        let (Side::Local(src), Side::Local(_)) = (sides[Run::idx(from)], sides[Run::idx(to)])
        else {
            continue;
        };
        if let Some((dev, ino, nlink)) = local::identity(src, &act.path)
            && nlink > 1
        {
            groups
                .entry((to, dev, ino))
                .or_default()
                .push(act.path.clone());
        }
    }
    // Paths by inode on each source side, for the groups' inodes only: one
    // pass over each listing, however many groups there are.
    let mut by_ino: HashMap<(SideId, u64), Vec<&Vec<u8>>> = HashMap::new();
    for to in [SideId::A, SideId::B] {
        let src_list = if to == SideId::B { &p.a } else { &p.b };
        let wanted: HashSet<u64> = groups.keys().filter(|k| k.0 == to).map(|k| k.2).collect();
        if wanted.is_empty() {
            continue;
        }
        for (rel, e) in src_list {
            if let Some(ino) = e.seen.ino
                && e.kind == EntryKind::File
                && wanted.contains(&ino)
            {
                by_ino.entry((to, ino)).or_default().push(rel);
            }
        }
    }
    let mut out = HashMap::new();
    for ((to, dev, ino), members) in groups {
        let from = to.other();
        let Side::Local(src) = sides[Run::idx(from)] else {
            continue;
        };
        let (src_list, dst_list) = match to {
            SideId::B => (&p.a, &p.b),
            SideId::A => (&p.b, &p.a),
        };
        // Another link of the same file that is not copied now because the
        // destination already holds it unchanged.
        let anchor = by_ino
            .get(&(to, ino))
            .into_iter()
            .flatten()
            .filter(|rel| !members.contains(rel))
            .find(|rel| {
                local::identity(src, rel).is_some_and(|(d, i, _)| d == dev && i == ino)
                    && matches!((src_list.get(**rel), dst_list.get(**rel)),
                        (Some(e), Some(d)) if plan::same(e, d, Compare::Attr))
            })
            .map(|rel| (*rel).clone());
        let (leader, anchor, rest) = match anchor {
            Some(a) => (a, true, &members[..]),
            None => match members.split_first() {
                Some((first, rest)) => (first.clone(), false, rest),
                None => continue,
            },
        };
        for m in rest {
            out.insert(
                m.clone(),
                Leader {
                    path: leader.clone(),
                    anchor,
                },
            );
        }
    }
    out
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
        failed: Mutex::new(HashSet::new()),
    };
    // The control folder is made ours before anything goes into it; a
    // side that is only read (a mirror's source) is never touched.
    let a_on_a = a_record(opts.mode).0;
    if a_on_a {
        a.claim_control()?;
    }
    b.claim_control()?;
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
    let links = hard_links(p, [a, b], &files);
    let (followers, files): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|act| links.contains_key(&act.path));
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
    // Further links of a file copied above (or already in place) become
    // links there too; if the first one failed, they are copied instead.
    for act in followers {
        if opts.cancel.load(Ordering::Relaxed) {
            break;
        }
        let plan::Op::Copy { to } = act.op else {
            continue;
        };
        let result = match links.get(&act.path) {
            Some(leader) if run.has(to, leader) => run.link(p, to, &act.path, &leader.path),
            _ => run.copy(p, to, &act.path),
        };
        if let Err(e) = result {
            run.error(side_of(to), &act.path, e);
        }
    }
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
        let mut pending: Vec<Vec<u8>> = if cancelled {
            p.plan.actions.iter().map(|x| x.path.clone()).collect()
        } else {
            Vec::new()
        };
        if let Ok(f) = run.failed.lock() {
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
        let (home, name) = match (i, a_on_a) {
            (0, false) => (b, SOURCE_RECORD),
            _ => (side, MANIFEST),
        };
        if let Err(e) = home.write_control(name, &manifest.encode()) {
            run.error(home, format!(".repo/{name}").as_bytes(), e);
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
