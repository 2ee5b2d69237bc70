//! `check`: prove the repository is whole.
//!
//! Structure first (every object's name matches its hash, every snapshot's
//! trees load, every referenced blob is indexed, every indexed pack exists
//! with the indexed size); then, optionally, every byte of (a subset of)
//! the packs is read, decrypted and compared with the index.

mod read;
pub mod repair;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::repository::objects::pack_key;
use crate::repository::{ObjectKind, Repository, Step, Visitor, Walker};

/// Every indexed pack: its size and how many blobs the index lists in it.
type Packs = BTreeMap<PackId, (u64, usize)>;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ReadData {
    None,
    All,
    /// Subset `n` of `m` (1-based), chosen by pack id so runs 1/m..m/m cover everything.
    Part(u32, u32),
    /// A random fraction (0..=1) of packs.
    Fraction(f64),
}

/// One problem found, with the object it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub object: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub blobs: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
    pub errors: Vec<Problem>,
    /// Not damage, but worth knowing (e.g. packs left by an interrupted backup).
    pub notices: Vec<Problem>,
    /// Requests and bytes this check cost.
    pub storage: crate::storage::StatsReport,
}

struct Checker<'a> {
    repo: &'a Repository,
    errors: Mutex<Vec<Problem>>,
}

impl Checker<'_> {
    fn problem(&self, object: impl Into<String>, message: impl std::fmt::Display) {
        if let Ok(mut e) = self.errors.lock() {
            e.push(Problem {
                object: object.into(),
                message: message.to_string(),
            });
        }
    }
}

/// Runs the check.
pub(crate) fn check(
    repo: &Repository,
    read: ReadData,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<CheckReport> {
    let c = Checker {
        repo,
        errors: Mutex::new(Vec::new()),
    };
    let mut report = CheckReport::default();
    // Keys, the pack listing and the snapshots do not depend on the index:
    // over a wide-area link each is a round trip (or many), so they are
    // fetched while the index objects load.
    let (key_problems, listing, snapshots, index) = std::thread::scope(|s| {
        let keys = s.spawn(|| key_problems(repo));
        let listing = s.spawn(|| {
            let listed = repo.list_pack_objects()?.into_iter();
            Ok::<BTreeMap<String, u64>, Error>(listed.map(|l| (l.key, l.size)).collect())
        });
        let snapshots = s.spawn(|| load_snapshots(repo));
        let index = load_index(&c, repo);
        let join = |what| Error::Internal(format!("the thread {what} panicked"));
        Ok::<_, Error>((
            keys.join().map_err(|_| join("checking keys"))??,
            listing.join().map_err(|_| join("listing packs"))??,
            snapshots.join().map_err(|_| join("loading snapshots"))??,
            index?,
        ))
    })?;
    if let Ok(mut errors) = c.errors.lock() {
        errors.splice(0..0, key_problems);
    }
    let (index, packs) = index;
    report.packs = packs.len();
    report.blobs = index.blob_count();

    // Packs on storage against the index.
    report.notices = compare_pack_listing(&c, listing, &packs);

    // Snapshots and trees.
    let mut walker = Walker::new(repo, &index).once();
    let mut trees = 0;
    for (id, loaded) in snapshots {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let hex = id.to_hex();
        match loaded {
            Ok(s) => {
                report.snapshots += 1;
                let mut v = TreeCheck {
                    c: &c,
                    index: &index,
                    from: format!("snapshot {}", &hex[..8]),
                    trees: 0,
                };
                walker.walk(&s.tree, Path::new("/"), &mut v)?;
                trees += v.trees;
            }
            Err(e) => c.problem(ObjectKind::Snapshot.key(&hex), e),
        }
    }
    report.trees = trees;

    (report.packs_read, report.bytes_read) = read::read_packs(&c, read, &packs, progress, cancel)?;
    report.errors = c.errors.into_inner().unwrap_or_default();
    report.storage = repo.storage_stats();
    Ok(report)
}

/// Keys: each must be well formed and named by its hash.
fn key_problems(repo: &Repository) -> Result<Vec<Problem>> {
    Ok(repo
        .list_key_ids()?
        .into_iter()
        .filter_map(|id| {
            repo.load_key(id).err().map(|e| Problem {
                object: ObjectKind::Key.key(&id.to_hex()),
                message: e.to_string(),
            })
        })
        .collect())
}

/// Indexes: name and content; remembers each pack's size and blob count
/// (the first index object to name a pack decides, as everywhere). The
/// tree packs start on their way as soon as an index object names them.
fn load_index(c: &Checker, repo: &Repository) -> Result<(MemIndex, Packs)> {
    let mut packs: Packs = BTreeMap::new();
    let mut builder = repo.index_builder();
    repo.each_index_object(&repo.list_index_ids()?, |id, loaded| {
        match loaded {
            Ok(f) => {
                repo.prefetch_tree_packs(&f.packs);
                builder.add(id, &f)?;
                for p in f.packs {
                    packs.entry(p.id).or_insert((p.size, p.blobs.len()));
                }
            }
            Err(e) => c.problem(ObjectKind::Index.key(&id.to_hex()), e),
        }
        Ok(())
    })?;
    Ok((builder.finish()?, packs))
}

/// Every snapshot object, loaded on the transfer threads, in listing order;
/// one that cannot be loaded is a problem of that snapshot.
fn load_snapshots(repo: &Repository) -> Result<Vec<(SnapshotId, Result<Snapshot>)>> {
    let ids = repo.list_snapshot_ids()?;
    Ok(repo.transfer_pool()?.install(|| {
        ids.par_iter()
            .map(|id| (*id, repo.load_snapshot(id)))
            .collect()
    }))
}

/// Checks every tree below a snapshot's root: each loads, each file's
/// chunks add up to its size and are indexed. Goes on past a damaged tree.
struct TreeCheck<'a> {
    c: &'a Checker<'a>,
    index: &'a MemIndex,
    /// `snapshot <short id>`, what paths in messages start with.
    from: String,
    /// Trees met (loaded or not).
    trees: usize,
}

