//! Content-defined chunking: FastCDC v2020 with a keyed gear table.
//!
//! The published attacks on restic and borg (2025) recover chunker secrets
//! from observed chunk sizes. fastcdc's own `seed` only XORs one 64-bit
//! value into the public table, so instead the whole 256-entry gear table
//! is drawn from a BLAKE3 XOF keyed by a master-key-derived key, and
//! fastcdc's `cut_gear` runs with it. Cut points are therefore a secret
//! function of the content; SPEC.md says what still leaks.

use std::io::Read;
use std::ops::Range;

use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

/// Chunk size bounds, recorded in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// Half of restic's sizes. Measured on the 1 GiB mixed corpus of
    /// bench/compare.sh (three fresh repositories each): growth after the
    /// mutation 13.6-14.0 MiB instead of 14.9-20.2 MiB (an edit rewrites
    /// about one average chunk, and keyed boundaries made the larger size
    /// vary more), peak RSS of the first backup 73-79 MiB instead of
    /// 88-91, restore and `check --read-data` 10-15% faster, the first
    /// backup no slower; the cost is twice the index entries per byte
    /// (44 bytes per blob in memory).
    fn default() -> Self {
        ChunkerParams {
            min: 256 * 1024,
            avg: 512 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds fastcdc accepts, so a hostile config cannot crash us.
    pub(crate) fn validate(&self) -> Result<(), ChunkSizeError> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max)
            && min < avg
            && avg < max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(ChunkSizeError(*self))
        }
    }
}

/// Chunk sizes fastcdc cannot work with: refused up front, so a hostile
/// config cannot crash the chunker.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "chunker sizes min={} avg={} max={} are outside fastcdc's bounds ({}..={}, {}..={}, {}..={}, even, min<avg<max)",
    .0.min, .0.avg, .0.max,
    v2020::MINIMUM_MIN, v2020::MINIMUM_MAX, v2020::AVERAGE_MIN,
    v2020::AVERAGE_MAX, v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX
)]
pub struct ChunkSizeError(pub ChunkerParams);

/// A FastCDC chunker with a secret gear table.
pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    params: ChunkerParams,
    masks: [u64; 4],
}

impl Chunker {
    /// Builds the chunker; `key` is the chunker sub-key of the master key.
    pub fn new(key: &[u8; 32], params: ChunkerParams) -> Result<Self, ChunkSizeError> {
        params.validate()?;
        let mut xof = blake3::Hasher::new_keyed(key).finalize_xof();
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        let mut word = [0u8; 8];
        for i in 0..256 {
            xof.fill(&mut word);
            gear[i] = u64::from_le_bytes(word);
            gear_ls[i] = gear[i] << 1;
        }
        let (mask_s, mask_l) = v2020::select_masks(params.avg as usize, Normalization::Level1);
        Ok(Chunker {
            gear,
            gear_ls,
            params,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
        })
    }

    /// Length of the chunk that starts `data`. `data` must hold at least
    /// `max` bytes unless it is the final part of the stream.
    pub(crate) fn cut(&self, data: &[u8]) -> usize {
        let [ms, ml, msl, mll] = self.masks;
        let (_, n) = v2020::cut_gear(
            data,
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            ms,
            ml,
            msl,
            mll,
            &self.gear[..],
            &self.gear_ls[..],
        );
        n.max(1).min(data.len())
    }

    /// Chunk ranges of an in-memory buffer.
    pub fn chunks<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= data.len() {
                return None;
            }
            let n = self.cut(&data[pos..]);
            let r = pos..pos + n;
            pos += n;
            Some(r)
        })
    }
}

/// A buffer and the ranges of whole chunks in it.
pub(crate) type Batch<'a> = (&'a [u8], Vec<Range<usize>>);

