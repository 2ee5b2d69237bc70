//! Compression plus encryption of every stored payload.
//!
//! A payload is first framed as `flag || bytes` (flag 0: raw, 1: zstd) and
//! then sealed with the AEAD. Compression is kept only when it shrinks the
//! data, so incompressible chunks cost one byte, not zstd's framing.
//! Decompression is streamed with a hard output limit so a hostile or
//! damaged frame cannot make us allocate more than the caller allows.

pub mod chunker;

use std::io::Read;

use crate::crypto::{self, AuthError};

/// Frame flag: payload stored as is.
pub const FLAG_RAW: u8 = 0;
/// Frame flag: payload is one zstd frame.
pub const FLAG_ZSTD: u8 = 1;

/// Why a stored payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("empty payload")]
    Empty,
    #[error("unknown compression flag {0}")]
    UnknownFlag(u8),
    #[error("zstd frame is invalid: {0}")]
    Zstd(String),
    #[error("payload decompresses to more than the allowed {0} bytes")]
    TooLarge(usize),
}

/// Frames `data` as `flag || bytes`, compressing with zstd at `level` when that helps.
pub fn compress(data: &[u8], level: i32) -> Vec<u8> {
    if data.len() >= 64
        && let Some(z) = with_compressor(level, |c| c.compress(data).ok())
        && z.len() < data.len()
    {
        let mut out = Vec::with_capacity(z.len() + 1);
        out.push(FLAG_ZSTD);
        out.extend_from_slice(&z);
        return out;
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(FLAG_RAW);
    out.extend_from_slice(data);
    out
}

thread_local! {
    /// One zstd context per thread and level: creating a context per blob
    /// cost 16% of a small-file backup.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Option<T>,
) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        slot.as_mut().and_then(|(_, c)| f(c))
    })
}

/// Frames whose declared size is at most this are decompressed in one call
/// into a buffer of exactly that size; anything else streams, so the output
/// buffer grows only as bytes are actually produced.
const BULK_LIMIT: usize = 16 << 20;

/// Most output one byte of a zstd frame can produce: a block yields at most
/// 128 KiB and needs at least 4 bytes (3 of header, 1 of RLE payload). A
/// frame declaring more than this per byte is lying, and believing its
/// declared size would let a few bytes reserve up to [`BULK_LIMIT`].
const ZSTD_MAX_RATIO: usize = 32 * 1024;

/// Undoes [`compress`], refusing output larger than `limit` bytes.
pub fn decompress(framed: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let (&flag, body) = framed.split_first().ok_or(CodecError::Empty)?;
    match flag {
        FLAG_RAW => {
            if body.len() > limit {
                return Err(CodecError::TooLarge(limit));
            }
            Ok(body.to_vec())
        }
        FLAG_ZSTD if !one_frame(body) => Err(CodecError::Zstd(
            "the body is not exactly one zstd frame (trailing bytes, a second frame or a skippable frame)"
                .into(),
        )),
        FLAG_ZSTD => match zstd::bulk::Decompressor::upper_bound(body) {
            Some(declared) if declared > limit => Err(CodecError::TooLarge(limit)),
            Some(declared) if declared > body.len().saturating_mul(ZSTD_MAX_RATIO) => Err(
                CodecError::Zstd(format!("frame of {} bytes declares {declared}", body.len())),
            ),
            Some(declared) if declared <= BULK_LIMIT => bulk(body, declared),
            _ => stream(body, limit),
        },
        other => Err(CodecError::UnknownFlag(other)),
    }
}

/// The zstd magic number of an ordinary (not skippable) frame, as stored.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether `body` is exactly one ordinary zstd frame (SPEC §5.2): no
/// skippable frame, no second frame, no trailing bytes. zstd itself would
/// accept all three, so two readers could disagree on what a blob holds.
fn one_frame(body: &[u8]) -> bool {
    body.starts_with(&ZSTD_MAGIC)
        && zstd::zstd_safe::find_frame_compressed_size(body) == Ok(body.len())
}

/// Decompresses frames whose total size (`declared`, already checked against
/// the limit) is known and plausible, reusing this thread's context. zstd
/// refuses a frame whose output differs from its declared size.
fn bulk(body: &[u8], declared: usize) -> Result<Vec<u8>, CodecError> {
    let out = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        slot.as_mut().map(|d| d.decompress(body, declared))
    });
    match out {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(CodecError::Zstd(e.to_string())),
        None => Err(CodecError::Zstd("cannot create a zstd context".into())),
    }
}

