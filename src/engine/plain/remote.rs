//! A plain tree on S3 or an FTP server.
//!
//! Object stores keep files only: directories are implied by names, and
//! neither symlinks nor modes nor settable mtimes exist. So the manifest
//! carries the source's mtime and mode, and each entry remembers the
//! store's own last-modified time (`stored_ms`): while that and the size
//! are unchanged, the recorded mtime stands for the object's.

use std::io::Read;

use crate::error::{Error, Result};
use crate::format::manifest::{Entries, Entry, EntryKind, Seen};
use crate::local::filter::Excludes;
use crate::storage::Storage;

use crate::local::control::{self, CONTROL, State};

/// Bytes fetched per range request when reading a large object.
const PIECE: u64 = 8 << 20;

fn key(rel: &[u8]) -> Result<String> {
    String::from_utf8(rel.to_vec()).map_err(|_| {
        Error::Usage(format!(
            "{}: names that are not UTF-8 cannot be stored on S3 or FTP; rename the file",
            String::from_utf8_lossy(rel)
        ))
    })
}

/// Lists the files, taking mtime and mode from `base` where the object is
/// unchanged since it was recorded.
pub(crate) fn scan(
    store: &Storage,
    base: Option<&Entries>,
    filter: Option<&Excludes>,
) -> Result<Entries> {
    let mut out = Entries::new();
    for f in store.list_files("")? {
        let rel = f.name.as_bytes().to_vec();
        if rel.split(|&c| c == b'/').next() == Some(CONTROL.as_bytes()) {
            continue;
        }
        let shown = std::path::Path::new("/").join(&f.name);
        if filter.is_some_and(|x| x.covers(&shown, std::path::Path::new("/"))) {
            continue;
        }
        let recorded = base
            .and_then(|b| b.get(&rel))
            .filter(|r| r.seen.stored_ms == Some(f.modified_ms) && r.size == f.size);
        let entry = match recorded {
            Some(r) => Entry {
                seen: Seen {
                    stored_ms: Some(f.modified_ms),
                    ..Seen::default()
                },
                ..r.clone()
            },
            None => Entry {
                kind: EntryKind::File,
                size: f.size,
                mtime_ns: f.modified_ms.saturating_mul(1_000_000),
                mode: 0o644,
                blake3: None,
                target: None,
                seen: Seen {
                    stored_ms: Some(f.modified_ms),
                    ..Seen::default()
                },
                chunks: None,
            },
        };
        out.insert(rel, entry);
    }
    Ok(out)
}

/// Reads an object in pieces, so a large file never sits in memory whole.
pub(crate) struct Reader<'a> {
    store: &'a Storage,
    key: String,
    size: u64,
    at: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.at >= self.size {
                return Ok(0);
            }
            let n = PIECE.min(self.size - self.at);
            self.buf = self
                .store
                .get_range(&self.key, self.at, n)
                .map_err(std::io::Error::other)?;
            self.at += n;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(crate) fn reader<'a>(store: &'a Storage, rel: &[u8], size: u64) -> Result<Reader<'a>> {
    Ok(Reader {
        store,
        key: key(rel)?,
        size,
        at: 0,
        buf: Vec::new(),
        pos: 0,
    })
}

pub(crate) fn hash(store: &Storage, rel: &[u8], size: u64) -> Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_reader(reader(store, rel, size)?)
        .map_err(|e| Error::Storage {
            op: "read",
            key: String::from_utf8_lossy(rel).into_owned(),
            message: e.to_string(),
        })?;
    Ok(*h.finalize().as_bytes())
}

