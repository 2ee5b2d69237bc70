//! `restore --delete`: make the target an exact copy of the snapshot.
//!
//! What the snapshot lacks is moved to `.repo/trash/<time>/` in the target
//! (deleted with `--no-archive`), and a file about to be overwritten is
//! moved to `.repo/archive/<time>/` first, so a mistaken target costs
//! nothing. After the restore the target's manifest records each file's
//! stat and the digest of its chunk list: the next `restore --delete`
//! skips files whose stat still matches without reading them.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, renameat};
use nix::sys::stat::{FileStat, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::manifest::{Entries, EntryKind, Manifest};
use crate::format::tree::{Node, NodeKind};
use crate::local::control::{CONTROL, MANIFEST};
use crate::local::tree;

use super::Item;
use super::at::{self, proc_path};
use super::control::{Read, control_dir, read_manifest, write_manifest};
use super::plan::Filter;

/// BLAKE3 of the node's chunk ids in order: equal digests mean equal content.
pub(crate) fn chunk_digest(node: &Node) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for c in &node.content {
        h.update(&c.id.0);
    }
    *h.finalize().as_bytes()
}

/// One entry `--delete` removes from the target.
#[derive(Debug, Clone)]
pub struct Removal {
    /// Path relative to the target.
    pub rel: Vec<u8>,
    /// A directory goes with everything below it.
    pub dir: bool,
}

pub(crate) struct Mirror {
    /// The target, as given.
    pub root: PathBuf,
    stamp: String,
    archive: bool,
    manifest: Option<Entries>,
    pub deleted: AtomicU64,
    pub archived: AtomicU64,
    /// Files skipped on the manifest's word, without reading them.
    pub unread: AtomicU64,
}

fn rel<'a>(root: &Path, path: &'a Path) -> Option<&'a [u8]> {
    path.strip_prefix(root)
        .ok()
        .map(|p| p.as_os_str().as_bytes())
        .filter(|p| !p.is_empty())
}

impl Mirror {
    /// Reads the target's manifest. A damaged one only costs speed, so it is
    /// reported and ignored rather than stopping the restore.
    pub(crate) fn new(
        root: &Path,
        root_fd: BorrowedFd,
        archive: bool,
        progress: &dyn Progress,
    ) -> Self {
        let shown = root.join(CONTROL).join(MANIFEST);
        let manifest = match read_manifest(root_fd) {
            Ok(Read::Mine(bytes)) => match Manifest::decode(&bytes) {
                Ok(m) => Some(m.entries),
                Err(e) => {
                    progress.caveat(
                        &shown,
                        &format!("ignored, every file is compared by content instead: {e}"),
                    );
                    None
                }
            },
            Ok(Read::NotMine(uid)) => {
                progress.caveat(
                    &shown,
                    &format!(
                        "ignored, every file is compared by content instead: it belongs to \
                         user {uid}, not to the user running this restore, who wrote it"
                    ),
                );
                None
            }
            _ => None,
        };
        Mirror {
            root: root.to_path_buf(),
            stamp: chrono::Utc::now()
                .format("%Y-%m-%dT%H-%M-%S%.3fZ")
                .to_string(),
            archive,
            manifest,
            deleted: AtomicU64::new(0),
            archived: AtomicU64::new(0),
            unread: AtomicU64::new(0),
        }
    }

    /// True when the manifest shows `path` (whose `lstat`, taken through its
    /// verified directory, is `st`) was written by an earlier restore
    /// of the same content and has not been touched since (same size, mtime,
    /// inode and ctime).
    pub(crate) fn unchanged(&self, path: &Path, node: &Node, st: &FileStat) -> bool {
        let (Some(m), Some(r)) = (&self.manifest, rel(&self.root, path)) else {
            return false;
        };
        let Some(rec) = m.get(r) else {
            return false;
        };
        let nanos = |s: i64, ns: i64| s.saturating_mul(1_000_000_000).saturating_add(ns);
        let same = st.st_mode & libc::S_IFMT == libc::S_IFREG
            && rec.kind == EntryKind::File
            && st.st_size as u64 == node.size
            && node.size == rec.size
            && nanos(st.st_mtime, st.st_mtime_nsec) == rec.mtime_ns
            && rec.seen.ino == Some(st.st_ino)
            && rec.seen.ctime_ns == Some(nanos(st.st_ctime, st.st_ctime_nsec))
            && rec.chunks == Some(chunk_digest(node));
        if same {
            self.unread.fetch_add(1, Ordering::Relaxed);
        }
        same
    }

