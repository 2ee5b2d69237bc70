//! The repository config: the one object stored in plaintext.
//!
//! It must be readable before the password is known (to refuse unknown
//! versions early) yet tamper-evident, so it is a single line of JSON
//! followed by a line holding a keyed BLAKE3 MAC of exactly those bytes.
//! The MAC is checked as soon as a key has opened the master key.

use crate::format::error::FormatError;
use serde::{Deserialize, Serialize};

use crate::codec::chunker::ChunkerParams;
use crate::id::RepoId;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest config object accepted.
pub const MAX_CONFIG_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: RepoId,
    pub chunker: String,
    pub chunk_sizes: ChunkerParams,
    pub blob_id: String,
    pub cipher: String,
    pub compression: String,
    pub compression_level: i32,
    /// Target size of packs in bytes.
    pub pack_size: u32,
}

/// The pack size writers aim for unless `init --pack-size` says otherwise.
pub(crate) const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
/// The pack sizes a config may name.
pub(crate) const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1024 * 1024..=1024 * 1024 * 1024;

impl Config {
    pub fn new(id: RepoId, chunk_sizes: ChunkerParams) -> Self {
        Config {
            version: FORMAT_VERSION,
            id,
            chunker: "fastcdc-v2020-keyed-gear".into(),
            chunk_sizes,
            blob_id: "blake3-keyed".into(),
            cipher: "xchacha20-poly1305".into(),
            compression: "zstd".into(),
            compression_level: 3,
            pack_size: DEFAULT_PACK_SIZE,
        }
    }
}

/// A config as stored: its JSON line, parsed, and its MAC.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub body: Vec<u8>,
    pub config: Config,
    pub mac: [u8; 32],
}

impl StoredConfig {
    /// Serializes and MACs a config.
    pub fn seal(config: &Config, mac_key: &[u8; 32]) -> Vec<u8> {
        let body = serde_json::to_vec(config).unwrap_or_default();
        let mac = blake3::keyed_hash(mac_key, &body);
        let mut out = body;
        out.push(b'\n');
        out.extend_from_slice(mac.to_hex().as_bytes());
        out.push(b'\n');
        out
    }

    /// Parses without verifying the MAC (the key is not known yet).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(FormatError::TooLarge {
                what: "config",
                len: bytes.len(),
                max: MAX_CONFIG_LEN,
            });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| FormatError::Invalid("config is not UTF-8".into()))?;
        let mut lines = text.split('\n');
        let (body, mac, rest) = (lines.next(), lines.next(), lines.collect::<Vec<_>>());
        let (Some(body), Some(mac)) = (body, mac) else {
            return Err(FormatError::Invalid(
                "config must be a JSON line and a MAC line".into(),
            ));
        };
        if rest.iter().any(|l| !l.is_empty()) {
            return Err(FormatError::Invalid("config has trailing data".into()));
        }
        let mut m = [0u8; 32];
        hex::decode_to_slice(mac, &mut m)
            .map_err(|_| FormatError::Invalid("config MAC line is not 64 hex digits".into()))?;
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| FormatError::Invalid(format!("config is not JSON: {e}")))?;
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != FORMAT_VERSION as u64 {
            return Err(FormatError::UnknownVersion {
                what: "format",
                found: version,
            });
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| FormatError::Invalid(format!("config is invalid: {e}")))?;
        config
            .chunk_sizes
            .validate()
            .map_err(|e| FormatError::Invalid(e.to_string()))?;
        let expected = Config::new(config.id, config.chunk_sizes);
        if (
            &config.chunker,
            &config.blob_id,
            &config.cipher,
            &config.compression,
        ) != (
            &expected.chunker,
            &expected.blob_id,
            &expected.cipher,
            &expected.compression,
        ) {
            return Err(FormatError::Invalid(format!(
                "config names algorithms this build does not know ({}, {}, {}, {})",
                config.chunker, config.blob_id, config.cipher, config.compression
            )));
        }
        if !(1..=22).contains(&config.compression_level)
            || !PACK_SIZE_RANGE.contains(&config.pack_size)
        {
            return Err(FormatError::Invalid(
                "config has out-of-range compression level or pack size".into(),
            ));
        }
        Ok(StoredConfig {
            body: body.as_bytes().to_vec(),
            config,
            mac: m,
        })
    }

    /// Checks the MAC with the config key derived from the master key.
    pub fn verify(&self, mac_key: &[u8; 32]) -> bool {
        let expect = blake3::keyed_hash(mac_key, &self.body);
        expect == blake3::Hash::from_bytes(self.mac)
    }

    /// Reads only the version field, for a clear message on unknown versions.
    /// Oversized objects get `None`, leaving [`StoredConfig::parse`] to refuse
    /// them before anything is built from their bytes.
    pub fn peek_version(bytes: &[u8]) -> Option<u64> {
        if bytes.len() > MAX_CONFIG_LEN {
            return None;
        }
        let line = bytes.split(|&b| b == b'\n').next()?;
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        v.get("version")?.as_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seal_parse_verify_and_tamper() {
        let c = Config::new(RepoId([4; 32]), ChunkerParams::default());
        let bytes = StoredConfig::seal(&c, &[1; 32]);
        let s = StoredConfig::parse(&bytes).unwrap();
        assert_eq!(s.config, c);
        assert!(s.verify(&[1; 32]));
        assert!(!s.verify(&[2; 32]));
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"compression_level\":3", "\"compression_level\":4");
        let t = StoredConfig::parse(tampered.as_bytes()).unwrap();
        assert!(!t.verify(&[1; 32]));
        let v2 = String::from_utf8(StoredConfig::seal(&c, &[1; 32]))
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            StoredConfig::parse(v2.as_bytes()),
            Err(FormatError::UnknownVersion { found: 2, .. })
        ));
        assert_eq!(StoredConfig::peek_version(v2.as_bytes()), Some(2));
        let mut huge = v2.into_bytes();
        huge.resize(MAX_CONFIG_LEN + 1, b'\n');
        assert_eq!(StoredConfig::peek_version(&huge), None);
        assert!(matches!(
            StoredConfig::parse(&huge),
            Err(FormatError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = StoredConfig::parse(&data);
            let _ = StoredConfig::peek_version(&data);
        }
    }

    /// The messages a damaged config gives are part of the CLI's output
    /// (`config is damaged: <this>`): kept word for word.
    #[test]
    fn damaged_config_messages_are_stable() {
        let say = |b: &[u8]| StoredConfig::parse(b).err().map(|e| e.to_string());
        assert_eq!(say(b"\xff\n00").as_deref(), Some("config is not UTF-8"));
        assert_eq!(
            say(b"{}").as_deref(),
            Some("config must be a JSON line and a MAC line")
        );
        let mac = "0".repeat(64);
        assert!(
            say(format!("[\n{mac}").as_bytes())
                .is_some_and(|m| m.starts_with("config is not JSON: "))
        );
        assert!(
            say(format!("{{\"version\":1}}\n{mac}").as_bytes())
                .is_some_and(|m| m.starts_with("config is invalid: "))
        );
    }
}
