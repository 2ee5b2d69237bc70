//! Deciding what `mirror` and `sync` do with each path.
//!
//! Pure logic over four listings: each side's current state and what each
//! side's manifest recorded after the last run. A side whose current state
//! differs from its record was changed since then; which sides changed
//! tells whether to copy, delete, or stop and ask (a conflict). Nothing
//! here touches the file system, so every two-sided case is unit-tested.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::format::manifest::{Entries, Entry, EntryKind};

mod compare;
mod decide;
mod tidy;

use compare::mtime;
pub use compare::{changed, same};
use decide::{decide, push_win};
use tidy::{drop_below_non_dirs, keep_dirs_with_survivors};

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
pub(crate) struct Inputs<'a> {
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

/// Plans one run.
pub(crate) fn plan(inp: &Inputs, mode: Mode, select: Select, compare: Compare) -> Plan {
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

/// Backup and mirror never write to the source; backup never deletes.
fn allowed(a: &Action, mode: Mode) -> bool {
    match (mode, a.op) {
        (Mode::Sync, _) => true,
        (_, Op::Copy { to }) => to == SideId::B,
        (Mode::Mirror, Op::Delete { on }) => on == SideId::B,
        (Mode::Backup, Op::Delete { .. }) => false,
    }
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

#[cfg(test)]
mod tests;
