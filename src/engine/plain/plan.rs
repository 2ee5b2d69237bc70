//! Deciding what `mirror` and `sync` do with each path.
//!
//! Pure logic over four listings: each side's current state and what each
//! side's manifest recorded after the last run. A side whose current state
//! differs from its record was changed since then; which sides changed
//! tells whether to copy, delete, or stop and ask (a conflict). Nothing
//! here touches the file system, so every two-sided case is unit-tested.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::format::manifest::{Entries, Entry, EntryKind};

/// Which side of the pair: `A` is the source of a mirror (the first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SideId {
    A,
    B,
}

impl SideId {
    pub fn other(self) -> SideId {
        match self {
            SideId::A => SideId::B,
            SideId::B => SideId::A,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Mode {
    /// Copy new and changed files from the source; never delete on the destination.
    Backup,
    /// Make the destination equal to the source, deleting what the source lacks.
    Mirror,
    /// Copy both ways and propagate deletions known from the last sync.
    Sync,
}

/// For files that differ without a recorded history to explain why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Select {
    Source,
    Dest,
    Newer,
    /// Report only, copy nothing.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Compare {
    /// Size and mtime.
    Attr,
    /// Size and mtime, and record hashes of new and changed files.
    #[value(name = "attr+")]
    AttrPlus,
    /// Hash every file; also finds silent corruption against the recorded hash.
    Hash,
}

/// How a conflict is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Resolve {
    /// Ask per conflict (on a terminal; `skip` otherwise).
    Ask,
    /// Leave both sides alone; the conflict is listed again next run.
    Skip,
    /// The first side (the source of a mirror) wins.
    Local,
    /// The second side (the destination) wins.
    Remote,
    /// The older version wins.
    Old,
    /// The newer version wins.
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Copy the entry from the other side onto `to` (a directory: create it).
    Copy { to: SideId },
    /// Remove the entry from `on`.
    Delete { on: SideId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    New,
    Changed,
    Deleted,
    /// Only on the destination of a mirror.
    Extra,
    /// Differs without history; decided by `--select`.
    Selected,
    /// A conflict settled by `--resolve` or the user.
    Resolved,
    /// The recorded hash shows this copy went bad; the other side is good.
    Repair,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    #[serde(serialize_with = "ser_path")]
    pub path: Vec<u8>,
    pub op: Op,
    pub kind: EntryKind,
    /// Bytes to copy (0 for deletions and directories).
    pub size: u64,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Changed on both sides since the last sync.
    BothModified,
    /// Created on both sides with different content.
    BothCreated,
    /// Deleted on one side, changed on the other.
    DeletedChanged {
        deleted: SideId,
    },
    /// Both files differ but carry the same mtime, so `--select newer`
    /// cannot tell which is newer.
    SameTime,
    /// A mirror's destination was changed outside the tool since the last run.
    ChangedOnDest,
    CreatedOnDest,
    DeletedOnDest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    #[serde(serialize_with = "ser_path")]
    pub path: Vec<u8>,
    pub kind: ConflictKind,
    #[serde(skip)]
    pub a: Option<Entry>,
    #[serde(skip)]
    pub b: Option<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// Content no longer matches the hash recorded when size and mtime were the same.
    Corrupt { side: SideId },
    /// Differs and `--select none` asked to copy nothing.
    Differs,
    /// A directory that could not be deleted because something under it stays.
    KeptDir { side: SideId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    #[serde(serialize_with = "ser_path")]
    pub path: Vec<u8>,
    pub kind: NoteKind,
}

fn ser_path<S: serde::Serializer>(p: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(p))
}

/// The four listings the plan is made from. A `None` manifest means that
/// side has no record yet (first run).
pub struct Inputs<'a> {
    pub a: &'a Entries,
    pub b: &'a Entries,
    pub a_base: Option<&'a Entries>,
    pub b_base: Option<&'a Entries>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub conflicts: Vec<Conflict>,
    pub notes: Vec<Note>,
    /// Paths whose old manifest record is kept on both sides, so whatever
    /// was left undecided is found again next run.
    #[serde(skip)]
    pub keep_base: HashSet<Vec<u8>>,
}

/// Whether two present entries hold the same thing.
pub fn same(a: &Entry, b: &Entry, compare: Compare) -> bool {
    if a.kind != b.kind {
        return false;
    }
    match a.kind {
        EntryKind::Dir => true,
        EntryKind::Symlink => a.target == b.target,
        EntryKind::File => match (compare, a.blake3, b.blake3) {
            (Compare::Hash, Some(x), Some(y)) => x == y && a.size == b.size,
            _ => a.size == b.size && a.mtime_ns == b.mtime_ns,
        },
    }
}

/// Two files whose hashes are known and equal: the same edit made on both
/// sides at different times is no conflict in a sync.
fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == EntryKind::File
        && b.kind == EntryKind::File
        && a.size == b.size
        && matches!((a.blake3, b.blake3), (Some(x), Some(y)) if x == y)
}

