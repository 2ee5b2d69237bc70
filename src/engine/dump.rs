//! Writing snapshot contents to a stream: one file's bytes, or a directory
//! as a tar archive.
//!
//! Data is fetched and written one blob at a time, so memory use does not
//! grow with the size of what is dumped. Tar archives use GNU long-name
//! entries for long paths and link targets and a POSIX pax header for what
//! the classic header cannot hold (nanosecond mtimes and extended
//! attributes); names are written as their raw bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::MemIndex;
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;
use crate::repository::{Repository, Step, Visitor, Walker};

/// What a dump wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DumpStats {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// File content bytes written (not counting tar headers).
    pub bytes: u64,
    /// Entries tar cannot hold (sockets), left out.
    pub skipped: u64,
}

fn write_err(e: std::io::Error) -> Error {
    Error::io("write the dump to", "the output", e)
}

/// Checks that a file's chunk lengths add up to its size, so a stream never
/// carries a different number of bytes than its tar header announced.
fn check_sizes(n: &Node, path: &Path) -> Result<()> {
    let total: u64 = n.content.iter().map(|c| c.len as u64).sum();
    if total != n.size {
        return Err(Error::corrupt(
            format!("file {} in the snapshot", path.display()),
            format!("its chunks hold {total} bytes but its size is {}", n.size),
        ));
    }
    Ok(())
}

/// Reads a file's content blob by blob, verifying each blob's length.
struct ChunkReader<'a> {
    repo: &'a Repository,
    index: &'a MemIndex,
    node: &'a Node,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    cancel: &'a AtomicBool,
    /// The repository error behind an I/O error returned to tar.
    failed: Option<Error>,
}

impl<'a> ChunkReader<'a> {
    fn new(
        repo: &'a Repository,
        index: &'a MemIndex,
        node: &'a Node,
        cancel: &'a AtomicBool,
    ) -> Self {
        ChunkReader {
            repo,
            index,
            node,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            cancel,
            failed: None,
        }
    }

    /// Loads the next blob; `false` at the end.
    fn fill(&mut self) -> Result<bool> {
        let Some(c) = self.node.content.get(self.next) else {
            return Ok(false);
        };
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let data = self.repo.load_blob(self.index, BlobKind::Data, &c.id)?;
        if data.len() != c.len as usize {
            return Err(Error::corrupt(
                format!("data blob {}", c.id),
                format!("it holds {} bytes, the tree says {}", data.len(), c.len),
            ));
        }
        self.next += 1;
        self.buf = data;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.failed = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes one file's content to `out`; returns the bytes written.
pub(crate) fn write_file(
    repo: &Repository,
    index: &MemIndex,
    node: &Node,
    path: &Path,
    out: &mut dyn Write,
    cancel: &AtomicBool,
) -> Result<u64> {
    check_sizes(node, path)?;
    let mut r = ChunkReader::new(repo, index, node, cancel);
    let mut written = 0u64;
    while r.fill()? {
        out.write_all(&r.buf).map_err(write_err)?;
        written += r.buf.len() as u64;
    }
    out.flush().map_err(write_err)?;
    Ok(written)
}

/// One pax extended-header record: `"<len> <key>=<value>\n"`, where `<len>`
/// counts the whole record including its own digits.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// glibc's encoding of device numbers.
fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x00ff);
    (major as u32, minor as u32)
}

struct TarWriter<'a, W: Write> {
    repo: &'a Repository,
    index: &'a MemIndex,
    cancel: &'a AtomicBool,
    tar: tar::Builder<W>,
    /// First archive path of each hard-linked file, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    stats: DumpStats,
}

