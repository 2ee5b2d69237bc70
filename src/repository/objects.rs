//! Naming, sealing and loading of whole objects (all but packs' blobs).
//!
//! Every stored object is named by the BLAKE3 of its stored bytes, so a
//! loader always checks the name before anything else: a renamed, swapped
//! or bit-rotted object is caught without the key.

use super::Repository;
use super::cache::Cache;
use crate::codec;
use crate::crypto::hash;
use crate::error::{Error, Result};
use crate::format::keyfile::{KeyFile, MAX_KEY_LEN};
use crate::id::{KeyId, PackId};
use crate::storage::Storage;

/// Largest encrypted object (index, snapshot, lock) we will decode.
pub const MAX_OBJECT_LEN: usize = 1 << 30;
/// Largest stored index object (SPEC 1.1): one rebuilt by `repair index`
/// for a repository of some ten million blobs stays well below it.
pub(crate) const MAX_INDEX_SIZE: u64 = 1 << 30;
/// Largest stored snapshot object (SPEC 1.1).
pub(crate) const MAX_SNAPSHOT_SIZE: u64 = 64 << 20;
/// Largest stored lock object (SPEC 1.1); real ones have a few hundred bytes.
pub(crate) const MAX_LOCK_SIZE: u64 = 1 << 20;

/// The kinds of whole objects, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Key,
    Index,
    Snapshot,
    Lock,
    Pack,
}

impl ObjectKind {
    pub(crate) fn dir(self) -> &'static str {
        match self {
            ObjectKind::Key => "keys",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
            ObjectKind::Pack => "data",
        }
    }

    /// Associated data for sealed objects of this kind.
    pub fn ad(self) -> &'static [u8] {
        match self {
            ObjectKind::Key => b"repo object key v1",
            ObjectKind::Index => b"repo object index v1",
            ObjectKind::Snapshot => b"repo object snapshot v1",
            ObjectKind::Lock => b"repo object lock v1",
            ObjectKind::Pack => b"repo object pack v1",
        }
    }

    /// Most stored bytes an object of this kind may have (SPEC 1.1). Checked
    /// before reading, so a planted huge object is refused unread.
    pub(crate) fn max_size(self) -> u64 {
        match self {
            ObjectKind::Key => MAX_KEY_LEN as u64,
            ObjectKind::Index => MAX_INDEX_SIZE,
            ObjectKind::Snapshot => MAX_SNAPSHOT_SIZE,
            ObjectKind::Lock => MAX_LOCK_SIZE,
            ObjectKind::Pack => crate::storage::MAX_OBJECT_SIZE,
        }
    }

    /// Storage key of an object of this kind.
    pub fn key(self, hex: &str) -> String {
        match self {
            ObjectKind::Pack => format!("data/{}/{hex}", &hex[..2.min(hex.len())]),
            other => format!("{}/{hex}", other.dir()),
        }
    }
}

/// Storage key of a pack: `data/<first two hex digits>/<id>`.
pub fn pack_key(id: &PackId) -> String {
    ObjectKind::Pack.key(&id.to_hex())
}

/// The hex id of a listed storage key, if the key is exactly where an
/// object of its directory's kind lives (SPEC §1.1): `<dir>/<id>`, or
/// `data/<first two digits>/<id>` for packs. Anything else a recursive
/// listing finds (`locks/exclusive/…`, a pack under the wrong two-digit
/// directory, a deeper path) is not an object, so nobody can make a
/// planted file count as a lock, index or pack by its name alone.
pub(crate) fn id_from_key(key: &str) -> Option<String> {
    let name = key.rsplit('/').next()?;
    let is_id = name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let dir = key.split('/').next()?;
    let kind = [
        ObjectKind::Key,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Pack,
    ]
    .into_iter()
    .find(|k| k.dir() == dir)?;
    (is_id && kind.key(name) == key).then(|| name.to_string())
}

/// Checks that stored bytes hash to the name they are stored under.
pub(crate) fn verify_name(key: &str, hex: &str, bytes: &[u8]) -> Result<()> {
    let actual = hex::encode(hash::object_hash(bytes));
    if actual != hex {
        return Err(Error::corrupt(
            key,
            format!("its content hashes to {actual}, not to its name"),
        ));
    }
    Ok(())
}

/// Seals and stores an encrypted object; returns its hex id.
pub(crate) fn save(repo: &Repository, kind: ObjectKind, payload: &[u8]) -> Result<String> {
    let sealed = codec::encode(
        &repo.keys().encryption,
        kind.ad(),
        payload,
        repo.config().compression_level,
    );
    // Readers refuse objects over the limit unread (SPEC 1.1.2): never write one.
    if sealed.len() as u64 > kind.max_size() {
        return Err(Error::Internal(format!(
            "cannot store a {} object of {} bytes: readers refuse more than {} bytes",
            kind.dir(),
            sealed.len(),
            kind.max_size()
        )));
    }
    let hex = hex::encode(hash::object_hash(&sealed));
    // Cached before it is stored: if the write fails, the next listing
    // (which never lists it) removes it from the cache again.
    if let Some(c) = cache_for(repo, kind) {
        c.put(kind, &hex, &[&sealed]);
    }
    repo.storage().put(&kind.key(&hex), sealed)?;
    Ok(hex)
}

