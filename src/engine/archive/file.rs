//! Archiving one regular file, and the totals scanner.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::walk::Done;
use super::{Excludes, Walk, at};
use crate::codec::chunker::StreamChunker;
use crate::local::meta::{self, Stat};
use rayon::prelude::*;

use crate::engine::progress::Progress;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::format::tree::{ChunkRef, Node, NodeKind};
use crate::id::BlobId;

/// Whether the parent snapshot's node still describes this file's content,
/// so it can be reused without reading the file (the bupstash/restic stat
/// cache): same size, mtime, ctime and inode, and every chunk still indexed.
fn content_unchanged(st: &Stat, parent: &Node, w: &Walk) -> bool {
    let size = meta::size_of(NodeKind::File, st);
    parent.kind == NodeKind::File
        && parent.size == size
        && parent.mtime == meta::timestamp(st.st_mtime, st.st_mtime_nsec)
        && parent.ctime == meta::timestamp(st.st_ctime, st.st_ctime_nsec)
        && parent.inode == st.st_ino
        && parent.content.iter().map(|c| c.len as u64).sum::<u64>() == size
        && parent
            .content
            .iter()
            .all(|c| w.index.contains(BlobKind::Data, &c.id))
}

/// Archives the regular file `name` of the open directory `dir`, which
/// `lstat` saw as `st`; `parent` is its node in the parent snapshot.
pub(super) fn archive(
    w: &Walk,
    dir: BorrowedFd,
    path: &Path,
    name: &[u8],
    st: &Stat,
    parent: Option<Node>,
) -> Result<Option<Done>> {
    let counts = w.count();
    let listed = meta::size_of(NodeKind::File, st);
    counts.total_bytes.fetch_add(listed, Ordering::Relaxed);
    let os_name = OsStr::from_bytes(name);
    if !w.opts.force
        && let Some(p) = &parent
        && content_unchanged(st, p, w)
    {
        // Not opened at all: the parent's content stands for it.
        counts.files_unchanged.fetch_add(1, Ordering::Relaxed);
        w.progress.add_done(1, listed);
        return Ok(Some(match parent {
            Some(p) if meta::same_as(st, &p) => Done {
                node: p,
                same: true,
            },
            p => {
                let mut node =
                    meta::node_from(name, st, p.as_ref(), || at::xattrs_at(dir, os_name, path));
                node.content = p.map(|p| p.content).unwrap_or_default();
                Done { node, same: false }
            }
        }));
    }
    let (file, opened) = match at::open_seen(dir, os_name, st) {
        Ok(f) => f,
        Err(e) => {
            match e {
                at::OpenError::Swapped(msg) => w.error(path, msg),
                at::OpenError::Io(e) => w.error(path, format!("cannot open file: {e}")),
            }
            counts.total_bytes.fetch_sub(listed, Ordering::Relaxed);
            return Ok(None);
        }
    };
    crate::testhooks::pause_point("source-after-open");
    // The node describes the file that is read, not the name that was listed.
    let mut node = meta::node_from(name, &opened, parent.as_ref(), || at::xattrs_of(&file));
    let buf = w
        .buffers
        .lock()
        .ok()
        .and_then(|mut b| b.pop())
        .unwrap_or_default();
    let mut chunks = StreamChunker::with_buffer(w.repo.chunker(), &file, buf, node.size);
    let result = read_chunks(w, &mut chunks);
    if let Ok(mut b) = w.buffers.lock() {
        b.push(chunks.into_buffer());
    }
    let (content, read) = match result {
        Ok(done) => done,
        Err(ReadFailure::Fatal(e)) => return Err(e),
        Err(ReadFailure::Io(read, e)) => {
            w.error(path, format!("cannot read file after {read} bytes: {e}"));
            counts.total_bytes.fetch_sub(listed, Ordering::Relaxed);
            return Ok(None);
        }
    };
    if let Ok(after) = file.metadata()
        && (after.size() != node.size
            || after.mtime() != node.mtime.secs
            || after.mtime_nsec() != node.mtime.nanos as i64
            || read != node.size)
    {
        w.warning(path, format!("file changed while being read ({} bytes expected, {read} read); the snapshot holds what was read, run create again for a consistent copy", node.size));
    }
    let counts = w.count();
    counts.total_bytes.fetch_add(read, Ordering::Relaxed);
    counts.total_bytes.fetch_sub(listed, Ordering::Relaxed);
    counts.bytes_read.fetch_add(read, Ordering::Relaxed);
    node.size = read;
    node.content = content;
    if parent.is_some_and(|p| p.kind == NodeKind::File) {
        counts.files_changed.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.files_new.fetch_add(1, Ordering::Relaxed);
    }
    w.progress.add_done(1, 0);
    Ok(Some(Done { node, same: false }))
}

/// Why reading a file stopped: a read error only loses that file; anything
/// else (storage, interruption) stops the backup.
pub(super) enum ReadFailure {
    Io(u64, std::io::Error),
    Fatal(crate::error::Error),
}

/// Chunks a file (or any stream) and saves its chunks, each batch in
/// parallel; returns the chunks and the bytes read.
pub(super) fn read_chunks<R: std::io::Read>(
    w: &Walk,
    chunks: &mut StreamChunker<R>,
) -> std::result::Result<(Vec<ChunkRef>, u64), ReadFailure> {
    let mut content = Vec::new();
    let mut read = 0u64;
    loop {
        w.check_cancel().map_err(ReadFailure::Fatal)?;
        let (buf, ranges) = match chunks.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => return Ok((content, read)),
            Err(e) => return Err(ReadFailure::Io(read, e)),
        };
        let ids: Vec<Result<BlobId>> = ranges
            .par_iter()
            .map(|r| {
                w.saver
                    .save(BlobKind::Data, &buf[r.clone()])
                    .map(|(id, _)| id)
            })
            .collect();
        for (r, id) in ranges.iter().zip(ids) {
            content.push(ChunkRef {
                id: id.map_err(ReadFailure::Fatal)?,
                len: r.len() as u32,
            });
            read += r.len() as u64;
            w.progress.add_done(0, r.len() as u64);
        }
    }
}

/// Walks the sources once to count files and bytes for the progress
/// display; runs beside the backup and stops early when it finishes.
pub(super) fn scan_totals(
    sources: &[PathBuf],
    excludes: &Excludes,
    progress: &dyn Progress,
    done: &AtomicBool,
) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = sources.to_vec();
    while let Some(p) = stack.pop() {
        if done.load(Ordering::Relaxed) {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|c| !excludes.is_excluded(c)),
                );
            }
        } else {
            files += 1;
            if md.is_file() {
                bytes += md.size();
            }
        }
        if files % 4096 == 0 {
            progress.set_total(files, bytes);
        }
    }
    progress.set_total(files, bytes);
}
