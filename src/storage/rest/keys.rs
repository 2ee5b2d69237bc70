//! Our storage keys (SPEC.md §1.1) in the REST protocol's paths, and back.
//!
//! The protocol knows `config` and flat directories of named objects; the
//! server shards `data/` itself, so `data/<xx>/<id>` is `data/<id>` there.
//! A key of any other shape cannot be expressed: it is never sent.

use serde::Deserialize;

/// The object directories of the protocol, in listing order.
pub(super) const TYPES: [&str; 5] = ["data", "keys", "locks", "snapshots", "index"];

/// Largest listing body read: ~90 bytes an entry, so about 1.4 million
/// objects (a 20 TB repository of 16 MiB packs). Why a bound: a hostile or
/// broken server could otherwise send gigabytes to be parsed in memory.
pub(super) const MAX_LISTING: usize = 128 << 20;

/// Longest object name accepted from a listing.
const MAX_NAME: usize = 255;

/// The REST path (relative to the repository URL) of `key`, or `None` if the
/// protocol cannot express it.
pub(super) fn rest_path(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["config"] => Some("config".into()),
        ["data", shard, name]
            if valid_name(name) && shard.len() == 2 && name.starts_with(shard) =>
        {
            Some(format!("data/{name}"))
        }
        [kind, name] if *kind != "data" && TYPES.contains(kind) && valid_name(name) => {
            Some(format!("{kind}/{name}"))
        }
        _ => None,
    }
}

/// Our key for object `name` listed under `kind`, or `None` for a name we
/// never write (too short to shard, or path-like).
pub(super) fn our_key(kind: &str, name: &str) -> Option<String> {
    if !valid_name(name) {
        return None;
    }
    match kind {
        "data" => name
            .get(..2)
            .filter(|_| name.len() > 2)
            .map(|shard| format!("data/{shard}/{name}")),
        _ => Some(format!("{kind}/{name}")),
    }
}

/// A name that is one plain path component: never `..`, a slash or
/// anything a server or path parser could read as more.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Which protocol directories hold keys below `prefix` (a listing prefix
/// such as `data`, `data/ab`, `locks` or empty for everything).
pub(super) fn types_below(prefix: &str) -> Vec<&'static str> {
    let first = prefix.split('/').next().unwrap_or("");
    TYPES
        .iter()
        .copied()
        .filter(|t| first.is_empty() || *t == first)
        .collect()
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    size: u64,
}

/// Parses a v2 listing (`[{"name":…,"size":…}]`) of directory `kind` into
/// our keys and sizes; names we never write are left out.
pub(super) fn parse_listing(
    kind: &str,
    body: &[u8],
) -> std::result::Result<Vec<(String, u64)>, String> {
    let entries: Vec<Entry> = serde_json::from_slice(body).map_err(|e| {
        format!("the server's listing of {kind}/ is not a REST v2 listing ({e}); is it a restic REST server (protocol v2)?")
    })?;
    Ok(entries
        .into_iter()
        .filter_map(|e| our_key(kind, &e.name).map(|k| (k, e.size)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_both_ways() {
        let id = "ab".to_string() + &"0".repeat(62);
        assert_eq!(rest_path("config").as_deref(), Some("config"));
        assert_eq!(
            rest_path(&format!("data/ab/{id}")),
            Some(format!("data/{id}"))
        );
        assert_eq!(our_key("data", &id), Some(format!("data/ab/{id}")));
        for kind in ["keys", "index", "snapshots", "locks"] {
            let key = format!("{kind}/{id}");
            assert_eq!(rest_path(&key), Some(key.clone()));
            assert_eq!(our_key(kind, &id), Some(key));
        }
        for unexpressible in [
            "locks/exclusive/holder",
            "data/cd/abcd",
            format!("data/{id}").as_str(),
            "keys/../config",
            "keys/.hidden",
            "other/x",
            "",
            "config/x",
        ] {
            assert_eq!(rest_path(unexpressible), None, "{unexpressible}");
        }
        assert_eq!(our_key("data", "a"), None);
        assert_eq!(our_key("keys", ".."), None);
        assert_eq!(our_key("keys", "a/b"), None);
    }

    #[test]
    fn listing_prefixes_pick_directories() {
        assert_eq!(types_below("data/ab"), vec!["data"]);
        assert_eq!(types_below("locks"), vec!["locks"]);
        assert_eq!(types_below("").len(), 5);
        assert!(types_below("config").is_empty());
    }

    #[test]
    fn parses_v2_listings_and_refuses_others() {
        let l = parse_listing(
            "data",
            br#"[{"name":"abcdef","size":7},{"name":"../x","size":1},{"name":"a","size":1}]"#,
        )
        .unwrap();
        assert_eq!(l, vec![("data/ab/abcdef".to_string(), 7)]);
        assert!(
            parse_listing("keys", br#"["abc"]"#)
                .unwrap_err()
                .contains("v2")
        );
        assert!(parse_listing("keys", b"<html>").is_err());
        assert!(parse_listing("keys", br#"[{"name":"a","size":-1}]"#).is_err());
    }
}
