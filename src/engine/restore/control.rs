//! The target's control folder for `restore --delete` (`TARGET/.repo`:
//! marker, manifest, trash, archive): refusing one that is not ours, and
//! reading and writing the manifest through the target's descriptor,
//! following no symlink.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::local::control::{CONTROL, MANIFEST, MARKER, MARKER_TEXT, State};
use crate::local::tree;

use super::Item;
use super::at;

/// Refuses `--delete` where its control folder (`TARGET/.repo`: manifest,
/// trash, archive) would mix with somebody else's files: when the target's
/// `.repo` belongs to another tool (a checkout of Google's `repo` has one),
/// or when what is restored has a `.repo` of its own at the top, which the
/// restore would write into and the manifest would then overwrite.
pub(crate) fn check_control(target: &Path, items: &[Item], target_existed: bool) -> Result<()> {
    let top = target.join(CONTROL);
    if let Some(item) = items.iter().find(|i| i.path() == top) {
        return Err(Error::Usage(format!(
            "what is restored has a {CONTROL} of its own at the top ({}), and \
             `restore --delete` keeps its manifest, trash and archive in {}: restoring it \
             would mix the two and overwrite files in it. Restore without --delete, or leave \
             that folder out with --exclude '{CONTROL}'",
            item.path().display(),
            top.display()
        )));
    }
    if target_existed && tree::control_state(target)? == State::Foreign {
        return Err(Error::Usage(format!(
            "{} exists but is not a control folder of repo (it has no {CONTROL}/{MARKER} \
             marker; it may belong to another tool, such as Google's `repo`). \
             `restore --delete` keeps its manifest, trash and archive there and will not mix \
             them into somebody else's folder: restore without --delete, or move or rename \
             that folder first",
            top.display()
        )));
    }
    Ok(())
}

/// Makes (or opens) the target's control folder through the target's
/// descriptor, following no symlink, and marks it as ours (`FORMAT`), so a
/// folder holding only trash is still recognised as ours next time.
pub(super) fn control_dir(root: BorrowedFd) -> nix::Result<OwnedFd> {
    use std::io::Write;
    let dir = at::make_dir(root, OsStr::new(CONTROL))?;
    match openat(
        &dir,
        MARKER,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => {
            std::fs::File::from(fd)
                .write_all(MARKER_TEXT)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        }
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    Ok(dir)
}

/// What [`read_manifest`] found.
pub(super) enum Read {
    Absent,
    Mine(Vec<u8>),
    /// Owned by another user (uid): not written by a restore of ours.
    NotMine(u32),
}

/// Reads `.repo/manifest.jsonl` of the target through its descriptor,
/// following no symlink (a user owning the target could plant one). Only a
/// manifest owned by the user running the restore (who wrote it, mode 0600)
/// is read: another user's could be a huge sparse file, or lie about which
/// files are unchanged.
pub(super) fn read_manifest(root: BorrowedFd) -> std::io::Result<Read> {
    let open = at::open_dir(root, OsStr::new(CONTROL)).and_then(|dir| {
        openat(
            &dir,
            MANIFEST,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    });
    let fd = match open {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Read::Absent),
        Err(e) => return Err(e.into()),
    };
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(Read::NotMine(st.st_uid));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)?;
    Ok(Read::Mine(bytes))
}

/// Writes `.repo/manifest.jsonl` of the target atomically (temporary file
/// in `.repo/tmp/`, fsync, rename), every step relative to the target's
/// descriptor and following no symlink.
pub(super) fn write_manifest(root: BorrowedFd, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let control = control_dir(root)?;
    let tmp_dir = at::make_dir(&control, OsStr::new("tmp"))?;
    let name = format!("{:016x}", rand::random::<u64>());
    let fd = openat(
        &tmp_dir,
        name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    renameat(&tmp_dir, name.as_str(), &control, MANIFEST)?;
    Ok(())
}
