//! Key objects: the master key wrapped under a password.
//!
//! Several key objects may wrap the same master key, one per password.
//! The argon2id parameters and salt are stored with each so they can be
//! raised later without re-encrypting any data.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{
    self, MasterKey,
    kdf::{self, KdfParams},
};

/// Version of the key object layout.
pub const KEY_VERSION: u32 = 1;
/// Associated data binding the wrapped master key.
pub const KEY_AD: &[u8] = b"repo master key v1";
/// Largest key object accepted.
pub const MAX_KEY_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: DateTime<Utc>,
    pub host: String,
    pub user: String,
    pub kdf: String,
    pub params: KdfParams,
    /// 32 random bytes, hex.
    pub salt: String,
    /// `nonce || ciphertext || tag` of the 32-byte master key, hex.
    pub master: String,
}

/// Why a key object could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key object is malformed: {0}")]
    Malformed(String),
    #[error("password does not open this key")]
    WrongPassword,
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub(crate) fn create(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        host: &str,
        user: &str,
    ) -> Result<Self, KeyError> {
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let kek =
            kdf::derive(password, &salt, params).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let sealed = crypto::seal(&kek, KEY_AD, master.as_bytes());
        Ok(KeyFile {
            version: KEY_VERSION,
            created: Utc::now(),
            host: host.into(),
            user: user.into(),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            master: hex::encode(sealed),
        })
    }

    /// Unwraps the master key; runs argon2id once.
    pub fn open(&self, password: &[u8]) -> Result<MasterKey, KeyError> {
        if self.version != KEY_VERSION || self.kdf != "argon2id" {
            return Err(KeyError::Malformed(format!(
                "unknown key version {} / kdf {}",
                self.version, self.kdf
            )));
        }
        let salt =
            hex::decode(&self.salt).map_err(|_| KeyError::Malformed("salt is not hex".into()))?;
        let sealed = hex::decode(&self.master)
            .map_err(|_| KeyError::Malformed("master is not hex".into()))?;
        if salt.len() < 16 || sealed.len() != 32 + crypto::OVERHEAD {
            return Err(KeyError::Malformed(
                "salt or wrapped key has the wrong length".into(),
            ));
        }
        let kek = kdf::derive(password, &salt, self.params)
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let mut plain = zeroize::Zeroizing::new(
            crypto::open(&kek, KEY_AD, &sealed).map_err(|_| KeyError::WrongPassword)?,
        );
        let mut k = [0u8; 32];
        k.copy_from_slice(&plain[..32]);
        zeroize::Zeroize::zeroize(&mut *plain);
        Ok(MasterKey::from_bytes(k))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::Malformed(format!(
                "{} bytes is too large",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let p = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let m = MasterKey::generate();
        let k = KeyFile::create(&m, b"pw", p, "h", "u").unwrap();
        let k2 = KeyFile::decode(&k.encode()).unwrap();
        assert_eq!(k2.open(b"pw").unwrap().as_bytes(), m.as_bytes());
        assert!(matches!(k2.open(b"px"), Err(KeyError::WrongPassword)));
        assert!(KeyFile::decode(b"{").is_err());
    }
}