/// Uploads `reader`'s bytes as `rel` and returns the entry as recorded.
pub(crate) fn write_file(
    store: &Storage,
    rel: &[u8],
    reader: &mut dyn Read,
    e: &Entry,
) -> Result<Entry> {
    let k = key(rel)?;
    let mut parts = Vec::new();
    let mut h = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let mut part = Vec::with_capacity(PIECE as usize);
        let n = reader
            .take(PIECE)
            .read_to_end(&mut part)
            .map_err(|err| Error::io("read source for", &k, err))?;
        if n == 0 {
            break;
        }
        h.update(&part);
        total += n as u64;
        parts.push(part);
    }
    if total != e.size {
        return Err(Error::io(
            "copy",
            &k,
            std::io::Error::other(format!(
                "the source changed while it was copied ({total} bytes read, {} expected); run again",
                e.size
            )),
        ));
    }
    store.put_parts(&k, parts)?;
    let stored = store.stat(&k)?.ok_or_else(|| Error::NotFound {
        what: format!("{k} right after uploading it"),
        hint: "; the server lost the file, run again".into(),
    })?;
    Ok(Entry {
        blake3: Some(*h.finalize().as_bytes()),
        target: None,
        kind: EntryKind::File,
        seen: Seen {
            stored_ms: Some(stored.modified_ms),
            ..Seen::default()
        },
        chunks: None,
        ..e.clone()
    })
}

/// Moves `rel` into `.repo/<bin>/<stamp>/` (or deletes it when `bin` is `None`).
pub(crate) fn remove(store: &Storage, rel: &[u8], bin: Option<(&str, &str)>) -> Result<bool> {
    let k = key(rel)?;
    if store.stat(&k)?.is_none() {
        return Ok(false);
    }
    match bin {
        Some((bin, stamp)) => store.rename(&k, &format!("{CONTROL}/{bin}/{stamp}/{k}"))?,
        None => store.delete(&k)?,
    }
    Ok(true)
}

pub(crate) fn read_control(store: &Storage, name: &str) -> Result<Option<Vec<u8>>> {
    let k = format!("{CONTROL}/{name}");
    match store.stat(&k)? {
        None => Ok(None),
        Some(_) => store.get(&k).map(Some),
    }
}

pub(crate) fn write_control(store: &Storage, name: &str, bytes: &[u8]) -> Result<()> {
    store.put(&format!("{CONTROL}/{name}"), bytes.to_vec())
}

/// The first bytes of `key`, or `None` when there is no such object.
fn head(store: &Storage, key: &str) -> Result<Option<Vec<u8>>> {
    match store.stat(key)? {
        None => Ok(None),
        Some(f) if f.size == 0 => Ok(Some(Vec::new())),
        Some(f) => store
            .get_range(key, 0, f.size.min(control::HEAD as u64))
            .map(Some),
    }
}

/// Whether the store's `.repo/` objects are ours, somebody else's, or absent.
pub(crate) fn control_state(store: &Storage) -> Result<State> {
    let marker = format!("{CONTROL}/{}", control::MARKER);
    let manifest = format!("{CONTROL}/{}", control::MANIFEST);
    if head(store, &marker)?.is_some_and(|b| control::is_marker(&b))
        || head(store, &manifest)?.is_some_and(|b| control::is_manifest_head(&b))
    {
        return Ok(State::Ours);
    }
    if store.stat(CONTROL)?.is_some() || !store.list_files(CONTROL)?.is_empty() {
        return Ok(State::Foreign);
    }
    Ok(State::Absent)
}

pub(crate) fn check_control(store: &Storage) -> Result<()> {
    match control_state(store)? {
        State::Foreign => Err(control::foreign_error(&format!(
            "{}/{CONTROL}",
            store.location().to_string().trim_end_matches('/')
        ))),
        State::Absent | State::Ours => Ok(()),
    }
}

/// Writes the marker unless it is there; refuses a foreign `.repo/`.
pub(crate) fn claim_control(store: &Storage) -> Result<()> {
    let marker = format!("{CONTROL}/{}", control::MARKER);
    if head(store, &marker)?.is_some_and(|b| control::is_marker(&b)) {
        return Ok(());
    }
    check_control(store)?;
    store.put(&marker, control::MARKER_TEXT.to_vec())
}
