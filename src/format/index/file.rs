//! The header of a local index file (derived data, not repository format:
//! see SPEC.md "Local index file").
//!
//! Layout: this header, then the sorted ids of the index objects it was
//! built from (32 bytes each), the data entries, the tree entries (44 bytes
//! each, sorted by id) and the pack records (40 bytes each). `hash` is the
//! BLAKE3 of the header's other fields and of the BLAKE3 of everything
//! after the header, so any flipped byte is found by one streaming pass.

use crate::format::error::FormatError;
use crate::format::index::table::{ENTRY_SIZE, PACK_SIZE};

/// Bytes of the header.
pub const HEADER_SIZE: usize = 8 + 32 + 4 * 8 + 32;

const MAGIC: &[u8; 8] = b"REPOIDX1";

/// What an index file holds and how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileHeader {
    /// The repository it belongs to.
    pub repo: [u8; 32],
    pub sources: u64,
    pub data: u64,
    pub tree: u64,
    pub packs: u64,
    pub hash: [u8; 32],
}

impl FileHeader {
    /// The fields the hash covers, before the hash.
    fn fields(&self) -> [u8; HEADER_SIZE - 32] {
        let mut b = [0u8; HEADER_SIZE - 32];
        b[..8].copy_from_slice(MAGIC);
        b[8..40].copy_from_slice(&self.repo);
        for (i, n) in [self.sources, self.data, self.tree, self.packs]
            .into_iter()
            .enumerate()
        {
            b[40 + i * 8..48 + i * 8].copy_from_slice(&n.to_le_bytes());
        }
        b
    }

    /// The hash for these fields and a body whose BLAKE3 is `body`.
    pub fn seal(&self, body: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.fields());
        h.update(body);
        *h.finalize().as_bytes()
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[..HEADER_SIZE - 32].copy_from_slice(&self.fields());
        b[HEADER_SIZE - 32..].copy_from_slice(&self.hash);
        b
    }

    pub fn decode(b: &[u8]) -> Result<FileHeader, FormatError> {
        if b.len() < HEADER_SIZE || &b[..8] != MAGIC {
            return Err(FormatError::Invalid(
                "not a local index file of this version".into(),
            ));
        }
        let n = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[40 + i * 8..48 + i * 8]);
            u64::from_le_bytes(x)
        };
        let mut h = FileHeader {
            sources: n(0),
            data: n(1),
            tree: n(2),
            packs: n(3),
            ..FileHeader::default()
        };
        h.repo.copy_from_slice(&b[8..40]);
        h.hash.copy_from_slice(&b[HEADER_SIZE - 32..HEADER_SIZE]);
        Ok(h)
    }

    /// Byte offsets of the sections: sources, data, tree, packs, and the end.
    /// `None` when the counts overflow (a damaged header).
    pub fn layout(&self) -> Option<[u64; 5]> {
        let sources = HEADER_SIZE as u64;
        let data = sources.checked_add(self.sources.checked_mul(32)?)?;
        let tree = data.checked_add(self.data.checked_mul(ENTRY_SIZE as u64)?)?;
        let packs = tree.checked_add(self.tree.checked_mul(ENTRY_SIZE as u64)?)?;
        let end = packs.checked_add(self.packs.checked_mul(PACK_SIZE as u64)?)?;
        Some([sources, data, tree, packs, end])
    }
}
