//! Fuzz harness for every decoder that reads storage.
//!
//! One function per target takes the fuzzer's bytes, runs the decoder and
//! panics if it misbehaves: a panic inside the decoder, a broken round trip,
//! or a heap peak above the target's allocation bound. The cargo-fuzz
//! binaries in `fuzz_targets/` are one line each around these functions, and
//! `tests/cli/fuzz_regressions.rs` includes this file with `#[path]` so that the
//! seeds and every input a fuzzer ever crashed on are rerun by the normal
//! `cargo test` on stable Rust, with the same checks.
//!
//! # The allocation bound
//!
//! [`CountingAlloc`] tracks the live heap bytes of the current thread while
//! a decoder runs. For an input of `len` bytes the peak must stay within
//! [`bound`]: `64 * len + 64 KiB`. 64 covers how much larger the decoded
//! value is than its encoding (a tree node is ~270 bytes in memory and can
//! be ~19 bytes encoded, then doubled by `Vec` growth, plus the old buffer
//! during a reallocation) and 64 KiB covers fixed costs (minimum `Vec`
//! capacities, error strings). What it rules out is a length field
//! reserving memory for data that is not there: before the fix in
//! `repo::format::bounded` a few hundred bytes of tree could reserve megabytes.
//! Decompression is the one place where output may legitimately exceed
//! input; there the bound adds three times the output the call is allowed
//! to produce (its limit, and no more than zstd's maximum expansion of
//! 32768 per input byte), since the streaming path doubles its buffer.
//! zstd's own contexts are allocated by C and are not counted; the
//! `-rss_limit_mb` of `scripts/fuzz` covers them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use repo::codec;
use repo::codec::chunker::ChunkerParams;
use repo::crypto::hash;
use repo::crypto::{self, MasterKey, SubKeys};
use repo::format::config::{Config, StoredConfig};
use repo::format::index::{IndexFile, MemIndex};
use repo::format::keyfile::{KeyFile, MAX_KEY_LEN};
use repo::format::manifest::Manifest;
use repo::format::pack::{self, BlobKind, HEADER_AD, HEADER_PLAIN_LEN};
use repo::format::snapshot::Snapshot;
use repo::format::tree::Tree;
use repo::id::{BlobId, PackId, RepoId};

/// A target's entry point: takes the fuzzer's bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target: its name (the cargo-fuzz binary, the seed and regression
/// directories) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("keyfile", keyfile),
    ("pack", pack_raw),
    ("pack_sealed", pack_sealed),
    ("index", index),
    ("tree", tree),
    ("snapshot", snapshot),
    ("codec", codec_target),
    ("manifest", manifest),
];

/// Most live heap bytes a decoder may reach on `len` input bytes.
pub fn bound(len: usize) -> usize {
    len.saturating_mul(64).saturating_add(64 * 1024)
}

/// zstd's maximum expansion: a block yields at most 128 KiB from 4 bytes.
const ZSTD_MAX_RATIO: usize = 32 * 1024;

/// Largest decompression limit the fuzzers choose: past the 16 MiB switch
/// from bulk to streaming decompression, small enough for `-rss_limit_mb`.
const MAX_FUZZ_LIMIT: usize = 32 << 20;

/// Extra bytes a decompression allowed to produce `out` bytes may hold.
fn output_allowance(limit: usize, input: usize) -> usize {
    limit
        .saturating_add(1)
        .min(input.saturating_mul(ZSTD_MAX_RATIO))
        .saturating_mul(3)
}

/// A global allocator that counts the calling thread's live heap bytes
/// while [`measure`] runs. Each binary using this harness installs it with
/// `#[global_allocator]`.
pub struct CountingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: never touch a thread-local that is being torn down.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LIVE.try_with(|l| {
                let now = l.get() + delta;
                l.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// only touches const-initialised thread-locals without destructors, which
// never allocate. A GlobalAlloc cannot be written without unsafe: the one
// allowance in the test code, for the memory bound every decoder is held to.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as if old and new buffers coexist, as they do when the
        // block has to move.
        account(new_size as isize);
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        account(-(if p.is_null() { new_size } else { layout.size() } as isize));
        p
    }
}

/// Runs `f` and returns its result with the peak live heap bytes that this
/// thread allocated during the call (the result itself included).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, PEAK.with(|p| p.get()).max(0) as usize)
}

