//! Typed 32-byte identifiers.
//!
//! Every object in a repository is named by 32 bytes, but mixing up a pack id
//! with a blob id is a classic source of silent corruption, so each kind gets
//! its own type from one macro. In JSON they are lowercase hex; in postcard
//! they are the raw 32 bytes.

use std::fmt;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Full lowercase hex form (64 characters), as used in storage keys.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The 8-character prefix shown to users.
            pub(crate) fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parses exactly 64 hex characters.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::from_hex(&s).ok_or_else(|| {
                        serde::de::Error::custom(format!("invalid id {s:?}: want 64 hex digits"))
                    })
                } else {
                    Ok(Self(<[u8; 32]>::deserialize(d)?))
                }
            }
        }
    };
}

define_id!(
    /// Keyed BLAKE3 MAC of a blob's plaintext: the dedup key.
    BlobId
);
define_id!(
    /// Plain BLAKE3 of a pack's stored bytes.
    PackId
);
define_id!(
    /// Plain BLAKE3 of an index object's stored bytes.
    IndexId
);
define_id!(
    /// Plain BLAKE3 of a snapshot object's stored bytes.
    SnapshotId
);
define_id!(
    /// Plain BLAKE3 of a key object's stored bytes.
    KeyId
);
define_id!(
    /// Plain BLAKE3 of a lock object's stored bytes.
    LockId
);
define_id!(
    /// Random identity of a repository, chosen at `init`.
    RepoId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_json() {
        let id = BlobId([7u8; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.short(), "07070707");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
        assert!(BlobId::from_hex("zz").is_none());
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<BlobId>(&bin).unwrap(), id);
    }
}
