//! Deterministic test data shared by the benches (no extra dependencies).
#![allow(dead_code)]

use std::path::Path;

pub const MIB: usize = 1024 * 1024;

/// SplitMix64: a tiny, fast, seeded generator, so every run sees the same bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Incompressible bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

const WORDS: &[&str] = &[
    "the",
    "repository",
    "snapshot",
    "chunk",
    "pack",
    "index",
    "tree",
    "blob",
    "file",
    "directory",
    "restore",
    "backup",
    "encrypt",
    "compress",
    "hash",
    "key",
    "fn",
    "let",
    "mut",
    "struct",
    "impl",
    "return",
    "match",
    "Some",
    "None",
    "Ok",
    "Err",
    "self",
    "u64",
    "Vec<u8>",
    "&str",
    "for",
    "in",
    "while",
    "if",
    "else",
    "pub",
    "use",
    "crate",
    "mod",
    "of",
    "and",
    "to",
    "a",
    "is",
    "that",
    "with",
    "as",
    "on",
    "by",
    "this",
    "from",
    "or",
    "0",
    "1",
    "42",
    "0x1f",
    "{",
    "}",
    "(",
    ")",
    ";",
    "=",
    "==",
    "->",
    "=>",
    "//",
    "#",
];

/// Text-like bytes (words and punctuation, short lines); zstd -3 compresses
/// it roughly 3-4x, like source code or logs.
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut col = 0;
    while out.len() < len {
        let w = WORDS[rng.below(WORDS.len())];
        out.extend_from_slice(w.as_bytes());
        col += w.len() + 1;
        if col > 60 + rng.below(30) {
            out.push(b'\n');
            let indent = rng.below(4) * 4;
            out.extend(std::iter::repeat_n(b' ', indent));
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// Writes a 64 MiB tree under `root`: 8 x 4 MiB random files, 6 x 4 MiB
/// text files and 1024 x 8 KiB text files in 32 directories. Returns the
/// total number of bytes written.
pub fn make_tree(root: &Path) -> u64 {
    let mut total = 0u64;
    let big = root.join("big");
    std::fs::create_dir_all(&big).expect("mkdir big");
    for i in 0..8u64 {
        let d = random_bytes(4 * MIB, 1000 + i);
        std::fs::write(big.join(format!("random-{i}.bin")), &d).expect("write");
        total += d.len() as u64;
    }
    for i in 0..6u64 {
        let d = text_bytes(4 * MIB, 2000 + i);
        std::fs::write(big.join(format!("text-{i}.txt")), &d).expect("write");
        total += d.len() as u64;
    }
    let mut seed = 3000u64;
    for dir in 0..32 {
        let d = root.join("small").join(format!("d{dir:02}"));
        std::fs::create_dir_all(&d).expect("mkdir small");
        for f in 0..32 {
            let data = text_bytes(8 * 1024, seed);
            seed += 1;
            std::fs::write(d.join(format!("f{f:02}.rs")), &data).expect("write");
            total += data.len() as u64;
        }
    }
    total
}
