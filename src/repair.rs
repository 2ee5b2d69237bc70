//! `repair index`: rebuild the index from the packs themselves.
//!
//! Every pack entry starts with an authenticated header, so scanning each
//! pack from its start recovers exactly which blobs it holds. The new index
//! object is written first and names the old ones it supersedes; only then
//! are the old ones deleted, so an interruption leaves a usable index.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::Result;
use crate::hash;
use crate::id::{IndexId, PackId};
use crate::index::{IndexFile, IndexPack};
use crate::pack;
use crate::repo::Repository;
use crate::repo::objects::{ObjectKind, id_from_key};
use crate::verify::Problem;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairIndexReport {
    pub packs_scanned: usize,
    pub blobs_indexed: usize,
    /// Packs that were damaged; their readable entries were still indexed.
    pub damaged: Vec<Problem>,
    pub old_indexes: usize,
    pub new_index: Option<String>,
    pub dry_run: bool,
}

/// Scans every pack and replaces all index objects with one new one.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let old: Vec<String> = repo.list_ids(ObjectKind::Index)?;
    let packs: Vec<(String, PackId)> = repo
        .storage()
        .list(ObjectKind::Pack.dir())?
        .into_iter()
        .filter_map(|l| {
            let hex = id_from_key(&l.key)?;
            Some((l.key, PackId::from_hex(&hex)?))
        })
        .collect();
    let damaged = Mutex::new(Vec::new());
    let note = |object: &str, message: String| {
        if let Ok(mut d) = damaged.lock() {
            d.push(Problem {
                object: object.to_string(),
                message,
            });
        }
    };
    let scanned: Vec<IndexPack> = repo.transfer_pool()?.install(|| {
        packs
            .par_iter()
            .map(|(key, id)| {
                let bytes = repo.storage().get(key)?;
                if hash::object_hash(&bytes) != id.0 {
                    note(
                        key,
                        "content does not match its name; its readable entries are indexed".into(),
                    );
                }
                let scan = pack::scan(&repo.keys().encryption, &bytes);
                if let Some(e) = scan.error {
                    note(
                        key,
                        format!("scan stopped ({e}); the entries before it are indexed"),
                    );
                }
                Ok(IndexPack {
                    id: *id,
                    size: bytes.len() as u64,
                    blobs: scan.entries,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut report = RepairIndexReport {
        packs_scanned: scanned.len(),
        blobs_indexed: scanned.iter().map(|p| p.blobs.len()).sum(),
        damaged: damaged.into_inner().unwrap_or_default(),
        old_indexes: old.len(),
        new_index: None,
        dry_run,
    };
    if dry_run {
        return Ok(report);
    }
    let mut file = IndexFile::new(
        scanned
            .into_iter()
            .filter(|p| !p.blobs.is_empty())
            .collect(),
    );
    file.supersedes = old.iter().filter_map(|h| IndexId::from_hex(h)).collect();
    report.new_index = Some(repo.save_object(ObjectKind::Index, &file.encode())?);
    for hex in &old {
        if Some(hex) != report.new_index.as_ref() {
            repo.storage().delete(&ObjectKind::Index.key(hex))?;
        }
    }
    Ok(report)
}