/// Whether a side changed since its record.
pub fn changed(cur: Option<&Entry>, base: Option<&Entry>) -> bool {
    match (cur, base) {
        (None, None) => false,
        (Some(c), Some(b)) => {
            c.kind != b.kind
                || match c.kind {
                    EntryKind::Dir => false,
                    EntryKind::Symlink => c.target != b.target,
                    EntryKind::File => c.size != b.size || c.mtime_ns != b.mtime_ns,
                }
        }
        _ => true,
    }
}

/// Same size and mtime as recorded, yet a different hash: the bytes went bad.
fn corrupt(cur: Option<&Entry>, base: Option<&Entry>) -> bool {
    match (cur, base) {
        (Some(c), Some(b)) => {
            c.kind == EntryKind::File
                && !changed(cur, base)
                && matches!((c.blake3, b.blake3), (Some(x), Some(y)) if x != y)
        }
        _ => false,
    }
}

fn mtime(e: Option<&Entry>) -> i64 {
    e.map_or(i64::MIN, |e| e.mtime_ns)
}

/// Plans one run.
pub fn plan(inp: &Inputs, mode: Mode, select: Select, compare: Compare) -> Plan {
    let mut p = Plan::default();
    let paths: BTreeSet<&Vec<u8>> = inp
        .a
        .keys()
        .chain(inp.b.keys())
        .chain(inp.a_base.into_iter().flat_map(|m| m.keys()))
        .chain(inp.b_base.into_iter().flat_map(|m| m.keys()))
        .collect();
    for path in paths {
        decide(&mut p, inp, path, mode, select, compare);
    }
    p.actions.retain(|a| allowed(a, mode));
    keep_dirs_with_survivors(&mut p, inp);
    drop_below_non_dirs(&mut p, inp);
    p
}

/// Drops actions below a path that will not be a folder on the side they
/// act on: a folder replaced by a file or symlink goes aside whole (so what
/// was below it is kept with it), and below a symlink nothing may be
/// written or removed, or the run would reach outside the tree through it
/// (the side where a folder is a symlink lists nothing below it, so the
/// other side's entries there look new or deleted). Those paths keep their
/// old records.
fn drop_below_non_dirs(p: &mut Plan, inp: &Inputs) {
    let listing = |s: SideId| match s {
        SideId::A => inp.a,
        SideId::B => inp.b,
    };
    // Folder or not after the copies (deletions of folders come after
    // everything below them, so they do not count).
    let copied: HashMap<(SideId, Vec<u8>), bool> = p
        .actions
        .iter()
        .filter_map(|a| match a.op {
            Op::Copy { to } => Some(((to, a.path.clone()), a.kind == EntryKind::Dir)),
            Op::Delete { .. } => None,
        })
        .collect();
    let dir_after = |s: SideId, path: &[u8]| match copied.get(&(s, path.to_vec())) {
        Some(&is_dir) => is_dir,
        // Absent is fine: folders are made as needed (and object stores
        // list none at all). Only a file or symlink in the way is not.
        None => listing(s)
            .get(path)
            .is_none_or(|e| e.kind == EntryKind::Dir),
    };
    let mut dropped = Vec::new();
    p.actions.retain(|a| {
        let side = match a.op {
            Op::Copy { to } => to,
            Op::Delete { on } => on,
        };
        let ok = a
            .path
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'/')
            .all(|(i, _)| dir_after(side, &a.path[..i]));
        if !ok {
            dropped.push(a.path.clone());
        }
        ok
    });
    p.keep_base.extend(dropped);
}

/// Backup and mirror never write to the source; backup never deletes.
fn allowed(a: &Action, mode: Mode) -> bool {
    match (mode, a.op) {
        (Mode::Sync, _) => true,
        (_, Op::Copy { to }) => to == SideId::B,
        (Mode::Mirror, Op::Delete { on }) => on == SideId::B,
        (Mode::Backup, Op::Delete { .. }) => false,
    }
}

