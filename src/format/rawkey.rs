//! Raw key files: the repository's master key kept on the client, without
//! a password.
//!
//! Why: a scheduled backup keeps its password in a file anyway, so the
//! argon2id run that unwraps the key object on every start (about 50 ms of
//! two cores here, most of an unchanged re-backup) protects nothing that
//! the file's permissions do not already protect. The key objects in the
//! repository stay password-wrapped, so a leaked bucket is still guarded by
//! the KDF. This is the model of bupstash's key files and borg's key files
//! without a passphrase. Format: SPEC.md §16.

use crate::format::error::FormatError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::crypto::MasterKey;
use crate::id::{KeyId, RepoId};

/// The `kind` every raw key file carries, so a wrong file is named as such.
pub(crate) const RAW_KEY_KIND: &str = "repo raw master key";
/// Version of the raw key file layout.
pub(crate) const RAW_KEY_VERSION: u32 = 1;
/// Largest raw key file accepted (a real one is about 400 bytes).
pub const MAX_RAW_KEY_LEN: usize = 4096;

/// The JSON document of a raw key file.
#[derive(Serialize, Deserialize)]
pub struct RawKey {
    pub kind: String,
    pub version: u32,
    /// Config id of the repository the key opens.
    pub repository: RepoId,
    /// The key object it was exported through; `repo key list` marks it
    /// as the one in use.
    pub key: KeyId,
    pub created: DateTime<Utc>,
    /// The 32-byte master key, hex.
    pub master_key: String,
}

impl Drop for RawKey {
    fn drop(&mut self) {
        self.master_key.zeroize();
    }
}

impl RawKey {
    pub(crate) fn new(master: &MasterKey, repository: RepoId, key: KeyId) -> Self {
        RawKey {
            kind: RAW_KEY_KIND.into(),
            version: RAW_KEY_VERSION,
            repository,
            key,
            created: Utc::now(),
            master_key: hex::encode(master.as_bytes()),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses and checks a raw key file; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<(RawKey, MasterKey), FormatError> {
        if bytes.len() > MAX_RAW_KEY_LEN {
            return Err(FormatError::Invalid(format!(
                "it holds more than {MAX_RAW_KEY_LEN} bytes; a raw key file is about 400"
            )));
        }
        let raw: RawKey =
            serde_json::from_slice(bytes).map_err(|e| FormatError::syntax("a raw key file", e))?;
        if raw.kind != RAW_KEY_KIND {
            return Err(FormatError::Invalid(format!(
                "its kind is {:?}, not {RAW_KEY_KIND:?}",
                raw.kind
            )));
        }
        if raw.version != RAW_KEY_VERSION {
            return Err(FormatError::UnknownVersion {
                what: "raw key file",
                found: raw.version.into(),
            });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&raw.master_key, &mut bytes)
            .map_err(|_| FormatError::Invalid("its master_key is not 64 hex digits".into()))?;
        let master = MasterKey::from_bytes(bytes);
        bytes.zeroize();
        Ok((raw, master))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = MasterKey::from_bytes([7u8; 32]);
        let raw = RawKey::new(&m, RepoId([1; 32]), KeyId([2; 32]));
        let (back, m2) = RawKey::decode(&raw.encode()).unwrap();
        assert_eq!(m2.as_bytes(), m.as_bytes());
        assert_eq!(back.repository, RepoId([1; 32]));
        assert_eq!(back.key, KeyId([2; 32]));

        let text = String::from_utf8(raw.encode()).unwrap();
        for (from, to, want) in [
            (RAW_KEY_KIND, "something else", "kind"),
            ("\"version\": 1", "\"version\": 9", "version 9"),
            (&raw.master_key[..4], "zzzz", "hex"),
        ] {
            let bad = text.replacen(from, to, 1);
            let err = RawKey::decode(bad.as_bytes()).err().unwrap();
            assert!(err.to_string().contains(want), "{err}");
        }
        assert!(RawKey::decode(b"{}").is_err());
        assert!(RawKey::decode(&vec![b' '; MAX_RAW_KEY_LEN + 1]).is_err());
    }
}
