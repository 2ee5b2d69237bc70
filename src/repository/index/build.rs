//! Building the index within a fixed memory budget.
//!
//! Index objects are added one at a time. Their entries collect in memory
//! until `limit` of them are there; then they are sorted and written out as
//! a run, and the next ones collect. If nothing was written out the index
//! stays in memory, exactly as before; otherwise the runs are merged into
//! one index file. Memory is bounded by `limit` entries (44 bytes each,
//! plus one pack record per pack they name) whatever the repository's size.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::open::Opened;
use super::runs::{self, Run, io_error};
use super::write::{self, Parts};
use crate::error::Result;
use crate::format::index::table::{PACK_SIZE, pack_record};
use crate::format::index::{FileTables, IndexFile, MemIndex};
use crate::format::pack::BlobKind;
use crate::id::IndexId;
use crate::repository::cache::IndexHome;

/// Entries an index holds in memory before it moves to a file: 1 Mi
/// entries, 44 MiB (about 90 MiB at the peak while its arrays grow).
pub(crate) const DEFAULT_LIMIT: usize = 1 << 20;

/// Builds one [`MemIndex`] from index objects; see the module docs.
pub(crate) struct IndexBuilder {
    limit: usize,
    dir: Option<PathBuf>,
    /// Where `dir` is made when a file is first written, if it is not given.
    home: Option<IndexHome>,
    repo: [u8; 32],
    mem: MemIndex,
    sources: Vec<IndexId>,
    spilled: Option<Spilled>,
}

/// What has been written out so far.
struct Spilled {
    data: Vec<Run>,
    tree: Vec<Run>,
    packs: File,
    pack_count: u64,
}

impl IndexBuilder {
    /// A builder whose file (if it needs one) goes to `dir`, kept there, or
    /// to an anonymous temporary file. `base`, a kept file, holds entries
    /// already: only index objects it was not built from are then added.
    pub(crate) fn new(
        repo: [u8; 32],
        limit: usize,
        dir: Option<&Path>,
        base: Option<Opened>,
    ) -> Self {
        let (mem, sources) = match base {
            Some(b) => (MemIndex::with_base(b.tables), b.sources),
            None => (MemIndex::default(), Vec::new()),
        };
        IndexBuilder {
            limit: limit.max(1),
            dir: dir.map(Path::to_path_buf),
            home: None,
            repo,
            mem,
            sources,
            spilled: None,
        }
    }

    /// Without a directory, the file goes to `home`, made when the index
    /// first outgrows memory (a local repository's; see `cache::IndexHome`).
    pub(crate) fn made_in(mut self, home: Option<IndexHome>) -> Self {
        self.home = home;
        self
    }

    /// Adds one index object.
    pub(crate) fn add(&mut self, id: IndexId, file: &IndexFile) -> Result<()> {
        self.mem.add(file);
        self.sources.push(id);
        if self.mem.in_memory() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// The finished index: in memory if it stayed small, else in a file
    /// (with a kept base: the base plus the new entries in memory, until
    /// those reach a quarter of the limit and are merged into a new file).
    pub(crate) fn finish(mut self) -> Result<MemIndex> {
        if self.spilled.is_none() {
            self.mem.finish();
            if !(self.mem.has_base()
                && self.dir.is_some()
                && self.mem.in_memory() >= self.limit / 4)
            {
                return Ok(self.mem);
            }
        }
        self.spill()?;
        let Some(s) = self.spilled.take() else {
            return Ok(self.mem);
        };
        self.sources.sort_unstable();
        self.sources.dedup();
        let parts = Parts {
            repo: self.repo,
            sources: self.sources,
            data: s.data,
            tree: s.tree,
            packs: s.packs,
            pack_count: s.pack_count,
        };
        Ok(MemIndex::with_base(write::write(
            parts,
            self.dir.as_deref(),
        )?))
    }

    /// Writes the entries in memory out as sorted runs.
    fn spill(&mut self) -> Result<()> {
        let mut s = match self.spilled.take() {
            Some(s) => s,
            None => self.start()?,
        };
        let dir = self.dir.as_deref();
        self.mem.finish();
        let d = self.mem.drain();
        let offset = u32::try_from(s.pack_count).map_err(|_| {
            crate::error::Error::Usage("more than 2^32 packs exceed the index file's limit".into())
        })?;
        let mut buf = Vec::with_capacity(d.packs.len() * PACK_SIZE);
        for (id, size) in &d.packs {
            buf.extend_from_slice(&pack_record(&id.0, *size));
        }
        (&s.packs)
            .write_all(&buf)
            .map_err(io_error("cannot write a temporary index file in", dir))?;
        s.pack_count += d.packs.len() as u64;
        for (runs, entries) in [(&mut s.data, &d.data), (&mut s.tree, &d.tree)] {
            if !entries.is_empty() {
                runs.push(runs::write_run(dir, entries, offset)?);
            }
        }
        self.spilled = Some(s);
        Ok(())
    }

    /// Starts writing out: a kept base becomes the first run of each table
    /// and the first pack records, so its pack numbers stay valid.
    fn start(&mut self) -> Result<Spilled> {
        if self.dir.is_none() {
            self.dir = self.home.take().and_then(|h| h.prepare());
        }
        let dir = self.dir.as_deref();
        let mut s = Spilled {
            data: Vec::new(),
            tree: Vec::new(),
            packs: runs::temp_file(dir)?,
            pack_count: 0,
        };
        if let Some(base) = self.mem.take_base() {
            copy_packs(&base, &s.packs, dir)?;
            s.pack_count = base.packs;
            s.data.push(Run::of(&base, BlobKind::Data));
            s.tree.push(Run::of(&base, BlobKind::Tree));
        }
        Ok(s)
    }
}

/// Copies a base file's pack records.
fn copy_packs(base: &FileTables, mut to: &File, dir: Option<&Path>) -> Result<()> {
    let mut copied = 0u64;
    for block in base.records(base.packs_at, base.packs, PACK_SIZE) {
        to.write_all(&block)
            .map_err(io_error("cannot write a temporary index file in", dir))?;
        copied += (block.len() / PACK_SIZE) as u64;
    }
    if copied != base.packs {
        return Err(crate::error::Error::Io {
            action: "cannot read the index file in",
            path: dir.map(Path::to_path_buf).unwrap_or_default(),
            cause: std::io::Error::other("short read"),
        });
    }
    Ok(())
}
