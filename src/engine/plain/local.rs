//! Changing a plain tree in a local folder (reading it is
//! [`crate::local::tree`]).
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

use crate::error::{Error, Result};
use crate::format::manifest::{Entry, EntryKind};
use crate::local::control::{self, CONTROL, State};
use crate::local::tree::{abs, check_parents, control_state, entry_of, read_head};

/// Refuses a tree whose `.repo` belongs to somebody else.
pub(crate) fn check_control(root: &Path) -> Result<()> {
    match control_state(root)? {
        State::Foreign => Err(control::foreign_error(
            &root.join(CONTROL).display().to_string(),
        )),
        State::Absent | State::Ours => Ok(()),
    }
}

/// Makes `.repo` ours (creating it and its marker) before anything is put
/// into it; refuses when it belongs to somebody else.
pub(crate) fn claim_control(root: &Path) -> Result<()> {
    check_control(root)?;
    let dir = root.join(CONTROL);
    let marker = dir.join(control::MARKER);
    if read_head(&marker, control::HEAD)?.is_some_and(|b| control::is_marker(&b)) {
        return Ok(());
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&marker)
    {
        Ok(f) => f,
        // Another run wrote it in between (or a stale one is in the way: it
        // was recognised as ours by its manifest above, so leave it be).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create", &marker, e)),
    };
    f.write_all(control::MARKER_TEXT)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &marker, e))
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
pub(crate) fn write_file(
    root: &Path,
    rel: &[u8],
    reader: &mut dyn Read,
    e: &Entry,
) -> Result<Entry> {
    let tmp = tmp_name(root)?;
    let result = (|| {
        let f = OpenOptions::new()
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
            write_sparse(&f, &buf[..n], total).map_err(|err| Error::io("write", &tmp, err))?;
            total += n as u64;
        }
        // Trailing zeros were skipped: the length makes them (a hole).
        f.set_len(total)
            .map_err(|err| Error::io("write", &tmp, err))?;
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
        check_parents(root, rel)?;
        make_parent(&dest)?;
        rename_noreplace(&tmp, &dest).map_err(|err| Error::io("rename into place", &dest, err))?;
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

/// Renames `from` to `to` unless `to` exists. What was at `to` when the
/// run looked was moved aside first, so anything there now appeared during
/// the run (a user saving a file): it must not be replaced unseen.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let err = match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) => std::io::Error::from(e),
    };
    match err.raw_os_error() {
        Some(libc::EEXIST) => Err(std::io::Error::other(
            "something was put there while this run was working; it was left alone: look at both versions and run again",
        )),
        // A file system without RENAME_NOREPLACE: a hard link fails just as
        // atomically when the name exists.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => match fs::hard_link(from, to) {
            Ok(()) => fs::remove_file(from),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(std::io::Error::other(
                "something was put there while this run was working; it was left alone: look at both versions and run again",
            )),
            // Nor hard links (FAT, some network file systems): look, then
            // rename. Not atomic, but still never replaces what is seen.
            Err(_) => match fs::symlink_metadata(to) {
                Ok(_) => Err(std::io::Error::other(
                    "something was put there while this run was working; it was left alone: look at both versions and run again",
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::rename(from, to),
                Err(e) => Err(e),
            },
        },
        _ => Err(err),
    }
}

/// Block size for finding runs of zeros; file systems allocate at least this.
const BLOCK: u64 = 4096;
static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// Writes `data` at `offset`, skipping blocks that are all zeros so they
/// stay holes (what `rsync -S` does): a sparse source stays sparse, and so
/// does a run of zeros read from a store that knows no holes. Skipped bytes
/// below the final length read back as zeros.
fn write_sparse(f: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    // Consecutive blocks holding data go out in one write.
    let mut run: Option<usize> = None;
    let mut at = 0usize;
    while at < data.len() {
        let pos = offset + at as u64;
        let end = (at + (BLOCK - pos % BLOCK) as usize).min(data.len());
        // A slice comparison is a memcmp: fast even in debug builds.
        let zero = data[at..end] == ZEROS[..end - at];
        match (zero, run) {
            (false, None) => run = Some(at),
            (true, Some(start)) => {
                f.write_all_at(&data[start..at], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
        at = end;
    }
    if let Some(start) = run {
        f.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

fn make_parent(dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
    }
    Ok(())
}

/// Makes `rel` another hard link to `existing` (both below `root`), through
/// `.repo/tmp/` so `rel` never exists half made, and returns its entry.
pub(crate) fn link_into(root: &Path, existing: &[u8], rel: &[u8]) -> Result<Entry> {
    check_parents(root, existing)?;
    check_parents(root, rel)?;
    let tmp = tmp_name(root)?;
    let from = abs(root, existing);
    fs::hard_link(&from, &tmp).map_err(|e| Error::io("hard-link", &from, e))?;
    let dest = abs(root, rel);
    let done = make_parent(&dest).and_then(|()| {
        rename_noreplace(&tmp, &dest).map_err(|e| Error::io("rename into place", &dest, e))
    });
    // A rename onto another link of the same file does nothing: tidy up.
    let _ = fs::remove_file(&tmp);
    done?;
    let md = fs::symlink_metadata(&dest).map_err(|e| Error::io("stat", &dest, e))?;
    entry_of(&md, &dest).ok_or_else(|| {
        Error::io(
            "hard-link",
            &dest,
            std::io::Error::other("the link is not a regular file; run again"),
        )
    })
}

/// Device, inode and link count of a file (not following symlinks).
pub(crate) fn identity(root: &Path, rel: &[u8]) -> Option<(u64, u64, u64)> {
    let md = fs::symlink_metadata(abs(root, rel)).ok()?;
    md.is_file().then(|| (md.dev(), md.ino(), md.nlink()))
}

/// Creates a directory or symlink for `e` at `rel`.
pub(crate) fn make(root: &Path, rel: &[u8], e: &Entry) -> Result<Entry> {
    check_parents(root, rel)?;
    let dest = abs(root, rel);
    match e.kind {
        EntryKind::Dir => {
            fs::create_dir_all(&dest).map_err(|err| Error::io("create directory", &dest, err))?;
            crate::testhooks::pause_point("plain-dir-made");
            // Through a descriptor of the folder itself: a symlink swapped
            // into its place must not get the mode.
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
                .open(&dest)
                .map_err(|err| Error::io("open folder", &dest, err))?;
            let _ = dir.set_permissions(fs::Permissions::from_mode(e.mode | 0o700));
        }
        EntryKind::Symlink => {
            make_parent(&dest)?;
            let target = e.target.clone().unwrap_or_default();
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &dest)
                .map_err(|err| Error::io("create symlink", &dest, err))?;
        }
        EntryKind::File => {
            return Err(Error::Internal("files are written with write_file".into()));
        }
    }
    let md = fs::symlink_metadata(&dest).map_err(|err| Error::io("stat", &dest, err))?;
    Ok(entry_of(&md, &dest).unwrap_or_else(|| e.clone()))
}

/// Moves whatever is at `rel` into `.repo/<bin>/<stamp>/rel` (or deletes it
/// when `bin` is `None`). A directory goes whole. Missing is fine.
pub(crate) fn remove(root: &Path, rel: &[u8], bin: Option<(&str, &str)>) -> Result<bool> {
    check_parents(root, rel)?;
    let path = abs(root, rel);
    let Ok(md) = fs::symlink_metadata(&path) else {
        return Ok(false);
    };
    match bin {
        Some((bin, stamp)) => {
            claim_control(root)?;
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

/// Moves an empty directory into `.repo/<bin>/<stamp>/`; `false` when
/// something is still in it (then it stays where it is).
pub(crate) fn trash_empty_dir(root: &Path, rel: &[u8], bin: &str, stamp: &str) -> Result<bool> {
    check_parents(root, rel)?;
    let path = abs(root, rel);
    let mut rd = match fs::read_dir(&path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io("read directory", &path, e)),
    };
    if rd.next().is_some() {
        return Ok(false);
    }
    let to = abs(&root.join(CONTROL).join(bin).join(stamp), rel);
    if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
        // Its content went there first, so the folder is in the trash
        // already: the emptied original only has to go.
        return remove_empty_dir(root, rel);
    }
    remove(root, rel, Some((bin, stamp)))?;
    Ok(true)
}

/// Removes an empty directory; `false` when something is still in it.
pub(crate) fn remove_empty_dir(root: &Path, rel: &[u8]) -> Result<bool> {
    check_parents(root, rel)?;
    let path = abs(root, rel);
    match fs::remove_dir(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        Err(e) => Err(Error::io("delete directory", &path, e)),
    }
}

pub(crate) fn read_control(root: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let p = root.join(CONTROL).join(name);
    match fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &p, e)),
    }
}

/// Writes `.repo/<name>` atomically.
pub(crate) fn write_control(root: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    claim_control(root)?;
    let p = root.join(CONTROL).join(name);
    make_parent(&p)?;
    let tmp = tmp_name(root)?;
    fs::write(&tmp, bytes).map_err(|e| Error::io("write", &tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync", &tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| Error::io("write", &p, e))
}