/// Panics unless a measured peak is within `limit`; first checks, once,
/// that [`CountingAlloc`] really is the global allocator, since otherwise
/// every peak reads 0 and the bound would pass vacuously.
fn check(target: &str, len: usize, peak: usize, limit: usize) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // black_box: an optimizer may drop an allocation nobody reads.
        let (v, p) = measure(|| std::hint::black_box(Vec::<u8>::with_capacity(1000)));
        drop(v);
        assert!(p >= 1000, "CountingAlloc is not the global allocator");
    });
    assert!(
        peak <= limit,
        "{target}: a {len}-byte input made the decoder hold {peak} heap bytes, over the bound of {limit}"
    );
}

/// The fixed master key every target uses.
pub fn keys() -> SubKeys {
    MasterKey::from_bytes([7; 32]).subkeys()
}

/// Deterministic nonces, so seeds and regressions are reproducible.
fn nonce(n: u8) -> [u8; crypto::NONCE_LEN] {
    [n; crypto::NONCE_LEN]
}

/// Config: the plaintext object read before any password is known.
pub fn config(data: &[u8]) {
    let ((parsed, _version), peak) =
        measure(|| (StoredConfig::parse(data), StoredConfig::peek_version(data)));
    check("config", data.len(), peak, bound(data.len()));
    if let Ok(s) = parsed {
        let mac_key = keys().config_mac;
        let resealed = StoredConfig::seal(&s.config, &mac_key);
        let again = StoredConfig::parse(&resealed).expect("a parsed config reseals parsably");
        assert_eq!(again.config, s.config);
        assert!(again.verify(&mac_key));
    }
}

/// Key objects: JSON, read before the password is tried. `open` runs
/// argon2id, so it is only tried when the object asks for tiny costs.
pub fn keyfile(data: &[u8]) {
    let (decoded, peak) = measure(|| KeyFile::decode(data));
    check("keyfile", data.len(), peak, bound(data.len()));
    let Ok(k) = decoded else { return };
    let encoded = k.encode();
    if encoded.len() <= MAX_KEY_LEN {
        assert_eq!(
            KeyFile::decode(&encoded).expect("re-encoded key decodes"),
            k
        );
    }
    if k.params.m_cost <= 64 && k.params.t_cost <= 2 && k.params.p_cost <= 2 {
        let _ = k.open(KEYFILE_PASSWORD);
    }
}

/// The password of the key object seed.
pub const KEYFILE_PASSWORD: &[u8] = b"fuzz";

/// Pack bytes straight from storage, under the fixed key. Without the key
/// the fuzzer cannot pass the AEAD; `pack_sealed` goes past it.
pub fn pack_raw(data: &[u8]) {
    let keys = keys();
    let (_, peak) = measure(|| {
        let s = pack::scan(&keys.encryption, data);
        let h = pack::open_header(&keys.encryption, data, 0);
        let e = pack::open_entry(&keys, data, 0, None);
        (s, h, e)
    });
    check("pack", data.len(), peak, bound(data.len()));
}

/// Control bits of one `pack_sealed` entry.
pub mod ctl {
    /// Seal the body with the key and the AD its header names (else the
    /// framed bytes are stored unsealed).
    pub const SEAL_BODY: u8 = 1;
    /// Replace the header's id with the blob id of the decompressed body.
    pub const FIX_ID: u8 = 2;
    /// Replace the header's body length with the sealed body's length.
    pub const FIX_BODY_LEN: u8 = 4;
    /// Replace the header's raw length with the decompressed body's length.
    pub const FIX_RAW_LEN: u8 = 8;
    /// All of the above: a well-formed entry.
    pub const VALID: u8 = 15;
}

