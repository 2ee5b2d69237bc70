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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobId, PackId};
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

    // Keys: each must be well formed and named by its hash.
    for id in repo.list_key_ids()? {
        if let Err(e) = repo.load_key(id) {
            c.problem(ObjectKind::Key.key(&id.to_hex()), e);
        }
    }

    // Indexes: name and content; remember each pack's size and blob count
    // (the first index object to name a pack decides, as everywhere).
    let mut packs: Packs = BTreeMap::new();
    let mut builder = repo.index_builder();
    for id in repo.list_index_ids()? {
        match repo.load_index_file(&id) {
            Ok(f) => {
                builder.add(id, &f)?;
                for p in f.packs {
                    packs.entry(p.id).or_insert((p.size, p.blobs.len()));
                }
            }
            Err(e) => c.problem(ObjectKind::Index.key(&id.to_hex()), e),
        }
    }
    let index = builder.finish()?;
    report.packs = packs.len();
    report.blobs = index.blob_count();

    // Packs on storage against the index.
    report.notices = compare_pack_listing(&c, repo, &packs)?;

    // Snapshots and trees.
    let mut walker = Walker::new(repo, &index).once();
    let mut trees = 0;
    for id in repo.list_snapshot_ids()? {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let hex = id.to_hex();
        match repo.load_snapshot(&id) {
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
fn compare_pack_listing(c: &Checker, repo: &Repository, packs: &Packs) -> Result<Vec<Problem>> {
    let mut notices = Vec::new();
    let stored: BTreeMap<String, u64> = repo
        .list_pack_objects()?
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
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
    Ok(notices)
}
