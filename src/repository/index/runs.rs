//! Sorted runs of index entries on disk and their k-way merge.
//!
//! A builder that outgrows its memory budget writes its entries, sorted, to
//! a run file and starts again; at the end the runs are merged into one
//! sorted table. Reading a run holds one block (44 KiB), so merging 200 runs
//! costs under 10 MiB whatever their size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::index::table::{ENTRY_SIZE, Entry};
use crate::format::index::{FileTables, ReadAt};

/// Entries per block read from a run.
const BLOCK: u64 = 1024;

/// A local file read by position (the index file, a run).
pub(crate) struct LocalFile(pub File);

impl ReadAt for LocalFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// `len` sorted entries from byte `at` of `src`.
#[derive(Clone)]
pub(crate) struct Run {
    pub src: Arc<dyn ReadAt>,
    pub at: u64,
    pub len: u64,
}

impl Run {
    /// One sorted table of an index file as a run, to merge it with new entries.
    pub(crate) fn of(t: &FileTables, kind: crate::format::pack::BlobKind) -> Run {
        let table = t.table(kind);
        Run {
            src: t.src.clone(),
            at: table.at,
            len: table.len,
        }
    }
}

/// Where temporary files go: the index directory, else the system's.
pub(crate) fn temp_file(dir: Option<&Path>) -> Result<File> {
    let made = match dir {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    };
    made.map_err(|cause| Error::Io {
        action: "cannot create a temporary index file in",
        path: dir.map_or_else(std::env::temp_dir, Path::to_path_buf),
        cause,
    })
}

/// An I/O error on a local index file, named for messages.
pub(crate) fn io_error(
    action: &'static str,
    path: Option<&Path>,
) -> impl Fn(std::io::Error) -> Error + use<> {
    let path = path.map_or_else(
        || PathBuf::from("(temporary index file)"),
        Path::to_path_buf,
    );
    move |cause| Error::Io {
        action,
        path: path.clone(),
        cause,
    }
}

/// Writes sorted entries to a new run file.
pub(crate) fn write_run(dir: Option<&Path>, entries: &[Entry], pack_offset: u32) -> Result<Run> {
    let file = temp_file(dir)?;
    let err = io_error("cannot write a temporary index file in", dir);
    let mut w = BufWriter::with_capacity(1 << 16, &file);
    for e in entries {
        let mut e = *e;
        e.pack += pack_offset;
        w.write_all(&e.to_bytes()).map_err(&err)?;
    }
    w.flush().map_err(&err)?;
    drop(w);
    Ok(Run {
        src: Arc::new(LocalFile(file)),
        at: 0,
        len: entries.len() as u64,
    })
}

/// Reads a run in order, a block at a time.
struct Cursor {
    run: Run,
    next: u64,
    block: Vec<Entry>,
    pos: usize,
}

impl Cursor {
    fn next(&mut self) -> std::io::Result<Option<Entry>> {
        if self.pos == self.block.len() {
            if self.next == self.run.len {
                return Ok(None);
            }
            let n = (self.run.len - self.next).min(BLOCK) as usize;
            let mut buf = vec![0u8; n * ENTRY_SIZE];
            let at = self.run.at + self.next * ENTRY_SIZE as u64;
            self.run.src.read_exact_at(&mut buf, at)?;
            self.block = buf
                .chunks_exact(ENTRY_SIZE)
                .map(Entry::from_bytes)
                .collect();
            self.next += n as u64;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(Some(self.block[self.pos - 1]))
    }
}

/// Merges sorted runs into `out`, in id order, each id once (the first
/// run's entry wins, as in [`crate::format::index::MemIndex::finish`]).
pub(crate) fn merge(runs: Vec<Run>, mut out: impl FnMut(&Entry) -> Result<()>) -> Result<()> {
    let err = io_error("cannot read a temporary index file in", None);
    let mut cursors: Vec<Cursor> = runs
        .into_iter()
        .map(|run| Cursor {
            run,
            next: 0,
            block: Vec::new(),
            pos: 0,
        })
        .collect();
    // (id, run) ordered: among equal ids the earlier run comes first.
    let mut heap = BinaryHeap::new();
    let mut heads = Vec::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        let head = c.next().map_err(&err)?;
        if let Some(e) = head {
            heap.push(Reverse((e.id, i)));
        }
        heads.push(head.unwrap_or(Entry::from_bytes(&[])));
    }
    let mut last: Option<[u8; 32]> = None;
    while let Some(Reverse((id, i))) = heap.pop() {
        if last != Some(id) {
            out(&heads[i])?;
            last = Some(id);
        }
        if let Some(n) = cursors[i].next().map_err(&err)? {
            heads[i] = n;
            heap.push(Reverse((n.id, i)));
        }
    }
    Ok(())
}
