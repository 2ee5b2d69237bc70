//! Password -> key-encryption key, with argon2id.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// argon2id cost parameters, stored in each key object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes),
    /// stronger than OWASP's current minimum for argon2id (19 MiB, 2 passes).
    fn default() -> Self {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

/// Upper bounds a key object may ask for, so a hostile key file cannot
/// make us allocate unbounded memory or spin for hours.
pub(crate) const MAX_M_COST: u32 = 4 * 1024 * 1024;
pub(crate) const MAX_T_COST: u32 = 64;
pub(crate) const MAX_P_COST: u32 = 64;

/// Why a KDF could not run.
#[derive(Debug, thiserror::Error)]
#[error("argon2id parameters rejected: {0}")]
pub struct KdfError(String);

/// Derives the 32-byte key-encryption key from a password and salt.
pub fn derive(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    if params.m_cost > MAX_M_COST || params.t_cost > MAX_T_COST || params.p_cost > MAX_P_COST {
        return Err(KdfError(format!(
            "{params:?} exceeds the limits m<={MAX_M_COST} t<={MAX_T_COST} p<={MAX_P_COST}"
        )));
    }
    let p = Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| KdfError(e.to_string()))?;
    let blocks = p.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    let done = match HugeBlocks::new(blocks) {
        Some(mut mem) => {
            argon.hash_password_into_with_memory(password, salt, out.as_mut(), mem.blocks())
        }
        None => argon.hash_password_into(password, salt, out.as_mut()),
    };
    done.map_err(|e| KdfError(e.to_string()))?;
    Ok(out)
}

/// argon2's working memory, asked for in transparent huge pages.
///
/// Why: 64 MiB in 4 KiB pages costs 16,384 page faults, and argon2's random
/// block reads miss the TLB; with 2 MiB pages the unlock every command pays
/// took about half the time here (~55 ms instead of ~100 ms, 2 cores). The
/// memory is an anonymous mapping: zero when mapped, returned to the kernel
/// (never to the heap, where it could be handed out again) when dropped.
struct HugeBlocks {
    map: memmap2::MmapMut,
    /// First byte on a huge-page boundary.
    start: usize,
    len: usize,
}

const HUGE_PAGE: usize = 2 << 20;

impl HugeBlocks {
    /// `None` when the mapping cannot be made; the caller then lets argon2
    /// allocate on the heap. The hint itself may be ignored by the kernel.
    fn new(len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<Block>())?;
        let map = memmap2::MmapMut::map_anon(bytes.checked_add(HUGE_PAGE)?).ok()?;
        let start = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Some(HugeBlocks { map, start, len })
    }

    #[allow(unsafe_code)]
    fn blocks(&mut self) -> &mut [Block] {
        let bytes = &mut self.map[self.start..self.start + self.len * std::mem::size_of::<Block>()];
        debug_assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<Block>(), 0);
        // SAFETY: the range lies inside the mapping (HUGE_PAGE spare bytes
        // cover `start`), starts on a 2 MiB boundary (so it meets Block's
        // 64-byte alignment), holds exactly `len` blocks, and a Block is plain
        // u64s for which every bit pattern, including the mapping's zeros, is
        // valid. The borrow of `self` keeps the mapping alive and unaliased.
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<Block>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let p = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let a = derive(b"pw", b"saltsaltsaltsalt", p).unwrap();
        let b = derive(b"pw", b"saltsaltsaltsalt", p).unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *derive(b"px", b"saltsaltsaltsalt", p).unwrap());
        let huge = KdfParams {
            m_cost: u32::MAX,
            ..p
        };
        assert!(derive(b"pw", b"saltsaltsaltsalt", huge).is_err());
    }
}
