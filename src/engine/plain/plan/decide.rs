//! The decision for one path, from its four entries: each side now and
//! as recorded after the last run.

use crate::format::manifest::{Entry, EntryKind};

use super::compare::{changed, corrupt, mtime, same, same_content};
use super::{
    Action, Compare, Conflict, ConflictKind, Inputs, Mode, Note, NoteKind, Op, Plan, Select,
    SideId, Why,
};

pub(super) fn decide(
    p: &mut Plan,
    inp: &Inputs,
    path: &[u8],
    mode: Mode,
    select: Select,
    cmp: Compare,
) {
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
pub(super) fn push_win(
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