fn decide(p: &mut Plan, inp: &Inputs, path: &[u8], mode: Mode, select: Select, cmp: Compare) {
    let a = inp.a.get(path);
    let b = inp.b.get(path);
    let ba = inp.a_base.and_then(|m| m.get(path));
    let bb = inp.b_base.and_then(|m| m.get(path));
    if cmp == Compare::Hash {
        let (ca, cb) = (corrupt(a, ba), corrupt(b, bb));
        for (bad, side) in [(ca, SideId::A), (cb, SideId::B)] {
            if bad {
                p.notes.push(Note {
                    path: path.to_vec(),
                    kind: NoteKind::Corrupt { side },
                });
            }
        }
        if ca || cb {
            // Repair from the other side only when it still holds the recorded content.
            let good = |e: Option<&Entry>, rec: Option<&Entry>| matches!((e, rec), (Some(e), Some(r)) if e.blake3.is_some() && e.blake3 == r.blake3);
            if ca && !cb && good(b, ba) {
                push_win(p, path, SideId::B, a, b, Why::Repair);
            } else if cb && !ca && good(a, bb) {
                push_win(p, path, SideId::A, a, b, Why::Repair);
            } else {
                p.keep_base.insert(path.to_vec());
            }
            return;
        }
    }
    if let (Some(x), Some(y)) = (a, b)
        && (same(x, y, cmp) || (mode == Mode::Sync && same_content(x, y)))
    {
        return;
    }
    if a.is_none() && b.is_none() {
        return;
    }
    let winner = match mode {
        Mode::Sync => sync_case(p, inp, path, a, b, ba, bb),
        Mode::Backup | Mode::Mirror => mirror_case(p, inp, path, mode, a, b, ba, bb),
    };
    match winner {
        Decision::Win(side, why) => push_win(p, path, side, a, b, why),
        Decision::Differs
            if select == Select::Newer
                && matches!((a, b), (Some(x), Some(y)) if x.mtime_ns == y.mtime_ns) =>
        {
            // Picking by argument order would be a coin toss that loses data.
            p.conflicts.push(Conflict {
                path: path.to_vec(),
                kind: ConflictKind::SameTime,
                a: a.cloned(),
                b: b.cloned(),
            });
            p.keep_base.insert(path.to_vec());
        }
        Decision::Differs => {
            let side = match select {
                Select::Source => Some(SideId::A),
                Select::Dest => Some(SideId::B),
                Select::Newer => Some(if mtime(a) >= mtime(b) {
                    SideId::A
                } else {
                    SideId::B
                }),
                Select::None => None,
            };
            match side {
                Some(s) => push_win(p, path, s, a, b, Why::Selected),
                // Recorded as they are, so the next run reports them again the same way.
                None => p.notes.push(Note {
                    path: path.to_vec(),
                    kind: NoteKind::Differs,
                }),
            }
        }
        Decision::Conflict(kind) => {
            p.conflicts.push(Conflict {
                path: path.to_vec(),
                kind,
                a: a.cloned(),
                b: b.cloned(),
            });
            p.keep_base.insert(path.to_vec());
        }
        Decision::Nothing => {}
    }
}

enum Decision {
    Win(SideId, Why),
    Differs,
    Conflict(ConflictKind),
    Nothing,
}

fn sync_case(
    _p: &mut Plan,
    inp: &Inputs,
    _path: &[u8],
    a: Option<&Entry>,
    b: Option<&Entry>,
    ba: Option<&Entry>,
    bb: Option<&Entry>,
) -> Decision {
    if inp.a_base.is_none() || inp.b_base.is_none() {
        return match (a, b) {
            (Some(_), None) => Decision::Win(SideId::A, Why::New),
            (None, Some(_)) => Decision::Win(SideId::B, Why::New),
            _ => Decision::Differs,
        };
    }
    let (ca, cb) = (changed(a, ba), changed(b, bb));
    let why = |cur: Option<&Entry>, base: Option<&Entry>| match (cur, base) {
        (None, _) => Why::Deleted,
        (Some(_), None) => Why::New,
        _ => Why::Changed,
    };
    match (ca, cb) {
        (true, false) => Decision::Win(SideId::A, why(a, ba)),
        (false, true) => Decision::Win(SideId::B, why(b, bb)),
        (true, true) => Decision::Conflict(match (a, b) {
            (None, _) => ConflictKind::DeletedChanged { deleted: SideId::A },
            (_, None) => ConflictKind::DeletedChanged { deleted: SideId::B },
            _ if ba.is_none() && bb.is_none() => ConflictKind::BothCreated,
            _ => ConflictKind::BothModified,
        }),
        (false, false) => Decision::Differs,
    }
}