impl TreeCheck<'_> {
    /// Where a problem is: the snapshot, and the path in it unless it is
    /// the snapshot's root.
    fn at(&self, path: &Path) -> String {
        if path == Path::new("/") {
            self.from.clone()
        } else {
            format!("{} in {}", path.display(), self.from)
        }
    }
}

impl Visitor for TreeCheck<'_> {
    fn tree(&mut self, _dir: &Path, _id: &BlobId, _tree: &Tree) -> Result<Step> {
        self.trees += 1;
        Ok(Step::Descend)
    }

    fn damaged(&mut self, dir: &Path, id: &BlobId, e: Error) -> Result<()> {
        self.trees += 1;
        let from = self.at(dir);
        self.c
            .problem(format!("tree {id}"), format!("referenced by {from}: {e}"));
        Ok(())
    }

    fn node(&mut self, path: &Path, n: &Node, parent: &BlobId) -> Result<Step> {
        if n.kind != NodeKind::File {
            return Ok(Step::Descend);
        }
        let total: u64 = n.content.iter().map(|c| c.len as u64).sum();
        if total != n.size {
            self.c.problem(
                format!("tree {parent}"),
                format!(
                    "file {}: chunks hold {total} bytes, size says {}",
                    self.at(path),
                    n.size
                ),
            );
        }
        for ch in &n.content {
            if !self.index.contains(BlobKind::Data, &ch.id) {
                self.c.problem(
                    format!("data blob {}", ch.id),
                    format!("needed by {} but in no index", self.at(path)),
                );
            }
        }
        Ok(Step::Descend)
    }
}

/// Compares the packs in storage with the index: a pack the index names
/// that is missing or of another size is a problem; a pack no index names
/// is only a notice (an interrupted backup leaves those, and prune removes
/// them).
fn compare_pack_listing(c: &Checker, stored: BTreeMap<String, u64>, packs: &Packs) -> Vec<Problem> {
    let mut notices = Vec::new();
    let mut indexed_keys = HashSet::new();
    for (id, (size, _)) in packs {
        let key = pack_key(id);
        match stored.get(&key) {
            None => c.problem(&key, "pack is listed in the index but missing from storage"),
            Some(s) if s != size => {
                c.problem(&key, format!("pack has {s} bytes, the index says {size}"))
            }
            _ => {}
        }
        indexed_keys.insert(key);
    }
    for key in stored.keys() {
        if !indexed_keys.contains(key) {
            notices.push(Problem {
                object: key.clone(),
                message: "pack is not in any index (left by an interrupted backup?); it is unused"
                    .into(),
            });
        }
    }
    notices
}
