//! What a repository with S3 object lock asks of storage: how long an
//! object may stay locked, what a pack says of its own lock, and extending
//! the locks of what is still used (see `storage/objlock/`).

use std::collections::HashMap;
use std::time::Duration;

use super::{Repository, objects};
use crate::error::{Error, Result};
use crate::id::PackId;

impl Repository {
    /// `days` if `init --object-lock` accepts it.
    pub(super) fn lock_days(days: u32) -> Result<u32> {
        let max = crate::format::config::MAX_OBJECT_LOCK_DAYS;
        if !(1..=max).contains(&days) {
            return Err(Error::Usage(format!(
                "--object-lock {days} is out of range: give 1 to {max} days"
            )));
        }
        Ok(days)
    }

    /// How long after its modification time an object may still be held by
    /// S3 object lock; `None` when this repository writes nothing locked.
    pub(crate) fn object_lock_hold(&self) -> Option<Duration> {
        self.storage.object_lock_hold()
    }

    /// Until when (ms since the epoch, clocks allowed for) each of `packs`
    /// may still be locked, as the objects themselves say: a lock extended by
    /// maintenance outlives what the write time suggests. Packs without a
    /// lock are left out.
    pub(crate) fn pack_locks_until(&self, packs: &[PackId]) -> Result<HashMap<PackId, i64>> {
        let keys = packs.iter().map(objects::pack_key).collect();
        Ok(self
            .storage
            .object_locks_until(keys)?
            .into_iter()
            .filter_map(|(key, until)| {
                let id = PackId::from_hex(&objects::id_from_key(&key)?)?;
                Some((id, until?))
            })
            .collect())
    }

    /// Extends the S3 object lock of every object (but locks and the
    /// `expiring` packs, which nothing needs) written more than half a period
    /// ago to a full period from now; returns how many.
    pub(crate) fn extend_object_locks(&self, expiring: &[PackId]) -> Result<usize> {
        let skip = expiring.iter().map(objects::pack_key).collect();
        self.storage.extend_object_locks(&skip)
    }
}
