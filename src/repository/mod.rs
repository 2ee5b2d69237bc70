//! An opened repository: where keys, codec, packs and storage meet.

pub mod cache;
pub mod holder;
pub mod index;
pub mod loader;
pub mod lock;
pub mod objects;
mod objlock;
pub mod saver;
#[cfg(test)]
pub(crate) mod tests;
mod treepacks;
pub mod typed;
pub mod walker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::codec::chunker::{Chunker, ChunkerParams};
use crate::crypto::{MasterKey, SubKeys, kdf::KdfParams};
use crate::error::{Error, Result};
use crate::format::config::{Config, StoredConfig};
use crate::format::index::MemIndex;
use crate::format::keyfile::{KeyError, KeyFile};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::id::{BlobId, KeyId, RepoId, SnapshotId};
use crate::storage::{Location, Storage};

pub use loader::{BlobError, BlobRef, Fetch, ScannedPack};
pub use objects::ObjectKind;
pub use typed::StoredPack;
pub use walker::{Step, Visitor, Walker};

/// Readable snapshots (oldest first) and damaged ones (hex id, reason).
pub(crate) type SnapshotList = (Vec<(SnapshotId, Snapshot)>, Vec<(String, Error)>);

/// Storage key of the config object.
pub(crate) const CONFIG_KEY: &str = "config";

/// Options for `init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub chunk_sizes: ChunkerParams,
    pub kdf: KdfParams,
    /// Target pack size in bytes; `None` (or `Default`) means [`crate::format::config::DEFAULT_PACK_SIZE`].
    pub pack_size: Option<u32>,
    /// S3 object lock: write every object but lock files locked for this many days.
    pub object_lock_days: Option<u32>,
}

/// What a command takes from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Objects are read from the cache when it has them.
    Read,
    /// Every object is read from the repository (once per command) and the
    /// cache refreshed with it: for commands that judge the repository.
    Refresh,
}

/// How a repository is unlocked.
pub enum Credentials {
    /// A password: some key object must open with it (argon2id).
    Password(Zeroizing<Vec<u8>>),
    /// The master key from a raw key file (no KDF), see [`crate::format::rawkey`].
    RawKey {
        master: MasterKey,
        /// The key object the file was exported through.
        key_id: KeyId,
        /// The repository the file says it opens.
        repository: RepoId,
        /// Where it was read, for messages.
        file: PathBuf,
    },
}

/// An unlocked repository. Cloning is cheap and shares the storage handle,
/// so background threads (lock refresh) can own one.
#[derive(Clone)]
pub struct Repository {
    storage: Arc<Storage>,
    config: Config,
    keys: SubKeys,
    key_id: KeyId,
    chunker: Arc<Chunker>,
    /// The lock this process holds on the repository, if any; shared by
    /// every clone, so that writes anywhere are checked against it.
    held: Arc<std::sync::Mutex<Option<Arc<lock::Held>>>>,
    /// The local cache of a remote repository, if one is used.
    cache: Option<Arc<treepacks::TreePacks>>,
    /// Where a local repository keeps its index file, if it grows one.
    index_home: Option<cache::IndexHome>,
}

/// The cache of repository `id` under `root`, or `None` with a warning
/// saying why it cannot be used.
fn open_cache(root: &Path, id: &RepoId, usage: CacheUse) -> Option<Arc<cache::Cache>> {
    match cache::Cache::open(root, id, usage == CacheUse::Refresh) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            crate::error::warnings::warn(format!(
                "not using a cache: {e}; pass --cache-dir DIR with a directory of your own, or \
                 --no-cache"
            ));
            None
        }
    }
}

/// Who and where we are, for key, lock and snapshot objects.
pub(crate) fn host_and_user() -> (String, String) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string());
    (host, user)
}

impl Repository {
    /// Creates a new repository at `location` protected by `password`.
    pub fn init(location: &Location, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        if opts.object_lock_days.is_some() {
            crate::storage::check_lockable(location)?;
        }
        let mut storage = Storage::open(location, true)?;
        if storage.size(CONFIG_KEY)?.is_some() {
            return Err(Error::Usage(format!(
                "{location} already holds a repository; choose an empty location"
            )));
        }
        let master = MasterKey::generate();
        let mut id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
        let mut config = Config::new(RepoId(id), opts.chunk_sizes);
        config
            .chunk_sizes
            .validate()
            .map_err(|e| Error::Usage(e.to_string()))?;
        if let Some(size) = opts.pack_size {
            if !crate::format::config::PACK_SIZE_RANGE.contains(&size) {
                return Err(Error::Usage(format!(
                    "pack size {size} is out of range: give {} to {} bytes",
                    crate::format::config::PACK_SIZE_RANGE.start(),
                    crate::format::config::PACK_SIZE_RANGE.end()
                )));
            }
            config.pack_size = size;
        }
        if let Some(days) = opts.object_lock_days {
            config = config.with_object_lock(Self::lock_days(days)?);
            storage.check_object_lock()?;
            storage.set_object_lock(days)?;
        }
        let (host, user) = host_and_user();
        let key = KeyFile::create(&master, password, opts.kdf, &host, &user)
            .map_err(|e| Error::Usage(e.to_string()))?;
        let key_id = objects::save_key(&storage, &key)?;
        let keys = master.subkeys();
        // The config goes last: its presence is what makes a directory a repository.
        storage.put(CONFIG_KEY, StoredConfig::seal(&config, &keys.config_mac))?;
        Self::assemble(storage, config, keys, key_id)
    }

