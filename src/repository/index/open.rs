//! Opening a kept index file: it is used only if it belongs to this
//! repository, was built from index objects that all still exist, and every
//! byte matches its hash. Anything else means "rebuild", never "trust".

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::runs::LocalFile;
use crate::format::index::FileTables;
use crate::format::index::file::{FileHeader, HEADER_SIZE};
use crate::format::index::table::{ENTRY_SIZE, Entry, FileTable, PACK_SIZE, Starts};
use crate::id::IndexId;

/// Why a file built before a prune (or another host's) is refused: not
/// damage, only out of date, so it is replaced without a warning.
pub(crate) const STALE: &str = "it names index objects that no longer exist";

/// A verified index file and the index objects it was built from.
pub(crate) struct Opened {
    pub tables: FileTables,
    pub sources: Vec<IndexId>,
}

/// Opens `path` if it is whole and current (see the module docs); why not otherwise.
pub(crate) fn open(
    path: &Path,
    repo: &[u8; 32],
    listed: &BTreeSet<IndexId>,
) -> Result<Opened, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = BufReader::with_capacity(1 << 20, &file);
    let mut head = [0u8; HEADER_SIZE];
    r.read_exact(&mut head).map_err(|e| e.to_string())?;
    let header = FileHeader::decode(&head).map_err(|e| e.to_string())?;
    if &header.repo != repo {
        return Err("it belongs to another repository".into());
    }
    let layout = header.layout().filter(|l| l[4] == size);
    let Some([_, data_at, tree_at, packs_at, _]) = layout else {
        return Err("its size does not match its header".into());
    };
    if header.sources > listed.len() as u64 {
        return Err(STALE.into());
    }
    let mut v = Verify {
        r,
        hasher: blake3::Hasher::new(),
    };
    let mut sources = Vec::with_capacity(header.sources as usize);
    v.records(header.sources, 32, |b| {
        let id = IndexId(b.try_into().unwrap_or_default());
        let ok = sources.last().is_none_or(|l| *l < id);
        sources.push(id);
        ok
    })?;
    if sources.iter().any(|s| !listed.contains(s)) {
        return Err(STALE.into());
    }
    let data = v.table(data_at, header.data, header.packs)?;
    let tree = v.table(tree_at, header.tree, header.packs)?;
    v.records(header.packs, PACK_SIZE, |_| true)?;
    if header.seal(v.hasher.finalize().as_bytes()) != header.hash {
        return Err("its content does not match its hash (damaged)".into());
    }
    Ok(Opened {
        tables: FileTables {
            src: Arc::new(LocalFile(file)),
            data,
            tree,
            packs_at,
            packs: header.packs,
        },
        sources,
    })
}

/// Reads the body once, hashing it.
struct Verify<'a> {
    r: BufReader<&'a File>,
    hasher: blake3::Hasher,
}

impl Verify<'_> {
    /// Reads `count` records of `size` bytes; `check` says whether each is sound.
    fn records(
        &mut self,
        count: u64,
        size: usize,
        mut check: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; size * 4096];
        let mut left = count;
        while left > 0 {
            let n = left.min(4096) as usize;
            let b = &mut buf[..n * size];
            self.r.read_exact(b).map_err(|e| e.to_string())?;
            self.hasher.update(b);
            if !b.chunks_exact(size).all(&mut check) {
                return Err("its records are out of order or out of range (damaged)".into());
            }
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads one table: ids strictly ascending, pack numbers in range; builds its buckets.
    fn table(&mut self, at: u64, len: u64, packs: u64) -> Result<FileTable, String> {
        if len > u64::from(u32::MAX) {
            return Err("its table is too large".into());
        }
        let mut starts = Starts::counting(Starts::file_bits(len));
        let mut last: Option<[u8; 32]> = None;
        self.records(len, ENTRY_SIZE, |b| {
            let e = Entry::from_bytes(b);
            let ok = last.is_none_or(|l| l < e.id) && u64::from(e.pack) < packs;
            last = Some(e.id);
            starts.count(&e.id);
            ok
        })?;
        starts.close();
        Ok(FileTable { at, len, starts })
    }
}
