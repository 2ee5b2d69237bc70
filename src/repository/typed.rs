//! Whole objects by typed id: the only way code outside `repository/`
//! reaches snapshots, index objects, keys, locks and packs as objects.
//!
//! Storage keys are built here and in [`super::objects`] only, so no engine
//! or command can name an object wrongly, or write an index or snapshot
//! object past the lock check of [`Repository::save_object`]. Also the
//! snapshot lookups (`latest`, id prefixes) that commands share.

use rayon::prelude::*;

use super::lock::LockInfo;
use super::objects::{self, ObjectKind};
use super::{Repository, SnapshotList};
use crate::error::{Error, Result};
use crate::format::error::FormatError;
use crate::format::index::{IndexFile, MemIndex};
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
    pub(crate) fn location(&self) -> &Location {
        self.storage.location()
    }

    /// Requests and bytes moved so far, for reports.
    pub(crate) fn storage_stats(&self) -> StatsReport {
        let cache = self.cache_report();
        StatsReport {
            cache_hits: cache.cache_hits,
            cache_misses: cache.cache_misses,
            ..self.storage.stats()
        }
    }

    /// Tree pack `id` was just written with these bytes: keep them in the
    /// cache, so the next backup's walk of its parent starts warm.
    pub(crate) fn cache_written_pack(&self, id: &PackId, parts: &[Vec<u8>]) {
        if let Some(c) = self.cache() {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            c.put(ObjectKind::Pack, &id.to_hex(), &parts);
        }
    }

    fn typed_ids<T>(&self, kind: ObjectKind, parse: fn(&str) -> Option<T>) -> Result<Vec<T>> {
        Ok(self
            .list_ids(kind)?
            .iter()
            .filter_map(|h| parse(h))
            .collect())
    }

    /// Loads a sealed object and decodes its payload; a payload that does
    /// not decode is damage of that object.
    fn load_decoded<T>(
        &self,
        kind: ObjectKind,
        hex: &str,
        decode: fn(&[u8]) -> std::result::Result<T, FormatError>,
    ) -> Result<T> {
        let bytes = objects::load(self, kind, hex)?;
        decode(&bytes).map_err(|e| Error::corrupt(kind.key(hex), e))
    }

    fn save_typed<T: Default>(
        &self,
        kind: ObjectKind,
        payload: &[u8],
        parse: fn(&str) -> Option<T>,
    ) -> Result<T> {
        let hex = self.save_object(kind, payload)?;
        Ok(parse(&hex).unwrap_or_default())
    }

    fn delete_object(&self, kind: ObjectKind, hex: &str) -> Result<()> {
        self.storage.delete(&kind.key(hex))
    }

    // --- snapshots -------------------------------------------------------

    /// Hex ids of every object of one kind.
    /// A listing is the truth about what exists: cached objects of that
    /// kind it no longer names leave the cache.
    pub(crate) fn list_ids(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .storage
            .list(kind.dir())?
            .into_iter()
            .filter_map(|l| objects::id_from_key(&l.key))
            .collect();
        if let Some(c) = objects::cache_for(self, kind) {
            c.retain(kind, &ids.iter().cloned().collect());
        }
        Ok(ids)
    }

    /// Every snapshot, oldest first.
    pub(crate) fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.snapshots_and_damaged()?.0)
    }

    /// Every readable snapshot, oldest first, and the damaged ones with the
    /// reason. One damaged snapshot must not stop backups or listings; only
    /// storage failures are fatal here.
    pub(crate) fn snapshots_and_damaged(&self) -> Result<SnapshotList> {
        let ids = self.list_ids(ObjectKind::Snapshot)?;
        let loaded: Vec<(String, Result<Snapshot>)> = self.transfer_pool()?.install(|| {
            ids.par_iter()
                .map(|hex| {
                    let id = SnapshotId::from_hex(hex).unwrap_or_default();
                    (hex.clone(), self.load_snapshot(&id))
                })
                .collect()
        });
        let (mut good, mut damaged) = (Vec::new(), Vec::new());
        for (hex, s) in loaded {
            match s {
                Ok(s) => good.push((SnapshotId::from_hex(&hex).unwrap_or_default(), s)),
                Err(Error::NotFound { .. }) => {} // removed while we listed
                Err(e @ Error::Corrupt { .. }) => damaged.push((hex, e)),
                Err(e) => return Err(e),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, damaged))
    }

    /// Runs `f` (typically a snapshot lookup) while the index loads on
    /// another thread: the two listings do not depend on each other, and
    /// over a wide-area link each is a round trip. `f`'s error comes first.
    pub(crate) fn with_index<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, MemIndex)> {
        std::thread::scope(|s| {
            let index = s.spawn(|| self.load_index());
            let got = f();
            let index = index
                .join()
                .map_err(|_| Error::Internal("the thread loading the index panicked".into()))?;
            Ok((got?, index?))
        })
    }

    /// Resolves `latest` or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec.is_empty() {
            return Err(Error::Usage(
                "the snapshot id is empty; give `latest` or a prefix of an id from `repo snapshots`"
                    .into(),
            ));
        }
        let mut all = self.snapshots()?;
        if spec == "latest" {
            return all.pop().ok_or_else(|| Error::NotFound {
                what: format!("snapshot \"latest\" in {}", self.storage.location()),
                hint: ": the repository has no snapshots yet; make one with `repo create`".into(),
            });
        }
        let spec_l = spec.to_ascii_lowercase();
        let mut matches = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(Error::NotFound {
                what: format!("snapshot {spec:?}"),
                hint: "; list them with `repo snapshots`".into(),
            }),
            _ => Err(Error::Usage(format!(
                "snapshot prefix {spec:?} matches more than one snapshot; give more characters of the id"
            ))),
        }
    }

    /// The snapshots named by `specs` (deduplicated, oldest first), or all of them when empty.
    pub(crate) fn select_snapshots(&self, specs: &[String]) -> Result<Vec<(SnapshotId, Snapshot)>> {
        if specs.is_empty() {
            return self.snapshots();
        }
        let mut v: Vec<(SnapshotId, Snapshot)> = Vec::new();
        for s in specs {
            let found = self.find_snapshot(s)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(v)
    }

    pub(crate) fn list_snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        self.typed_ids(ObjectKind::Snapshot, SnapshotId::from_hex)
    }

    /// The opened payload of a snapshot object (JSON), for showing fields
    /// this version does not know.
    pub(crate) fn load_snapshot_bytes(&self, id: &SnapshotId) -> Result<Vec<u8>> {
        objects::load(self, ObjectKind::Snapshot, &id.to_hex())
    }

    pub(crate) fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.load_decoded(ObjectKind::Snapshot, &id.to_hex(), Snapshot::decode)
    }

    /// Saves a snapshot object (under the lock check of [`Repository::save_object`]).
    pub(crate) fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        self.save_typed(ObjectKind::Snapshot, &snap.encode(), SnapshotId::from_hex)
    }

    pub(crate) fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.delete_object(ObjectKind::Snapshot, &id.to_hex())
    }

    // --- index objects ---------------------------------------------------

    pub(crate) fn list_index_ids(&self) -> Result<Vec<IndexId>> {
        self.typed_ids(ObjectKind::Index, IndexId::from_hex)
    }

    pub(crate) fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        self.load_decoded(ObjectKind::Index, &id.to_hex(), IndexFile::decode)
    }

    /// Saves an index object (under the lock check of [`Repository::save_object`]).
    pub(crate) fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        self.save_typed(ObjectKind::Index, &file.encode(), IndexId::from_hex)
    }

    pub(crate) fn delete_index(&self, id: &IndexId) -> Result<()> {
        self.delete_object(ObjectKind::Index, &id.to_hex())
    }

    // --- keys ------------------------------------------------------------

    pub(crate) fn list_key_ids(&self) -> Result<Vec<KeyId>> {
        self.typed_ids(ObjectKind::Key, KeyId::from_hex)
    }

    pub(crate) fn load_key(&self, id: KeyId) -> Result<KeyFile> {
        objects::load_key(&self.storage, self.cache(), id)
    }

    pub(crate) fn save_key(&self, key: &KeyFile) -> Result<KeyId> {
        objects::save_key(&self.storage, key)
    }

    pub(crate) fn delete_key(&self, id: KeyId) -> Result<()> {
        self.delete_object(ObjectKind::Key, &id.to_hex())
    }

    // --- locks -----------------------------------------------------------

    /// A lock object, opened and parsed.
    pub(crate) fn load_lock(&self, hex: &str) -> Result<LockInfo> {
        let bytes = objects::load(self, ObjectKind::Lock, hex)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("locks/{hex}"), format!("not a lock: {e}")))
    }

    // --- packs -----------------------------------------------------------

    /// Every stored pack with its size (`modified_ms` is 0: a plain listing).
    pub(crate) fn list_packs(&self) -> Result<Vec<StoredPack>> {
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
    pub(crate) fn list_packs_modified(&self) -> Result<Vec<StoredPack>> {
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
    pub(crate) fn list_pack_objects(&self) -> Result<Vec<Listed>> {
        self.storage.list(ObjectKind::Pack.dir())
    }

    pub(crate) fn delete_pack(&self, id: &PackId) -> Result<()> {
        self.storage.delete(&objects::pack_key(id))
    }
}