    /// Moves entry `name` of directory `dir` (at `rel` below the target
    /// `root`) to `.repo/<bin>/<stamp>/rel`, or deletes it without the
    /// archive; all relative to verified descriptors, so a directory another
    /// user swaps for a symlink cannot redirect it. Missing is fine.
    pub(crate) fn set_aside_at(
        &self,
        root: BorrowedFd,
        dir: BorrowedFd,
        name: &OsStr,
        rel: &[u8],
        bin: &str,
    ) -> Result<()> {
        let path = tree::abs(&self.root, rel);
        let Ok(st) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            return Ok(());
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
        let io = |what: &'static str, e: Errno| Error::io(what, &path, std::io::Error::from(e));
        if !self.archive {
            if is_dir {
                std::fs::remove_dir_all(proc_path(dir, Some(name)))
                    .map_err(|e| Error::io("delete", &path, e))?;
            } else {
                unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| io("delete", e))?;
            }
            return Ok(());
        }
        let mut dest = control_dir(root).map_err(|e| io("move aside", e))?;
        let parts: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
        let (last, above) = parts.split_last().unwrap_or((&rel, &[]));
        for part in [bin.as_bytes(), self.stamp.as_bytes()]
            .into_iter()
            .chain(above.iter().copied())
        {
            dest = at::make_dir(&dest, OsStr::from_bytes(part)).map_err(|e| io("move aside", e))?;
        }
        renameat(dir, name, &dest, OsStr::from_bytes(last)).map_err(|e| io("move aside", e))?;
        self.archived.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What `--delete` would remove: what the snapshot does not have, and
    /// whatever has the wrong type for what will be restored in its place,
    /// in path order (a directory stands for its contents). With filters,
    /// only paths the filters select are touched.
    pub(crate) fn plan_removals(
        &self,
        items: &[Item],
        filter: &Filter,
        snap_root: &Path,
        protect: &[(u64, u64)],
        progress: &dyn Progress,
    ) -> Result<Vec<Removal>> {
        let mut warnings = Vec::new();
        let target = tree::scan(&self.root, None, &mut warnings)?;
        for (p, msg) in warnings {
            progress.warn(Path::new(&p), &msg);
        }
        let mut wanted: HashSet<&[u8]> = HashSet::new();
        let mut kinds = std::collections::HashMap::new();
        for item in items {
            if let Some(r) = rel(&self.root, item.path()) {
                wanted.insert(r);
                let k = match item {
                    Item::Dir { .. } => Some(EntryKind::Dir),
                    Item::File { .. } | Item::HardLink { .. } => Some(EntryKind::File),
                    Item::Other { node, .. } if node.kind == NodeKind::Symlink => {
                        Some(EntryKind::Symlink)
                    }
                    Item::Other { .. } => None,
                };
                kinds.insert(r, k);
            }
        }
        let selected = |r: &[u8]| {
            let sp = snap_root.join(std::ffi::OsStr::from_bytes(r));
            // A file the snapshot lost keeps whatever copy the target has.
            // An excluded directory protects everything below it.
            if filter.exclude.is_some_and(|e| e.covers(&sp, snap_root))
                || filter.damaged(&sp).is_some()
            {
                return false;
            }
            filter
                .include
                .is_none_or(|i| sp.ancestors().any(|a| i.is_excluded(a)))
        };
        // Path order: a directory moved aside takes its contents along.
        let mut gone: Vec<Removal> = Vec::new();
        for (r, e) in &target {
            if gone
                .iter()
                .any(|g| r.starts_with(&g.rel) && r.get(g.rel.len()) == Some(&b'/'))
            {
                continue;
            }
            let remove = match kinds.get(r.as_slice()) {
                None => !wanted.contains(r.as_slice()) && selected(r),
                // Same kind stays (files are compared later); a different one goes.
                Some(k) => *k != Some(e.kind),
            };
            if remove {
                gone.push(Removal {
                    rel: r.clone(),
                    dir: e.kind == EntryKind::Dir,
                });
            }
        }
        refuse_protected(&self.root, &target, &gone, protect)?;
        Ok(gone)
    }

