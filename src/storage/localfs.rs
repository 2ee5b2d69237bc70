//! Reading and listing a local repository without following links.
//!
//! Why: the repository directory is storage, and storage is untrusted. A
//! symlink planted under `data/` would make a listing walk leave the
//! repository (and a read follow it anywhere); a FIFO named `config` would
//! block `open(2)` forever, deaf to Ctrl-C. So every object is opened
//! component by component from a descriptor of the repository root with
//! `O_NOFOLLOW` (directories also `O_DIRECTORY`), the object itself with
//! `O_NONBLOCK` so that opening a FIFO or device never waits, and anything
//! that is not a regular file is refused. Listings walk descriptors the same
//! way and report, never follow, whatever is not a directory or regular file.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};

/// An object that is not a regular file (symlink, FIFO, device, socket).
pub(crate) const NOT_REGULAR: &str =
    "it is not a regular file (a symlink, FIFO or device planted in the repository?); move it away";

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens the repository root (which the user named, links and all).
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the regular file `key` (slash-separated) below `root`; no
/// component may be a symlink, and the object must be a regular file.
pub(crate) fn open_object(root: &OwnedFd, key: &str) -> io::Result<File> {
    let mut parts: Vec<&str> = key.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    if name.is_empty() || parts.iter().any(|p| p.is_empty() || *p == "..") || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad object key",
        ));
    }
    let mut dir: Option<OwnedFd> = None;
    for p in parts {
        let next = match &dir {
            Some(d) => openat(d.as_fd(), p, dir_flags(), Mode::empty()),
            None => openat(root.as_fd(), p, dir_flags(), Mode::empty()),
        }
        .map_err(not_regular_on_loop)?;
        dir = Some(next);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match &dir {
        Some(d) => openat(d.as_fd(), name, flags, Mode::empty()),
        None => openat(root.as_fd(), name, flags, Mode::empty()),
    }
    .map_err(not_regular_on_loop)?;
    let st = fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, NOT_REGULAR));
    }
    Ok(File::from(fd))
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP (ENOTDIR with `O_DIRECTORY`):
/// say what it means.
fn not_regular_on_loop(e: nix::errno::Errno) -> io::Error {
    match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => {
            io::Error::new(io::ErrorKind::InvalidInput, NOT_REGULAR)
        }
        e => e.into(),
    }
}

/// What a listing found: regular files (key, size) and entries it ignored
/// (key, why).
#[derive(Default)]
pub(crate) struct Listing {
    pub files: Vec<(String, u64)>,
    pub ignored: Vec<(String, String)>,
}

/// Lists the regular files below `prefix` (a directory key such as `data`;
/// empty for the root), recursing into real directories only. A missing
/// prefix is an empty listing, as on object stores.
pub(crate) fn list(root: &OwnedFd, prefix: &str) -> io::Result<Listing> {
    let mut out = Listing::default();
    let mut dir = None;
    for p in prefix.split('/').filter(|p| !p.is_empty()) {
        let fd = match &dir {
            Some(d) => openat(d, p, dir_flags(), Mode::empty()),
            None => openat(root.as_fd(), p, dir_flags(), Mode::empty()),
        };
        match fd {
            Ok(fd) => dir = Some(fd),
            Err(nix::errno::Errno::ENOENT) => return Ok(out),
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                out.ignored.push((prefix.to_string(), NOT_REGULAR.into()));
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let start = match dir {
        Some(d) => d,
        None => openat(root.as_fd(), ".", dir_flags(), Mode::empty())?,
    };
    walk(start, prefix.trim_matches('/'), &mut out, 0)?;
    Ok(out)
}

/// Deepest directory nesting walked: repository keys are at most three deep.
const MAX_DEPTH: usize = 8;

fn walk(fd: OwnedFd, at: &str, out: &mut Listing, depth: usize) -> io::Result<()> {
    let join = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}/{name}")
        }
    };
    let mut dir = Dir::from_fd(fd)?;
    let mut subdirs = Vec::new();
    // Names first: the directory's descriptor is needed again to stat them.
    let mut entries = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let raw = e.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        entries.push(raw.to_vec());
    }
    for raw in entries {
        let Ok(name) = String::from_utf8(raw.clone()) else {
            out.ignored.push((
                join(&String::from_utf8_lossy(&raw)),
                "its name is not UTF-8, so it is no repository object".into(),
            ));
            continue;
        };
        let st = match nix::sys::stat::fstatat(
            dir.as_fd(),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => continue, // removed while we listed
            Err(e) => return Err(e.into()),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFREG {
            out.files.push((join(&name), st.st_size as u64));
        } else if kind == SFlag::S_IFDIR {
            subdirs.push(name);
        } else {
            out.ignored.push((join(&name), NOT_REGULAR.into()));
        }
    }
    for name in subdirs {
        if depth >= MAX_DEPTH {
            out.ignored
                .push((join(&name), "directories nest too deep".into()));
            continue;
        }
        match openat(dir.as_fd(), name.as_str(), dir_flags(), Mode::empty()) {
            Ok(fd) => walk(fd, &join(&name), out, depth + 1)?,
            Err(nix::errno::Errno::ENOENT) => {}
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                out.ignored.push((join(&name), NOT_REGULAR.into()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
