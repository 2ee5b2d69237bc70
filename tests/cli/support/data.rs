//! Generating test data: the one deterministic generator (xorshift64*),
//! random files and the trees the tests back up.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{chmod, is_root, set_mtime, walk_all};

/// xorshift64*: fast, deterministic, good enough to defeat compression.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

pub fn write_random(path: &Path, len: usize, seed: u64) {
    fs::write(path, random_bytes(len, seed)).expect("write random file");
}

/// Writes `len` bytes from /dev/urandom (fast even in debug builds).
pub fn write_urandom(path: &Path, len: u64) {
    let mut src = fs::File::open("/dev/urandom").expect("/dev/urandom");
    let mut dst = fs::File::create(path).expect("create");
    let n = std::io::copy(&mut std::io::Read::take(&mut src, len), &mut dst).expect("copy");
    assert_eq!(n, len);
    dst.flush().unwrap();
}

/// A 1 TiB file of holes: no disk space, but reading, chunking and hashing
/// a terabyte of zeros keeps a backup busy (holding its lock) for many
/// minutes even in an optimized build, so tests can act on a running
/// backup without racing it.
pub const HUGE_LEN: u64 = 1 << 40;

pub fn write_huge_sparse(path: &Path) {
    let f = fs::File::create(path).expect("create sparse file");
    f.set_len(HUGE_LEN).expect("a 1 TiB sparse file");
}

/// A small tree of ordinary files for tests that do not need every case.
pub fn simple_tree(root: &Path, seed: u64) -> Vec<PathBuf> {
    let files = [
        ("a.txt", 100usize),
        ("b.bin", 70_000),
        ("sub/c.txt", 1_000),
        ("sub/deeper/d.bin", 300_000),
        ("sub/e.log", 2_000),
        ("other/f.txt", 10),
    ];
    let mut out = Vec::new();
    for (i, (name, len)) in files.iter().enumerate() {
        let p = root.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random(&p, *len, seed + i as u64);
        out.push(p);
    }
    out
}

/// What [`rich_tree`] built.
pub struct RichTree {
    pub xattrs: bool,
    pub sparse: PathBuf,
    pub hard_links: Vec<PathBuf>,
}

pub const SPARSE_LEN: u64 = 64 * 1024 * 1024;
pub const BIG_LEN: usize = 20 * 1000 * 1000;

