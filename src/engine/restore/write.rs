//! File content: every needed pack is fetched once and its blobs are
//! written straight to their places (packs in parallel, blobs out of
//! order); zero blocks are left as holes so sparse files stay sparse, and
//! the last blob of a file sets its metadata through the open descriptor.
//! With `--verify`, every file is read back and checked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use rayon::prelude::*;

use crate::crypto::hash;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::id::{BlobId, PackId};
use crate::repository::objects::pack_key;
use crate::repository::{BlobRef, Fetch};

use super::{Item, Restorer, flags, meta};

/// Where one blob goes: (file number in the plan, offset in that file).
pub(super) type Targets = Vec<(usize, u64)>;

/// Per pack, the needed entries by (offset, length), each with its blob id and targets.
pub(super) type PackPlan = BTreeMap<PackId, BTreeMap<(u32, u32), (BlobId, u32, Targets)>>;

/// Per item, how many blobs the packs will write to it.
pub(super) fn blob_counts(packs: &PackPlan, items: usize) -> Vec<AtomicU32> {
    let mut remaining: Vec<u32> = vec![0; items];
    for blobs in packs.values() {
        for (_, _, targets) in blobs.values() {
            for (no, _) in targets {
                remaining[*no] += 1;
            }
        }
    }
    remaining.into_iter().map(AtomicU32::new).collect()
}

impl Restorer<'_> {
    /// Per pack, the blobs to write into the files that are `wanted`.
    pub(super) fn pack_plan(&self, wanted: &[bool]) -> PackPlan {
        let mut packs = PackPlan::new();
        for (no, item) in self.items.iter().enumerate() {
            let Item::File { path, node } = item else {
                continue;
            };
            if !wanted[no] {
                continue;
            }
            let mut offset = 0u64;
            for c in &node.content {
                match self.index.get(BlobKind::Data, &c.id) {
                    Some(loc) => packs
                        .entry(loc.pack)
                        .or_default()
                        .entry((loc.offset, loc.length))
                        .or_insert_with(|| (c.id, c.len, Vec::new()))
                        .2
                        .push((no, offset)),
                    None => self.error(
                        path,
                        format!(
                            "data blob {} is missing from the index; run `repo check`",
                            c.id
                        ),
                    ),
                }
                offset += c.len as u64;
            }
        }
        packs
    }

    /// Counts one blob written to file `no`. After its last one, the file's
    /// metadata is set through its descriptor (if this pack holds it open),
    /// which spares three path lookups per file and closes it early.
    fn written_one(&self, no: usize, files: &mut BTreeMap<usize, File>) {
        if self.remaining[no].fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let (Some(f), Item::File { path, node }) = (files.remove(&no), &self.items[no]) {
            for e in meta::apply(
                meta::Target::Open(f.as_fd()),
                node,
                self.as_root,
                &self.owners,
            ) {
                self.error(path, e);
            }
            self.finished[no].store(true, Ordering::Release);
        }
    }

    /// Opens file `no` for writing. The first pack to reach it creates it
    /// (`O_EXCL`: never an existing file, never through a symlink) at its
    /// full length and records its inode; a later pack reopens it and
    /// checks it is still that file.
    pub(super) fn open_target(&self, no: usize) -> std::result::Result<File, String> {
        let size = match &self.items[no] {
            Item::File { node, .. } => node.size,
            _ => 0,
        };
        let Some((dir, name)) = self.parent(no) else {
            return Err("its directory cannot be opened".into());
        };
        let mut created = self.created[no]
            .lock()
            .map_err(|_| "internal: lock poisoned".to_string())?;
        match *created {
            None => {
                let fd = openat(
                    &dir,
                    name,
                    flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL),
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| match e {
                    Errno::EEXIST => "something else appeared in its place during the restore; \
                                      left alone, restore again to replace it"
                        .to_string(),
                    e => format!("cannot create file: {e}"),
                })?;
                let st = fstat(&fd).map_err(|e| format!("cannot create file: {e}"))?;
                let f = File::from(fd);
                if size > 0 {
                    f.set_len(size)
                        .map_err(|e| format!("cannot size file: {e}"))?;
                }
                *created = Some((st.st_dev, st.st_ino));
                Ok(f)
            }
            Some(id) => {
                let fd = openat(
                    &dir,
                    name,
                    flags(OFlag::O_WRONLY | OFlag::O_NONBLOCK),
                    Mode::empty(),
                )
                .map_err(|e| format!("cannot reopen file: {e}"))?;
                let st = fstat(&fd).map_err(|e| format!("cannot reopen file: {e}"))?;
                if (st.st_dev, st.st_ino) != id {
                    return Err("it was replaced by something else during the restore; \
                                not written, restore again"
                        .into());
                }
                Ok(File::from(fd))
            }
        }
    }

    /// Fetches one pack's needed span and writes each blob to its targets.
    pub(super) fn restore_pack(
        &self,
        pack: &PackId,
        blobs: &BTreeMap<(u32, u32), (BlobId, u32, Targets)>,
    ) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let wanted: Vec<BlobRef> = blobs
            .iter()
            .map(|((offset, length), (id, raw_len, _))| BlobRef {
                kind: BlobKind::Data,
                id: *id,
                offset: *offset,
                length: *length,
                raw_len: Some(*raw_len),
            })
            .collect();
        let mut files: BTreeMap<usize, File> = BTreeMap::new();
        let loaded = self.repo.load_blobs(pack, &wanted, Fetch::Span, |b, data| {
            let Some((_, _, targets)) = blobs.get(&(b.offset, b.length)) else {
                return Ok(());
            };
            let data = match data {
                Ok(d) => d,
                Err(e) => {
                    for (no, _) in targets {
                        self.error(self.items[*no].path(), e.to_string());
                    }
                    return Ok(());
                }
            };
            let zeros = data.iter().all(|&b| b == 0);
            for (no, at) in targets {
                let path = self.items[*no].path();
                let f = match files.entry(*no) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => match self.open_target(*no) {
                        Ok(f) => v.insert(f),
                        Err(e) => {
                            self.error(path, e);
                            self.written_one(*no, &mut files);
                            continue;
                        }
                    },
                };
                if zeros {
                    // Leave a hole: the file already has its full length.
                    self.written_one(*no, &mut files);
                    continue;
                }
                if let Err(e) = write_sparse(f, &data, *at) {
                    self.error(path, format!("cannot write: {e}"));
                }
                self.written_one(*no, &mut files);
            }
            self.bytes
                .fetch_add(data.len() as u64 * targets.len() as u64, Ordering::Relaxed);
            self.progress
                .add_done(0, data.len() as u64 * targets.len() as u64);
            Ok(())
        });
        if let Err(e) = loaded {
            let key = pack_key(pack);
            for (_, _, targets) in blobs.values() {
                for (no, _) in targets {
                    self.error(
                        self.items[*no].path(),
                        format!("cannot read pack {key}: {e}"),
                    );
                }
            }
            return Ok(());
        }
        // Files still incomplete are closed here and reopened by a later pack.
        drop(files);
        crate::testhooks::pause_point("restore-pack-written");
        Ok(())
    }

    /// Reads each restored file back and checks every chunk's keyed hash.
    pub(super) fn verify(&self) -> u64 {
        let ok = AtomicU64::new(0);
        self.items.par_iter().enumerate().for_each(|(no, item)| {
            let Item::File { path, node } = item else {
                return;
            };
            let Some((dir, name)) = self.parent(no) else {
                return;
            };
            let mut f = match openat(
                &dir,
                name,
                flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
                Mode::empty(),
            ) {
                Ok(fd) => File::from(fd),
                Err(e) => return self.error(path, format!("verify: cannot open: {e}")),
            };
            let mut buf = Vec::new();
            for c in &node.content {
                buf.resize(c.len as usize, 0);
                if let Err(e) = f.read_exact(&mut buf) {
                    return self.error(path, format!("verify: cannot read: {e}"));
                }
                if hash::blob_id(&self.repo.keys().blob_id, &buf) != c.id {
                    return self.error(path, "verify: content differs from the snapshot");
                }
            }
            if f.read(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
                return self.error(path, "verify: file is longer than in the snapshot");
            }
            ok.fetch_add(1, Ordering::Relaxed);
        });
        ok.into_inner()
    }
}

