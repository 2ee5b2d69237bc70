//! The one read path from packs to plaintext blobs.
//!
//! Restore, prune's repack, check, repair and `cat` all need blobs out of
//! packs, and each used to fetch and verify them its own way. Here a caller
//! names a pack and the blobs it wants (from an index or a scan); the
//! loader decides how to fetch them (one ranged read of the span they
//! cover, or the whole pack), verifies every entry against the kind and id
//! the caller expects, and hands each blob, or that blob's own error, to a
//! callback. So restore can go on past one damaged blob while prune stops
//! at the first, and neither knows where packs are stored. Caching and
//! concurrent fetches (issue 14) belong here, behind the same entry points.

use super::{Repository, objects};
use crate::crypto::{SubKeys, hash};
use crate::error::{Error, Result};
use crate::format::index::IndexBlob;
use crate::format::pack::{self, BlobKind, PackError};
use crate::id::{BlobId, PackId};

/// Where one wanted blob lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    pub kind: BlobKind,
    pub id: BlobId,
    /// Offset of the entry (sealed header) within the pack.
    pub offset: u32,
    /// Length of the whole entry, header and body.
    pub length: u32,
    /// The plaintext length the caller was promised (by a tree node), if it
    /// should be checked: the entry itself only vouches for its own header.
    pub raw_len: Option<u32>,
}

impl From<&IndexBlob> for BlobRef {
    fn from(b: &IndexBlob) -> Self {
        BlobRef {
            kind: b.kind,
            id: b.id,
            offset: b.offset,
            length: b.length,
            raw_len: None,
        }
    }
}

/// How much of a pack one load fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// One ranged read from the first wanted entry to the end of the last:
    /// cheapest when a few blobs of a large pack are wanted.
    Span,
    /// One read from the pack's start to the end of the last wanted entry
    /// (the whole pack when that entry is its last): for callers that want
    /// most of it. Bounded by what the index says of those entries, never
    /// by what the storage says of the pack.
    Whole,
    /// Tree blobs: like `Span`, but out of the cache, which first takes in
    /// the whole pack (at most `pack_size` bytes, its indexed size) when it
    /// has not got it; without a cache, or for other blobs, `Span`.
    Cached { pack_size: u64 },
}

/// Why one blob could not be handed over. Every variant names the pack
/// (by storage key) and the blob, so a message can say where to look.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The entry fails to open or holds something else than expected.
    #[error("pack {key} is damaged: {error}")]
    Damaged {
        key: String,
        id: BlobId,
        /// Boxed: it is large and rare.
        error: Box<PackError>,
    },
    /// The pack ends before the entry does.
    #[error("pack {key} is too short for {kind} blob {id}")]
    Short {
        key: String,
        kind: BlobKind,
        id: BlobId,
        /// Bytes the pack (or the fetched span) actually has.
        pack_len: u64,
    },
    /// The entry is sound but its plaintext has another length than the
    /// caller was promised.
    #[error("blob {id} has {found} bytes, the tree says {expected}; run `repo check`")]
    Length {
        key: String,
        id: BlobId,
        found: usize,
        expected: u32,
    },
}

impl BlobError {
    /// Storage key of the pack the blob was to come from.
    pub(crate) fn key(&self) -> &str {
        match self {
            BlobError::Damaged { key, .. }
            | BlobError::Short { key, .. }
            | BlobError::Length { key, .. } => key,
        }
    }
}

/// A whole pack, fetched once, with its headers scanned: what check,
/// `repair index` and `cat pack` look at, and whose blobs they can open
/// without fetching the pack again.
pub struct ScannedPack {
    keys: SubKeys,
    key: String,
    bytes: Vec<u8>,
    /// Whether the pack's bytes hash to its name.
    pub name_matches: bool,
    /// Entries whose header authenticated, in pack order.
    pub entries: Vec<IndexBlob>,
    /// Where and why the scan stopped early, if it did.
    pub error: Option<PackError>,
}

impl ScannedPack {
    /// Storage key of the pack, for messages.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Size of the pack in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Opens and verifies one blob of this pack.
    pub(crate) fn open(&self, blob: &BlobRef) -> Result<Vec<u8>, BlobError> {
        open(&self.keys, &self.key, &self.bytes, 0, blob)
    }
}

impl Repository {
    /// Fetches the `blobs` of `pack` and hands each, verified, or its own
    /// error, to `each`, in the order given. An error from `each` stops the
    /// load and is returned. A pack that cannot be fetched is returned as
    /// the storage error before any blob is handed over: the caller knows
    /// which blobs it asked for.
    pub(crate) fn load_blobs(
        &self,
        pack: &PackId,
        blobs: &[BlobRef],
        fetch: Fetch,
        mut each: impl FnMut(&BlobRef, Result<Vec<u8>, BlobError>) -> Result<()>,
    ) -> Result<()> {
        let Some(start) = blobs.iter().map(|b| u64::from(b.offset)).min() else {
            return Ok(());
        };
        let key = objects::pack_key(pack);
        if let Fetch::Cached { pack_size } = fetch
            && let Some((bytes, base)) = self.cached_span(pack, pack_size, blobs, start)
        {
            let opened: Vec<_> = blobs
                .iter()
                .map(|b| open(&self.keys, &key, &bytes, base, b))
                .collect();
            if opened.iter().all(Result::is_ok) {
                for (b, r) in blobs.iter().zip(opened) {
                    each(b, r)?;
                }
                return Ok(());
            }
            // Not what the repository holds: drop it and read the repository,
            // which says what is wrong if it is damaged there too.
            if let Some(packs) = &self.cache {
                packs.drop_pack(pack);
            }
        }
        // Each fetched range: where it starts in the pack, and its bytes.
        let ranges: Vec<(u64, Vec<u8>)> = match fetch {
            Fetch::Whole => self.fetch_ranges(&key, &[(0, span_end(blobs, start))])?,
            Fetch::Span | Fetch::Cached { .. } => self.fetch_ranges(&key, &close_ranges(blobs))?,
        };
        for b in blobs {
            let (base, bytes) = ranges
                .iter()
                .rev()
                .find(|(s, _)| *s <= u64::from(b.offset))
                .map_or((0, &[][..]), |(s, bytes)| (*s, bytes.as_slice()));
            each(b, open(&self.keys, &key, bytes, base, b))?;
        }
        Ok(())
    }

