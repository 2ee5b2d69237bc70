//! A plain tree in a local folder.
//!
//! Writes go to `.repo/tmp/` inside the tree and are renamed into place,
//! so a crash never leaves a half-written file under a real name, and what
//! is replaced or deleted is first moved to `.repo/archive/` or
//! `.repo/trash/` on the same file system (a rename, so it costs nothing).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::archive::Excludes;
use crate::error::{Error, Result};
use crate::manifest::{Entries, Entry, EntryKind, Seen};
use crate::tree::NodeKind;

pub const CONTROL: &str = ".repo";

pub fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Seconds and nanoseconds as one count, saturating: a file system may hold
/// times far outside the range of an `i64` of nanoseconds.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The entry for what `md` describes, or `None` for kinds a plain tree skips.
pub fn entry_of(md: &fs::Metadata, path: &Path) -> Option<Entry> {
    let kind = match crate::archive::meta::kind_of(md) {
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
pub fn scan(
    root: &Path,
    filter: Option<&Excludes>,
    warnings: &mut Vec<(String, String)>,
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

/// BLAKE3 of a file's content.
pub fn hash(path: &Path) -> Result<[u8; 32]> {
    let mut f = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(&mut f)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(*h.finalize().as_bytes())
}

fn tmp_name(root: &Path) -> Result<PathBuf> {
    let dir = root.join(CONTROL).join("tmp");
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    Ok(dir.join(format!("{:016x}", rand::random::<u64>())))
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Writes `reader`'s bytes as `rel` with the entry's mode and mtime, and
/// returns the entry as recorded (with the BLAKE3 of what was written).
pub fn write_file(root: &Path, rel: &[u8], reader: &mut dyn Read, e: &Entry) -> Result<Entry> {
    let tmp = tmp_name(root)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|err| Error::io("create", &tmp, err))?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|err| Error::io("read source for", abs(root, rel), err))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            f.write_all(&buf[..n])
                .map_err(|err| Error::io("write", &tmp, err))?;
            total += n as u64;
        }
        if total != e.size {
            return Err(Error::io(
                "copy",
                abs(root, rel),
                std::io::Error::other(format!(
                    "the source changed while it was copied ({total} bytes read, {} expected); run again",
                    e.size
                )),
            ));
        }
        f.set_permissions(fs::Permissions::from_mode(e.mode))
            .map_err(|err| Error::io("set mode of", &tmp, err))?;
        f.set_modified(system_time(e.mtime_ns))
            .map_err(|err| Error::io("set mtime of", &tmp, err))?;
        f.sync_all().map_err(|err| Error::io("sync", &tmp, err))?;
        let dest = abs(root, rel);
        make_parent(&dest)?;
        fs::rename(&tmp, &dest).map_err(|err| Error::io("rename into place", &dest, err))?;
        let md = fs::symlink_metadata(&dest).map_err(|err| Error::io("stat", &dest, err))?;
        let mut out = entry_of(&md, &dest).unwrap_or_else(|| e.clone());
        out.blake3 = Some(*h.finalize().as_bytes());
        Ok(out)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn make_parent(dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
    }
    Ok(())
}

/// Creates a directory or symlink for `e` at `rel`.
pub fn make(root: &Path, rel: &[u8], e: &Entry) -> Result<Entry> {
    let dest = abs(root, rel);
    match e.kind {
        EntryKind::Dir => {
            fs::create_dir_all(&dest).map_err(|err| Error::io("create directory", &dest, err))?;
            let _ = fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode | 0o700));
        }
        EntryKind::Symlink => {
            make_parent(&dest)?;
            let target = e.target.clone().unwrap_or_default();
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &dest)
                .map_err(|err| Error::io("create symlink", &dest, err))?;
        }
        EntryKind::File => {
            return Err(Error::Usage(
                "internal: files are written with write_file".into(),
            ));
        }
    }
    let md = fs::symlink_metadata(&dest).map_err(|err| Error::io("stat", &dest, err))?;
    Ok(entry_of(&md, &dest).unwrap_or_else(|| e.clone()))
}

/// Moves whatever is at `rel` into `.repo/<bin>/<stamp>/rel` (or deletes it
/// when `bin` is `None`). A directory goes whole. Missing is fine.
pub fn remove(root: &Path, rel: &[u8], bin: Option<(&str, &str)>) -> Result<bool> {
    let path = abs(root, rel);
    let Ok(md) = fs::symlink_metadata(&path) else {
        return Ok(false);
    };
    match bin {
        Some((bin, stamp)) => {
            let to = abs(&root.join(CONTROL).join(bin).join(stamp), rel);
            make_parent(&to)?;
            fs::rename(&path, &to).map_err(|e| Error::io("move aside", &path, e))?;
        }
        None if md.is_dir() => {
            fs::remove_dir_all(&path).map_err(|e| Error::io("delete", &path, e))?
        }
        None => fs::remove_file(&path).map_err(|e| Error::io("delete", &path, e))?,
    }
    Ok(true)
}

/// Removes an empty directory; `false` when something is still in it.
pub fn remove_empty_dir(root: &Path, rel: &[u8]) -> Result<bool> {
    let path = abs(root, rel);
    match fs::remove_dir(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        Err(e) => Err(Error::io("delete directory", &path, e)),
    }
}

pub fn read_control(root: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let p = root.join(CONTROL).join(name);
    match fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &p, e)),
    }
}

/// Writes `.repo/<name>` atomically.
pub fn write_control(root: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let p = root.join(CONTROL).join(name);
    make_parent(&p)?;
    let tmp = tmp_name(root)?;
    fs::write(&tmp, bytes).map_err(|e| Error::io("write", &tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync", &tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| Error::io("write", &p, e))
}
