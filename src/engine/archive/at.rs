//! Source entries read relative to directory descriptors.
//!
//! Local users may rename, replace or swap anything below a source while it
//! is backed up (root backing up /home). Going by path would follow a
//! directory swapped for a symlink, and opening a file that `lstat` saw as
//! regular could hand us a symlink to /etc/shadow, a FIFO (blocks forever)
//! or /dev/urandom (never ends). So the walk keeps each directory open,
//! `lstat`s children with `fstatat`, opens them with `openat(O_NOFOLLOW |
//! O_NONBLOCK)` and compares the opened descriptor's device, inode and type
//! with what `lstat` saw: what is opened is what was listed, or it is
//! skipped.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, open, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

use crate::format::tree::Xattr;

/// Why an entry could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The entry is no longer what `lstat` saw: it was replaced between
    /// listing and opening. The message says by what.
    Swapped(String),
    /// An ordinary failure (permission, I/O).
    Io(std::io::Error),
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Io(e.into())
    }
}

/// Flags for every open below a directory descriptor: read only, never a
/// controlling terminal, never inherited by children.
fn base_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY
}

/// Opens a directory by absolute path, following symlinks: for the
/// ancestors of a source path, which are recorded as the directories they
/// resolve to (as restic does).
pub(crate) fn open_dir_path(path: &Path) -> std::io::Result<File> {
    let fd = open(path, base_flags() | OFlag::O_DIRECTORY, Mode::empty())?;
    Ok(File::from(fd))
}

/// Opens the directory `name` below `dir`, following a symlink: for an
/// ancestor of a source path (see [`open_dir_path`]).
pub(crate) fn open_dir_follow_at(dir: BorrowedFd, name: &OsStr) -> std::io::Result<File> {
    let fd = openat(dir, name, base_flags() | OFlag::O_DIRECTORY, Mode::empty())?;
    Ok(File::from(fd))
}