impl<W: Write> TarWriter<'_, W> {
    fn header(&mut self, n: &Node, path: &Path) -> Result<tar::Header> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode & 0o7777);
        h.set_uid(n.uid as u64);
        h.set_gid(n.gid as u64);
        // Names too long for the header are simply left out (the ids stay).
        let _ = h.set_username(&n.user);
        let _ = h.set_groupname(&n.group);
        h.set_mtime(n.mtime.secs.max(0) as u64);
        h.set_size(0);
        // Nanoseconds, negative times and xattrs go into a pax header.
        let mut pax = Vec::new();
        if n.mtime.nanos != 0 || n.mtime.secs < 0 {
            let v = if n.mtime.secs < 0 && n.mtime.nanos > 0 {
                // -1.25 s is secs -2, nanos 750000000.
                let total = n.mtime.secs as i128 * 1_000_000_000 + n.mtime.nanos as i128;
                let sign = if total < 0 { "-" } else { "" };
                let abs = total.unsigned_abs();
                format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
            } else {
                format!("{}.{:09}", n.mtime.secs, n.mtime.nanos)
            };
            pax.extend(pax_record(b"mtime", v.as_bytes()));
        }
        for x in &n.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(&x.name);
            pax.extend(pax_record(&key, &x.value));
        }
        if !pax.is_empty() {
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_mtime(n.mtime.secs.max(0) as u64);
            ph.set_size(pax.len() as u64);
            ph.set_path("PaxHeader")
                .map_err(|e| Error::io("write a tar header for", path, e))?;
            ph.set_cksum();
            self.tar.append(&ph, pax.as_slice()).map_err(write_err)?;
        }
        Ok(h)
    }

    fn entry(&mut self, n: &Node, path: &Path) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if n.kind == NodeKind::Socket {
            self.stats.skipped += 1;
            return Ok(());
        }
        if n.kind == NodeKind::File && n.links > 1 {
            if let Some(first) = self.links.get(&(n.device, n.inode)).cloned() {
                let mut h = self.header(n, path)?;
                h.set_entry_type(tar::EntryType::Link);
                self.tar
                    .append_link(&mut h, path, &first)
                    .map_err(|e| Error::io("write a tar entry for", path, e))?;
                self.stats.files += 1;
                return Ok(());
            }
            self.links.insert((n.device, n.inode), path.to_path_buf());
        }
        let mut h = self.header(n, path)?;
        let add = |e| Error::io("write a tar entry for", path, e);
        match n.kind {
            NodeKind::File => {
                check_sizes(n, path)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let mut r = ChunkReader::new(self.repo, self.index, n, self.cancel);
                if let Err(e) = self.tar.append_data(&mut h, path, &mut r) {
                    return Err(r.failed.take().unwrap_or_else(|| add(e)));
                }
                self.stats.files += 1;
                self.stats.bytes += n.size;
            }
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(add)?;
                self.stats.dirs += 1;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = Path::new(std::ffi::OsStr::from_bytes(&n.target));
                self.tar.append_link(&mut h, path, target).map_err(add)?;
                self.stats.others += 1;
            }
            NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Fifo => {
                h.set_entry_type(match n.kind {
                    NodeKind::CharDevice => tar::EntryType::Char,
                    NodeKind::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if n.kind != NodeKind::Fifo {
                    let (major, minor) = major_minor(n.rdev);
                    h.set_device_major(major).map_err(add)?;
                    h.set_device_minor(minor).map_err(add)?;
                }
                self.tar
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(add)?;
                self.stats.others += 1;
            }
            NodeKind::Socket => {}
        }
        Ok(())
    }
}

impl<W: Write> Visitor for TarWriter<'_, W> {
    fn node(&mut self, path: &Path, n: &Node, _parent: &BlobId) -> Result<Step> {
        self.entry(n, path)?;
        Ok(Step::Descend)
    }
}

/// Writes the directory `dir` and everything below it as a tar archive.
/// Entries are named relative to the directory's parent (`docs/a.txt` for
/// `/home/u/docs`); for the snapshot root (`name` empty), relative to `/`.
pub(crate) fn write_tar<W: Write>(
    repo: &Repository,
    index: &MemIndex,
    dir: &Node,
    out: W,
    cancel: &AtomicBool,
) -> Result<DumpStats> {
    let tar = tar::Builder::new(out);
    let mut w = TarWriter {
        repo,
        index,
        cancel,
        tar,
        links: HashMap::new(),
        stats: DumpStats::default(),
    };
    let top = PathBuf::from(std::ffi::OsStr::from_bytes(&dir.name));
    if !dir.name.is_empty() {
        w.entry(dir, &top)?;
    }
    if let Some(id) = dir.subtree {
        Walker::new(repo, index).walk(&id, &top, &mut w)?;
    }
    w.tar.finish().map_err(write_err)?;
    let mut out = w.tar.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(w.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record(b"mtime", b"1.5");
        assert_eq!(r, b"13 mtime=1.5\n");
        assert_eq!(r.len(), 13);
        // The length crosses a digit boundary: 9 + 1 digit = 10 needs 2 digits.
        let r = pax_record(b"a", b"bbbb");
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
        let long = vec![b'x'; 200];
        let r = pax_record(b"k", &long);
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn device_numbers() {
        // makedev(8, 1) and makedev(259, 65536) in glibc's encoding.
        assert_eq!(major_minor(0x801), (8, 1));
        let (major, minor) = (259u64, 65536u64 + 7);
        let dev = ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 65543));
    }
}