/// Builds a tree with every metadata case the format claims to keep.
#[allow(clippy::too_many_lines)] // one fixture listing every metadata case the format keeps
pub fn rich_tree(root: &Path) -> RichTree {
    let p = |s: &str| root.join(s);
    fs::create_dir_all(root).unwrap();
    for d in [
        "empty-dir",
        "nested/a/b/c/d",
        "private",
        "setgid",
        "links",
        "hard",
        "names",
    ] {
        fs::create_dir_all(p(d)).unwrap();
    }
    // Regular files of various sizes.
    fs::write(p("empty.txt"), b"").unwrap();
    fs::write(p("small.txt"), b"hello world\n").unwrap();
    write_random(&p("medium.bin"), 300_000, 11);
    write_random(&p("big.bin"), BIG_LEN, 12);
    fs::write(p("exec.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::write(p("readonly.txt"), b"read only\n").unwrap();
    fs::write(p("setuid-bin"), b"not really a program\n").unwrap();
    fs::write(p("nested/a/b/c/d/deep.txt"), b"deep\n").unwrap();
    fs::write(p("private/secret.txt"), b"secret\n").unwrap();
    fs::write(p("setgid/inherit.txt"), b"group\n").unwrap();
    // Unusual names.
    fs::write(p("names/with space  .txt"), b"spaces\n").unwrap();
    fs::write(p("names/new\nline"), b"newline\n").unwrap();
    fs::write(p("names/tab\there"), b"tab\n").unwrap();
    fs::write(p("names/ünïcødé ✓"), b"utf8\n").unwrap();
    fs::write(p("names/-leading-dash"), b"dash\n").unwrap();
    let bad = root
        .join("names")
        .join(OsStr::from_bytes(b"bad\xff\xfename"));
    fs::write(&bad, b"not utf-8 name\n").unwrap();
    let bad_dir = root.join("names").join(OsStr::from_bytes(b"dir-\xe9\x80"));
    fs::create_dir(&bad_dir).unwrap();
    fs::write(bad_dir.join(OsStr::from_bytes(b"inner\xc3")), b"inner\n").unwrap();
    // Symlinks: never followed, restored verbatim.
    let sl = |target: &str, name: &str| std::os::unix::fs::symlink(target, p(name)).unwrap();
    sl("../small.txt", "links/relative");
    sl(&format!("{}/small.txt", root.display()), "links/absolute");
    sl("does/not/exist", "links/dangling");
    sl("/nonexistent-abs-target/x", "links/dangling-absolute");
    sl("../nested", "links/to-dir");
    sl("self-loop", "links/self-loop");
    std::os::unix::fs::symlink(OsStr::from_bytes(b"bad-target-\xfe"), p("links/bad-target"))
        .unwrap();
    // Hard links (three names, two directories).
    fs::write(p("hard/one"), b"shared content of three names\n").unwrap();
    fs::hard_link(p("hard/one"), p("hard/two")).unwrap();
    fs::hard_link(p("hard/one"), p("nested/a/three")).unwrap();
    // A FIFO.
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // A sparse file: 64 MiB with a few bytes in the middle.
    let sparse = p("sparse.img");
    {
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(SPARSE_LEN).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"in the middle of nowhere", SPARSE_LEN / 2)
            .unwrap();
        f.write_all_at(b"near the start", 3 * 1024 * 1024 + 17)
            .unwrap();
    }
    // Ownership that has no name on this system (root only).
    fs::write(p("owned-by-1234"), b"owner\n").unwrap();
    std::os::unix::fs::symlink("small.txt", p("link-owned-by-4321")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(p("owned-by-1234"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(p("link-owned-by-4321"), Some(4321), Some(8765)).unwrap();
    }
    // Extended attributes, if the file system takes them.
    let xattrs = xattr::set(p("small.txt"), "user.probe", b"1").is_ok();
    if xattrs {
        xattr::remove(p("small.txt"), "user.probe").unwrap();
        xattr::set(p("small.txt"), "user.comment", b"a comment").unwrap();
        xattr::set(p("small.txt"), "user.binary", &[0u8, 1, 2, 255, 254, 0]).unwrap();
        xattr::set(p("small.txt"), "user.empty", b"").unwrap();
        xattr::set(p("private"), "user.dir-attr", b"on a directory").unwrap();
        xattr::set(p("big.bin"), "user.big", &random_bytes(2000, 5)).unwrap();
    } else {
        eprintln!("note: the temporary file system rejects user xattrs; not testing them");
    }
    // Modes.
    chmod(&p("small.txt"), 0o600);
    chmod(&p("exec.sh"), 0o755);
    chmod(&p("readonly.txt"), 0o444);
    chmod(&p("setuid-bin"), 0o4755);
    chmod(&p("medium.bin"), 0o640);
    chmod(&p("private/secret.txt"), 0o600);
    chmod(&p("private"), 0o700);
    chmod(&p("setgid"), 0o2775);
    chmod(&p("empty-dir"), 0o750);
    // mtimes with nanoseconds, everything distinct; directories last,
    // deepest first, so setting them is not undone by later changes.
    let mut all = walk_all(root);
    all.sort_by_key(|r| std::cmp::Reverse(r.components().count()));
    let (mut files, dirs): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| !fs::symlink_metadata(root.join(r)).unwrap().is_dir());
    files.sort();
    for (i, r) in files.iter().chain(dirs.iter()).enumerate() {
        let i = i as i64;
        set_mtime(
            &root.join(r),
            1_500_000_000 + i * 86_400 + i * 7,
            123_456_789 + i * 1_001,
        );
    }
    set_mtime(root, 1_234_567_890, 987_654_321);
    RichTree {
        xattrs,
        sparse,
        hard_links: vec![p("hard/one"), p("hard/two"), p("nested/a/three")],
    }
}
