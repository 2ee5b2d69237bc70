//! `check`: prove the repository is whole.
//!
//! Structure first (every object's name matches its hash, every snapshot's
//! trees load, every referenced blob is indexed, every indexed pack exists
//! with the indexed size); then, optionally, every byte of (a subset of)
//! the packs is read, decrypted and compared with the index.

pub mod repair;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::crypto::hash;
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::{IndexBlob, MemIndex};
use crate::format::pack::{self, BlobKind};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, PackId};
use crate::repository::Repository;
use crate::repository::objects::{self, ObjectKind, pack_key};

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
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
pub fn check(
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
    for hex in repo.list_ids(ObjectKind::Key)? {
        if let Some(id) = crate::id::KeyId::from_hex(&hex)
            && let Err(e) = objects::load_key(repo.storage(), id)
        {
            c.problem(format!("keys/{hex}"), e);
        }
    }

    // Indexes: name and content; remember what each says about each pack.
    let mut packs: BTreeMap<PackId, (u64, Vec<IndexBlob>)> = BTreeMap::new();
    let mut index = MemIndex::default();
    for hex in repo.list_ids(ObjectKind::Index)? {
        match objects::load(repo, ObjectKind::Index, &hex).and_then(|b| {
            crate::format::index::IndexFile::decode(&b)
                .map_err(|e| Error::corrupt(format!("index/{hex}"), e))
        }) {
            Ok(f) => {
                index.add(&f);
                for p in f.packs {
                    packs.entry(p.id).or_insert((p.size, p.blobs));
                }
            }
            Err(e) => c.problem(format!("index/{hex}"), e),
        }
    }
    index.finish();
    report.packs = packs.len();
    report.blobs = index.blob_count();

    // Packs on storage against the index.
    let stored: BTreeMap<String, u64> = repo
        .storage()
        .list(ObjectKind::Pack.dir())?
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    let mut indexed_keys = HashSet::new();
    for (id, (size, _)) in &packs {
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
            report.notices.push(Problem {
                object: key.clone(),
                message: "pack is not in any index (left by an interrupted backup?); it is unused"
                    .into(),
            });
        }
    }

    // Snapshots and trees.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for hex in repo.list_ids(ObjectKind::Snapshot)? {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let snap = objects::load(repo, ObjectKind::Snapshot, &hex).and_then(|b| {
            Snapshot::decode(&b).map_err(|e| Error::corrupt(format!("snapshots/{hex}"), e))
        });
        match snap {
            Ok(s) => {
                report.snapshots += 1;
                check_tree(
                    &c,
                    &index,
                    s.tree,
                    &format!("snapshot {}", &hex[..8]),
                    &mut seen_trees,
                );
            }
            Err(e) => c.problem(format!("snapshots/{hex}"), e),
        }
    }
    report.trees = seen_trees.len();

    // Data. A percentage reads that share of the packs rounded up, so any
    // percentage above zero reads at least one pack.
    let sample: std::collections::HashSet<usize> = match read {
        ReadData::Fraction(f) => {
            let k = ((packs.len() as f64 * f).ceil() as usize).min(packs.len());
            rand::seq::index::sample(&mut rand::thread_rng(), packs.len(), k)
                .into_iter()
                .collect()
        }
        _ => Default::default(),
    };
    let chosen: Vec<(&PackId, &(u64, Vec<IndexBlob>))> = packs
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(read, ReadData::Fraction(_)) || sample.contains(i))
        .map(|(_, p)| p)
        .filter(|(id, _)| match read {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part(n, m) => {
                (u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) % m) + 1 == n
            }
            ReadData::Fraction(_) => true,
        })
        .collect();
    progress.set_total(
        chosen.len() as u64,
        chosen.iter().map(|(_, (s, _))| *s).sum(),
    );
    let bytes = AtomicU64::new(0);
    repo.transfer_pool()?.install(|| {
        chosen.par_iter().try_for_each(|(id, (size, blobs))| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            read_pack(&c, id, blobs);
            bytes.fetch_add(*size, Ordering::Relaxed);
            progress.add_done(1, *size);
            Ok(())
        })
    })?;
    report.packs_read = chosen.len();
    report.bytes_read = bytes.into_inner();
    report.errors = c.errors.into_inner().unwrap_or_default();
    report.storage = repo.storage().stats();
    Ok(report)
}

fn check_tree(c: &Checker, index: &MemIndex, root: BlobId, from: &str, seen: &mut HashSet<BlobId>) {
    let mut stack = vec![(root, from.to_string())];
    while let Some((id, from)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let tree = match c.repo.load_tree(index, &id) {
            Ok(t) => t,
            Err(e) => {
                c.problem(format!("tree {id}"), format!("referenced by {from}: {e}"));
                continue;
            }
        };
        for n in &tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        stack.push((sub, format!("{from}/{}", n.display_name())));
                    }
                }
                NodeKind::File => {
                    let total: u64 = n.content.iter().map(|c| c.len as u64).sum();
                    if total != n.size {
                        c.problem(
                            format!("tree {id}"),
                            format!(
                                "file {from}/{}: chunks hold {total} bytes, size says {}",
                                n.display_name(),
                                n.size
                            ),
                        );
                    }
                    for ch in &n.content {
                        if !index.contains(BlobKind::Data, &ch.id) {
                            c.problem(
                                format!("data blob {}", ch.id),
                                format!("needed by {from}/{} but in no index", n.display_name()),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Reads one whole pack: name hash, header scan, every blob decrypted and
/// compared with its id, and the scan compared with the index.
fn read_pack(c: &Checker, id: &PackId, indexed: &[IndexBlob]) {
    let key = pack_key(id);
    let bytes = match c.repo.storage().get(&key) {
        Ok(b) => b,
        Err(e) => return c.problem(&key, format!("cannot read: {e}")),
    };
    if hash::object_hash(&bytes) != id.0 {
        c.problem(&key, "content does not match its name (bytes were altered)");
    }
    let scan = pack::scan(&c.repo.keys().encryption, &bytes);
    if let Some(e) = &scan.error {
        c.problem(&key, format!("scan stopped: {e}"));
    }
    let found: HashSet<(BlobId, u32, u32)> = scan
        .entries
        .iter()
        .map(|e| (e.id, e.offset, e.length))
        .collect();
    for b in indexed {
        if !found.contains(&(b.id, b.offset, b.length)) {
            c.problem(
                &key,
                format!(
                    "{} blob {} at offset {} is in the index but not readable in the pack",
                    b.kind, b.id, b.offset
                ),
            );
            continue;
        }
        let entry = &bytes[b.offset as usize..(b.offset + b.length) as usize];
        if let Err(e) =
            pack::open_entry(c.repo.keys(), entry, b.offset as u64, Some((b.kind, b.id)))
        {
            c.problem(
                &key,
                format!("{} blob {} at offset {}: {e}", b.kind, b.id, b.offset),
            );
        }
    }
}