/// Builds a pack from the `pack_sealed` input format, sealing every header
/// with the fixed key so the fuzzer controls what the decoder sees after
/// authentication. The input is a sequence of entries, each:
/// 48 bytes of header plaintext, 1 control byte (see [`ctl`]), a 2-byte
/// little-endian body length `n`, then `n` bytes of framed body (a codec
/// flag and payload). Returns the pack and the offset of every entry.
pub fn build_pack(keys: &SubKeys, mut data: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut pack = Vec::new();
    let mut offsets = Vec::new();
    let mut n = 0u8;
    while data.len() >= HEADER_PLAIN_LEN + 3 {
        let mut header: [u8; HEADER_PLAIN_LEN] = data[..HEADER_PLAIN_LEN]
            .try_into()
            .unwrap_or([0; HEADER_PLAIN_LEN]);
        let control = data[HEADER_PLAIN_LEN];
        let len = u16::from_le_bytes([data[HEADER_PLAIN_LEN + 1], data[HEADER_PLAIN_LEN + 2]]);
        data = &data[HEADER_PLAIN_LEN + 3..];
        let (framed, rest) = data.split_at((len as usize).min(data.len()));
        data = rest;
        // Raw lengths past this would let a valid zstd bomb outgrow the
        // fuzzer's RSS limit; they are still past the bulk/stream switch.
        let raw = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
        header[8..12].copy_from_slice(&(raw % (MAX_FUZZ_LIMIT as u32 + 1)).to_le_bytes());
        let plain = codec::decompress(framed, MAX_FUZZ_LIMIT).ok();
        if let Some(p) = plain.as_ref().filter(|_| control & ctl::FIX_ID != 0) {
            header[16..48].copy_from_slice(&hash::blob_id(&keys.blob_id, p).0);
        }
        if let Some(p) = plain.as_ref().filter(|_| control & ctl::FIX_RAW_LEN != 0) {
            header[8..12].copy_from_slice(&(p.len() as u32).to_le_bytes());
        }
        let kind = BlobKind::from_code(header[1]).unwrap_or(BlobKind::Data);
        let id = BlobId(header[16..48].try_into().unwrap_or_default());
        let body = if control & ctl::SEAL_BODY != 0 {
            crypto::seal_with_nonce(
                &keys.encryption,
                &nonce(n.wrapping_add(128)),
                &pack::body_ad(kind, &id),
                framed,
            )
        } else {
            framed.to_vec()
        };
        if control & ctl::FIX_BODY_LEN != 0 {
            header[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
        }
        offsets.push(pack.len());
        pack.extend_from_slice(&crypto::seal_with_nonce(
            &keys.encryption,
            &nonce(n),
            HEADER_AD,
            &header,
        ));
        pack.extend_from_slice(&body);
        n = n.wrapping_add(1);
    }
    (pack, offsets)
}

/// Encodes one entry of the `pack_sealed` input format (for seeds).
pub fn pack_sealed_entry(header: &[u8; HEADER_PLAIN_LEN], control: u8, framed: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.push(control);
    out.extend_from_slice(&(framed.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(&framed[..framed.len().min(u16::MAX as usize)]);
    out
}

/// Packs whose headers authenticate: fuzzer-chosen header fields and bodies,
/// sealed with the fixed key. Scans the pack, opens every entry the scan
/// found as a reader would, and every constructed entry without expectations
/// (so lengths that disagree with the bytes reach the bounds checks).
pub fn pack_sealed(data: &[u8]) {
    let keys = keys();
    let (pack, offsets) = build_pack(&keys, data);
    let (scan, peak) = measure(|| pack::scan(&keys.encryption, &pack));
    check("pack_sealed scan", pack.len(), peak, bound(pack.len()));
    for e in &scan.entries {
        let (start, end) = (e.offset as usize, e.offset as usize + e.length as usize);
        assert!(
            end <= pack.len(),
            "scan returned an entry past the pack's end"
        );
        let entry = &pack[start..end];
        let allowance = output_allowance(e.raw_length as usize, entry.len());
        let (r, peak) =
            measure(|| pack::open_entry(&keys, entry, e.offset as u64, Some((e.kind, e.id))));
        check(
            "pack_sealed entry",
            entry.len(),
            peak,
            bound(entry.len()) + allowance,
        );
        if let Ok((h, plain)) = r {
            assert_eq!(plain.len(), e.raw_length as usize);
            assert_eq!(hash::blob_id(&keys.blob_id, &plain), h.id);
        }
    }
    for &off in &offsets {
        let entry = &pack[off..];
        let raw = pack::open_header(&keys.encryption, entry, off as u64).map_or(0, |h| h.raw_len);
        let allowance = output_allowance(raw as usize, entry.len());
        let (_, peak) = measure(|| pack::open_entry(&keys, entry, off as u64, None));
        check(
            "pack_sealed entry",
            entry.len(),
            peak,
            bound(entry.len()) + allowance,
        );
    }
}

/// Index payloads (postcard), then merged into the in-memory index.
pub fn index(data: &[u8]) {
    let (r, peak) = measure(|| {
        let f = IndexFile::decode(data)?;
        let mut m = MemIndex::default();
        m.add(&f);
        m.add(&f);
        m.finish();
        Ok::<_, repo::format::error::FormatError>((f, m))
    });
    check("index", data.len(), peak, bound(data.len()));
    let Ok((f, m)) = r else { return };
    assert_eq!(IndexFile::decode(&f.encode()).as_ref(), Ok(&f));
    for p in &f.packs {
        for b in &p.blobs {
            assert!(m.get(b.kind, &b.id).is_some(), "indexed blob not found");
        }
    }
}

/// Tree blob payloads (postcard).
pub fn tree(data: &[u8]) {
    let (r, peak) = measure(|| Tree::decode(data));
    check("tree", data.len(), peak, bound(data.len()));
    let Ok(t) = r else { return };
    assert_eq!(Tree::decode(&t.encode()).as_ref(), Ok(&t));
    for n in &t.nodes {
        assert!(t.find(&n.name).is_some(), "node not found by name");
    }
}

/// Manifests of plain trees (JSON lines, read from the other side of a
/// mirror or sync, which may be any server).
pub fn manifest(data: &[u8]) {
    let (r, peak) = measure(|| Manifest::decode(data));
    check("manifest", data.len(), peak, bound(data.len()));
    let Ok(m) = r else { return };
    assert_eq!(
        Manifest::decode(&m.encode()).as_ref().ok(),
        Some(&m),
        "manifest round trip"
    );
    for path in m.entries.keys() {
        assert!(
            repo::format::manifest::valid_path(path),
            "unsafe path accepted"
        );
    }
}

/// Snapshot payloads (JSON).
pub fn snapshot(data: &[u8]) {
    let (r, peak) = measure(|| Snapshot::decode(data));
    check("snapshot", data.len(), peak, bound(data.len()));
    if let Ok(s) = r {
        // Not compared for equality: float fields need not round-trip
        // bit for bit through serde_json.
        assert!(
            Snapshot::decode(&s.encode()).is_ok(),
            "re-encoded snapshot fails"
        );
    }
}

/// The blob codec: 4 bytes of little-endian limit (reduced below
/// [`MAX_FUZZ_LIMIT`]), then a framed payload. Decompressed directly, and
/// sealed and decoded as storage would.
pub fn codec_target(data: &[u8]) {
    let Some((head, framed)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limit = u32::from_le_bytes(*head) as usize % (MAX_FUZZ_LIMIT + 1);
    let allowance = output_allowance(limit, framed.len());
    let (plain, peak) = measure(|| codec::decompress(framed, limit));
    check("codec", framed.len(), peak, bound(framed.len()) + allowance);
    if let Ok(p) = &plain {
        assert!(p.len() <= limit, "decompress exceeded its limit");
    }
    let key = keys().encryption;
    let sealed = crypto::seal_with_nonce(&key, &nonce(0), b"fuzz", framed);
    let (decoded, peak) = measure(|| codec::decode(&key, b"fuzz", &sealed, limit));
    check("codec", sealed.len(), peak, bound(sealed.len()) + allowance);
    assert_eq!(decoded, plain, "decode and decompress disagree");
    assert!(
        codec::decode(&key, b"fuzz", framed, limit).is_err(),
        "forged AEAD"
    );
    if let Some(p) = plain.ok().filter(|p| p.len() <= 1 << 20) {
        assert_eq!(codec::decompress(&codec::compress(&p, 1), p.len()), Ok(p));
    }
}

/// Real encoded objects for each target, as (target, file name, bytes):
/// the starting corpus, committed under `fuzz/seeds/`.
#[allow(clippy::too_many_lines)] // one seed list covering every target, kept in one place
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use repo::crypto::kdf::{self, KdfParams};
    use repo::format::index::{IndexBlob, IndexPack};
    use repo::format::snapshot::Summary;
    use repo::format::tree::{ChunkRef, Node, NodeKind, Timestamp, Xattr};

    let keys = keys();
    let mut out = Vec::new();

    let c = Config::new(RepoId([1; 32]), ChunkerParams::default());
    out.push(("config", "v1", StoredConfig::seal(&c, &keys.config_mac)));

    let params = KdfParams {
        m_cost: 8,
        t_cost: 1,
        p_cost: 1,
    };
    let salt = [3u8; 32];
    if let Ok(kek) = kdf::derive(KEYFILE_PASSWORD, &salt, params) {
        let master =
            crypto::seal_with_nonce(&kek, &nonce(1), repo::format::keyfile::KEY_AD, &[7; 32]);
        let k = KeyFile {
            version: repo::format::keyfile::KEY_VERSION,
            created: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            host: "host".into(),
            user: "user".into(),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            master: hex::encode(master),
        };
        out.push(("keyfile", "v1", k.encode()));
    }

    let text = b"fuzzing seed text ".repeat(20);
    let mut entries = Vec::new();
    for (i, (kind, body)) in [
        (BlobKind::Data, codec::compress(&text, 3)),
        (BlobKind::Tree, codec::compress(b"short", 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut h = [0u8; HEADER_PLAIN_LEN];
        h[0] = pack::HEADER_VERSION;
        h[1] = kind.code();
        h[16] = i as u8;
        entries.extend(pack_sealed_entry(&h, ctl::VALID, &body));
    }
    out.push(("pack", "two-entries", build_pack(&keys, &entries).0));
    out.push(("pack_sealed", "two-entries", entries));

    let blob = |kind, b: u8, offset, length| IndexBlob {
        kind,
        id: BlobId([b; 32]),
        offset,
        length,
        raw_length: length * 2,
    };
    let mut idx = IndexFile::new(vec![
        IndexPack {
            id: PackId([1; 32]),
            size: 300,
            blobs: vec![
                blob(BlobKind::Data, 2, 0, 100),
                blob(BlobKind::Data, 3, 100, 200),
            ],
        },
        IndexPack {
            id: PackId([4; 32]),
            size: 90,
            blobs: vec![blob(BlobKind::Tree, 5, 0, 90)],
        },
    ]);
    idx.supersedes.push(repo::id::IndexId([6; 32]));
    out.push(("index", "two-packs", idx.encode()));

    let mut file = Node::new(b"file.txt".to_vec(), NodeKind::File);
    file.mode = 0o644;
    file.size = 12;
    file.mtime = Timestamp {
        secs: 1_800_000_000,
        nanos: 5,
    };
    file.user = "user".into();
    file.content = vec![ChunkRef {
        id: BlobId([8; 32]),
        len: 12,
    }];
    file.xattrs = vec![Xattr {
        name: b"user.tag".to_vec(),
        value: b"v".to_vec(),
    }];
    let mut dir = Node::new(b"dir".to_vec(), NodeKind::Dir);
    dir.subtree = Some(BlobId([9; 32]));
    let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
    link.target = b"../file.txt".to_vec();
    out.push((
        "tree",
        "three-nodes",
        Tree::new(vec![file, dir, link]).encode(),
    ));

    let snap = Snapshot {
        version: repo::format::snapshot::SNAPSHOT_VERSION,
        time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        host: "host".into(),
        user: "user".into(),
        uid: 1000,
        gid: 1000,
        paths: vec!["/home/user".into()],
        tags: vec!["daily".into()],
        excludes: vec!["*.tmp".into()],
        tree: BlobId([9; 32]),
        parent: Some(repo::id::SnapshotId([10; 32])),
        program_version: "repo 0.1.0".into(),
        summary: Summary {
            files_new: 3,
            duration_secs: 1.5,
            ..Summary::default()
        },
        original: None,
        damaged: Vec::new(),
    };
    out.push(("snapshot", "full", snap.encode()));

    let mut entries = repo::format::manifest::Entries::new();
    for (path, kind) in [
        (&b"docs"[..], repo::format::manifest::EntryKind::Dir),
        (b"docs/a.txt", repo::format::manifest::EntryKind::File),
        (b"bad\xffname", repo::format::manifest::EntryKind::File),
    ] {
        entries.insert(
            path.to_vec(),
            repo::format::manifest::Entry {
                kind,
                size: 12,
                mtime_ns: 1_800_000_000_123_456_789,
                mode: 0o644,
                blake3: Some([7; 32]),
                target: None,
                seen: repo::format::manifest::Seen {
                    ino: Some(5),
                    ctime_ns: Some(6),
                    stored_ms: None,
                },
                chunks: None,
            },
        );
    }
    let m = Manifest::new("2026-11-23T00:00:00Z".into(), entries);
    out.push(("manifest", "three-entries", m.encode()));

    let limit = |l: u32, framed: Vec<u8>| [l.to_le_bytes().to_vec(), framed].concat();
    out.push(("codec", "zstd", limit(1 << 20, codec::compress(&text, 3))));
    out.push(("codec", "raw", limit(1 << 20, codec::compress(b"tiny", 3))));
    out.push((
        "codec",
        "bomb",
        limit(1 << 20, codec::compress(&vec![0; 4 << 20], 3)),
    ));
    out
}
