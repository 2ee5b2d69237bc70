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

/// The format version this build writes for a repository without object lock.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of a repository with object lock: version 1 plus the
/// `object_lock_days` field. Older readers ignore unknown fields, so they
/// would write unlocked objects and delete locked ones as if nothing were
/// asked; the version makes them refuse the repository instead.
pub const OBJECT_LOCK_VERSION: u32 = 2;
/// Longest object lock `init` accepts (ten years).
pub const MAX_OBJECT_LOCK_DAYS: u32 = 3650;

/// Whether this build reads configs of format `version`.
pub fn supported_version(version: u64) -> bool {
    version == u64::from(FORMAT_VERSION) || version == u64::from(OBJECT_LOCK_VERSION)
}
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
    /// S3 object lock: every object but lock files is written locked
    /// (COMPLIANCE) for this many days; present exactly in version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_days: Option<u32>,
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
            object_lock_days: None,
        }
    }

    /// Asks for objects locked for `days` (1 to [`MAX_OBJECT_LOCK_DAYS`]),
    /// which makes this a version-2 config.
    pub fn with_object_lock(mut self, days: u32) -> Self {
        self.object_lock_days = Some(days);
        self.version = OBJECT_LOCK_VERSION;
        self
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
        if !supported_version(version) {
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
        let lock_ok = match config.object_lock_days {
            None => config.version == FORMAT_VERSION,
            Some(d) => {
                config.version == OBJECT_LOCK_VERSION && (1..=MAX_OBJECT_LOCK_DAYS).contains(&d)
            }
        };
        if !lock_ok {
            return Err(FormatError::Invalid(format!(
                "config version {} does not match its object_lock_days ({:?}): version 2 and \
                 1 to {MAX_OBJECT_LOCK_DAYS} days go together, version 1 has none",
                config.version, config.object_lock_days
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
            .replace("\"version\":1", "\"version\":3");
        assert!(matches!(
            StoredConfig::parse(v2.as_bytes()),
            Err(FormatError::UnknownVersion { found: 3, .. })
        ));
        assert_eq!(StoredConfig::peek_version(v2.as_bytes()), Some(3));
        let mut huge = v2.into_bytes();
        huge.resize(MAX_CONFIG_LEN + 1, b'\n');
        assert_eq!(StoredConfig::peek_version(&huge), None);
        assert!(matches!(
            StoredConfig::parse(&huge),
            Err(FormatError::TooLarge { .. })
        ));
    }

    /// Object lock and version 2 go together: a reader that does not know
    /// the field refuses the version, and this one refuses a mismatch.
    #[test]
    fn object_lock_is_version_two() {
        let c = Config::new(RepoId([4; 32]), ChunkerParams::default()).with_object_lock(7);
        let sealed = String::from_utf8(StoredConfig::seal(&c, &[1; 32])).unwrap();
        assert!(sealed.starts_with("{\"version\":2,"));
        assert!(sealed.contains(",\"object_lock_days\":7}"));
        assert_eq!(StoredConfig::parse(sealed.as_bytes()).unwrap().config, c);
        let plain = Config::new(RepoId([4; 32]), ChunkerParams::default());
        let plain = String::from_utf8(StoredConfig::seal(&plain, &[1; 32])).unwrap();
        assert!(!plain.contains("object_lock"));
        let bad = [
            sealed.replace("\"version\":2", "\"version\":1"),
            plain.replace("\"version\":1", "\"version\":2"),
            sealed.replace("\"object_lock_days\":7", "\"object_lock_days\":0"),
            sealed.replace("\"object_lock_days\":7", "\"object_lock_days\":3651"),
        ];
        for b in bad {
            assert!(
                matches!(
                    StoredConfig::parse(b.as_bytes()),
                    Err(FormatError::Invalid(_))
                ),
                "{b}"
            );
        }
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