    /// Opens and unlocks the repository at `location`, without a cache.
    pub fn open(location: &Location, credentials: &Credentials) -> Result<Repository> {
        Self::open_cached(location, credentials, None, CacheUse::Read)
    }

    /// Opens and unlocks the repository at `location`, using the cache under
    /// `cache_root` (see [`cache`]) from the first key object on. A local
    /// repository needs none: only a large index's file is kept there
    /// ([`cache::IndexHome`]). `None` (`--no-cache`) means none; a cache
    /// that cannot be opened is reported and the command goes on without.
    pub fn open_cached(
        location: &Location,
        credentials: &Credentials,
        cache_root: Option<&Path>,
        usage: CacheUse,
    ) -> Result<Repository> {
        let storage = Storage::open(location, false)?;
        // A password needs the key objects' listing; ask for it while the
        // config is on its way (one round trip instead of two).
        let (config, keys) = std::thread::scope(|s| {
            let keys = matches!(credentials, Credentials::Password(_))
                .then(|| s.spawn(|| storage.list(ObjectKind::Key.dir())));
            let config =
                storage.get_bounded(CONFIG_KEY, crate::format::config::MAX_CONFIG_LEN as u64);
            (config, keys.map(|h| h.join()))
        });
        let raw = match config {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::RepoNotFound {
                    location: location.to_string(),
                    reason: "it has no config object".into(),
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(v) = StoredConfig::peek_version(&raw)
            && !crate::format::config::supported_version(v)
        {
            return Err(Error::UnsupportedVersion {
                found: v as u32,
                supported: crate::format::config::OBJECT_LOCK_VERSION,
            });
        }
        let stored = StoredConfig::parse(&raw).map_err(|e| Error::corrupt(CONFIG_KEY, e))?;
        let cache = cache_root
            .filter(|_| !matches!(location, Location::Local(_)))
            .and_then(|root| open_cache(root, &stored.config.id, usage));
        // Commands that judge the repository build the index from it.
        let index_home = cache_root
            .filter(|_| matches!(location, Location::Local(_)) && usage == CacheUse::Read)
            .map(|root| cache::IndexHome::new(root, stored.config.id));
        let (master, key_id) = match credentials {
            Credentials::Password(password) => {
                let listed = keys
                    .ok_or_else(|| Error::Internal("the key listing was not started".into()))?
                    .map_err(|_| Error::Internal("the thread listing keys panicked".into()))??;
                Self::unwrap_master(&storage, password, listed, cache.as_deref())?
            }
            Credentials::RawKey {
                master,
                key_id,
                repository,
                file,
            } => {
                if *repository != stored.config.id {
                    return Err(Error::KeyFile {
                        file: file.clone(),
                        reason: format!(
                            "it belongs to repository {}, and {} is repository {}; use that \
                             repository's key file or its password",
                            repository.short(),
                            location,
                            stored.config.id.short()
                        ),
                    });
                }
                (master.clone(), *key_id)
            }
        };
        let keys = master.subkeys();
        if !stored.verify(&keys.config_mac) {
            if let Credentials::RawKey { file, .. } = credentials {
                return Err(Error::KeyFile {
                    file: file.clone(),
                    reason: format!(
                        "its master key does not open {location} (the config's MAC does not \
                         match): the file was altered; export it again with `repo key export`"
                    ),
                });
            }
            return Err(Error::corrupt(
                CONFIG_KEY,
                "its MAC does not match: the config was altered or belongs to another repository",
            ));
        }
        let mut repo = Self::assemble(storage, stored.config, keys, key_id)?;
        repo.cache = cache.map(|c| Arc::new(treepacks::TreePacks::new(repo.storage.clone(), c)));
        repo.index_home = index_home;
        Ok(repo)
    }

    fn unwrap_master(
        storage: &Storage,
        password: &[u8],
        listed: Vec<crate::storage::Listed>,
        cache: Option<&cache::Cache>,
    ) -> Result<(MasterKey, KeyId)> {
        if listed.is_empty() {
            return Err(Error::corrupt("keys/", "the repository has no key objects"));
        }
        if let Some(c) = cache {
            let ids = listed.iter().filter_map(|l| objects::id_from_key(&l.key));
            c.retain(ObjectKind::Key, &ids.collect());
        }
        let mut damaged: Vec<(String, String)> = Vec::new();
        for l in listed {
            let Some(id) = objects::id_from_key(&l.key).and_then(|h| KeyId::from_hex(&h)) else {
                continue;
            };
            // A damaged key object must not lock users out while another key still works;
            // `repo check` reports it.
            let key = match objects::load_unlocking_key(storage, cache, id) {
                Ok(k) => k,
                Err(Error::NotFound { .. }) => continue, // removed while we listed
                Err(Error::Corrupt { reason, .. }) => {
                    damaged.push((l.key.clone(), reason));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match key.open(password) {
                Ok(m) => return Ok((m, id)),
                Err(KeyError::WrongPassword) => {}
                Err(KeyError::Malformed(e)) => damaged.push((l.key.clone(), e)),
            }
        }
        // No key opened. If some could not even be read, the password may be
        // right and its key object damaged: say which, rather than blaming the password.
        if let Some((key, reason)) = damaged.first() {
            let others = damaged.len() - 1;
            return Err(Error::corrupt(
                key.clone(),
                format!(
                    "{reason}{}; no other key object opens with this password. If the password \
                     is right, put back an undamaged copy of {key} (e.g. from a replica) or use \
                     another key's password",
                    if others > 0 {
                        format!(" ({others} more key object(s) are damaged too)")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        Err(Error::WrongPassword {
            location: storage.location().to_string(),
        })
    }

    fn assemble(
        mut storage: Storage,
        config: Config,
        keys: SubKeys,
        key_id: KeyId,
    ) -> Result<Repository> {
        // Before anything is written: every object but locks is then locked.
        if let Some(days) = config.object_lock_days
            && storage.object_lock_hold().is_none()
        {
            storage.set_object_lock(days)?;
        }
        let chunker = Chunker::new(&keys.chunker, config.chunk_sizes)
            .map_err(|e| Error::corrupt(CONFIG_KEY, e))?;
        Ok(Repository {
            storage: Arc::new(storage),
            config,
            keys,
            key_id,
            chunker: Arc::new(chunker),
            held: Arc::default(),
            cache: None,
            index_home: None,
        })
    }

    /// Uses the cache under `root` from now on (tests; commands open with
    /// [`Repository::open_cached`]).
    #[cfg(test)]
    pub(crate) fn with_cache(mut self, root: Option<&Path>, usage: CacheUse) -> Self {
        let cache = root.and_then(|r| open_cache(r, &self.config.id, usage));
        self.cache = cache.map(|c| Arc::new(treepacks::TreePacks::new(self.storage.clone(), c)));
        self
    }

    /// The cache in use, if any.
    pub(crate) fn cache(&self) -> Option<&cache::Cache> {
        self.cache.as_deref().map(treepacks::TreePacks::cache)
    }

    /// Cache hits and misses so far, for reports.
    fn cache_report(&self) -> cache::CacheReport {
        self.cache().map(cache::Cache::report).unwrap_or_default()
    }

    /// Only `repository/` moves bytes: everything else goes through typed
    /// objects, the loader and the walker.
    pub(in crate::repository) fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn keys(&self) -> &SubKeys {
        &self.keys
    }

    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Threads for pack-level transfers: as many as the backend's connections
    /// (`--connections`), since remote reads wait on the network, not the CPU.
    pub(crate) fn transfer_pool(&self) -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.storage.connections().max(1))
            .thread_name(|i| format!("repo-transfer-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start transfer threads: {e}")))
    }

    pub(crate) fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// Saves an encrypted object (snapshot, index, lock) and returns its id.
    ///
    /// Index and snapshot objects are written only while the lock this
    /// process holds is provably its own and fresh ([`Self::ensure_lock`]),
    /// and checked again once written: if the lock lapsed meanwhile (the
    /// process was suspended between check and write), a prune may have
    /// deleted packs the index lists, or listed the snapshots before this
    /// one existed, so the object is deleted again (SPEC.md §10.1).
    pub(crate) fn save_object(&self, kind: ObjectKind, payload: &[u8]) -> Result<String> {
        let (point, what, remedy) = match kind {
            ObjectKind::Index => (
                "save-index",
                "an index object",
                "it may list packs a prune deleted; run `repo repair index`",
            ),
            ObjectKind::Snapshot => (
                "save-snapshot",
                "the snapshot",
                "its data may be incomplete; remove it with `repo forget`",
            ),
            _ => return objects::save(self, kind, payload),
        };
        crate::testhooks::pause_point(point);
        self.ensure_lock_at(&format!("writing {what}"), lock::Moment::BeforeWrite)?;
        crate::testhooks::pause_point(&format!("{point}-checked"));
        let hex = objects::save(self, kind, payload)?;
        crate::testhooks::pause_point(&format!("{point}-written"));
        let key = kind.key(&hex);
        let Err(e) = self.ensure_lock_at(
            &format!("keeping {what} {key} it wrote (deleted again)"),
            lock::Moment::AfterWrite,
        ) else {
            return Ok(hex);
        };
        match (self.storage.delete(&key), e) {
            (Ok(()), e) => Err(e),
            (
                Err(d),
                Error::LockLost {
                    command,
                    reason,
                    purpose,
                    ..
                },
            ) => Err(Error::LockLost {
                command,
                reason,
                purpose,
                advice: format!(
                    "But {key} could not be deleted again ({d}): {remedy}, then run `repo check`"
                ),
            }),
            (Err(_), e) => Err(e),
        }
    }

    /// Fails unless the lock this process holds (if any) is still its own
    /// and fresh: see [`lock::verify`]. `purpose` names what was about to
    /// be written or deleted, for the message.
    pub(crate) fn ensure_lock(&self, purpose: &str) -> Result<()> {
        self.ensure_lock_at(purpose, lock::Moment::BeforeDelete)
    }

    /// [`Self::ensure_lock`] around a write.
    fn ensure_lock_at(&self, purpose: &str, moment: lock::Moment) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match held {
            Some(h) => lock::verify(self, &h, purpose, moment),
            None => Ok(()),
        }
    }

    /// Id of the lock object this process holds now, if any.
    fn held_lock_id(&self) -> Option<String> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|h| h.current())
    }

    fn set_held(&self, held: Option<Arc<lock::Held>>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    /// Reads one blob through the index and verifies it.
    pub(crate) fn load_blob(
        &self,
        index: &MemIndex,
        kind: BlobKind,
        id: &BlobId,
    ) -> Result<Vec<u8>> {
        let loc = index.get(kind, id).ok_or_else(|| Error::NotFound {
            what: format!("{kind} blob {id} in the index"),
            hint: "; the repository is damaged: run `repo check`".into(),
        })?;
        let blob = BlobRef {
            kind,
            id: *id,
            offset: loc.offset,
            length: loc.length,
            raw_len: None,
        };
        let mut out = Vec::new();
        let fetch = Fetch::Cached {
            pack_size: loc.pack_size,
        };
        self.load_blobs(&loc.pack, &[blob], fetch, |_, r| {
            out = r.map_err(|e| match e {
                BlobError::Damaged { key, error, .. } => {
                    Error::corrupt(format!("pack {key}"), error)
                }
                other => Error::corrupt(format!("pack {}", objects::pack_key(&loc.pack)), other),
            })?;
            Ok(())
        })?;
        Ok(out)
    }

    /// With a cache, queues the tree packs among `packs` (ids with indexed
    /// sizes) for fetching at once: for a walk over every snapshot
    /// (`check`), which would otherwise find the packs level by level.
    pub(crate) fn prefetch_tree_packs(&self, packs: &[crate::format::index::IndexPack]) {
        if let Some(cache) = &self.cache {
            cache.prefetch(
                packs
                    .iter()
                    .filter(|p| p.blobs.iter().any(|b| b.kind == BlobKind::Tree))
                    .filter(|p| p.size <= loader::MAX_CACHED_PACK)
                    .map(|p| (p.id, p.size)),
            );
        }
    }

    /// Loads a tree and, with a cache, queues the packs of its subtrees
    /// for fetching at once: every walk goes breadth-first over the network
    /// whatever order it visits trees in.
    pub(crate) fn load_tree(&self, index: &MemIndex, id: &BlobId) -> Result<Tree> {
        let data = self.load_blob(index, BlobKind::Tree, id)?;
        let tree = Tree::decode(&data).map_err(|e| Error::corrupt(format!("tree blob {id}"), e))?;
        self.prefetch_trees(index, tree.nodes.iter().filter_map(|n| n.subtree.as_ref()));
        Ok(tree)
    }

    /// With a cache, queues the packs holding trees `ids` for fetching at
    /// once: the subtrees of a tree just read, or the roots of the
    /// snapshots a command walks one after another (`find`, `diff`), which
    /// would otherwise start one snapshot at a time.
    pub(crate) fn prefetch_trees<'b>(
        &self,
        index: &MemIndex,
        ids: impl IntoIterator<Item = &'b BlobId>,
    ) {
        if let Some(packs) = &self.cache {
            let wanted: std::collections::BTreeSet<_> = ids
                .into_iter()
                .filter_map(|s| index.get(BlobKind::Tree, s))
                .filter(|l| l.pack_size <= loader::MAX_CACHED_PACK)
                .map(|l| (l.pack, l.pack_size))
                .collect();
            packs.prefetch(wanted);
        }
    }
}
