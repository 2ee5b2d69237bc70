//! Password -> key-encryption key, with argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
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
pub const MAX_M_COST: u32 = 4 * 1024 * 1024;
pub const MAX_T_COST: u32 = 64;
pub const MAX_P_COST: u32 = 64;

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
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, out.as_mut())
        .map_err(|e| KdfError(e.to_string()))?;
    Ok(out)
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