#[allow(clippy::too_many_arguments)]
fn mirror_case(
    _p: &mut Plan,
    inp: &Inputs,
    _path: &[u8],
    mode: Mode,
    a: Option<&Entry>,
    b: Option<&Entry>,
    ba: Option<&Entry>,
    bb: Option<&Entry>,
) -> Decision {
    let Some(_) = inp.b_base else {
        return match (a, b) {
            (Some(_), None) => Decision::Win(SideId::A, Why::New),
            (None, Some(_)) if mode == Mode::Mirror => Decision::Win(SideId::A, Why::Extra),
            (None, Some(_)) => Decision::Nothing,
            _ => Decision::Differs,
        };
    };
    if !changed(b, bb) {
        // Neither side moved since both were recorded: a standing difference
        // (left by `--select none` or `dest`), which `--select` decides again.
        if inp.a_base.is_some() && !changed(a, ba) {
            return Decision::Differs;
        }
        return match (a, bb) {
            (Some(_), None) => Decision::Win(SideId::A, Why::New),
            (Some(_), Some(_)) => Decision::Win(SideId::A, Why::Changed),
            (None, _) if mode == Mode::Mirror => Decision::Win(SideId::A, Why::Deleted),
            (None, _) => Decision::Nothing,
        };
    }
    match (a, b, bb) {
        // Backup never deletes, so a file only on the destination is its business.
        (None, Some(_), _) if mode == Mode::Backup => Decision::Nothing,
        (_, Some(_), None) => Decision::Conflict(ConflictKind::CreatedOnDest),
        (_, None, _) => Decision::Conflict(ConflictKind::DeletedOnDest),
        _ => Decision::Conflict(ConflictKind::ChangedOnDest),
    }
}

/// Records that `side`'s version of `path` (or its absence) wins.
fn push_win(
    p: &mut Plan,
    path: &[u8],
    side: SideId,
    a: Option<&Entry>,
    b: Option<&Entry>,
    why: Why,
) {
    let (win, lose) = match side {
        SideId::A => (a, b),
        SideId::B => (b, a),
    };
    let action = match (win, lose) {
        (Some(w), _) => Action {
            path: path.to_vec(),
            op: Op::Copy { to: side.other() },
            kind: w.kind,
            size: if w.kind == EntryKind::File { w.size } else { 0 },
            why,
        },
        (None, Some(l)) => Action {
            path: path.to_vec(),
            op: Op::Delete { on: side.other() },
            kind: l.kind,
            size: 0,
            why,
        },
        (None, None) => return,
    };
    p.actions.push(action);
}

impl Conflict {
    /// The side that wins under `r`, or `None` to leave the conflict alone.
    pub fn winner(&self, r: Resolve) -> Option<SideId> {
        match r {
            Resolve::Ask | Resolve::Skip => None,
            Resolve::Local => Some(SideId::A),
            Resolve::Remote => Some(SideId::B),
            Resolve::Old | Resolve::New => {
                let (ta, tb) = (mtime(self.a.as_ref()), mtime(self.b.as_ref()));
                if ta == tb {
                    // Neither is newer: leave it to the user.
                    return None;
                }
                let a_newer = ta > tb;
                Some(if a_newer == (r == Resolve::New) {
                    SideId::A
                } else {
                    SideId::B
                })
            }
        }
    }
}

impl Plan {
    /// Settles conflict `i` in favour of `side`. The path's old records stay
    /// on a side that did not change, so a mirror's kept destination edit
    /// is raised again next run rather than silently overwritten.
    pub fn settle(&mut self, i: usize, side: SideId, mode: Mode) {
        let Some(c) = self.conflicts.get(i).cloned() else {
            return;
        };
        let before = self.actions.len();
        push_win(
            self,
            &c.path,
            side,
            c.a.as_ref(),
            c.b.as_ref(),
            Why::Resolved,
        );
        if self.actions.len() > before && !allowed(&self.actions[before], mode) {
            self.actions.truncate(before);
        }
        if self.actions.len() > before {
            self.keep_base.remove(&c.path);
        }
    }
}

/// A directory whose deletion would take along something that stays (a
/// conflict, a file kept on purpose) is not deleted: the folder-deleted-here,
/// file-changed-there case must never lose the changed file.
fn keep_dirs_with_survivors(p: &mut Plan, inp: &Inputs) {
    let deleted: HashSet<(SideId, Vec<u8>)> = p
        .actions
        .iter()
        .filter_map(|a| match a.op {
            Op::Delete { on } => Some((on, a.path.clone())),
            Op::Copy { .. } => None,
        })
        .collect();
    let mut kept = Vec::new();
    p.actions.retain(|act| {
        let (Op::Delete { on }, EntryKind::Dir) = (act.op, act.kind) else {
            return true;
        };
        let listing = match on {
            SideId::A => inp.a,
            SideId::B => inp.b,
        };
        let mut prefix = act.path.clone();
        prefix.push(b'/');
        let survivor = listing
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(k, _)| !deleted.contains(&(on, k.clone())));
        if survivor {
            kept.push((act.path.clone(), on));
        }
        !survivor
    });
    for (path, side) in kept {
        p.keep_base.insert(path.clone());
        p.notes.push(Note {
            path,
            kind: NoteKind::KeptDir { side },
        });
    }
}

#[cfg(test)]
mod tests;
