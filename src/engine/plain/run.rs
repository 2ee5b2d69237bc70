//! One run of a plan: the actions on each side (copy, link, delete, each
//! moving aside what it replaces), with what each side now holds, its log
//! and the report, gathered from parallel copies.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::manifest::{Entry, EntryKind};

use super::links::Leader;
use super::{Prepared, Report, Side, SideId, local};

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

pub(super) struct Run<'a> {
    pub(super) sides: [&'a Side; 2],
    pub(super) stamp: String,
    pub(super) bin_ok: bool,
    pub(super) progress: &'a dyn Progress,
    /// New records per side, from what was written.
    pub(super) written: [Mutex<HashMap<Vec<u8>, Option<Entry>>>; 2],
    pub(super) logs: [Mutex<Vec<String>>; 2],
    pub(super) report: Mutex<Report>,
    /// Paths whose action failed: like undone ones, they keep their old
    /// records, or the next run would take a half-done copy for a change
    /// (a destination moved aside for a deletion, say).
    pub(super) failed: Mutex<HashSet<Vec<u8>>>,
}

impl Run<'_> {
    pub(super) fn new<'a>(
        sides: [&'a Side; 2],
        stamp: String,
        bin_ok: bool,
        progress: &'a dyn Progress,
    ) -> Run<'a> {
        Run {
            sides,
            stamp,
            bin_ok,
            progress,
            written: [Mutex::new(HashMap::new()), Mutex::new(HashMap::new())],
            logs: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            report: Mutex::new(Report::default()),
            failed: Mutex::new(HashSet::new()),
        }
    }

    /// The side `s` names.
    pub(super) fn side(&self, s: SideId) -> &Side {
        self.sides[Self::idx(s)]
    }
    /// Whether `leader` on side `to` holds the file to link to: written in
    /// this run, or (an anchor) already there and left alone.
    pub(super) fn has(&self, to: SideId, leader: &Leader) -> bool {
        self.written[Self::idx(to)]
            .lock()
            .map(|w| match w.get(&leader.path) {
                Some(rec) => rec.is_some(),
                None => leader.anchor,
            })
            .unwrap_or(false)
    }

    pub(super) fn idx(s: SideId) -> usize {
        match s {
            SideId::A => 0,
            SideId::B => 1,
        }
    }

    pub(super) fn log(&self, on: SideId, action: &str, rel: &[u8], e: Option<&Entry>) {
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

    pub(super) fn error(&self, side: &Side, rel: &[u8], e: Error) {
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
    pub(super) fn clear(&self, on: SideId, rel: &[u8], bin: &str) -> Result<()> {
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

    pub(super) fn copy(&self, p: &Prepared, to: SideId, rel: &[u8]) -> Result<()> {
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
    pub(super) fn link(&self, p: &Prepared, to: SideId, rel: &[u8], leader: &[u8]) -> Result<()> {
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

    pub(super) fn delete(&self, on: SideId, rel: &[u8], kind: EntryKind) -> Result<()> {
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
