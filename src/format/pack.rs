//! Pack layout: a concatenation of self-describing encrypted blob entries.
//!
//! Each entry is a fixed-size sealed header (kind, id, sizes) followed by
//! the sealed body. Because the header has a fixed size and is
//! authenticated, a pack can be scanned from its start with only the key:
//! an index can be rebuilt from packs alone, and a truncated pack loses
//! only the entries past the cut. There is no plaintext in a pack.

use rand::seq::SliceRandom;

use crate::codec::{self, CodecError};
use crate::crypto::hash;
use crate::crypto::{self, OVERHEAD};
use crate::id::BlobId;

/// Length of a header before sealing.
pub const HEADER_PLAIN_LEN: usize = 48;
/// Length of a sealed header, the first bytes of every entry.
pub const HEADER_LEN: usize = HEADER_PLAIN_LEN + OVERHEAD;
/// Version byte at the start of a plaintext header.
pub const HEADER_VERSION: u8 = 1;
/// Associated data of every sealed header.
pub const HEADER_AD: &[u8] = b"repo blob header v1";
/// Upper bound on a blob's plaintext, so sizes from storage stay sane.
pub const MAX_BLOB_LEN: u32 = 1 << 30;

/// What a blob holds. Data and tree blobs go to separate packs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum BlobKind {
    Data,
    Tree,
}

/// Where one blob lies in its pack: produced by the pack builder and stored
/// as is in index objects, so `index` depends on `pack` and not the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IndexBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    /// Offset of the entry (sealed header) within the pack.
    pub offset: u32,
    /// Length of the whole entry, header and body.
    pub length: u32,
    /// Length of the blob's plaintext.
    pub raw_length: u32,
}

impl BlobKind {
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

impl std::fmt::Display for BlobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        })
    }
}

/// The authenticated description of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    pub kind: BlobKind,
    pub id: BlobId,
    /// Length of the sealed body that follows the header.
    pub body_len: u32,
    /// Length of the blob's plaintext.
    pub raw_len: u32,
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("entry at offset {0} is truncated")]
    Truncated(u64),
    #[error("header at offset {0} fails authentication")]
    HeaderAuth(u64),
    #[error("header at offset {offset} is invalid: {reason}")]
    HeaderInvalid { offset: u64, reason: String },
    #[error("body of blob {id} fails to decode: {err}")]
    Body { id: BlobId, err: CodecError },
    #[error("blob {0} content does not match its id")]
    IdMismatch(BlobId),
    #[error("entry holds blob {found}, expected {expected}")]
    WrongBlob { expected: BlobId, found: BlobId },
}

/// Associated data of an entry's sealed body: its kind and id, so a body
/// cannot be moved under another header. Public for the fuzz harness, which
/// seals bodies the way a writer would.
pub fn body_ad(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut ad = [0u8; 33];
    ad[0] = kind.code();
    ad[1..].copy_from_slice(&id.0);
    ad
}

/// Serializes and seals a header.
pub(crate) fn seal_header(key: &[u8; 32], h: &BlobHeader) -> Vec<u8> {
    let mut p = [0u8; HEADER_PLAIN_LEN];
    p[0] = HEADER_VERSION;
    p[1] = h.kind.code();
    p[4..8].copy_from_slice(&h.body_len.to_le_bytes());
    p[8..12].copy_from_slice(&h.raw_len.to_le_bytes());
    p[16..48].copy_from_slice(&h.id.0);
    crypto::seal(key, HEADER_AD, &p)
}

/// Opens the sealed header at the start of `bytes`; `offset` is only for messages.
pub fn open_header(key: &[u8; 32], bytes: &[u8], offset: u64) -> Result<BlobHeader, PackError> {
    let sealed = bytes
        .get(..HEADER_LEN)
        .ok_or(PackError::Truncated(offset))?;
    let p = crypto::open(key, HEADER_AD, sealed).map_err(|_| PackError::HeaderAuth(offset))?;
    let invalid = |reason: &str| PackError::HeaderInvalid {
        offset,
        reason: reason.to_string(),
    };
    if p.len() != HEADER_PLAIN_LEN || p[0] != HEADER_VERSION {
        return Err(invalid("unknown header version"));
    }
    let kind = BlobKind::from_code(p[1]).ok_or_else(|| invalid("unknown blob kind"))?;
    if p[2..4] != [0, 0] || p[12..16] != [0, 0, 0, 0] {
        return Err(invalid("reserved bytes are not zero"));
    }
    let le = |r: std::ops::Range<usize>| u32::from_le_bytes(p[r].try_into().unwrap_or_default());
    let (body_len, raw_len) = (le(4..8), le(8..12));
    if raw_len > MAX_BLOB_LEN || (body_len as usize) < OVERHEAD + 1 {
        return Err(invalid("sizes out of range"));
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&p[16..48]);
    Ok(BlobHeader {
        kind,
        id: BlobId(id),
        body_len,
        raw_len,
    })
}

/// Builds one complete entry (header + body) for a blob.
pub fn seal_entry(
    keys: &crate::crypto::SubKeys,
    kind: BlobKind,
    id: BlobId,
    data: &[u8],
    level: i32,
) -> Vec<u8> {
    let body = codec::encode(&keys.encryption, &body_ad(kind, &id), data, level);
    let header = BlobHeader {
        kind,
        id,
        body_len: body.len() as u32,
        raw_len: data.len() as u32,
    };
    let mut out = seal_header(&keys.encryption, &header);
    out.extend_from_slice(&body);
    out
}

