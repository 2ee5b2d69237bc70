//! Sequences decoded without trusting their length prefix.
//!
//! A derived `Vec<T>` reserves room for as many elements as the format's
//! size hint announces (serde caps this at 1 MiB). postcard announces a
//! sequence's length prefix whenever it is no larger than the remaining
//! input *in bytes*, so one prefix byte per input byte could reserve
//! `size_of::<T>()` bytes, and nested vectors multiply that: a 1 KB tree
//! blob could reserve hundreds of KB before failing to decode. [`vec`]
//! reserves at most [`MAX_PREALLOC`] bytes up front and otherwise grows
//! only as elements actually decode, so what a stored object makes us
//! allocate is bounded by what it holds, not by what it claims to hold.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

/// Most bytes reserved from a size hint before any element is decoded.
pub(crate) const MAX_PREALLOC: usize = 4096;

/// For `#[serde(deserialize_with = "crate::format::bounded::vec")]` on `Vec<T>`
/// fields of formats read from storage. The wire format is unchanged.
pub(crate) fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Seq<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Seq<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let cap = MAX_PREALLOC / std::mem::size_of::<T>().max(1);
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(cap));
            while let Some(x) = seq.next_element()? {
                out.push(x);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(Seq(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error, SeqDeserializer};

    /// Yields `n` items but claims a far larger length, like a hostile prefix.
    struct Lying(std::ops::Range<u64>);

    impl Iterator for Lying {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (1 << 30, Some(1 << 30))
        }
    }

    #[test]
    fn size_hint_reserves_at_most_max_prealloc() {
        let d = SeqDeserializer::<_, Error>::new(Lying(0..3));
        let v: Vec<u64> = vec(d).unwrap();
        assert_eq!(v, [0, 1, 2]);
        assert!(v.capacity() * 8 <= MAX_PREALLOC, "{}", v.capacity());
        // What a derived Vec would have reserved from the same claim.
        let d = SeqDeserializer::<_, Error>::new(Lying(0..3));
        let derived: Vec<u64> = Deserialize::deserialize(d).unwrap();
        assert!(derived.capacity() * 8 > MAX_PREALLOC);
    }

    #[test]
    fn postcard_wire_format_is_unchanged() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(deserialize_with = "vec")]
            a: Vec<u8>,
            #[serde(deserialize_with = "vec")]
            b: Vec<(u32, String)>,
        }
        let s = S {
            a: b"name".to_vec(),
            b: (0..100).map(|i| (i, i.to_string())).collect(),
        };
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<S>(&bytes).unwrap(), s);
        let c = postcard::from_bytes::<S>(&bytes).unwrap();
        assert_eq!(c.b.capacity(), 100, "a truthful hint is still used");
    }
}
