//! Saving blobs: dedup, seal, batch into packs, upload, and index.
//!
//! Any number of threads call [`BlobSaver::save`]. Full packs go through a
//! bounded channel to a few uploader threads, so sealing overlaps with I/O,
//! several uploads overlap on a slow link, and memory stays bounded by
//! (open packs + `in_flight` + uploads) x pack size. The uploaders write an index object for every batch of stored packs, so the
//! order on storage is always packs -> index -> (later) snapshot, and a
//! run killed at any moment leaves only unreferenced packs behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::Repository;
use super::objects::{ObjectKind, pack_key};
use crate::crypto::hash;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack, MemIndex};
use crate::format::pack::{self, BlobKind, PackBuilder};
use crate::id::{BlobId, PackId};

/// Packs per index object written while a backup runs.
const PACKS_PER_INDEX: usize = 64;

/// What the saver added to the repository.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SaveStats {
    pub blobs_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    pub packs: u64,
}

struct Sealed {
    parts: Vec<Vec<u8>>,
    blobs: Vec<crate::format::index::IndexBlob>,
}

/// Thread-safe blob sink for one command run.
pub(crate) struct BlobSaver<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    seen: Mutex<HashSet<(BlobKind, BlobId)>>,
    open: [Mutex<PackBuilder>; 2],
    tx: SyncSender<Sealed>,
    failed: Arc<Mutex<Option<String>>>,
    blobs_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
}

