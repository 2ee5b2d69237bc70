//! The local cache of a remote repository's metadata.
//!
//! Over a wide-area link every object costs a round trip, and the same index
//! objects, snapshots and trees are read by every command. So they are kept
//! on local disk, per repository id, exactly as stored (still encrypted):
//! `<root>/<repository id>/{index,snapshots}/<id>` and `data/<xx>/<id>` for
//! the packs that hold tree blobs. Nothing read from here is trusted: an
//! index or snapshot object is checked against its name on every read, and a
//! tree pack's blobs are authenticated one by one as always, so a damaged or
//! planted entry is dropped and fetched again. The cache only ever answers
//! "what bytes does this object hold", never "does it exist": listings always
//! go to the repository, and what they no longer name is removed here.
//!
//! A cache failure never fails a command: it is reported once and the
//! command goes on reading the repository.
//!
//! A local repository needs no copies of its objects, but a large index's
//! file (`index`) takes long to build: [`IndexHome`] keeps only that file,
//! in the same place.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::objects::ObjectKind;
use crate::crypto::hash;
use crate::id::{PackId, RepoId};

/// Marks the cache root for backup tools (<https://bford.info/cachedir/>).
const TAG_NAME: &str = "CACHEDIR.TAG";
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by repo.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Touched on every use, so caches of repositories gone unused can be told apart.
const USED: &str = "used";

/// A repository's cache unused this long is removed by the next command
/// that opens any other repository with the same cache root.
pub const UNUSED_DAYS: u64 = 30;

/// Hit and miss counters of one command, for `-v` and `--json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheReport {
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// One repository's directory in the cache.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    warned: AtomicBool,
    /// Reads always miss (see `CacheUse::Refresh`); writes go on.
    refresh: bool,
}