    /// Reads `ranges` of the pack at `key`, several at once: each is a round
    /// trip on a remote store, and they do not depend on each other.
    fn fetch_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<(u64, Vec<u8>)>> {
        let one = |&(s, e): &(u64, u64)| Ok((s, self.storage.get_range_immutable(key, s, e - s)?));
        if ranges.len() == 1 {
            return ranges.iter().map(one).collect();
        }
        let mut out = Vec::with_capacity(ranges.len());
        for batch in ranges.chunks(RANGES_AT_ONCE) {
            let got: Vec<Result<(u64, Vec<u8>)>> = std::thread::scope(|s| {
                let running: Vec<_> = batch.iter().map(|r| s.spawn(move || one(r))).collect();
                running
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Internal("a thread reading a pack panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in got {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// The span of `blobs` out of the cached copy of their pack, when they
    /// are trees (only tree packs are cached) and a cache is in use.
    fn cached_span(
        &self,
        pack: &PackId,
        pack_size: u64,
        blobs: &[BlobRef],
        start: u64,
    ) -> Option<(Vec<u8>, u64)> {
        let packs = self.cache.as_ref()?;
        if !blobs.iter().all(|b| b.kind == BlobKind::Tree)
            || pack_size > MAX_CACHED_PACK
            || !packs.ensure(pack, pack_size)
        {
            return None;
        }
        let end = span_end(blobs, start);
        let Some(bytes) = packs.cache().read_pack(pack, start, end - start) else {
            // Shorter than the index says (a crash can leave an empty file):
            // dropped, so the next read fetches it whole again instead of
            // every tree of the pack costing a round trip from now on.
            packs.drop_pack(pack);
            return None;
        };
        Some((bytes, start))
    }

    /// Fetches a whole pack of `size` bytes (its size in the index, or in
    /// the listing for a pack no index names) and scans its headers
    /// (bodies stay sealed until [`ScannedPack::open`]). A longer answer is
    /// an error naming the pack, read no further than `size + 1` bytes.
    pub(crate) fn scan_pack(&self, pack: &PackId, size: u64) -> Result<ScannedPack> {
        let key = objects::pack_key(pack);
        let bytes = self.storage.get_sized(&key, size)?;
        let scan = pack::scan(&self.keys.encryption, &bytes);
        Ok(ScannedPack {
            keys: self.keys.clone(),
            name_matches: hash::object_hash(&bytes) == pack.0,
            key,
            bytes,
            entries: scan.entries,
            error: scan.error,
        })
    }
}

/// Larger tree packs (repositories made with `--pack-size` over 64 MiB)
/// are read by span, not fetched whole: each fetch holds the whole pack in
/// memory until it is written to the cache, up to four at once.
pub(crate) const MAX_CACHED_PACK: u64 = 64 << 20;

/// Ranges of one pack read at the same time.
const RANGES_AT_ONCE: usize = 8;

/// Wanted entries farther apart than this are fetched by separate requests:
/// skipping a megabyte saves about a round trip's worth of transfer on a
/// typical wide-area link, while closer entries cost less in one request.
const MAX_GAP: u64 = 1 << 20;

/// The ranges of a pack to fetch for `blobs`: their entries, sorted, with
/// neighbours closer than [`MAX_GAP`] joined into one range.
fn close_ranges(blobs: &[BlobRef]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = blobs
        .iter()
        .map(|b| {
            let s = u64::from(b.offset);
            (s, s + u64::from(b.length))
        })
        .collect();
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(MAX_GAP) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Where the last of `blobs` ends in its pack.
fn span_end(blobs: &[BlobRef], start: u64) -> u64 {
    blobs
        .iter()
        .map(|b| u64::from(b.offset) + u64::from(b.length))
        .max()
        .unwrap_or(start)
}

/// Opens the entry of `blob` out of `bytes`, which start at pack offset `base`.
fn open(
    keys: &SubKeys,
    key: &str,
    bytes: &[u8],
    base: u64,
    blob: &BlobRef,
) -> Result<Vec<u8>, BlobError> {
    let entry = usize::try_from(u64::from(blob.offset).saturating_sub(base))
        .ok()
        .and_then(|rel| bytes.get(rel..rel.checked_add(blob.length as usize)?))
        .ok_or_else(|| BlobError::Short {
            key: key.to_string(),
            kind: blob.kind,
            id: blob.id,
            pack_len: base + bytes.len() as u64,
        })?;
    let (_, data) = pack::open_entry(
        keys,
        entry,
        u64::from(blob.offset),
        Some((blob.kind, blob.id)),
    )
    .map_err(|error| BlobError::Damaged {
        key: key.to_string(),
        id: blob.id,
        error: Box::new(error),
    })?;
    match blob.raw_len {
        Some(expected) if data.len() != expected as usize => Err(BlobError::Length {
            key: key.to_string(),
            id: blob.id,
            found: data.len(),
            expected,
        }),
        _ => Ok(data),
    }
}
