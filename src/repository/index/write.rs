//! Writing an index file: header, sources, the merged tables, the packs.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::runs::{self, LocalFile, Run, io_error};
use crate::error::{Error, Result};
use crate::format::index::FileTables;
use crate::format::index::file::{FileHeader, HEADER_SIZE};
use crate::format::index::table::{ENTRY_SIZE, Entry, FileTable, Starts};
use crate::id::IndexId;

/// Name of the index file in an index directory (in a repository's cache
/// beside its `index/` folder of cached index objects).
pub(crate) const FILE_NAME: &str = "blob-index";

/// Everything an index file is made of.
pub(crate) struct Parts {
    pub repo: [u8; 32],
    /// Sorted, each once.
    pub sources: Vec<IndexId>,
    pub data: Vec<Run>,
    pub tree: Vec<Run>,
    /// Pack records, in pack-number order.
    pub packs: File,
    pub pack_count: u64,
}

/// Counts and hashes what is written after the header.
struct Body<'a> {
    w: BufWriter<&'a File>,
    hasher: blake3::Hasher,
    err: Box<dyn Fn(std::io::Error) -> Error>,
}

impl Body<'_> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.hasher.update(b);
        self.w.write_all(b).map_err(&self.err)
    }
}

/// Writes the file in `dir` (replacing the one there once complete) or as
/// an anonymous temporary file, and opens its tables.
pub(crate) fn write(parts: Parts, dir: Option<&Path>) -> Result<FileTables> {
    let named = match dir {
        Some(d) => Some(
            tempfile::NamedTempFile::new_in(d)
                .map_err(io_error("cannot create an index file in", Some(d)))?,
        ),
        None => None,
    };
    let file = match &named {
        Some(n) => n
            .as_file()
            .try_clone()
            .map_err(io_error("cannot open", dir))?,
        None => runs::temp_file(None)?,
    };
    let err = io_error("cannot write the index file in", dir);
    let mut body = Body {
        w: BufWriter::with_capacity(1 << 16, &file),
        hasher: blake3::Hasher::new(),
        err: Box::new(io_error("cannot write the index file in", dir)),
    };
    body.w
        .seek(SeekFrom::Start(HEADER_SIZE as u64))
        .map_err(&err)?;
    for s in &parts.sources {
        body.put(&s.0)?;
    }
    let at = (HEADER_SIZE + 32 * parts.sources.len()) as u64;
    let data = table(&mut body, parts.data, at)?;
    let tree = table(&mut body, parts.tree, at + data.len * ENTRY_SIZE as u64)?;
    let packs_at = tree.at + tree.len * ENTRY_SIZE as u64;
    let mut packs = parts.packs;
    packs.seek(SeekFrom::Start(0)).map_err(&err)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = packs.read(&mut buf).map_err(&err)?;
        if n == 0 {
            break;
        }
        body.put(&buf[..n])?;
    }
    body.w.flush().map_err(&err)?;
    let mut header = FileHeader {
        repo: parts.repo,
        sources: parts.sources.len() as u64,
        data: data.len,
        tree: tree.len,
        packs: parts.pack_count,
        hash: [0; 32],
    };
    header.hash = header.seal(body.hasher.finalize().as_bytes());
    drop(body);
    file.write_all_at(&header.encode(), 0).map_err(&err)?;
    if let (Some(named), Some(d)) = (named, dir) {
        file.sync_all().map_err(&err)?;
        named
            .persist(d.join(FILE_NAME))
            .map_err(|e| io_error("cannot save the index file in", dir)(e.error))?;
    }
    Ok(FileTables {
        src: Arc::new(LocalFile(file)),
        data,
        tree,
        packs_at,
        packs: parts.pack_count,
    })
}

/// Merges runs into one table at byte `at`, building its bucket table.
fn table(body: &mut Body, runs: Vec<Run>, at: u64) -> Result<FileTable> {
    let most: u64 = runs.iter().map(|r| r.len).sum();
    if most > u64::from(u32::MAX) {
        return Err(Error::Usage(format!(
            "{most} blobs of one kind exceed the index file's limit of {}",
            u32::MAX
        )));
    }
    let mut starts = Starts::counting(Starts::file_bits(most));
    let mut len = 0u64;
    runs::merge(runs, |e: &Entry| {
        starts.count(&e.id);
        len += 1;
        body.put(&e.to_bytes())
    })?;
    starts.close();
    Ok(FileTable { at, len, starts })
}
