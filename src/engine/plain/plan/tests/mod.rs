use super::*;
use crate::format::manifest::Seen;

fn file(size: u64, mtime: i64) -> Entry {
    Entry {
        kind: EntryKind::File,
        size,
        mtime_ns: mtime,
        mode: 0o644,
        blake3: None,
        target: None,
        seen: Seen::default(),
        chunks: None,
    }
}

fn dir() -> Entry {
    Entry {
        kind: EntryKind::Dir,
        ..file(0, 0)
    }
}

fn entries(list: &[(&str, Entry)]) -> Entries {
    list.iter()
        .map(|(p, e)| (p.as_bytes().to_vec(), e.clone()))
        .collect()
}

fn sync(a: &Entries, b: &Entries, base: &Entries) -> Plan {
    let inp = Inputs {
        a,
        b,
        a_base: Some(base),
        b_base: Some(base),
    };
    plan(&inp, Mode::Sync, Select::Newer, Compare::Attr)
}

#[test]
fn sync_one_sided_changes_propagate() {
    let base = entries(&[("x", file(1, 1)), ("y", file(1, 1))]);
    let a = entries(&[("x", file(2, 2)), ("y", file(1, 1)), ("n", file(5, 5))]);
    let b = entries(&[("x", file(1, 1))]);
    let p = sync(&a, &b, &base);
    assert!(p.conflicts.is_empty());
    let ops: Vec<(&[u8], Op)> = p.actions.iter().map(|a| (&a.path[..], a.op)).collect();
    assert_eq!(
        ops,
        vec![
            (&b"n"[..], Op::Copy { to: SideId::B }),
            (&b"x"[..], Op::Copy { to: SideId::B }),
            (&b"y"[..], Op::Delete { on: SideId::A }),
        ]
    );
}

#[test]
fn sync_two_sided_cases_are_conflicts() {
    let base = entries(&[("m", file(1, 1)), ("d", file(1, 1))]);
    let a = entries(&[("m", file(2, 2)), ("c", file(3, 3)), ("s", file(4, 4))]);
    let b = entries(&[
        ("m", file(5, 5)),
        ("d", file(6, 6)),
        ("c", file(7, 7)),
        ("s", file(4, 4)),
    ]);
    let p = sync(&a, &b, &base);
    let kinds: Vec<(&[u8], ConflictKind)> =
        p.conflicts.iter().map(|c| (&c.path[..], c.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (&b"c"[..], ConflictKind::BothCreated),
            (
                &b"d"[..],
                ConflictKind::DeletedChanged { deleted: SideId::A }
            ),
            (&b"m"[..], ConflictKind::BothModified),
        ]
    );
    // Created on both with the same content: nothing to do.
    assert!(p.actions.is_empty());
}

#[test]
fn folder_deleted_while_file_inside_changed_keeps_both() {
    let base = entries(&[("d", dir()), ("d/f", file(1, 1)), ("d/g", file(1, 1))]);
    let a = entries(&[]);
    let b = entries(&[("d", dir()), ("d/f", file(2, 2)), ("d/g", file(1, 1))]);
    let p = sync(&a, &b, &base);
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].path, b"d/f");
    // d/g is deleted (unchanged on B), but the directory stays for d/f.
    assert_eq!(p.actions.len(), 1);
    assert_eq!(p.actions[0].path, b"d/g");
    assert!(p.keep_base.contains(b"d".as_slice()));
}

#[test]
fn mirror_detects_destination_edits() {
    let base = entries(&[("x", file(1, 1)), ("y", file(1, 1))]);
    let a = entries(&[("x", file(2, 2)), ("y", file(1, 1))]);
    let b = entries(&[("x", file(1, 1)), ("y", file(9, 9)), ("z", file(1, 1))]);
    let inp = Inputs {
        a: &a,
        b: &b,
        a_base: None,
        b_base: Some(&base),
    };
    let mut p = plan(&inp, Mode::Mirror, Select::Source, Compare::Attr);
    assert_eq!(p.actions.len(), 1);
    assert_eq!(p.actions[0].path, b"x");
    let kinds: Vec<ConflictKind> = p.conflicts.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![ConflictKind::ChangedOnDest, ConflictKind::CreatedOnDest]
    );
    // The source wins: y is overwritten, z deleted.
    p.settle(0, SideId::A, Mode::Mirror);
    p.settle(1, SideId::A, Mode::Mirror);
    assert_eq!(p.actions.len(), 3);
    assert_eq!(p.actions[2].op, Op::Delete { on: SideId::B });
    // Backup mode never deletes and never writes to the source.
    let p = plan(&inp, Mode::Backup, Select::Source, Compare::Attr);
    assert_eq!(p.conflicts.len(), 1);
    let mut p2 = p.clone();
    p2.settle(0, SideId::B, Mode::Backup);
    assert_eq!(p2.actions.len(), 1);
}