impl<'a> BlobSaver<'a> {
    /// Runs `work` with a saver, then flushes every pack and writes the index.
    /// Returns `work`'s result and what was stored.
    pub(crate) fn run<R>(
        repo: &'a Repository,
        index: &'a MemIndex,
        dry_run: bool,
        in_flight: usize,
        work: impl FnOnce(&BlobSaver<'a>) -> Result<R>,
    ) -> Result<(R, SaveStats)> {
        Self::run_indexing(repo, index, dry_run, in_flight, PACKS_PER_INDEX, work)
    }

    /// [`BlobSaver::run`], writing an index object every `per_index`
    /// stored packs: 1 for a copy, so that an interrupted one finds nearly
    /// everything it sent indexed and sends it no more.
    pub(crate) fn run_indexing<R>(
        repo: &'a Repository,
        index: &'a MemIndex,
        dry_run: bool,
        in_flight: usize,
        per_index: usize,
        work: impl FnOnce(&BlobSaver<'a>) -> Result<R>,
    ) -> Result<(R, SaveStats)> {
        let (tx, rx) = sync_channel::<Sealed>(in_flight.max(1));
        let failed = Arc::new(Mutex::new(None));
        let failed_up = failed.clone();
        std::thread::scope(|scope| {
            let uploader =
                scope.spawn(move || upload_loop(repo, rx, dry_run, per_index, &failed_up));
            let saver = BlobSaver {
                repo,
                index,
                seen: Mutex::new(HashSet::new()),
                open: [
                    Mutex::new(PackBuilder::default()),
                    Mutex::new(PackBuilder::default()),
                ],
                tx,
                failed,
                blobs_new: AtomicU64::new(0),
                bytes_new: AtomicU64::new(0),
                bytes_stored: AtomicU64::new(0),
            };
            let result = work(&saver);
            let flushed = saver.flush_all();
            let stats = SaveStats {
                blobs_new: saver.blobs_new.load(Ordering::Relaxed),
                bytes_new: saver.bytes_new.load(Ordering::Relaxed),
                bytes_stored: saver.bytes_stored.load(Ordering::Relaxed),
                packs: 0,
            };
            drop(saver); // closes the channel so the uploader finishes
            let uploaded = uploader
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the upload thread panicked".into())));
            // The uploader's own error is the root cause when both failed.
            let packs = uploaded?;
            let r = result?;
            flushed?;
            Ok((r, SaveStats { packs, ..stats }))
        })
    }

    fn check_failed(&self) -> Result<()> {
        match self.failed.lock().ok().and_then(|g| g.clone()) {
            Some(message) => Err(Error::Storage {
                op: "upload",
                key: "a pack".into(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Stores `data` as a blob unless the repository already has it.
    /// Returns the id and whether it was new.
    pub(crate) fn save(&self, kind: BlobKind, data: &[u8]) -> Result<(BlobId, bool)> {
        let id = hash::blob_id(&self.repo.keys().blob_id, data);
        if self.index.contains(kind, &id) {
            return Ok((id, false));
        }
        {
            let mut seen = self.seen.lock().map_err(|_| poisoned())?;
            if !seen.insert((kind, id)) {
                return Ok((id, false));
            }
        }
        let entry = pack::seal_entry(
            self.repo.keys(),
            kind,
            id,
            data,
            self.repo.config().compression_level,
        );
        self.blobs_new.fetch_add(1, Ordering::Relaxed);
        self.bytes_new
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.bytes_stored
            .fetch_add(entry.len() as u64, Ordering::Relaxed);
        let full = {
            let mut p = self.open[kind.code() as usize]
                .lock()
                .map_err(|_| poisoned())?;
            p.add(kind, id, data.len() as u32, entry);
            if p.len() >= self.repo.config().pack_size as usize {
                Some(std::mem::take(&mut *p))
            } else {
                None
            }
        };
        if let Some(p) = full {
            self.send(p)?;
        }
        Ok((id, true))
    }

    fn send(&self, p: PackBuilder) -> Result<()> {
        self.check_failed()?;
        let (parts, blobs) = p.finish_parts();
        if self.tx.send(Sealed { parts, blobs }).is_err() {
            self.check_failed()?;
            return Err(Error::Internal(
                "the upload thread stopped unexpectedly".into(),
            ));
        }
        Ok(())
    }

    fn flush_all(&self) -> Result<()> {
        for slot in &self.open {
            let p = std::mem::take(&mut *slot.lock().map_err(|_| poisoned())?);
            if !p.is_empty() {
                self.send(p)?;
            }
        }
        Ok(())
    }
}

fn poisoned() -> Error {
    Error::Internal("a worker thread panicked".into())
}

/// Most packs uploaded at once: each holds up to a pack of memory while it
/// travels, and a few requests in flight already fill a wide-area link.
const MAX_UPLOADS: usize = 4;

/// What the uploading threads share.
#[derive(Default)]
struct Uploads {
    /// Stored packs not yet listed in an index object.
    pending: Mutex<Vec<IndexPack>>,
    /// Packs per index object.
    per_index: usize,
    stored: AtomicU64,
    first_error: Mutex<Option<Error>>,
}

/// Stores packs as they come, up to [`MAX_UPLOADS`] (and the storage's
/// `--connections`) at once, and writes an index object per batch of
/// stored packs: an index only ever lists packs already stored.
fn upload_loop(
    repo: &Repository,
    rx: std::sync::mpsc::Receiver<Sealed>,
    dry_run: bool,
    per_index: usize,
    failed: &Mutex<Option<String>>,
) -> Result<u64> {
    let uploads = Uploads {
        per_index: per_index.max(1),
        ..Uploads::default()
    };
    let rx = Mutex::new(rx);
    let threads = repo.storage().connections().clamp(1, MAX_UPLOADS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| upload_worker(repo, &rx, dry_run, failed, &uploads));
        }
    });
    if let Some(e) = uploads
        .first_error
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        return Err(e);
    }
    let pending = uploads
        .pending
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if !pending.is_empty() && !dry_run {
        write_index(repo, pending)?;
    }
    Ok(uploads.stored.into_inner())
}

fn upload_worker(
    repo: &Repository,
    rx: &Mutex<std::sync::mpsc::Receiver<Sealed>>,
    dry_run: bool,
    failed: &Mutex<Option<String>>,
    uploads: &Uploads,
) {
    let fail = |e: Error| {
        if let Ok(mut f) = failed.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
        let mut first = uploads
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(e);
    };
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(sealed) = next else {
            return;
        };
        let failed_before = uploads
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if failed_before {
            continue; // drain so senders never block on a dead consumer
        }
        let mut hasher = blake3::Hasher::new();
        for p in &sealed.parts {
            hasher.update(p);
        }
        let id = PackId(*hasher.finalize().as_bytes());
        let size = sealed.parts.iter().map(|p| p.len() as u64).sum();
        if !dry_run && sealed.blobs.iter().all(|b| b.kind == BlobKind::Tree) {
            repo.cache_written_pack(&id, &sealed.parts);
        }
        if !dry_run && let Err(e) = repo.storage().put_parts(&pack_key(&id), sealed.parts) {
            fail(e);
            continue;
        }
        uploads.stored.fetch_add(1, Ordering::Relaxed);
        let batch = {
            let mut pending = uploads.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push(IndexPack {
                id,
                size,
                blobs: sealed.blobs,
            });
            (pending.len() >= uploads.per_index).then(|| std::mem::take(&mut *pending))
        };
        if let Some(batch) = batch
            && !dry_run
            && let Err(e) = write_index(repo, batch)
        {
            fail(e);
        }
    }
}

fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<()> {
    repo.save_object(ObjectKind::Index, &IndexFile::new(packs).encode())?;
    Ok(())
}
