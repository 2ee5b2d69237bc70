//! Loading the index: every index object, one batch at a time, into one
//! [`MemIndex`] whose memory stays bounded (see `build`), kept as a file
//! in the cache between runs when it grows large (see `open`).

mod build;
mod open;
mod runs;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rayon::prelude::*;

pub(crate) use build::IndexBuilder;

use super::Repository;
use super::cache::IndexHome;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, MemIndex};
use crate::id::IndexId;
use crate::repository::ObjectKind;

/// Most index objects fetched at once (one per connection): their decoded
/// contents are what loading holds besides the index itself (a backup's
/// index object names at most 64 packs).
const MAX_BATCH: usize = 16;

/// Entries held in memory before the index moves to a file; tests lower it
/// with `REPO_TEST_INDEX_MEMORY_ENTRIES` to exercise the file on small data.
pub(crate) fn memory_limit() -> usize {
    std::env::var("REPO_TEST_INDEX_MEMORY_ENTRIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(build::DEFAULT_LIMIT)
}

impl Repository {
    /// Loads every readable index object into one lookup structure. A
    /// damaged index object is skipped with a warning naming it: one
    /// flipped byte must not stop backups and restores of what the other
    /// index objects describe. What its packs hold is then unknown here (a
    /// backup stores such blobs again); `repo check` reports it and `repo
    /// repair index` brings it back. Code that deletes or rewrites on the
    /// strength of the index uses [`Repository::load_index_strict`].
    pub fn load_index(&self) -> Result<MemIndex> {
        let index = self.load_index_kept(false)?;
        self.forget_unindexed_packs(&index);
        Ok(index)
    }

    /// Like [`Repository::load_index`], but a damaged index object is an error.
    pub(crate) fn load_index_strict(&self) -> Result<MemIndex> {
        let index = self.load_index_kept(true)?;
        self.forget_unindexed_packs(&index);
        Ok(index)
    }

    /// Cached tree packs the index no longer names were pruned: drop them.
    /// Only packs of tree blobs are cached, so only those are kept: a set
    /// of every indexed pack would grow with the repository.
    fn forget_unindexed_packs(&self, index: &MemIndex) {
        if let Some(c) = self.cache() {
            let named = index.tree_packs().iter().map(|id| id.to_hex()).collect();
            c.retain(ObjectKind::Pack, &named);
        }
    }

    /// Where the index file is kept between runs: the directory that holds
    /// one now, and for a local repository where one would be made
    /// (`cache::IndexHome`). A remote repository's cache directory holds it
    /// (none when the cache is refreshed: commands that judge the
    /// repository read it, not what was kept). Without either, or with
    /// `--no-cache`, a large index lives in an anonymous temporary file that
    /// vanishes on exit.
    fn index_dir(&self) -> (Option<PathBuf>, Option<&IndexHome>) {
        match (self.cache(), &self.index_home) {
            (Some(c), _) if c.refreshing() => (None, None),
            (Some(c), _) => (Some(c.dir().to_path_buf()), None),
            (None, Some(h)) => (h.existing(write::FILE_NAME), Some(h)),
            (None, None) => (None, None),
        }
    }

    /// Loads the index, keeping its file (see [`Repository::index_dir`]) if
    /// it grows large. A file already there is reused if it is whole and
    /// was built from index objects that all still exist; only newer index
    /// objects are then read. A copy of the repository's folder has the
    /// same id, so the same file: its index objects name what each copy
    /// holds, and a file naming one the other copy lacks is rebuilt.
    fn load_index_kept(&self, strict: bool) -> Result<MemIndex> {
        let (dir, home) = self.index_dir();
        let dir = dir.as_deref();
        let listed: BTreeSet<IndexId> = self.list_index_ids()?.into_iter().collect();
        let repo = self.config().id.0;
        let base = dir.and_then(|d| {
            let path = d.join(write::FILE_NAME);
            match open::open(&path, &repo, &listed) {
                Ok(o) => Some(o),
                Err(why) => {
                    // Removed, so that an index now small enough for
                    // memory does not meet (and report) it on every run.
                    if std::fs::remove_file(&path).is_ok() && why != open::STALE {
                        crate::error::warnings::warn(format!(
                            "rebuilding the local index file {}: {why}",
                            path.display()
                        ));
                    }
                    None
                }
            }
        });
        let known: BTreeSet<IndexId> = base
            .iter()
            .flat_map(|b| b.sources.iter().copied())
            .collect();
        let todo: Vec<IndexId> = listed.difference(&known).copied().collect();
        let mut b = IndexBuilder::new(repo, memory_limit(), dir, base).made_in(home.cloned());
        self.each_index_object(&todo, |id, loaded| match loaded {
            Ok(f) => b.add(id, &f),
            Err(e) if !strict => {
                crate::error::warnings::warn(format!("skipped: {e}"));
                Ok(())
            }
            Err(e) => Err(e),
        })?;
        b.finish()
    }

    /// A builder for code that reads each index object itself (`check`):
    /// no kept file, an anonymous one if the index grows large.
    pub(crate) fn index_builder(&self) -> IndexBuilder {
        IndexBuilder::new(self.config().id.0, memory_limit(), None, None)
    }

    /// Every index object, decoded, keyed by id; a damaged one is an error.
    /// Holds them all: for prune and stats, which rewrite or total them.
    pub(crate) fn load_index_files(&self) -> Result<BTreeMap<IndexId, IndexFile>> {
        let mut files = BTreeMap::new();
        self.each_index_object(&self.list_index_ids()?, |id, f| {
            files.insert(id, f?);
            Ok(())
        })?;
        Ok(files)
    }

    /// Loads the index objects `ids`, a batch at a time on the transfer
    /// threads, and
    /// hands each to `f` in order: decoded, or the error of a damaged one
    /// (with how to repair it). One removed since listing is skipped; other
    /// storage failures stop the load.
    pub(crate) fn each_index_object(
        &self,
        ids: &[IndexId],
        mut f: impl FnMut(IndexId, Result<IndexFile>) -> Result<()>,
    ) -> Result<()> {
        let pool = self.transfer_pool()?;
        let batch = self.storage.connections().clamp(1, MAX_BATCH);
        for batch in ids.chunks(batch) {
            let loaded: Vec<Result<IndexFile>> = pool.install(|| {
                batch
                    .par_iter()
                    .map(|id| self.load_index_file(id))
                    .collect()
            });
            for (id, r) in batch.iter().zip(loaded) {
                match r {
                    Ok(file) => f(*id, Ok(file))?,
                    Err(Error::NotFound { .. }) => {} // removed while we listed
                    Err(Error::Corrupt { object, reason }) => f(
                        *id,
                        Err(Error::Corrupt {
                            object,
                            reason: format!(
                                "{reason}; `repo repair index` rebuilds the index from the packs"
                            ),
                        }),
                    )?,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