#[test]
fn select_decides_differences_without_history() {
    let a = entries(&[("x", file(1, 10)), ("y", file(1, 1))]);
    let b = entries(&[("x", file(2, 5)), ("y", file(2, 50))]);
    let run = |mode, sel| {
        let inp = Inputs {
            a: &a,
            b: &b,
            a_base: None,
            b_base: None,
        };
        plan(&inp, mode, sel, Compare::Attr)
    };
    assert_eq!(run(Mode::Mirror, Select::Source).actions.len(), 2);
    assert_eq!(run(Mode::Mirror, Select::Dest).actions.len(), 0);
    let newer = run(Mode::Sync, Select::Newer);
    assert_eq!(newer.actions[0].op, Op::Copy { to: SideId::B });
    assert_eq!(newer.actions[1].op, Op::Copy { to: SideId::A });
    // Mirror can only write the destination: the newer destination file stays.
    assert_eq!(run(Mode::Mirror, Select::Newer).actions.len(), 1);
    let none = run(Mode::Sync, Select::None);
    assert!(none.actions.is_empty());
    assert_eq!(none.notes.len(), 2);
}

#[test]
fn hash_compare_finds_and_repairs_silent_corruption() {
    let good = Entry {
        blake3: Some([1; 32]),
        ..file(4, 4)
    };
    let bad = Entry {
        blake3: Some([2; 32]),
        ..file(4, 4)
    };
    let base = entries(&[("f", good.clone())]);
    let a = entries(&[("f", good)]);
    let b = entries(&[("f", bad)]);
    let inp = Inputs {
        a: &a,
        b: &b,
        a_base: Some(&base),
        b_base: Some(&base),
    };
    let p = plan(&inp, Mode::Mirror, Select::Source, Compare::Hash);
    assert_eq!(p.notes[0].kind, NoteKind::Corrupt { side: SideId::B });
    assert_eq!(p.actions[0].why, Why::Repair);
    // Corruption on the source is never copied over a good destination.
    let inp = Inputs {
        a: &b,
        b: &a,
        a_base: Some(&base),
        b_base: Some(&base),
    };
    let p = plan(&inp, Mode::Mirror, Select::Source, Compare::Hash);
    assert!(p.actions.is_empty());
    assert_eq!(p.notes.len(), 1);
    // Attribute comparison cannot see it.
    let p = plan(&inp, Mode::Mirror, Select::Source, Compare::Attr);
    assert!(p.actions.is_empty() && p.notes.is_empty());
}

#[test]
fn equal_mtimes_under_newer_are_a_conflict_in_either_order() {
    let a = entries(&[("f", file(5, 7))]);
    let b = entries(&[("f", file(13, 7))]);
    for (x, y) in [(&a, &b), (&b, &a)] {
        let inp = Inputs {
            a: x,
            b: y,
            a_base: None,
            b_base: None,
        };
        let p = plan(&inp, Mode::Sync, Select::Newer, Compare::Attr);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].kind, ConflictKind::SameTime);
        assert_eq!(p.conflicts[0].winner(Resolve::New), None);
        assert_eq!(p.conflicts[0].winner(Resolve::Old), None);
        assert_eq!(p.conflicts[0].winner(Resolve::Local), Some(SideId::A));
    }
}

#[test]
fn the_same_edit_on_both_sides_is_no_conflict_once_hashed() {
    let base = entries(&[("f", file(4, 1))]);
    let mut a = entries(&[("f", file(9, 20))]);
    let mut b = entries(&[("f", file(9, 30))]);
    assert_eq!(sync(&a, &b, &base).conflicts.len(), 1);
    for (m, h) in [(&mut a, 1u8), (&mut b, 1u8)] {
        if let Some(e) = m.get_mut(&b"f"[..]) {
            e.blake3 = Some([h; 32]);
        }
    }
    let p = sync(&a, &b, &base);
    assert!(p.conflicts.is_empty() && p.actions.is_empty(), "{p:?}");
    b.get_mut(&b"f"[..]).unwrap().blake3 = Some([2; 32]);
    assert_eq!(sync(&a, &b, &base).conflicts.len(), 1);
}

/// Object stores list no folders: nested files are still copied; only a
/// file or symlink in a folder's place stops what is below it.
#[test]
fn nested_paths_without_folder_entries_are_kept() {
    let a = entries(&[("d/e/f", file(1, 1)), ("x/y", file(1, 1))]);
    let b = entries(&[("x", file(3, 3))]);
    let inp = Inputs {
        a: &a,
        b: &b,
        a_base: None,
        b_base: None,
    };
    let p = plan(&inp, Mode::Mirror, Select::Source, Compare::Attr);
    let ops: Vec<(&[u8], Op)> = p.actions.iter().map(|a| (&a.path[..], a.op)).collect();
    assert_eq!(
        ops,
        vec![
            (&b"d/e/f"[..], Op::Copy { to: SideId::B }),
            (&b"x"[..], Op::Delete { on: SideId::B }),
        ]
    );
}