/// Decodes one complete entry and verifies that it holds `expected`.
pub fn open_entry(
    keys: &crate::crypto::SubKeys,
    entry: &[u8],
    offset: u64,
    expected: Option<(BlobKind, BlobId)>,
) -> Result<(BlobHeader, Vec<u8>), PackError> {
    let h = open_header(&keys.encryption, entry, offset)?;
    if let Some((kind, e)) = expected
        && (e != h.id || kind != h.kind)
    {
        return Err(PackError::WrongBlob {
            expected: e,
            found: h.id,
        });
    }
    let body = entry
        .get(HEADER_LEN..HEADER_LEN + h.body_len as usize)
        .ok_or(PackError::Truncated(offset))?;
    let data = codec::decode(
        &keys.encryption,
        &body_ad(h.kind, &h.id),
        body,
        h.raw_len as usize,
    )
    .map_err(|err| PackError::Body { id: h.id, err })?;
    if data.len() != h.raw_len as usize || hash::blob_id(&keys.blob_id, &data) != h.id {
        return Err(PackError::IdMismatch(h.id));
    }
    Ok((h, data))
}

/// Result of scanning a pack from its start.
#[derive(Debug, Default)]
pub struct Scan {
    /// Entries whose header authenticated, in pack order.
    pub entries: Vec<IndexBlob>,
    /// Where and why scanning stopped early, if it did.
    pub error: Option<PackError>,
}

/// Walks the headers of a pack; bodies are not decrypted. Stops at the
/// first damaged header, since later entry boundaries are then unknown.
pub fn scan(key: &[u8; 32], pack: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0usize;
    while pos < pack.len() {
        match open_header(key, &pack[pos..], pos as u64) {
            Ok(h) => {
                let len = HEADER_LEN + h.body_len as usize;
                if pos + len > pack.len() {
                    out.error = Some(PackError::Truncated(pos as u64));
                    break;
                }
                out.entries.push(IndexBlob {
                    kind: h.kind,
                    id: h.id,
                    offset: pos as u32,
                    length: len as u32,
                    raw_length: h.raw_len,
                });
                pos += len;
            }
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

/// Collects entries for one pack, then lays them out in a random order so
/// pack contents do not mirror file order (which would help fingerprinting).
#[derive(Default)]
pub struct PackBuilder {
    entries: Vec<(BlobKind, BlobId, u32, Vec<u8>)>,
    size: usize,
}

impl PackBuilder {
    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_len: u32, entry: Vec<u8>) {
        self.size += entry.len();
        self.entries.push((kind, id, raw_len, entry));
    }

    pub(crate) fn len(&self) -> usize {
        self.size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shuffles and concatenates; returns the pack bytes and their index entries.
    pub fn finish(self) -> (Vec<u8>, Vec<IndexBlob>) {
        let (parts, blobs) = self.finish_parts();
        (parts.concat(), blobs)
    }

    /// Like [`PackBuilder::finish`] but leaves the entries as separate
    /// buffers, so a pack is never held in memory twice.
    pub(crate) fn finish_parts(mut self) -> (Vec<Vec<u8>>, Vec<IndexBlob>) {
        self.entries.shuffle(&mut rand::thread_rng());
        let mut offset = 0u32;
        let mut parts = Vec::with_capacity(self.entries.len());
        let mut blobs = Vec::with_capacity(self.entries.len());
        for (kind, id, raw_len, entry) in self.entries {
            blobs.push(IndexBlob {
                kind,
                id,
                offset,
                length: entry.len() as u32,
                raw_length: raw_len,
            });
            offset += entry.len() as u32;
            parts.push(entry);
        }
        (parts, blobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;

    fn build(keys: &crate::crypto::SubKeys, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<IndexBlob>) {
        let mut b = PackBuilder::default();
        for d in blobs {
            let id = hash::blob_id(&keys.blob_id, d);
            b.add(
                BlobKind::Data,
                id,
                d.len() as u32,
                seal_entry(keys, BlobKind::Data, id, d, 3),
            );
        }
        b.finish()
    }

    #[test]
    fn scan_finds_every_entry_and_truncation_keeps_prefix() {
        let keys = MasterKey::from_bytes([5u8; 32]).subkeys();
        let blobs: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; 1000 + i * 37]).collect();
        let (pack, index) = build(&keys, &blobs);
        let s = scan(&keys.encryption, &pack);
        assert!(s.error.is_none());
        let mut a = s.entries.clone();
        let mut b = index.clone();
        a.sort_by_key(|e| e.offset);
        b.sort_by_key(|e| e.offset);
        assert_eq!(a, b);
        for e in &index {
            let r = e.offset as usize..(e.offset + e.length) as usize;
            let (_, data) =
                open_entry(&keys, &pack[r], e.offset as u64, Some((e.kind, e.id))).unwrap();
            assert_eq!(hash::blob_id(&keys.blob_id, &data), e.id);
        }
        let cut = pack.len() - 10;
        let t = scan(&keys.encryption, &pack[..cut]);
        assert_eq!(t.entries.len(), 19);
        assert!(matches!(t.error, Some(PackError::Truncated(_))));
    }

    #[test]
    fn flipped_byte_is_detected() {
        let keys = MasterKey::from_bytes([5u8; 32]).subkeys();
        let (pack, index) = build(&keys, &[b"hello world".repeat(50)]);
        let e = &index[0];
        for i in 0..pack.len() {
            let mut bad = pack.clone();
            bad[i] ^= 0x40;
            assert!(
                open_entry(&keys, &bad, 0, Some((e.kind, e.id))).is_err(),
                "flip at {i} undetected"
            );
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let keys = MasterKey::from_bytes([5u8; 32]).subkeys();
            let _ = scan(&keys.encryption, &data);
            let _ = open_entry(&keys, &data, 0, None);
        }
    }
}