impl Cache {
    /// Opens (creating) the cache of repository `id` under `root`, and
    /// removes caches of repositories unused for [`UNUSED_DAYS`]. Fails if
    /// a directory on the way is not one this user owns (a link, or someone
    /// else's): the caller then runs without a cache.
    pub(crate) fn open(root: &Path, id: &RepoId, refresh: bool) -> Result<Cache, String> {
        let dir = repo_dir(root, id)?;
        for sub in ["keys", "index", "snapshots", "data"] {
            make_dir(&dir.join(sub))?;
        }
        Ok(Cache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            refresh,
        })
    }

    /// This repository's cache directory (the index file lives there too).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn report(&self) -> CacheReport {
        CacheReport {
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn path(&self, kind: ObjectKind, hex: &str) -> PathBuf {
        match kind {
            ObjectKind::Pack => self.dir.join("data").join(&hex[..2]).join(hex),
            other => self.dir.join(other.dir()).join(hex),
        }
    }

    /// The stored bytes of object `hex`, if cached and they still hash to
    /// its name; a damaged entry is removed (and counts as a miss).
    pub(crate) fn get(&self, kind: ObjectKind, hex: &str, limit: u64) -> Option<Vec<u8>> {
        self.get_if(!self.refresh, kind, hex, limit)
    }

    /// [`Cache::get`] even while refreshing: for the key object that
    /// unlocks the repository. The commands that refresh (`check`) read
    /// every key object from the repository again when they judge the keys,
    /// so the cached copy saves a round trip on the way in and hides nothing.
    pub(crate) fn get_unlocking_key(&self, hex: &str) -> Option<Vec<u8>> {
        self.get_if(true, ObjectKind::Key, hex, ObjectKind::Key.max_size())
    }

    fn get_if(&self, use_cache: bool, kind: ObjectKind, hex: &str, limit: u64) -> Option<Vec<u8>> {
        if !use_cache {
            self.count(false);
            return None;
        }
        let path = self.path(kind, hex);
        let bytes = read_bounded(&path, limit).filter(|b| {
            let good = hex::encode(hash::object_hash(b)) == hex;
            if !good {
                let _ = fs::remove_file(&path);
            }
            good
        });
        self.count(bytes.is_some());
        bytes
    }

    fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the stored bytes of object `hex` (given as consecutive parts).
    /// Written to a temporary name and renamed, so a reader never sees half
    /// an entry; a failure is reported once and otherwise ignored.
    pub(crate) fn put(&self, kind: ObjectKind, hex: &str, parts: &[&[u8]]) {
        let path = self.path(kind, hex);
        if let Err(e) = write_atomic(&path, parts) {
            self.warn_once(&format!("cannot write {}: {e}", path.display()));
        }
    }

    fn warn_once(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            crate::error::warnings::warn(format!(
                "the cache in {} does not work ({what}); going on without it: check the \
                 directory's space and permissions, or pass --no-cache",
                self.dir.display()
            ));
        }
    }

    /// Whether reads must go to the repository (see `CacheUse::Refresh`).
    pub(crate) fn refreshing(&self) -> bool {
        self.refresh
    }

    /// Whether tree pack `id` is cached (its contents are checked when read).
    pub(crate) fn has_pack(&self, id: &PackId) -> bool {
        fs::symlink_metadata(self.path(ObjectKind::Pack, &id.to_hex())).is_ok_and(|m| m.is_file())
    }

    /// `len` bytes at `offset` of cached pack `id`, or `None` when it is not
    /// cached or too short. The caller authenticates every blob it opens and
    /// calls [`Cache::drop_pack`] when one fails.
    pub(crate) fn read_pack(&self, id: &PackId, offset: u64, len: u64) -> Option<Vec<u8>> {
        let path = self.path(ObjectKind::Pack, &id.to_hex());
        let got = open_nofollow(&path).ok().and_then(|f| {
            let mut buf = vec![0u8; usize::try_from(len).ok()?];
            f.read_exact_at(&mut buf, offset).ok()?;
            Some(buf)
        });
        self.count(got.is_some());
        got
    }

    /// Removes a cached pack whose contents failed to authenticate.
    pub(crate) fn drop_pack(&self, id: &PackId) {
        let _ = fs::remove_file(self.path(ObjectKind::Pack, &id.to_hex()));
    }

    /// Removes every cached object of `kind` that `keep` does not name:
    /// the repository no longer has it (forget, prune, another host).
    pub(crate) fn retain(&self, kind: ObjectKind, keep: &HashSet<String>) {
        let dirs: Vec<PathBuf> = match kind {
            ObjectKind::Pack => subdirs(&self.dir.join("data")),
            other => vec![self.dir.join(other.dir())],
        };
        for d in dirs {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) && (!name.starts_with(".tmp") || stale(&e.path())) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Where a local repository keeps its index file between runs: the
/// directory of its id under the cache root, as a remote repository's cache
/// (SPEC §17), holding nothing else. A local repository needs no copies of
/// its objects, and a small one has no index file: the directory is only
/// made when a file is written, so most repositories leave no trace here.
#[derive(Debug, Clone)]
pub(crate) struct IndexHome {
    root: PathBuf,
    id: RepoId,
}

impl IndexHome {
    pub(crate) fn new(root: &Path, id: RepoId) -> IndexHome {
        IndexHome {
            root: root.to_path_buf(),
            id,
        }
    }

    /// The directory, if it holds a file named `name` already: checked as
    /// [`IndexHome::prepare`] checks it, and marked used.
    pub(crate) fn existing(&self, name: &str) -> Option<PathBuf> {
        let dir = own_link_target(&self.root).join(self.id.to_hex());
        fs::symlink_metadata(dir.join(name)).ok()?;
        self.prepare()
    }

    /// Makes the directory (a tagged root, this user's own, see
    /// [`Cache::open`]) for a file about to be written, or says once why
    /// not: the file is then built in a temporary one on every run.
    pub(crate) fn prepare(&self) -> Option<PathBuf> {
        match repo_dir(&self.root, &self.id) {
            Ok(dir) => Some(dir),
            Err(e) => {
                crate::error::warnings::warn(format!(
                    "not keeping the index file in the cache: {e}; it is built again on every \
                     run: pass --cache-dir DIR with a directory of your own, or --no-cache"
                ));
                None
            }
        }
    }
}

/// Makes (if missing) the tagged cache root and the directory of
/// repository `id` in it, marks that one used, and removes caches of
/// repositories unused for [`UNUSED_DAYS`].
fn repo_dir(root: &Path, id: &RepoId) -> Result<PathBuf, String> {
    let root = &own_link_target(root);
    let hex = id.to_hex();
    let dir = root.join(&hex);
    make_dir(root)?;
    let tag = root.join(TAG_NAME);
    if fs::symlink_metadata(&tag).is_err() {
        fs::write(&tag, TAG).map_err(|e| format!("cannot write {}: {e}", tag.display()))?;
    }
    make_dir(&dir)?;
    let used = dir.join(USED);
    fs::write(&used, chrono::Utc::now().to_rfc3339())
        .map_err(|e| format!("cannot write {}: {e}", used.display()))?;
    remove_unused(root, &hex);
    Ok(dir)
}

/// Creates `dir` (and missing parents) private to this user, and checks
/// that it is a real directory this user owns.
fn make_dir(dir: &Path) -> Result<(), String> {
    // Something else already there is reported below as what it is.
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(format!("cannot create {}: {e}", dir.display()));
    }
    let m = fs::symlink_metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} belongs to another user (uid {})",
            dir.display(),
            m.uid()
        ));
    }
    Ok(())
}

/// Where the cache root points when it is a link of this user's own (a
/// cache moved to a larger disk and linked back); otherwise `root` itself,
/// which [`make_dir`] refuses if it is a link (someone else's link in a
/// shared directory could point into this user's files).
fn own_link_target(root: &Path) -> PathBuf {
    match fs::symlink_metadata(root) {
        Ok(m) if m.file_type().is_symlink() && m.uid() == nix::unistd::geteuid().as_raw() => {
            fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
        }
        _ => root.to_path_buf(),
    }
}

fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Reads a regular file of at most `limit` bytes; anything else is `None`.
fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let f = open_nofollow(path).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > limit {
        return None;
    }
    let mut buf = Vec::with_capacity(usize::try_from(m.len()).ok()?);
    f.take(limit + 1).read_to_end(&mut buf).ok()?;
    (buf.len() as u64 <= limit).then_some(buf)
}

fn write_atomic(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A temporary file left by a command that died an hour or more ago.
fn stale(path: &Path) -> bool {
    older_than(path, Duration::from_secs(3600))
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > age)
}

/// Removes the caches under `root` of repositories unused for
/// [`UNUSED_DAYS`]. Only directories named like a repository id that hold
/// our `used` marker are touched, so a cache root shared with anything
/// else loses nothing else.
fn remove_unused(root: &Path, ours: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let age = Duration::from_secs(UNUSED_DAYS * 86_400);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_repo = name.len() == 64
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !is_repo || name == ours || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if older_than(&e.path().join(USED), age) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
#[path = "tests/cache.rs"]
mod tests;