/// The cache, for the kinds of objects kept there.
pub(crate) fn cache_for(repo: &Repository, kind: ObjectKind) -> Option<&Cache> {
    matches!(
        kind,
        ObjectKind::Key | ObjectKind::Index | ObjectKind::Snapshot
    )
    .then(|| repo.cache())
    .flatten()
}

/// Loads, name-checks and opens an encrypted object: from the cache when it
/// holds a copy that still hashes to the name, else from the repository.
pub(crate) fn load(repo: &Repository, kind: ObjectKind, hex: &str) -> Result<Vec<u8>> {
    let sealed = read_stored(repo.storage(), cache_for(repo, kind), kind, hex)?;
    codec::decode(&repo.keys().encryption, kind.ad(), &sealed, MAX_OBJECT_LEN)
        .map_err(|e| Error::corrupt(kind.key(hex), e))
}

/// The stored bytes of object `hex`, checked against its name: from the
/// cache when it holds a good copy, else from storage (and then cached).
fn read_stored(
    storage: &Storage,
    cache: Option<&Cache>,
    kind: ObjectKind,
    hex: &str,
) -> Result<Vec<u8>> {
    let cached = cache.and_then(|c| c.get(kind, hex, kind.max_size()));
    read_stored_unless(storage, cache, kind, hex, cached)
}

/// `cached`, else object `hex` from the repository, name-checked and cached.
fn read_stored_unless(
    storage: &Storage,
    cache: Option<&Cache>,
    kind: ObjectKind,
    hex: &str,
    cached: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    if let Some(bytes) = cached {
        return Ok(bytes);
    }
    let key = kind.key(hex);
    let bytes = storage.get_bounded(&key, kind.max_size())?;
    verify_name(&key, hex, &bytes)?;
    if let Some(c) = cache {
        c.put(kind, hex, &[&bytes]);
    }
    Ok(bytes)
}

/// Stores a key object (plaintext JSON; it holds the wrapped master key).
pub(crate) fn save_key(storage: &Storage, key: &KeyFile) -> Result<KeyId> {
    let bytes = key.encode();
    let id = KeyId(hash::object_hash(&bytes));
    storage.put(&ObjectKind::Key.key(&id.to_hex()), bytes)?;
    Ok(id)
}

/// Loads and name-checks a key object: from the cache when it holds a copy
/// that still hashes to the name (every command opens one key object, a
/// round trip saved), else from the repository.
pub(crate) fn load_key(storage: &Storage, cache: Option<&Cache>, id: KeyId) -> Result<KeyFile> {
    let (kind, hex) = (ObjectKind::Key, id.to_hex());
    let bytes = read_stored(storage, cache, kind, &hex)?;
    KeyFile::decode(&bytes).map_err(|e| Error::corrupt(kind.key(&hex), e))
}

/// [`load_key`] for unlocking: the cached copy is used even by a command
/// that refreshes the cache (see [`Cache::get_unlocking_key`]).
pub(crate) fn load_unlocking_key(
    storage: &Storage,
    cache: Option<&Cache>,
    id: KeyId,
) -> Result<KeyFile> {
    let (kind, hex) = (ObjectKind::Key, id.to_hex());
    let cached = cache.and_then(|c| c.get_unlocking_key(&hex));
    let bytes = read_stored_unless(storage, cache, kind, &hex, cached)?;
    KeyFile::decode(&bytes).map_err(|e| Error::corrupt(kind.key(&hex), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_where_objects_live_name_objects() {
        let id = "ab".repeat(32);
        for good in [
            format!("keys/{id}"),
            format!("index/{id}"),
            format!("snapshots/{id}"),
            format!("locks/{id}"),
            format!("data/ab/{id}"),
        ] {
            assert_eq!(id_from_key(&good).as_deref(), Some(id.as_str()), "{good}");
        }
        for bad in [
            format!("locks/exclusive/{id}"),
            format!("data/{id}"),
            format!("data/cd/{id}"),
            format!("data/ab/x/{id}"),
            format!("index/sub/{id}"),
            format!("other/{id}"),
            id.clone(),
            format!("index/{}", id.to_uppercase()),
            format!("index/{}", &id[1..]),
            "locks/exclusive/holder".to_string(),
        ] {
            assert_eq!(id_from_key(&bad), None, "{bad}");
        }
    }
}
