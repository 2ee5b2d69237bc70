//! Sorted tables of index entries and the bucket table that finds one.
//!
//! A table is a sorted array of fixed 44-byte records, in memory or in a
//! file. The bucket table maps the leading bits of an id to the run of
//! records that can hold it, so a lookup in a file is one positioned read
//! of a few hundred bytes: memory holds the bucket table only (4 bytes per
//! bucket), whatever the repository's size.

use std::sync::Arc;

/// Bytes of one entry on disk: id, pack number, offset, length.
pub(crate) const ENTRY_SIZE: usize = 44;

/// Bytes of one pack record on disk: id and size.
pub(crate) const PACK_SIZE: usize = 40;

/// Largest bucket table for a file-backed table: 2^22 buckets (16 MiB),
/// which keeps a bucket near 48 entries (2 KiB) even at 200 million blobs.
const MAX_FILE_BITS: u32 = 22;

/// Where a blob lives, with its pack as a number into a pack table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Entry {
    pub id: [u8; 32],
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
}

impl Entry {
    /// The first 8 bytes of the id as an integer: ids are uniformly random,
    /// so comparing these almost always decides, in one register compare.
    pub(crate) fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.id[..8]);
        u64::from_be_bytes(p)
    }

    pub(crate) fn order(&self, other: &Entry) -> std::cmp::Ordering {
        self.prefix()
            .cmp(&other.prefix())
            .then_with(|| self.id.cmp(&other.id))
    }

    pub(crate) fn to_bytes(self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[..32].copy_from_slice(&self.id);
        b[32..36].copy_from_slice(&self.pack.to_le_bytes());
        b[36..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..44].copy_from_slice(&self.length.to_le_bytes());
        b
    }

    /// Decodes one record; `b` must hold at least [`ENTRY_SIZE`] bytes
    /// (shorter input decodes missing bytes as zero, never panics).
    pub(crate) fn from_bytes(b: &[u8]) -> Entry {
        let mut r = [0u8; ENTRY_SIZE];
        let n = b.len().min(ENTRY_SIZE);
        r[..n].copy_from_slice(&b[..n]);
        let u = |at: usize| u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&r[..32]);
        Entry {
            id,
            pack: u(32),
            offset: u(36),
            length: u(40),
        }
    }
}

/// Positioned reads of a file holding tables. The format layer does no
/// I/O itself: the repository layer hands it a file behind this trait.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` from byte `offset` on, or fails.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

/// Bucket starts over the leading `bits` bits of sorted ids.
#[derive(Default, Clone)]
pub(crate) struct Starts {
    bits: u32,
    starts: Vec<u32>,
}

impl Starts {
    /// For a table in memory: about one id per bucket, at most 2^16 buckets.
    pub(crate) fn build(table: &[Entry]) -> Self {
        let bits = (usize::BITS - table.len().leading_zeros()).clamp(1, 16);
        let mut s = Self::counting(bits);
        for e in table {
            s.count(&e.id);
        }
        s.close();
        s
    }

    /// Bits for a file-backed table of `len` entries: about 16 entries (704
    /// bytes, one read) per bucket, at most [`MAX_FILE_BITS`].
    pub(crate) fn file_bits(len: u64) -> u32 {
        (u64::BITS - (len / 16).leading_zeros()).clamp(1, MAX_FILE_BITS)
    }

    /// An empty table to [`Starts::count`] sorted ids into, then [`Starts::close`].
    pub(crate) fn counting(bits: u32) -> Self {
        Starts {
            bits,
            starts: vec![0u32; (1 << bits) + 1],
        }
    }

    pub(crate) fn count(&mut self, id: &[u8; 32]) {
        let b = Self::bucket(id, self.bits) + 1;
        self.starts[b] = self.starts[b].wrapping_add(1);
    }

    /// Turns counts into starts.
    pub(crate) fn close(&mut self) {
        for i in 1..self.starts.len() {
            self.starts[i] = self.starts[i].wrapping_add(self.starts[i - 1]);
        }
    }

