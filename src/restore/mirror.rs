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

use crate::error::Result;
use crate::manifest::{Entries, EntryKind, Manifest};
use crate::plain::{MANIFEST, local};
use crate::progress::Progress;
use crate::tree::{Node, NodeKind};

use super::Item;
use super::plan::Filter;

/// BLAKE3 of the node's chunk ids in order: equal digests mean equal content.
pub fn chunk_digest(node: &Node) -> [u8; 32] {
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

impl Removal {
    /// The path as shown to the user (`/` after a directory).
    pub fn shown(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.rel).into_owned();
        if self.dir {
            s.push('/');
        }
        s
    }
}

pub struct Mirror {
    root: PathBuf,
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
    pub fn new(root: &Path, archive: bool, progress: &dyn Progress) -> Self {
        let manifest = match local::read_control(root, MANIFEST) {
            Ok(Some(bytes)) => match Manifest::decode(&bytes) {
                Ok(m) => Some(m.entries),
                Err(e) => {
                    progress.warn(
                        &root.join(".repo").join(MANIFEST),
                        &format!("ignored, every file is compared by content instead: {e}"),
                    );
                    None
                }
            },
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

    /// True when the manifest shows `path` was written by an earlier restore
    /// of the same content and has not been touched since (same size, mtime,
    /// inode and ctime).
    pub fn unchanged(&self, path: &Path, node: &Node) -> bool {
        let (Some(m), Some(r)) = (&self.manifest, rel(&self.root, path)) else {
            return false;
        };
        let Some(rec) = m.get(r) else {
            return false;
        };
        let Ok(md) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let Some(now) = local::entry_of(&md, path) else {
            return false;
        };
        let same = now.kind == EntryKind::File
            && rec.kind == EntryKind::File
            && now.size == node.size
            && now.size == rec.size
            && now.mtime_ns == rec.mtime_ns
            && now.seen == rec.seen
            && rec.chunks == Some(chunk_digest(node));
        if same {
            self.unread.fetch_add(1, Ordering::Relaxed);
        }
        same
    }

    /// Moves an existing entry aside before it is replaced or removed.
    pub fn set_aside(&self, path: &Path, bin: &str) -> Result<()> {
        let Some(r) = rel(&self.root, path) else {
            return Ok(());
        };
        let moved = local::remove(
            &self.root,
            r,
            self.archive.then_some((bin, self.stamp.as_str())),
        )?;
        if moved && self.archive {
            self.archived.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// What `--delete` would remove: what the snapshot does not have, and
    /// whatever has the wrong type for what will be restored in its place,
    /// in path order (a directory stands for its contents). With filters,
    /// only paths the filters select are touched.
    pub fn plan_removals(
        &self,
        items: &[Item],
        filter: &Filter,
        snap_root: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<Removal>> {
        let mut warnings = Vec::new();
        let target = local::scan(&self.root, None, &mut warnings)?;
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
        Ok(gone)
    }

    /// Removes (or moves to the trash) what [`Mirror::plan_removals`] listed.
    pub fn remove(&self, gone: &[Removal]) -> Result<()> {
        for g in gone {
            self.set_aside(&local::abs(&self.root, &g.rel), "trash")?;
            self.deleted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes the target's manifest for what was restored.
    pub fn record(&self, items: &[Item]) -> Result<()> {
        let mut entries = Entries::new();
        for item in items {
            let Some(r) = rel(&self.root, item.path()) else {
                continue;
            };
            let Ok(md) = std::fs::symlink_metadata(item.path()) else {
                continue;
            };
            let Some(mut e) = local::entry_of(&md, item.path()) else {
                continue;
            };
            if let Item::File { node, .. } = item {
                e.chunks = Some(chunk_digest(node));
            }
            entries.insert(r.to_vec(), e);
        }
        let m = Manifest::new(chrono::Utc::now().to_rfc3339(), entries);
        local::write_control(&self.root, MANIFEST, &m.encode())
    }
}
