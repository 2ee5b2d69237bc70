//! Whole-plan corrections after each path was decided on its own:
//! nothing written or removed below what will not be a folder, and no
//! folder deleted while something below it stays.

use std::collections::{HashMap, HashSet};

use crate::format::manifest::EntryKind;

use super::{Inputs, Note, NoteKind, Op, Plan, SideId};

/// Drops actions below a path that will not be a folder on the side they
/// act on: a folder replaced by a file or symlink goes aside whole (so what
/// was below it is kept with it), and below a symlink nothing may be
/// written or removed, or the run would reach outside the tree through it
/// (the side where a folder is a symlink lists nothing below it, so the
/// other side's entries there look new or deleted). Those paths keep their
/// old records.
pub(super) fn drop_below_non_dirs(p: &mut Plan, inp: &Inputs) {
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

/// A directory whose deletion would take along something that stays (a
/// conflict, a file kept on purpose) is not deleted: the folder-deleted-here,
/// file-changed-there case must never lose the changed file.
pub(super) fn keep_dirs_with_survivors(p: &mut Plan, inp: &Inputs) {
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