    /// Removes (or moves to the trash) what [`Mirror::plan_removals`]
    /// listed, reaching each entry's directory from the target's descriptor
    /// one component at a time without following symlinks. An entry that
    /// cannot be removed is returned with the reason and the others still
    /// go, so the restore goes on and reports it (as rsync does) rather
    /// than stopping with the target half cleared and nothing restored.
    pub(crate) fn remove(&self, root: BorrowedFd, gone: &[Removal]) -> Vec<(PathBuf, String)> {
        let mut failed = Vec::new();
        for g in gone {
            let path = tree::abs(&self.root, &g.rel);
            let parts: Vec<&[u8]> = g.rel.split(|&c| c == b'/').collect();
            let Some((last, above)) = parts.split_last() else {
                continue;
            };
            let mut dir: Option<OwnedFd> = None;
            let mut opened = true;
            for part in above {
                let next = match &dir {
                    Some(d) => at::open_dir(d, OsStr::from_bytes(part)),
                    None => at::open_dir(root, OsStr::from_bytes(part)),
                };
                match next {
                    Ok(d) => dir = Some(d),
                    Err(e) => {
                        failed.push((
                            path.clone(),
                            format!(
                                "not removed: a directory above it changed during the restore \
                                 ({e}); nothing was removed below it, restore again"
                            ),
                        ));
                        opened = false;
                        break;
                    }
                }
            }
            if !opened {
                continue;
            }
            let d = dir.as_ref().map_or(root, |d| d.as_fd());
            match self.set_aside_at(root, d, OsStr::from_bytes(last), &g.rel, "trash") {
                Ok(()) => {
                    self.deleted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failed.push((
                    path,
                    format!("not removed ({e}); remove it by hand, or restore again"),
                )),
            }
        }
        failed
    }

    /// Writes the target's manifest for what was restored.
    pub(crate) fn record(&self, root_fd: BorrowedFd, items: &[Item]) -> Result<()> {
        let mut entries = Entries::new();
        for item in items {
            let Some(r) = rel(&self.root, item.path()) else {
                continue;
            };
            let Ok(md) = std::fs::symlink_metadata(item.path()) else {
                continue;
            };
            let Some(mut e) = tree::entry_of(&md, item.path()) else {
                continue;
            };
            if let Item::File { node, .. } = item {
                e.chunks = Some(chunk_digest(node));
            }
            entries.insert(r.to_vec(), e);
        }
        let m = Manifest::new(chrono::Utc::now().to_rfc3339(), entries);
        let path = self.root.join(CONTROL).join(MANIFEST);
        write_manifest(root_fd, &m.encode()).map_err(|e| Error::io("write", &path, e))
    }
}

/// Refuses removals that would reach a protected directory (one holding
/// the repository, see `RestoreOptions::protect`): the directory itself or
/// any directory above it in the target. Only directories whose inode
/// number matches are looked at again (with `lstat`, for the device).
fn refuse_protected(
    root: &Path,
    target: &Entries,
    gone: &[Removal],
    protect: &[(u64, u64)],
) -> Result<()> {
    if protect.is_empty() || !gone.iter().any(|g| g.dir) {
        return Ok(());
    }
    for (rel, e) in target {
        if e.kind != EntryKind::Dir || !protect.iter().any(|(_, ino)| e.seen.ino == Some(*ino)) {
            continue;
        }
        let path = tree::abs(root, rel);
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !protect.contains(&crate::local::fence::dir_id(&md)) {
            continue;
        }
        let reaches = |g: &Removal| g.dir && crate::local::fence::within(rel, &g.rel);
        if let Some(g) = gone.iter().find(|g| reaches(g)) {
            return Err(Error::Usage(format!(
                "{} holds the repository this restore reads (it is the same directory as \
                 one above the repository, a bind mount for instance), and --delete would \
                 remove {}. Nothing was changed: unmount it, or restore into a directory that \
                 does not reach the repository",
                path.display(),
                tree::abs(root, &g.rel).display()
            )));
        }
    }
    Ok(())
}
