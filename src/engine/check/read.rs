//! `check --read-data`: every chosen pack read whole and compared with
//! what the index says it holds.
//!
//! The index's per-pack blob lists are not all held at once: the chosen
//! packs are read in batches of at most the index's in-memory entry limit
//! (blobs), and for each batch the index objects are read again for just
//! those packs' lists, so memory stays bounded at any repository size.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use super::{Checker, Packs, ReadData};
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::index::IndexBlob;
use crate::id::{BlobId, PackId};
use crate::repository::BlobError;
use crate::repository::objects::pack_key;

/// Reads the packs `read` chooses; returns how many and their bytes.
pub(super) fn read_packs(
    c: &Checker,
    read: ReadData,
    packs: &Packs,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(usize, u64)> {
    let chosen = packs_to_read(read, packs);
    progress.set_total(
        chosen.len() as u64,
        chosen.iter().map(|(_, (s, _))| *s).sum(),
    );
    if chosen.is_empty() {
        return Ok((0, 0));
    }
    let index_ids = c.repo.list_index_ids()?;
    let pool = c.repo.transfer_pool()?;
    let bytes = AtomicU64::new(0);
    for batch in batches(&chosen, crate::repository::index::memory_limit()) {
        let lists = blob_lists(c, &index_ids, batch);
        pool.install(|| {
            batch.par_iter().try_for_each(|(id, (size, _))| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                read_pack(c, id, *size, lists.get(*id).map_or(&[], Vec::as_slice));
                bytes.fetch_add(*size, Ordering::Relaxed);
                progress.add_done(1, *size);
                Ok(())
            })
        })?;
    }
    Ok((chosen.len(), bytes.into_inner()))
}

/// Consecutive slices of `chosen` listing at most `limit` blobs each (a
/// pack with more is a batch alone).
fn batches<'a, T>(
    chosen: &'a [(T, &(u64, usize))],
    limit: usize,
) -> Vec<&'a [(T, &'a (u64, usize))]> {
    let mut out = Vec::new();
    let (mut start, mut blobs) = (0, 0);
    for (i, (_, (_, n))) in chosen.iter().enumerate() {
        if i > start && blobs + n > limit {
            out.push(&chosen[start..i]);
            (start, blobs) = (i, 0);
        }
        blobs += n;
    }
    out.push(&chosen[start..]);
    out
}

/// What the index says each pack of `batch` holds; as in the first pass,
/// the first index object naming a pack decides. Damaged index objects
/// were reported already and are passed over.
fn blob_lists(
    c: &Checker,
    index_ids: &[crate::id::IndexId],
    batch: &[(&PackId, &(u64, usize))],
) -> HashMap<PackId, Vec<IndexBlob>> {
    let want: HashSet<PackId> = batch.iter().map(|(id, _)| **id).collect();
    let mut lists = HashMap::new();
    for id in index_ids {
        let Ok(f) = c.repo.load_index_file(id) else {
            continue;
        };
        for p in f.packs {
            if want.contains(&p.id) {
                lists.entry(p.id).or_insert(p.blobs);
            }
        }
        if lists.len() == want.len() {
            break;
        }
    }
    lists
}

/// Reads one whole pack of `size` bytes (as indexed): name hash, header
/// scan, every blob decrypted and compared with its id, and the scan
/// compared with the index.
fn read_pack(c: &Checker, id: &PackId, size: u64, indexed: &[IndexBlob]) {
    let pack = match c.repo.scan_pack(id, size) {
        Ok(p) => p,
        Err(e) => return c.problem(pack_key(id), format!("cannot read: {e}")),
    };
    let key = pack.key();
    if !pack.name_matches {
        c.problem(key, "content does not match its name (bytes were altered)");
    }
    if let Some(e) = &pack.error {
        c.problem(key, format!("scan stopped: {e}"));
    }
    let found: HashSet<(BlobId, u32, u32)> = pack
        .entries
        .iter()
        .map(|e| (e.id, e.offset, e.length))
        .collect();
    for b in indexed {
        if !found.contains(&(b.id, b.offset, b.length)) {
            c.problem(
                key,
                format!(
                    "{} blob {} at offset {} is in the index but not readable in the pack",
                    b.kind, b.id, b.offset
                ),
            );
            continue;
        }
        if let Err(e) = pack.open(&b.into()) {
            let e: &dyn std::fmt::Display = match &e {
                BlobError::Damaged { error, .. } => error,
                other => other,
            };
            c.problem(
                key,
                format!("{} blob {} at offset {}: {e}", b.kind, b.id, b.offset),
            );
        }
    }
}

/// The packs `--read-data` reads: all, one part of n (by the id's first
/// four bytes, so parts are stable across runs), or a random share. A
/// percentage reads that share of the packs rounded up, so any percentage
/// above zero reads at least one pack.
fn packs_to_read(read: ReadData, packs: &Packs) -> Vec<(&PackId, &(u64, usize))> {
    let sample: std::collections::HashSet<usize> = match read {
        ReadData::Fraction(f) => {
            let k = ((packs.len() as f64 * f).ceil() as usize).min(packs.len());
            rand::seq::index::sample(&mut rand::thread_rng(), packs.len(), k)
                .into_iter()
                .collect()
        }
        _ => Default::default(),
    };
    packs
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
        .collect()
}
