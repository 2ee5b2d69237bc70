//! Whole objects by typed id: the only way code outside `repository/`
//! reaches snapshots, index objects, keys, locks and packs as objects.
//!
//! Storage keys are built here and in [`super::objects`] only, so no engine
//! or command can name an object wrongly, write one unsealed or delete one
//! without the lock check that [`Repository::save_object`] and the delete
//! helpers below keep in one place.

use super::Repository;
use super::lock::LockInfo;
use super::objects::{self, ObjectKind};
use crate::error::{Error, Result};
use crate::format::index::IndexFile;
use crate::format::keyfile::KeyFile;
use crate::format::snapshot::Snapshot;
use crate::id::{IndexId, KeyId, PackId, SnapshotId};
use crate::storage::{Listed, Location, StatsReport};

/// A stored pack as listed: its id, size and last modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPack {
    pub id: PackId,
    pub size: u64,
    /// Milliseconds since the epoch; only for [`Repository::list_packs_modified`].
    pub modified_ms: i64,
}

impl Repository {
    /// Where the repository is, for messages and reports.
    pub fn location(&self) -> &Location {
        self.storage.location()
    }

    /// Requests and bytes moved so far, for reports.
    pub fn storage_stats(&self) -> StatsReport {
        self.storage.stats()
    }

    fn typed_ids<T>(&self, kind: ObjectKind, parse: fn(&str) -> Option<T>) -> Result<Vec<T>> {
        Ok(self
            .list_ids(kind)?
            .iter()
            .filter_map(|h| parse(h))
            .collect())
    }

    // --- snapshots -------------------------------------------------------

    pub fn list_snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        self.typed_ids(ObjectKind::Snapshot, SnapshotId::from_hex)
    }

    /// The opened payload of a snapshot object (JSON), for showing fields
    /// this version does not know.
    pub fn load_snapshot_bytes(&self, id: &SnapshotId) -> Result<Vec<u8>> {
        objects::load(self, ObjectKind::Snapshot, &id.to_hex())
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let bytes = self.load_snapshot_bytes(id)?;
        Snapshot::decode(&bytes).map_err(|e| Error::corrupt(format!("snapshots/{id}"), e))
    }

    /// Saves a snapshot object (under the lock check of [`Repository::save_object`]).
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let hex = self.save_object(ObjectKind::Snapshot, &snap.encode())?;
        Ok(SnapshotId::from_hex(&hex).unwrap_or_default())
    }

    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.storage.delete(&ObjectKind::Snapshot.key(&id.to_hex()))
    }

    // --- index objects ---------------------------------------------------

    pub fn list_index_ids(&self) -> Result<Vec<IndexId>> {
        self.typed_ids(ObjectKind::Index, IndexId::from_hex)
    }

    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let hex = id.to_hex();
        let bytes = objects::load(self, ObjectKind::Index, &hex)?;
        IndexFile::decode(&bytes).map_err(|e| Error::corrupt(format!("index/{hex}"), e))
    }

    /// Saves an index object (under the lock check of [`Repository::save_object`]).
    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let hex = self.save_object(ObjectKind::Index, &file.encode())?;
        Ok(IndexId::from_hex(&hex).unwrap_or_default())
    }

    pub fn delete_index(&self, id: &IndexId) -> Result<()> {
        self.storage.delete(&ObjectKind::Index.key(&id.to_hex()))
    }

    // --- keys ------------------------------------------------------------

    pub fn list_key_ids(&self) -> Result<Vec<KeyId>> {
        self.typed_ids(ObjectKind::Key, KeyId::from_hex)
    }

    pub fn load_key(&self, id: KeyId) -> Result<KeyFile> {
        objects::load_key(&self.storage, id)
    }

    pub fn save_key(&self, key: &KeyFile) -> Result<KeyId> {
        objects::save_key(&self.storage, key)
    }

    pub fn delete_key(&self, id: KeyId) -> Result<()> {
        self.storage.delete(&ObjectKind::Key.key(&id.to_hex()))
    }

    // --- locks -----------------------------------------------------------

    /// Hex ids of the lock objects present.
    pub fn list_lock_ids(&self) -> Result<Vec<String>> {
        self.list_ids(ObjectKind::Lock)
    }

    /// A lock object, opened and parsed.
    pub fn load_lock(&self, hex: &str) -> Result<LockInfo> {
        let bytes = objects::load(self, ObjectKind::Lock, hex)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("locks/{hex}"), format!("not a lock: {e}")))
    }

    // --- packs -----------------------------------------------------------

    /// Every stored pack with its size (`modified_ms` is 0: a plain listing).
    pub fn list_packs(&self) -> Result<Vec<StoredPack>> {
        Ok(self
            .storage
            .list(ObjectKind::Pack.dir())?
            .into_iter()
            .filter_map(|l| {
                let id = PackId::from_hex(&objects::id_from_key(&l.key)?)?;
                Some(StoredPack {
                    id,
                    size: l.size,
                    modified_ms: 0,
                })
            })
            .collect())
    }

    /// Every stored pack with its size and modification time (one more
    /// costly listing on some backends; prune's grace period needs it).
    pub fn list_packs_modified(&self) -> Result<Vec<StoredPack>> {
        Ok(self
            .storage
            .list_files(ObjectKind::Pack.dir())?
            .into_iter()
            .filter_map(|f| {
                let id = PackId::from_hex(&objects::id_from_key(&f.name)?)?;
                Some(StoredPack {
                    id,
                    size: f.size,
                    modified_ms: f.modified_ms,
                })
            })
            .collect())
    }

    /// Every object under `data/` as listed, pack-named or not: what the
    /// packs cost in space, and strays for check to report.
    pub fn list_pack_objects(&self) -> Result<Vec<Listed>> {
        self.storage.list(ObjectKind::Pack.dir())
    }

    pub fn delete_pack(&self, id: &PackId) -> Result<()> {
        self.storage.delete(&objects::pack_key(id))
    }
}