/// `lstat` of `name` below `dir`.
pub(crate) fn lstat_at(dir: BorrowedFd, name: &OsStr) -> std::io::Result<FileStat> {
    Ok(fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

/// The file type bits of a mode.
fn file_type(mode: libc::mode_t) -> libc::mode_t {
    mode & libc::S_IFMT
}

/// What a file type is called in messages.
fn type_name(mode: libc::mode_t) -> &'static str {
    match file_type(mode) {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "an unknown file type",
    }
}

/// Opens the regular file or directory `name` below `dir` that `lstat`
/// saw as `seen`, and returns it with its `fstat`. Never follows a
/// symlink, never blocks on a FIFO, and refuses (as [`OpenError::Swapped`])
/// anything that is not the same device, inode and type as `seen`: a
/// non-regular file is never read as content.
pub(crate) fn open_seen(
    dir: BorrowedFd,
    name: &OsStr,
    seen: &FileStat,
) -> Result<(File, FileStat), OpenError> {
    let is_dir = file_type(seen.st_mode) == libc::S_IFDIR;
    let mut flags = base_flags() | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    if is_dir {
        flags |= OFlag::O_DIRECTORY;
    }
    // O_NOATIME is allowed only to the owner (or CAP_FOWNER).
    let mut noatime = OFlag::O_NOATIME;
    let opened = match openat(dir, name, flags | noatime, Mode::empty()) {
        Err(Errno::EPERM) => {
            noatime = OFlag::empty();
            openat(dir, name, flags, Mode::empty())
        }
        other => other,
    };
    let fd: OwnedFd = match opened {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => {
            return Err(OpenError::Swapped(format!(
                "replaced by a symlink after it was listed as {}; skipped, not followed",
                type_name(seen.st_mode)
            )));
        }
        Err(Errno::ENOTDIR) if is_dir => {
            return Err(OpenError::Swapped(
                "replaced by something other than a directory after it was listed; skipped".into(),
            ));
        }
        // A socket (or a device without a driver) cannot be opened.
        Err(Errno::ENXIO) => {
            return Err(OpenError::Swapped(format!(
                "replaced by a socket or device after it was listed as {}; skipped, not read",
                type_name(seen.st_mode)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let st = fstat(&fd)?;
    if file_type(st.st_mode) != file_type(seen.st_mode) {
        return Err(OpenError::Swapped(format!(
            "replaced by {} after it was listed as {}; skipped, not read",
            type_name(st.st_mode),
            type_name(seen.st_mode)
        )));
    }
    if st.st_dev != seen.st_dev || st.st_ino != seen.st_ino {
        return Err(OpenError::Swapped(format!(
            "replaced by another {} (inode {} instead of {}) after it was listed; skipped, not read",
            type_name(st.st_mode).trim_start_matches("a "),
            st.st_ino,
            seen.st_ino
        )));
    }
    if !is_dir {
        // Reads of a regular file should block like any other read. F_SETFL
        // sets only the status flags (O_NOATIME, O_NONBLOCK, ...), and those
        // are known: one call instead of F_GETFL and F_SETFL per file.
        fcntl(&fd, FcntlArg::F_SETFL(noatime))?;
    }
    Ok((File::from(fd), st))
}

/// The names in an open directory, `.` and `..` left out, unsorted.
pub(crate) fn list(dir: &File) -> std::io::Result<Vec<OsString>> {
    // The listing gets its own descriptor: `Dir` owns and closes it, and
    // the original stays open for the `openat` of each entry.
    let mut d = nix::dir::Dir::from_fd(OwnedFd::from(dir.try_clone()?))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// The target of the symlink `name` below `dir`.
pub(crate) fn read_link_at(dir: BorrowedFd, name: &OsStr) -> std::io::Result<Vec<u8>> {
    Ok(readlinkat(dir, name)?.as_bytes().to_vec())
}

/// Extended attributes of an open file or directory.
pub(crate) fn xattrs_of(file: &File) -> Vec<Xattr> {
    use xattr::FileExt;
    collect(file.list_xattr(), |n| file.get_xattr(n))
}

/// Extended attributes of the entry `name` below `dir` itself (not a
/// symlink's target), for entries that are not opened (symlinks, FIFOs,
/// devices). Named through `/proc/self/fd`, so the lookup starts at the
/// verified directory; without procfs, `path` is the fallback.
pub(crate) fn xattrs_at(dir: BorrowedFd, name: &OsStr, path: &Path) -> Vec<Xattr> {
    let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    let p = if via.is_dir() {
        via.join(name)
    } else {
        path.to_path_buf()
    };
    collect(xattr::list(&p), |n| xattr::get(&p, n))
}

/// Reads every listed attribute, sorted by name; file systems without
/// xattr support simply yield none.
fn collect(
    names: std::io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Vec<Xattr> {
    let Ok(names) = names else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = get(&name).ok().flatten()?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether the directory holds a valid `CACHEDIR.TAG` (a regular file
/// starting with the signature), opened like any other entry: a FIFO or a
/// symlink of that name is not one.
pub(crate) fn has_cachedir_tag(dir: &File, signature: &[u8]) -> bool {
    let name = OsStr::new("CACHEDIR.TAG");
    let Ok(seen) = lstat_at(dir.as_fd(), name) else {
        return false;
    };
    if file_type(seen.st_mode) != libc::S_IFREG {
        return false;
    }
    let Ok((mut f, _)) = open_seen(dir.as_fd(), name, &seen) else {
        return false;
    };
    let mut buf = vec![0u8; signature.len()];
    std::io::Read::read_exact(&mut f, &mut buf).is_ok() && buf == signature
}

/// Raises the soft limit on open files to the hard limit: the walk holds
/// one descriptor per directory level (per worker), and the common soft
/// limit of 1024 would otherwise cut off deep trees that the hard limit
/// allows (Go's runtime does the same at start). Failure leaves the limit
/// as it was; a directory that then cannot be opened is reported.
pub(crate) fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each replacement of a listed regular file is refused, and the same
    /// entry untouched is opened with the metadata `lstat` gave.
    #[test]
    fn open_seen_refuses_every_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_dir_path(tmp.path()).unwrap();
        let f = OsStr::new("f");
        let path = tmp.path().join("f");
        let swaps: [(&str, &dyn Fn()); 4] = [
            // The listed file stays (renamed away): a deleted file's inode
            // number may be reused at once, and then the new file is what
            // is read, with its own metadata, which is harmless.
            ("another file", &|| {
                std::fs::rename(&path, tmp.path().join("old")).unwrap();
                std::fs::write(&path, b"other").unwrap();
            }),
            ("a symlink", &|| {
                std::fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
            }),
            ("a FIFO", &|| {
                std::fs::remove_file(&path).unwrap();
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
            }),
            ("a directory", &|| {
                std::fs::remove_file(&path).unwrap();
                std::fs::create_dir(&path).unwrap();
            }),
        ];
        for (what, swap) in swaps {
            let _ = std::fs::remove_dir(&path);
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, b"listed").unwrap();
            let seen = lstat_at(dir.as_fd(), f).unwrap();
            let (_, st) = open_seen(dir.as_fd(), f, &seen).unwrap();
            assert_eq!((st.st_ino, st.st_size), (seen.st_ino, 6));
            swap();
            match open_seen(dir.as_fd(), f, &seen) {
                Err(OpenError::Swapped(msg)) => assert!(msg.contains("replaced"), "{what}: {msg}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        // A listed directory swapped for a symlink to a directory.
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap();
        let seen = lstat_at(dir.as_fd(), f).unwrap();
        std::fs::rename(&path, tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("moved", &path).unwrap();
        assert!(matches!(
            open_seen(dir.as_fd(), f, &seen),
            Err(OpenError::Swapped(_))
        ));
    }
}
