//! Reading a plain tree in a local folder: listing it into manifest
//! entries, opening and hashing its files, and telling whether its control
//! folder is ours. Shared by the plain engine (mirror/sync) and by
//! `restore --delete`, which reads its target the same way.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::manifest::{Entries, Entry, EntryKind, Seen};
use crate::format::tree::NodeKind;
use crate::local::control::{self, CONTROL, MANIFEST, State};
use crate::local::fence::{DirId, dir_id};
use crate::local::filter::Excludes;

pub(crate) fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Refuses to reach `rel` through anything but real folders: a folder of
/// the tree replaced by a symlink (by whoever can write to this side, or
/// by this very run settling a folder-versus-symlink difference) would
/// otherwise lead writes, moves and deletions outside the tree. Checked
/// just before each operation; folders not there yet are fine (they are
/// created).
pub(crate) fn check_parents(root: &Path, rel: &[u8]) -> Result<()> {
    let mut at = 0;
    while let Some(i) = rel[at..].iter().position(|&c| c == b'/') {
        let prefix = &rel[..at + i];
        let p = abs(root, prefix);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(Error::io(
                    "reach",
                    abs(root, rel),
                    std::io::Error::other(format!(
                        "{} is not a folder (a symlink or file replaced it), so it is not followed; check that folder and run again",
                        p.display()
                    )),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect", &p, e)),
        }
        at += i + 1;
    }
    Ok(())
}

/// Seconds and nanoseconds as one count, saturating: a file system may hold
/// times far outside the range of an `i64` of nanoseconds.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The entry for what `md` describes, or `None` for kinds a plain tree skips.
pub(crate) fn entry_of(md: &fs::Metadata, path: &Path) -> Option<Entry> {
    let kind = match crate::local::meta::kind_of(md) {
        NodeKind::File => EntryKind::File,
        NodeKind::Dir => EntryKind::Dir,
        NodeKind::Symlink => EntryKind::Symlink,
        _ => return None,
    };
    let target = if kind == EntryKind::Symlink {
        Some(fs::read_link(path).ok()?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    Some(Entry {
        kind,
        size: if kind == EntryKind::File {
            md.size()
        } else {
            0
        },
        mtime_ns: nanos(md.mtime(), md.mtime_nsec()),
        mode: md.mode() & 0o7777,
        blake3: None,
        target,
        seen: Seen {
            ino: Some(md.ino()),
            ctime_ns: Some(nanos(md.ctime(), md.ctime_nsec())),
            stored_ms: None,
        },
        chunks: None,
    })
}

/// Lists the tree below `root`, leaving out `.repo` and excluded paths.
/// Unreadable directories and special files are reported in `warnings`.
pub(crate) fn scan(
    root: &Path,
    filter: Option<&Excludes>,
    warnings: &mut Vec<(String, String)>,
) -> Result<Entries> {
    scan_fenced(root, filter, &[], warnings, &mut Fenced::default())
}

/// What a fenced walk met besides the entries.
#[derive(Debug, Default)]
pub(crate) struct Fenced {
    /// Directories left out, each with the index of the fence entry matched.
    pub hits: Vec<(Vec<u8>, usize)>,
    /// The identity of every directory listed, to find one folder that is
    /// on both sides (a folder of one side bind-mounted inside the other).
    pub dirs: Vec<(DirId, Vec<u8>)>,
}

/// [`scan`], except that a directory whose identity is in `fence` (a side's
/// root, reached again through a bind mount) is neither listed nor
/// entered: its content is not this tree's, and treating it as such would
/// copy a side into itself or delete it. Each one met goes to `fenced`.
pub(crate) fn scan_fenced(
    root: &Path,
    filter: Option<&Excludes>,
    fence: &[DirId],
    warnings: &mut Vec<(String, String)>,
    fenced: &mut Fenced,
) -> Result<Entries> {
    let mut out = Entries::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            abs(root, &rel)
        };
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if rel.is_empty() => return Err(Error::io("read directory", &dir, e)),
            Err(e) => {
                warnings.push((dir.display().to_string(), format!("cannot list: {e}")));
                continue;
            }
        };
        for de in rd {
            let de = de.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = de.file_name();
            let mut p = rel.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name.as_bytes());
            if p == CONTROL.as_bytes() {
                continue;
            }
            let full = de.path();
            let shown = Path::new("/").join(std::ffi::OsStr::from_bytes(&p));
            if filter.is_some_and(|f| f.is_excluded(&shown)) {
                continue;
            }
            let md = match fs::symlink_metadata(&full) {
                Ok(md) => md,
                Err(e) => {
                    warnings.push((full.display().to_string(), format!("cannot stat: {e}")));
                    continue;
                }
            };
            if md.is_dir()
                && let Some(i) = fence.iter().position(|f| *f == dir_id(&md))
            {
                fenced.hits.push((p, i));
                continue;
            }
            if md.is_dir() {
                fenced.dirs.push((dir_id(&md), p.clone()));
            }
            match entry_of(&md, &full) {
                Some(e) => {
                    if e.kind == EntryKind::Dir {
                        stack.push(p.clone());
                    }
                    out.insert(p, e);
                }
                None => warnings.push((
                    full.display().to_string(),
                    "skipped: devices, FIFOs and sockets are not copied".into(),
                )),
            }
        }
    }
    Ok(out)
}

/// Opens the file `rel` for reading, through real folders only and not
/// following a symlink put in its place since the scan.
pub(crate) fn open_file(root: &Path, rel: &[u8]) -> Result<File> {
    check_parents(root, rel)?;
    let p = abs(root, rel);
    // Non-blocking, so a FIFO put in the file's place cannot hang the run.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&p)
        .map_err(|err| Error::io("read", &p, err))?;
    let md = f.metadata().map_err(|err| Error::io("stat", &p, err))?;
    if !md.is_file() {
        return Err(Error::io(
            "read",
            &p,
            std::io::Error::other("it is no longer a regular file; run again"),
        ));
    }
    Ok(f)
}

/// BLAKE3 of a file's content.
pub(crate) fn hash(root: &Path, rel: &[u8]) -> Result<[u8; 32]> {
    let mut f = open_file(root, rel)?;
    let path = &abs(root, rel);
    let mut h = blake3::Hasher::new();
    h.update_reader(&mut f)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(*h.finalize().as_bytes())
}

/// Reads at most `limit` bytes of `path`; `None` when it does not exist.
pub(crate) fn read_head(path: &Path, limit: usize) -> Result<Option<Vec<u8>>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut out = Vec::new();
    f.take(limit as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Some(out))
}

/// Whether the tree's `.repo` is ours, somebody else's, or not there.
pub(crate) fn control_state(root: &Path) -> Result<State> {
    let dir = root.join(CONTROL);
    let md = match fs::symlink_metadata(&dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Absent),
        Err(e) => return Err(Error::io("inspect", &dir, e)),
    };
    if !md.is_dir() {
        return Ok(State::Foreign);
    }
    if read_head(&dir.join(control::MARKER), control::HEAD)?.is_some_and(|b| control::is_marker(&b))
        || read_head(&dir.join(MANIFEST), control::HEAD)?
            .is_some_and(|b| control::is_manifest_head(&b))
    {
        return Ok(State::Ours);
    }
    let mut rd = fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
    Ok(if rd.next().is_none() {
        State::Absent
    } else {
        State::Foreign
    })
}
