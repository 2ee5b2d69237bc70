//! The master key and the sub-keys derived from it.
//!
//! A repository has one random 32-byte master secret. Separate keys for
//! each purpose are derived from it with BLAKE3's key-derivation mode, so
//! that the chunker seed, the blob-id MAC, the AEAD key and the config MAC
//! can never be confused or leak into each other.

use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Context strings for BLAKE3 `derive_key`; part of the format (SPEC.md).
pub const CTX_ENCRYPTION: &str = "repo 2026-11-23 blob and object encryption v1";
pub const CTX_BLOB_ID: &str = "repo 2026-11-23 blob id mac v1";
pub const CTX_CHUNKER: &str = "repo 2026-11-23 chunker gear table v1";
pub const CTX_CONFIG_MAC: &str = "repo 2026-11-23 config mac v1";

/// The random secret every key object wraps.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        MasterKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives every purpose-specific key.
    pub fn subkeys(&self) -> SubKeys {
        SubKeys {
            encryption: blake3::derive_key(CTX_ENCRYPTION, &self.0),
            blob_id: blake3::derive_key(CTX_BLOB_ID, &self.0),
            chunker: blake3::derive_key(CTX_CHUNKER, &self.0),
            config_mac: blake3::derive_key(CTX_CONFIG_MAC, &self.0),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Purpose-specific keys; zeroized when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SubKeys {
    pub encryption: [u8; 32],
    pub blob_id: [u8; 32],
    pub chunker: [u8; 32],
    pub config_mac: [u8; 32],
}

impl std::fmt::Debug for SubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubKeys(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_differ() {
        let k = MasterKey::from_bytes([9u8; 32]).subkeys();
        let all = [k.encryption, k.blob_id, k.chunker, k.config_mac];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        assert!(!format!("{k:?}").contains('9'));
    }
}