/// File-system block size for holes: runs of zeros that cover whole aligned
/// blocks of this size are left unwritten.
const HOLE_BLOCK: u64 = 4096;

/// Writes `data` at offset `at` of a file that was created at its full
/// length (so every unwritten byte reads as zero), skipping each aligned
/// 4 KiB block of the file that `data` fills with zeros only: such blocks
/// stay holes. Runs of non-zero blocks are written with one call each.
fn write_sparse(f: &File, data: &[u8], at: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        let off = at + i as u64;
        let end = (((off / HOLE_BLOCK) + 1) * HOLE_BLOCK - at).min(data.len() as u64) as usize;
        let zero = data[i..end].iter().all(|&b| b == 0);
        match (zero, run) {
            (true, Some(start)) => {
                f.write_all_at(&data[start..i], at + start as u64)?;
                run = None;
            }
            (false, None) => run = Some(i),
            _ => {}
        }
        i = end;
    }
    if let Some(start) = run {
        f.write_all_at(&data[start..], at + start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_sparse_writes_every_non_zero_byte_and_skips_zero_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let at = 1000u64;
        let mut data = vec![0u8; 64 * 1024];
        data[0] = 1; // partial first block
        data[20_000] = 2;
        data[64 * 1024 - 1] = 3; // partial last block
        f.set_len(at + data.len() as u64 + 500).unwrap();
        write_sparse(&f, &data, at).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[at as usize..at as usize + data.len()], &data[..]);
        assert!(back[..at as usize].iter().all(|&b| b == 0));
        assert!(f.metadata().unwrap().blocks() * 512 <= 32 * 1024);
    }
}
