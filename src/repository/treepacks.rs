//! Packs of tree blobs, fetched whole into the cache, once, and ahead of need.
//!
//! A walk over a remote snapshot used to cost one round trip per directory.
//! Tree blobs live in packs of their own, and one pack holds the trees of
//! thousands of directories, so the first tree wanted from a pack brings the
//! whole pack into the cache and the rest are read locally. Fetches are
//! single-flight (a thread wanting a pack another is fetching waits for it
//! instead of asking again), and as soon as a tree is decoded the packs of
//! its subtrees are queued for background threads (as many as the
//! repository's `--connections`, at most four), so a walk over many tree
//! packs keeps that many requests in flight instead of waiting on one at a
//! time.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

use super::cache::Cache;
use super::objects::{self, ObjectKind};
use crate::crypto::hash;
use crate::id::PackId;
use crate::storage::Storage;

/// One fetch under way; others wanting the same pack wait on it.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Flight {
    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Most background fetches at once: each holds a whole pack in memory
/// until it is written to the cache.
const MAX_FETCHERS: usize = 4;

/// A pack (and its indexed size) for a background fetcher, and the flight
/// to land when done.
type Job = (PackId, u64, Arc<Flight>);

/// What the fetching threads share with the repository handle.
struct Shared {
    storage: Arc<Storage>,
    cache: Arc<Cache>,
    flights: Mutex<HashMap<PackId, Arc<Flight>>>,
    /// Packs fetched by this process: when the cache is being refreshed,
    /// only these count as cached.
    fetched: Mutex<HashSet<PackId>>,
    /// Packs that could not be fetched or are damaged: not asked for again
    /// (their blobs are read by span, which reports the damage).
    failed: Mutex<HashSet<PackId>>,
}

/// The tree packs of one opened repository with a cache.
pub(crate) struct TreePacks {
    shared: Arc<Shared>,
    /// Queue of the background fetchers, started with the first prefetch.
    queue: Mutex<Option<Sender<Job>>>,
}

impl TreePacks {
    pub(crate) fn new(storage: Arc<Storage>, cache: Arc<Cache>) -> Self {
        TreePacks {
            shared: Arc::new(Shared {
                storage,
                cache,
                flights: Mutex::default(),
                fetched: Mutex::default(),
                failed: Mutex::default(),
            }),
            queue: Mutex::new(None),
        }
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// Makes sure pack `id` is in the cache, fetching it (or waiting for a
    /// fetch under way); `false` if it could not be fetched or is damaged,
    /// and the caller should read the repository directly, which reports why.
    /// `size` is the pack's size as indexed: a larger object is not read.
    pub(crate) fn ensure(&self, id: &PackId, size: u64) -> bool {
        let s = &self.shared;
        if s.ready(id) {
            return true;
        }
        // A fetch under way decides (a prefetch, or another thread's).
        s.wait(id);
        if s.ready(id) {
            return true;
        }
        if s.failed(id) {
            return false;
        }
        match s.claim(id) {
            Some(flight) => {
                let ok = s.fetch(id, size);
                s.land(id, &flight);
                ok
            }
            None => {
                s.wait(id);
                s.ready(id)
            }
        }
    }

    /// Drops cached pack `id`, which does not hold what the index says, and
    /// reads it by span for the rest of the command: fetched whole again it
    /// would likely fail the same way (a damaged index entry), once more
    /// for every tree wanted from it. The next command fetches it afresh.
    pub(crate) fn drop_pack(&self, id: &PackId) {
        self.shared.cache.drop_pack(id);
        self.shared.note(&self.shared.failed, id);
    }

    /// Queues the packs `ids` (with their indexed sizes) for the background
    /// fetchers, unless cached or already on their way.
    pub(crate) fn prefetch(&self, ids: impl IntoIterator<Item = (PackId, u64)>) {
        let s = &self.shared;
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for (id, size) in ids {
            // A pack that failed is read by span for the rest of the command.
            if s.ready(&id) || s.failed(&id) {
                continue;
            }
            let Some(flight) = s.claim(&id) else {
                continue;
            };
            let tx = queue.get_or_insert_with(|| start_fetchers(&self.shared));
            if tx.send((id, size, flight.clone())).is_err() {
                s.land(&id, &flight);
            }
        }
    }
}

impl Shared {
    /// Adds pack `id` to one of the sets of this command's packs.
    fn note(&self, set: &Mutex<HashSet<PackId>>, id: &PackId) {
        set.lock().unwrap_or_else(|e| e.into_inner()).insert(*id);
    }

    /// Whether pack `id` could not be fetched or kept during this command.
    fn failed(&self, id: &PackId) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.contains(id)
    }

    /// Whether pack `id` can be read from the cache now.
    fn ready(&self, id: &PackId) -> bool {
        if self.cache.refreshing() {
            let fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
            return fetched.contains(id) && self.cache.has_pack(id);
        }
        self.cache.has_pack(id)
    }

    /// Registers a fetch of `id`; `None` if one is already under way.
    fn claim(&self, id: &PackId) -> Option<Arc<Flight>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.contains_key(id) {
            return None;
        }
        let f = Arc::new(Flight::default());
        flights.insert(*id, f.clone());
        Some(f)
    }

    fn land(&self, id: &PackId, flight: &Flight) {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        flight.finish();
    }

    fn wait(&self, id: &PackId) {
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(f) = flight {
            f.wait();
        }
    }

    /// Downloads pack `id` whole and keeps it if it hashes to its name. An
    /// object larger than the index says (planted, or not the pack) is
    /// refused unread: its trees are then read by span.
    fn fetch(&self, id: &PackId, size: u64) -> bool {
        let got = self.storage.get_bounded(&objects::pack_key(id), size);
        let Some(bytes) = got.ok().filter(|b| hash::object_hash(b) == id.0) else {
            self.note(&self.failed, id);
            return false;
        };
        self.cache.put(ObjectKind::Pack, &id.to_hex(), &[&bytes]);
        if !self.cache.has_pack(id) {
            // The cache cannot keep it (disk full, something in the way):
            // its trees are read by span from now on, not each by another
            // whole download of the pack.
            self.note(&self.failed, id);
            return false;
        }
        self.note(&self.fetched, id);
        true
    }
}

/// Starts as many fetching threads as the storage has connections (at most
/// [`MAX_FETCHERS`]); they
/// end when the queue's sender is dropped with the repository handle.
fn start_fetchers(shared: &Arc<Shared>) -> Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..shared.storage.connections().clamp(1, MAX_FETCHERS) {
        let (shared, rx) = (shared.clone(), rx.clone());
        let started = std::thread::Builder::new()
            .name(format!("repo-prefetch-{i}"))
            .spawn(move || fetch_loop(&shared, &rx));
        if started.is_err() {
            // Fewer fetchers; with none, the receiver is gone with this
            // function, sends fail and prefetch() lands those flights.
            break;
        }
    }
    tx
}

fn fetch_loop(shared: &Shared, rx: &Mutex<Receiver<Job>>) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, size, flight)) = next else {
            return;
        };
        shared.fetch(&id, size);
        shared.land(&id, &flight);
    }
}