    fn bucket(id: &[u8; 32], bits: u32) -> usize {
        (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - bits)) as usize
    }

    /// The part of the table that can hold `id`.
    pub(crate) fn range(&self, id: &[u8; 32]) -> std::ops::Range<usize> {
        if self.starts.is_empty() {
            return 0..0;
        }
        let b = Self::bucket(id, self.bits);
        self.starts[b] as usize..self.starts[b + 1] as usize
    }
}

/// One sorted table of a file.
pub(crate) struct FileTable {
    /// Byte offset of its first entry.
    pub at: u64,
    pub len: u64,
    pub starts: Starts,
}

/// The tables of an index file: data and tree entries sorted by id, and
/// the pack table their pack numbers point into. Only the bucket tables are
/// in memory.
pub struct FileTables {
    pub(crate) src: Arc<dyn ReadAt>,
    pub(crate) data: FileTable,
    pub(crate) tree: FileTable,
    /// Byte offset and count of the pack records.
    pub(crate) packs_at: u64,
    pub(crate) packs: u64,
}

impl FileTables {
    pub(crate) fn table(&self, kind: crate::format::pack::BlobKind) -> &FileTable {
        match kind {
            crate::format::pack::BlobKind::Data => &self.data,
            crate::format::pack::BlobKind::Tree => &self.tree,
        }
    }

    /// The entry for `id`, reading its bucket. A read error is reported as
    /// a warning and counts as absent: a backup then stores the blob again,
    /// a restore names it as missing; nothing is lost.
    pub(crate) fn find(&self, t: &FileTable, id: &[u8; 32]) -> Option<Entry> {
        let r = t.starts.range(id);
        if r.is_empty() || r.end as u64 > t.len {
            return None;
        }
        let mut buf = vec![0u8; r.len() * ENTRY_SIZE];
        let at = t.at + (r.start * ENTRY_SIZE) as u64;
        if let Err(e) = self.src.read_exact_at(&mut buf, at) {
            crate::error::warnings::warn(format!("cannot read the local index file: {e}"));
            return None;
        }
        let rows: Vec<&[u8]> = buf.chunks_exact(ENTRY_SIZE).collect();
        let i = rows.binary_search_by(|r| r[..32].cmp(&id[..])).ok()?;
        Some(Entry::from_bytes(rows[i]))
    }

    /// Pack record `no`: id and size.
    pub(crate) fn pack(&self, no: u32) -> Option<([u8; 32], u64)> {
        if u64::from(no) >= self.packs {
            return None;
        }
        let mut b = [0u8; PACK_SIZE];
        let at = self.packs_at + u64::from(no) * PACK_SIZE as u64;
        if let Err(e) = self.src.read_exact_at(&mut b, at) {
            crate::error::warnings::warn(format!("cannot read the local index file: {e}"));
            return None;
        }
        Some(split_pack(&b))
    }

    /// Reads `count` records of `size` bytes from record `from` of the
    /// section at `at`, in blocks, for iteration in order.
    pub(crate) fn records(
        &self,
        at: u64,
        count: u64,
        size: usize,
    ) -> impl Iterator<Item = Vec<u8>> + '_ {
        const BLOCK: u64 = 2048;
        (0..count.div_ceil(BLOCK)).map_while(move |block| {
            let n = (count - block * BLOCK).min(BLOCK) as usize;
            let mut buf = vec![0u8; n * size];
            match self
                .src
                .read_exact_at(&mut buf, at + block * BLOCK * size as u64)
            {
                Ok(()) => Some(buf),
                Err(e) => {
                    crate::error::warnings::warn(format!("cannot read the local index file: {e}"));
                    None
                }
            }
        })
    }
}

/// A pack record's id and size.
pub(crate) fn split_pack(b: &[u8]) -> ([u8; 32], u64) {
    let mut id = [0u8; 32];
    let mut size = [0u8; 8];
    if b.len() >= PACK_SIZE {
        id.copy_from_slice(&b[..32]);
        size.copy_from_slice(&b[32..40]);
    }
    (id, u64::from_le_bytes(size))
}

/// A pack record's bytes.
pub(crate) fn pack_record(id: &[u8; 32], size: u64) -> [u8; PACK_SIZE] {
    let mut b = [0u8; PACK_SIZE];
    b[..32].copy_from_slice(id);
    b[32..].copy_from_slice(&size.to_le_bytes());
    b
}