/// Reads a stream and yields its chunks in batches, with memory bounded by
/// two maximum chunk sizes. Plain reads rather than mmap: a file truncated
/// under an mmap kills the process with SIGBUS, and backup sources change
/// while we read. A batch is every whole chunk in the buffer, so callers can
/// seal the chunks of one large file in parallel without copying them.
pub(crate) struct StreamChunker<'c, R> {
    chunker: &'c Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<'c, R: Read> StreamChunker<'c, R> {
    /// Reuses `buf`; `size_hint` (the expected stream length) keeps the
    /// buffer small for small files, which are the common case.
    pub(crate) fn with_buffer(
        chunker: &'c Chunker,
        reader: R,
        mut buf: Vec<u8>,
        size_hint: u64,
    ) -> Self {
        let cap = 2 * chunker.params.max as usize;
        let want = (size_hint.saturating_add(1).min(cap as u64) as usize)
            .max(4096)
            .min(cap);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        StreamChunker {
            chunker,
            reader,
            buf,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Gives the buffer back for reuse.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let cap = 2 * self.chunker.params.max as usize;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while !self.eof {
            if self.end == self.buf.len() {
                if self.buf.len() >= cap {
                    break;
                }
                let grown = (self.buf.len() * 2).clamp(64 * 1024, cap);
                self.buf.resize(grown, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next run of whole chunks: the buffer and the chunks' ranges in
    /// it, or `None` at the end of the stream.
    pub(crate) fn next_batch(&mut self) -> std::io::Result<Option<Batch<'_>>> {
        let max = self.chunker.params.max as usize;
        if self.eof && self.start == self.end {
            return Ok(None);
        }
        if !self.eof {
            self.fill()?;
        }
        let mut ranges = Vec::new();
        let mut pos = self.start;
        while pos < self.end && (self.eof || self.end - pos >= max) {
            let n = self.chunker.cut(&self.buf[pos..self.end]);
            ranges.push(pos..pos + n);
            pos += n;
        }
        self.start = pos;
        if ranges.is_empty() {
            return Ok(None);
        }
        Ok(Some((&self.buf[..], ranges)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 2048,
            avg: 8192,
            max: 65536,
        }
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn stream_matches_slice_and_covers_input() {
        let c = Chunker::new(&[1u8; 32], small()).unwrap();
        let data = noise(1_000_000, 5);
        let ranges: Vec<_> = c.chunks(&data).collect();
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), data.len());
        let mut lens = Vec::new();
        for hint in [0, 1000, u64::MAX] {
            let mut s = StreamChunker::with_buffer(&c, &data[..], Vec::new(), hint);
            lens.clear();
            while let Some((_, ranges)) = s.next_batch().unwrap() {
                lens.extend(ranges.iter().map(|r| r.len()));
            }
            assert_eq!(lens.iter().sum::<usize>(), data.len());
        }
        assert_eq!(lens, ranges.iter().map(|r| r.len()).collect::<Vec<_>>());
        assert!(lens.iter().all(|&l| l <= 65536));
    }

    #[test]
    fn key_changes_boundaries() {
        let data = noise(500_000, 9);
        let a: Vec<_> = Chunker::new(&[1u8; 32], small())
            .unwrap()
            .chunks(&data)
            .collect();
        let b: Vec<_> = Chunker::new(&[2u8; 32], small())
            .unwrap()
            .chunks(&data)
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn insert_in_middle_only_touches_nearby_chunks() {
        let c = Chunker::new(&[1u8; 32], small()).unwrap();
        let data = noise(2_000_000, 11);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"INSERTED BYTES".iter().copied());
        let set = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            c.chunks(d).map(|r| d[r].to_vec()).collect()
        };
        let (a, b) = (set(&data), set(&edited));
        let new = b.difference(&a).count();
        assert!(new <= 3, "{new} new chunks");
        assert!(a.len() > 100);
    }

    #[test]
    fn bad_params_rejected() {
        let bad = ChunkerParams {
            min: 10,
            avg: 5,
            max: 3,
        };
        assert!(Chunker::new(&[0u8; 32], bad).is_err());
    }
}
