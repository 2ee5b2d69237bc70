//! Hard links kept as links when copying local to local.

use std::collections::{HashMap, HashSet};

use crate::format::manifest::EntryKind;

use super::run::Run;
use super::{Compare, Prepared, Side, SideId, local, plan};

/// The path a further hard link is made to.
pub(super) struct Leader {
    pub path: Vec<u8>,
    /// Already on the destination and not written by this run.
    pub anchor: bool,
}

/// Local to local: for file copies whose source has further hard links,
/// which copy should become a link to which path on the destination (the
/// follower's path maps to its leader's). A group's leader is a link already
/// in place and unchanged on the destination when there is one, else the
/// group's first copy. Files are matched by device and inode, as `rsync -H`
/// does, so links stay links and their bytes are stored once.
pub(super) fn hard_links(
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
