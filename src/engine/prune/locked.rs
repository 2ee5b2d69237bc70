//! Packs that S3 object lock may still protect, which prune keeps.
//!
//! On a bucket with object lock a delete never fails: it only hides a
//! locked object behind a delete marker, and the object stays stored (and
//! billed) until its lock ends. So prune does not try: a pack written less
//! than the lock's hold ago (judged by its modification time in the
//! listing, no request), or an older one whose own retention (one request
//! per such pack, as maintenance may have extended it) is not over yet, is
//! kept as it is, neither deleted nor repacked, and counted in the report;
//! a later prune removes it. Index and
//! snapshot objects are not kept this way: they must leave the listing (a
//! superseded index would name deleted packs), and the delete marker is
//! what hides them while their locked version stays for recovery.

use std::collections::{BTreeMap, HashMap};

use crate::error::Result;
use crate::id::PackId;
use crate::repository::Repository;

use super::PruneReport;
use super::mark::Gathered;
use super::plan::Fate;

/// Until when (ms since the epoch) each stored pack may be locked, for the
/// packs that may still be; empty when the repository has no object lock.
pub(super) struct Locked(HashMap<PackId, i64>);

impl Locked {
    /// The packs prune would delete (`fate` not kept, or in no index) that
    /// may still be locked: young ones by their listed modification time,
    /// older ones (whose lock maintenance may have extended) by asking
    /// each pack.
    pub(super) fn find(
        repo: &Repository,
        g: &Gathered,
        fate: &BTreeMap<PackId, Fate>,
    ) -> Result<Locked> {
        let Some(hold) = repo.object_lock_hold() else {
            return Ok(Locked(HashMap::new()));
        };
        let hold = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let now = chrono::Utc::now().timestamp_millis();
        let mut locked: HashMap<PackId, i64> = repo
            .list_packs_modified()?
            .into_iter()
            .map(|p| (p.id, p.modified_ms.saturating_add(hold)))
            .filter(|(_, until)| *until > now)
            .collect();
        let older: Vec<PackId> = fate
            .iter()
            .filter(|(_, f)| **f != Fate::Keep)
            .map(|(id, _)| id)
            .chain(g.stored.keys().filter(|id| !g.indexed.contains_key(id)))
            .filter(|id| g.stored.contains_key(id) && !locked.contains_key(id))
            .copied()
            .collect();
        if !older.is_empty() {
            let asked = repo.pack_locks_until(&older)?;
            locked.extend(asked.into_iter().filter(|(_, until)| *until > now));
        }
        Ok(Locked(locked))
    }

    /// Keeps the locked packs prune would remove or repack; a pack with
    /// another size than indexed holds no usable copy and goes anyway.
    /// Returns those no snapshot needs, whose locks must not be extended.
    pub(super) fn keep(
        &self,
        g: &Gathered,
        fate: &mut BTreeMap<PackId, Fate>,
        report: &mut PruneReport,
    ) -> Vec<PackId> {
        let mut unused = Vec::new();
        for (id, f) in fate.iter_mut() {
            let usable = g.indexed.get(id).map(|p| p.size) == g.stored.get(id).copied();
            if *f != Fate::Keep && usable && self.0.contains_key(id) {
                if *f == Fate::Remove {
                    unused.push(*id);
                }
                *f = Fate::Keep;
                self.count(id, g, report);
            }
        }
        unused
    }

    /// Takes the locked packs out of the unindexed ones to delete; returns them.
    pub(super) fn keep_unindexed(
        &self,
        g: &Gathered,
        unindexed: &mut Vec<PackId>,
        report: &mut PruneReport,
    ) -> Vec<PackId> {
        let (kept, doomed) = unindexed.iter().partition(|id| self.0.contains_key(id));
        *unindexed = doomed;
        for id in &kept {
            self.count(id, g, report);
        }
        kept
    }

    fn count(&self, id: &PackId, g: &Gathered, report: &mut PruneReport) {
        report.locked_kept += 1;
        report.locked_kept_bytes += g.stored.get(id).copied().unwrap_or(0);
        let until = self.0.get(id).copied().unwrap_or(0);
        let later = chrono::DateTime::from_timestamp_millis(until)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        // RFC 3339 UTC strings of one format sort as their times do.
        if later > report.locked_until {
            report.locked_until = later;
        }
    }
}
