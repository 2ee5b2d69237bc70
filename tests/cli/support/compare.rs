//! Comparing two trees entry by entry (type, content, link targets and, as
//! asked, mode, owner, mtime, xattrs and hard links).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::is_root;

/// What [`compare_trees`] compares besides type, content and link targets.
#[derive(Debug, Clone, Copy)]
pub struct Cmp {
    pub mode: bool,
    pub owner: bool,
    pub mtime: bool,
    pub xattrs: bool,
    /// Mtime of the two roots themselves.
    pub root_mtime: bool,
}

impl Cmp {
    /// Everything this process can expect a restore to reproduce.
    pub fn full() -> Self {
        Cmp {
            mode: true,
            owner: is_root(),
            mtime: true,
            xattrs: true,
            root_mtime: true,
        }
    }

    pub fn content_only() -> Self {
        Cmp {
            mode: false,
            owner: false,
            mtime: false,
            xattrs: false,
            root_mtime: false,
        }
    }
}

fn kind(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "unknown"
    }
}

fn xattrs_of(p: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let Ok(names) = xattr::list(p) else {
        return BTreeMap::new();
    };
    names
        .filter_map(|n| {
            let v = xattr::get(p, &n).ok().flatten()?;
            Some((n, v))
        })
        .collect()
}

struct Comparer {
    cmp: Cmp,
    diffs: Vec<String>,
    /// (dev, ino) in the source -> ino in the copy, and back.
    fwd: HashMap<(u64, u64), (u64, u64)>,
    back: HashMap<(u64, u64), (u64, u64)>,
    entries: usize,
}

impl Comparer {
    fn diff(&mut self, rel: &Path, msg: String) {
        self.diffs.push(format!("{:?}: {msg}", rel));
    }

    #[allow(clippy::too_many_lines)] // one comparison per kept metadata field, side by side
    fn entry(&mut self, a: &Path, b: &Path, rel: &Path, is_root: bool) {
        self.entries += 1;
        let ma = fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
        let mb = match fs::symlink_metadata(b) {
            Ok(m) => m,
            Err(e) => return self.diff(rel, format!("missing in the copy ({e})")),
        };
        let (ka, kb) = (kind(&ma), kind(&mb));
        if ka != kb {
            return self.diff(rel, format!("type {ka} became {kb}"));
        }
        if self.cmp.mode && ka != "symlink" && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            self.diff(
                rel,
                format!(
                    "mode {:o} became {:o}",
                    ma.mode() & 0o7777,
                    mb.mode() & 0o7777
                ),
            );
        }
        if self.cmp.owner && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            self.diff(
                rel,
                format!(
                    "owner {}:{} became {}:{}",
                    ma.uid(),
                    ma.gid(),
                    mb.uid(),
                    mb.gid()
                ),
            );
        }
        if self.cmp.mtime
            && (!is_root || self.cmp.root_mtime)
            && (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec())
        {
            self.diff(
                rel,
                format!(
                    "mtime {}.{:09} became {}.{:09}",
                    ma.mtime(),
                    ma.mtime_nsec(),
                    mb.mtime(),
                    mb.mtime_nsec()
                ),
            );
        }
        if self.cmp.xattrs {
            let (xa, xb) = (xattrs_of(a), xattrs_of(b));
            if xa != xb {
                self.diff(rel, format!("xattrs {xa:?} became {xb:?}"));
            }
        }
        match ka {
            "file" => {
                if ma.len() != mb.len() {
                    self.diff(rel, format!("size {} became {}", ma.len(), mb.len()));
                } else if fs::read(a).unwrap() != fs::read(b).unwrap() {
                    self.diff(rel, "content differs".into());
                }
                if ma.nlink() > 1 || mb.nlink() > 1 {
                    let (ia, ib) = ((ma.dev(), ma.ino()), (mb.dev(), mb.ino()));
                    match (self.fwd.get(&ia).copied(), self.back.get(&ib).copied()) {
                        (None, None) => {
                            self.fwd.insert(ia, ib);
                            self.back.insert(ib, ia);
                        }
                        (Some(x), Some(y)) if x == ib && y == ia => {}
                        (f, _) => self.diff(
                            rel,
                            format!(
                                "hard links not preserved: source inode {} maps to {:?}, copy inode {}",
                                ia.1,
                                f.map(|x| x.1),
                                ib.1
                            ),
                        ),
                    }
                }
            }
            "symlink" => {
                let (ta, tb) = (fs::read_link(a).unwrap(), fs::read_link(b).unwrap());
                if ta != tb {
                    self.diff(rel, format!("link target {ta:?} became {tb:?}"));
                }
            }
            "dir" => {
                let names = |d: &Path| -> BTreeSet<OsString> {
                    fs::read_dir(d)
                        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                        .map(|e| e.unwrap().file_name())
                        .collect()
                };
                let (na, nb) = (names(a), names(b));
                for extra in nb.difference(&na) {
                    self.diff(&rel.join(extra), "extra in the copy".into());
                }
                for n in &na {
                    if nb.contains(n) {
                        self.entry(&a.join(n), &b.join(n), &rel.join(n), false);
                    } else {
                        self.diff(&rel.join(n), "missing in the copy".into());
                    }
                }
            }
            "chardev" | "blockdev" if ma.rdev() != mb.rdev() => {
                self.diff(rel, format!("rdev {} became {}", ma.rdev(), mb.rdev()));
            }
            _ => {}
        }
    }
}

/// Compares two trees; returns the number of entries compared or the differences.
pub fn compare_trees(a: &Path, b: &Path, cmp: Cmp) -> Result<usize, Vec<String>> {
    let mut c = Comparer {
        cmp,
        diffs: Vec::new(),
        fwd: HashMap::new(),
        back: HashMap::new(),
        entries: 0,
    };
    c.entry(a, b, Path::new("."), true);
    if c.diffs.is_empty() {
        Ok(c.entries)
    } else {
        Err(c.diffs)
    }
}

/// Asserts two trees are the same; returns the number of entries compared.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path, cmp: Cmp) -> usize {
    match compare_trees(a, b, cmp) {
        Ok(n) => n,
        Err(d) => panic!(
            "{} differences between {} and {}:\n  {}",
            d.len(),
            a.display(),
            b.display(),
            d.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ")
        ),
    }
}