/// Decompresses frames of unknown or large size into a buffer that grows
/// with the output, stopping one byte past `limit`. `with_buffer` reads the
/// body in place instead of through a 128 KiB copy buffer.
fn stream(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let dec = zstd::stream::read::Decoder::with_buffer(body)
        .map_err(|e| CodecError::Zstd(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len().saturating_mul(2).min(limit));
    dec.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Zstd(e.to_string()))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// Compresses then seals `data` under `key` with associated data `ad`.
pub(crate) fn encode(key: &[u8; 32], ad: &[u8], data: &[u8], level: i32) -> Vec<u8> {
    crypto::seal(key, ad, &compress(data, level))
}

/// Opens and decompresses what [`encode`] made.
pub fn decode(
    key: &[u8; 32],
    ad: &[u8],
    sealed: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut framed = crypto::open(key, ad, sealed)?;
    if framed.first() == Some(&FLAG_RAW) {
        // Incompressible data: drop the flag in place rather than copying
        // the body into a fresh allocation.
        if framed.len() - 1 > limit {
            return Err(CodecError::TooLarge(limit));
        }
        framed.remove(0);
        return Ok(framed);
    }
    decompress(&framed, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compressible_and_random() {
        let text = b"abcabcabc".repeat(1000);
        let f = compress(&text, 3);
        assert_eq!(f[0], FLAG_ZSTD);
        assert!(f.len() < 200);
        assert_eq!(decompress(&f, text.len()).unwrap(), text);
        assert_eq!(
            decompress(&f, text.len() - 1),
            Err(CodecError::TooLarge(text.len() - 1))
        );
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let g = compress(&noise, 3);
        assert_eq!(decompress(&g, noise.len()).unwrap(), noise);
        assert!(g.len() <= noise.len() + 1);
    }

    #[test]
    fn zstd_bomb_is_bounded() {
        let zeros = vec![0u8; 50 << 20];
        let f = compress(&zeros, 3);
        assert!(f.len() < 10_000);
        assert_eq!(decompress(&f, 1 << 20), Err(CodecError::TooLarge(1 << 20)));
        // Truncated frames, whose size cannot be totalled, stream instead.
        assert!(matches!(
            decompress(&f[..10], 16 << 20),
            Err(CodecError::Zstd(_))
        ));
    }

    #[test]
    fn declared_size_is_not_trusted_beyond_what_the_frame_can_hold() {
        // Magic, a single-segment header with a 4-byte content size of
        // 16 MiB, and one last RLE block of 1 byte: 13 bytes that used to
        // reserve 16 MiB before zstd noticed the mismatch.
        let mut f = vec![FLAG_ZSTD, 0x28, 0xb5, 0x2f, 0xfd, 0xa0];
        f.extend_from_slice(&(16u32 << 20).to_le_bytes());
        f.extend_from_slice(&[0x0b, 0x00, 0x00, 0x61]);
        assert!(
            matches!(decompress(&f, 16 << 20), Err(CodecError::Zstd(m)) if m.contains("declares"))
        );
        assert_eq!(decompress(&f, 1 << 20), Err(CodecError::TooLarge(1 << 20)));
        // Truncated frames, whose size cannot be totalled, stream instead.
        assert!(matches!(
            decompress(&f[..10], 16 << 20),
            Err(CodecError::Zstd(_))
        ));
        // A real frame near the ratio limit still decodes.
        let zeros = vec![0u8; 8 << 20];
        let z = compress(&zeros, 19);
        assert!((z.len() - 1) * ZSTD_MAX_RATIO >= zeros.len());
        assert_eq!(decompress(&z, zeros.len()).unwrap(), zeros);
    }

    #[test]
    fn only_exactly_one_ordinary_frame_is_accepted() {
        let text = b"abcabcabc".repeat(100);
        let f = compress(&text, 3);
        assert_eq!(decompress(&f, text.len()).unwrap(), text);
        let one_frame_err = |v: &[u8]| matches!(decompress(v, 1 << 20), Err(CodecError::Zstd(m)) if m.contains("exactly one"));
        // Trailing garbage, a second frame, a skippable frame before or after.
        let mut trailing = f.clone();
        trailing.push(0);
        assert!(one_frame_err(&trailing));
        let mut two = f.clone();
        two.extend_from_slice(&f[1..]);
        assert!(one_frame_err(&two));
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 1, 0, 0, 0, 0x42];
        let mut after = f.clone();
        after.extend_from_slice(&skippable);
        assert!(one_frame_err(&after));
        let mut before = vec![FLAG_ZSTD];
        before.extend_from_slice(&skippable);
        before.extend_from_slice(&f[1..]);
        assert!(one_frame_err(&before));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), level in 1i32..5) {
            let key = [3u8; 32];
            let sealed = encode(&key, b"x", &data, level);
            prop_assert_eq!(decode(&key, b"x", &sealed, data.len()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decompress(&data, 1 << 16);
            let _ = decode(&[0u8; 32], b"", &data, 1 << 16);
        }
    }
}
