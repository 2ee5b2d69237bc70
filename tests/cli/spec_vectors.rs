//! Known-answer vectors that pin the on-storage format described in SPEC.md.
//!
//! Every literal here is also printed in SPEC.md's appendix "Test vectors",
//! so an independent reader can check itself against the same bytes. If one
//! of these tests fails, the format changed: either fix the code or bump the
//! relevant version and update SPEC.md together with this file.
//!
//! Fixed inputs: master key = 32 bytes of 0x01; nonces are 24 repeated bytes.
//! Vectors whose bytes depend on zstd's output are only checked in the reader
//! direction (decode the literal), since another zstd version may compress
//! differently without any format change.

use repo::codec;
use repo::codec::chunker::{Chunker, ChunkerParams};
use repo::crypto::hash;
use repo::crypto::{self, MasterKey, SubKeys, kdf::KdfParams};
use repo::format::config::{Config, StoredConfig};
use repo::format::index::{IndexBlob, IndexFile, IndexPack};
use repo::format::keyfile::{KEY_AD, KeyFile};
use repo::format::pack::{self, BlobHeader, BlobKind};
use repo::format::snapshot::{Snapshot, Summary};
use repo::format::tree::{ChunkRef, Node, NodeKind, Timestamp, Tree, Xattr};
use repo::id::{BlobId, IndexId, PackId, RepoId};
use repo::repository::ObjectKind;
use repo::repository::lock::LockInfo;

const MASTER: [u8; 32] = [0x01; 32];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test literal is hex")
}

fn keys() -> SubKeys {
    MasterKey::from_bytes(MASTER).subkeys()
}

/// BLAKE3 keyed MAC of "hello" under the blob-id sub-key of MASTER.
const HELLO_ID: &str = "e40f92599fd5e8909fa62804d99aa3e008022411c1576bf2f127fb819b5eac1f";

fn hello_id() -> BlobId {
    BlobId::from_hex(HELLO_ID).unwrap()
}

#[test]
fn subkey_derivation() {
    // The context strings are part of the format.
    assert_eq!(
        crypto::keys::CTX_ENCRYPTION,
        "repo 2026-11-23 blob and object encryption v1"
    );
    assert_eq!(crypto::keys::CTX_BLOB_ID, "repo 2026-11-23 blob id mac v1");
    assert_eq!(
        crypto::keys::CTX_CHUNKER,
        "repo 2026-11-23 chunker gear table v1"
    );
    assert_eq!(
        crypto::keys::CTX_CONFIG_MAC,
        "repo 2026-11-23 config mac v1"
    );
    let k = keys();
    let expect = [
        (
            k.encryption,
            "repo 2026-11-23 blob and object encryption v1",
            "6426bb126e249548f40d8aa17b6c30fac1448c6cd05cfc6269e229fefdc338df",
        ),
        (
            k.blob_id,
            "repo 2026-11-23 blob id mac v1",
            "b9af3260842d45433a7c77be76c649c37d43acfe3bf9b75f8025e272266ce463",
        ),
        (
            k.chunker,
            "repo 2026-11-23 chunker gear table v1",
            "15d35088c824ca11509c4e6061575d8826a089f57d11c9861e5b80f3a5975f8b",
        ),
        (
            k.config_mac,
            "repo 2026-11-23 config mac v1",
            "0e950325f8b8ca9752db2d4994ac22d95b89c307bb0a1a4089523d26932f656a",
        ),
    ];
    for (key, ctx, hex_value) in expect {
        assert_eq!(hex::encode(key), hex_value, "{ctx}");
        assert_eq!(blake3::derive_key(ctx, &MASTER), key, "{ctx}");
    }
}

#[test]
fn ids() {
    let k = keys();
    assert_eq!(hash::blob_id(&k.blob_id, b"hello"), hello_id());
    assert_eq!(
        hash::blob_id(&[0x42; 32], b"hello").to_hex(),
        "392d5a31c43ac2edf455294a8b9d1a0ed9d92d181744e0926f34410620ae3b08"
    );
    assert_eq!(
        hex::encode(hash::object_hash(b"")),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    assert_eq!(
        hex::encode(hash::object_hash(b"hello")),
        "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    );
    let pack = PackId([0xab; 32]);
    assert_eq!(
        repo::repository::objects::pack_key(&pack),
        format!("data/ab/{}", "ab".repeat(32))
    );
    assert_eq!(
        ObjectKind::Snapshot.key(HELLO_ID),
        format!("snapshots/{HELLO_ID}")
    );
    assert_eq!(ObjectKind::Index.key(HELLO_ID), format!("index/{HELLO_ID}"));
    assert_eq!(ObjectKind::Lock.key(HELLO_ID), format!("locks/{HELLO_ID}"));
    assert_eq!(ObjectKind::Key.key(HELLO_ID), format!("keys/{HELLO_ID}"));
}

#[test]
fn constants() {
    assert_eq!(crypto::NONCE_LEN, 24);
    assert_eq!(crypto::TAG_LEN, 16);
    assert_eq!(pack::HEADER_PLAIN_LEN, 48);
    assert_eq!(pack::HEADER_LEN, 88);
    assert_eq!(pack::HEADER_VERSION, 1);
    assert_eq!(pack::HEADER_AD, b"repo blob header v1");
    assert_eq!(pack::MAX_BLOB_LEN, 1 << 30);
    assert_eq!(KEY_AD, b"repo master key v1");
    assert_eq!(ObjectKind::Index.ad(), b"repo object index v1");
    assert_eq!(ObjectKind::Snapshot.ad(), b"repo object snapshot v1");
    assert_eq!(ObjectKind::Lock.ad(), b"repo object lock v1");
    assert_eq!(codec::FLAG_RAW, 0);
    assert_eq!(codec::FLAG_ZSTD, 1);
    assert_eq!(BlobKind::Data.code(), 0);
    assert_eq!(BlobKind::Tree.code(), 1);
    assert_eq!(repo::format::config::FORMAT_VERSION, 1);
    assert_eq!(repo::format::config::MAX_CONFIG_LEN, 65536);
    assert_eq!(repo::format::keyfile::MAX_KEY_LEN, 16384);
    assert_eq!(repo::repository::objects::MAX_OBJECT_LEN, 1 << 30);
    assert_eq!(repo::format::index::INDEX_VERSION, 1);
    assert_eq!(repo::format::tree::TREE_VERSION, 1);
    assert_eq!(repo::format::snapshot::SNAPSHOT_VERSION, 1);
    assert_eq!(repo::format::keyfile::KEY_VERSION, 1);
    assert_eq!(repo::repository::lock::STALE_AFTER.as_secs(), 1800);
    assert_eq!(repo::repository::lock::REFRESH_EVERY.as_secs(), 300);
}

// ---------------------------------------------------------------- pack entries

/// The 48-byte plaintext header of the "hello" data blob (body_len 46, raw_len 5).
const HELLO_HEADER_PLAIN: &str = "010000002e0000000500000000000000\
     e40f92599fd5e8909fa62804d99aa3e008022411c1576bf2f127fb819b5eac1f";
/// That header sealed with nonce 0x11..: nonce (24) | ciphertext (48) | tag (16).
const HELLO_HEADER_SEALED: &str = "111111111111111111111111111111111111111111111111\
     fc4935828f12ad0a758c5a8dbfc05c6e11fcd73ff185364a4c4a99570e0a1ca5\
     5d6c3d2c5d46ddae3a49f628a0afc8bc\
     32291200f972ce8484dca5c7dc2e5a58";
/// The body, flag 0 || "hello" sealed with nonce 0x22..: nonce (24) | ciphertext (6) | tag (16).
const HELLO_BODY_SEALED: &str = "222222222222222222222222222222222222222222222222\
     2e14eb5ec83f\
     ca2e2ecebd109cf15db275f995df8227";

#[test]
fn pack_entry_raw_known_answer() {
    let k = keys();
    let id = hello_id();

    // Plaintext header: version, kind, 2 zero bytes, body_len LE, raw_len LE, 4 zero bytes, id.
    let mut plain = [0u8; 48];
    plain[0] = 1;
    plain[1] = BlobKind::Data.code();
    plain[4..8].copy_from_slice(&46u32.to_le_bytes());
    plain[8..12].copy_from_slice(&5u32.to_le_bytes());
    plain[16..].copy_from_slice(&id.0);
    assert_eq!(plain.to_vec(), h(HELLO_HEADER_PLAIN));

    let header = crypto::seal_with_nonce(&k.encryption, &[0x11; 24], pack::HEADER_AD, &plain);
    assert_eq!(header, h(HELLO_HEADER_SEALED));
    assert_eq!(header.len(), pack::HEADER_LEN);
    assert_eq!(
        pack::open_header(&k.encryption, &header, 0).unwrap(),
        BlobHeader {
            kind: BlobKind::Data,
            id,
            body_len: 46,
            raw_len: 5
        }
    );

    // Body: AD = kind byte || id; plaintext = flag 0 || "hello" (too short to compress).
    let framed = codec::compress(b"hello", 3);
    assert_eq!(framed, b"\x00hello");
    let mut body_ad = vec![BlobKind::Data.code()];
    body_ad.extend_from_slice(&id.0);
    let body = crypto::seal_with_nonce(&k.encryption, &[0x22; 24], &body_ad, &framed);
    assert_eq!(body, h(HELLO_BODY_SEALED));

    let mut entry = header.clone();
    entry.extend_from_slice(&body);
    assert_eq!(entry.len(), 134);
    let (hdr, data) = pack::open_entry(&k, &entry, 0, Some((BlobKind::Data, id))).unwrap();
    assert_eq!((hdr.raw_len, data.as_slice()), (5, &b"hello"[..]));
    // As a one-entry pack: its id and what a scan finds.
    assert_eq!(
        hex::encode(hash::object_hash(&entry)),
        "62c1fd1abfcdfc1bf3cb4f28759bb2f821c74ae5bbeb98035c64cc9b6dbc4f7b"
    );
    let scan = pack::scan(&k.encryption, &entry);
    assert!(scan.error.is_none());
    assert_eq!(
        scan.entries,
        vec![IndexBlob {
            kind: BlobKind::Data,
            id,
            offset: 0,
            length: 134,
            raw_length: 5
        }]
    );
    // The same body under the tree kind must not open.
    let mut wrong_ad = body_ad.clone();
    wrong_ad[0] = BlobKind::Tree.code();
    assert!(crypto::open(&k.encryption, &wrong_ad, &body).is_err());
}

const ABC_ID: &str = "6fe34fe8d06215d5fc44bf57439224f2e89b4ba240bf305dc2dea74c6ac76918";
/// A data entry for b"abc" x 100 (300 bytes), body compressed with zstd.
/// Header (nonce 0x33.. | 48 | tag), then body (nonce 0x44.. | 21 | tag).
const ABC_ENTRY: &str = "333333333333333333333333333333333333333333333333\
     efdd803ec0d633f0766394534afc6afe3b7aa7f87d0d1830ee12eae3e15900d4\
     06144a3118cd9bca31bb99f72734a032\
     de9f72ee5e818907d09328c6a4cd378d\
     444444444444444444444444444444444444444444444444\
     f3882152c9d5b77b9930bd11cb8070d05e43440dca\
     03f04093ca7cd8f0267695a7deb9d2d4";

#[test]
fn pack_entry_zstd_reader_vector() {
    let k = keys();
    let abc = b"abc".repeat(100);
    let id = BlobId::from_hex(ABC_ID).unwrap();
    assert_eq!(hash::blob_id(&k.blob_id, &abc), id);
    let entry = h(ABC_ENTRY);
    let hdr = pack::open_header(&k.encryption, &entry, 0).unwrap();
    assert_eq!(
        (hdr.kind, hdr.id, hdr.body_len, hdr.raw_len),
        (BlobKind::Data, id, 61, 300)
    );
    let mut ad = vec![0u8];
    ad.extend_from_slice(&id.0);
    let framed = crypto::open(&k.encryption, &ad, &entry[88..]).unwrap();
    assert_eq!(framed[0], codec::FLAG_ZSTD);
    assert_eq!(&framed[1..5], &[0x28, 0xb5, 0x2f, 0xfd]); // zstd frame magic
    let (_, data) = pack::open_entry(&k, &entry, 0, Some((BlobKind::Data, id))).unwrap();
    assert_eq!(data, abc);

    // Two entries back to back form a valid pack; a scan walks both.
    let mut two = h(HELLO_HEADER_SEALED);
    two.extend_from_slice(&h(HELLO_BODY_SEALED));
    two.extend_from_slice(&entry);
    let scan = pack::scan(&k.encryption, &two);
    assert!(scan.error.is_none());
    let found: Vec<(u32, u32, u32)> = scan
        .entries
        .iter()
        .map(|e| (e.offset, e.length, e.raw_length))
        .collect();
    assert_eq!(found, vec![(0, 134, 5), (134, 149, 300)]);
    // Truncating the second entry keeps the first.
    let cut = pack::scan(&k.encryption, &two[..two.len() - 1]);
    assert_eq!(cut.entries.len(), 1);
    assert!(cut.error.is_some());
}

// ---------------------------------------------------------------- postcard payloads

fn sample_tree() -> Tree {
    let mut f = Node::new(b"a.txt".to_vec(), NodeKind::File);
    f.mode = 0o644;
    f.uid = 1000;
    f.gid = 1000;
    f.user = "u".into();
    f.group = "g".into();
    f.mtime = Timestamp {
        secs: 1_700_000_000,
        nanos: 5,
    };
    f.ctime = Timestamp { secs: -1, nanos: 0 };
    f.inode = 42;
    f.device = 2049;
    f.links = 1;
    f.size = 5;
    f.content = vec![ChunkRef {
        id: hello_id(),
        len: 5,
    }];
    f.xattrs = vec![Xattr {
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
    }];
    let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
    d.mode = 0o755;
    d.subtree = Some(BlobId([0xaa; 32]));
    let mut l = Node::new(b"l".to_vec(), NodeKind::Symlink);
    l.mode = 0o777;
    l.target = b"a.txt".to_vec();
    Tree::new(vec![l, d, f])
}

const TREE_HEX: &str = "0103\
     05612e747874 00 a403 e807 e807 0175 0167 80c49fd50c05 0100 2a 8110 01 00 05\
     01 e40f92599fd5e8909fa62804d99aa3e008022411c1576bf2f127fb819b5eac1f 05\
     00 00 01 06757365722e6b 0176\
     0164 01 ed03 00 00 00 00 0000 0000 00 00 00 00 00 00\
     01 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 00 00\
     016c 02 ff03 00 00 00 00 0000 0000 00 00 00 00 00 00 00 05612e747874 00";

#[test]
fn tree_postcard_known_answer() {
    let expect = h(&TREE_HEX.replace(' ', ""));
    let t = sample_tree();
    let enc = t.encode();
    assert_eq!(hex::encode(&enc), hex::encode(&expect));
    assert_eq!(enc.len(), 160);
    assert_eq!(Tree::decode(&expect).unwrap(), t);
    assert_eq!(
        hash::blob_id(&keys().blob_id, &enc).to_hex(),
        "f73f3b554b39d489523b4b4858afe63ae1e0d11cee9e2eb29ff450020f6551be"
    );
    // Validation: unsorted, bad names, subtree on a non-directory.
    let mut bad = t.clone();
    bad.nodes.swap(0, 1);
    assert!(Tree::decode(&bad.encode()).is_err());
    let mut bad = t.clone();
    bad.nodes[2].subtree = Some(BlobId([0; 32]));
    assert!(Tree::decode(&bad.encode()).is_err());
    let mut bad = t.clone();
    bad.nodes[1].subtree = None;
    assert!(Tree::decode(&bad.encode()).is_err());
    for name in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        let mut bad = t.clone();
        bad.nodes = vec![Node::new(name.to_vec(), NodeKind::File)];
        assert!(Tree::decode(&bad.encode()).is_err(), "{name:?}");
    }
    let mut v2 = expect.clone();
    v2[0] = 2;
    assert!(Tree::decode(&v2).is_err());
}

const INDEX_HEX: &str = "01 01 5555555555555555555555555555555555555555555555555555555555555555\
     01 6666666666666666666666666666666666666666666666666666666666666666 8601\
     01 00 e40f92599fd5e8909fa62804d99aa3e008022411c1576bf2f127fb819b5eac1f 00 8601 05";

/// The index payload above, sealed as an index object (zstd-compressed; nonce 0x77..).
const INDEX_OBJECT: &str = "777777777777777777777777777777777777777777777777\
     e7710e82442a85e048121eec4ab596ed8a4fec320fb9e2202bb1a7ee2c75e835\
     da7e7a0d3f3b09e89018773bd9ae4dd6c3c369857fe980d69ddf746faa52f733\
     4963a0e81b8aee14f43e1a81106f2572";
const INDEX_OBJECT_ID: &str = "b8d591792c138337b4a73181b2c5a8789b5b79c79ac856ad3540757b06004d5c";

fn sample_index() -> IndexFile {
    IndexFile {
        version: 1,
        supersedes: vec![IndexId([0x55; 32])],
        packs: vec![IndexPack {
            id: PackId([0x66; 32]),
            size: 134,
            blobs: vec![IndexBlob {
                kind: BlobKind::Data,
                id: hello_id(),
                offset: 0,
                length: 134,
                raw_length: 5,
            }],
        }],
    }
}

#[test]
fn index_postcard_known_answer() {
    let expect = h(&INDEX_HEX.replace(' ', ""));
    let f = sample_index();
    assert_eq!(hex::encode(f.encode()), hex::encode(&expect));
    assert_eq!(expect.len(), 107);
    assert_eq!(IndexFile::decode(&expect).unwrap(), f);
    // An entry reaching past its pack's size is rejected.
    let mut bad = f.clone();
    bad.packs[0].size = 133;
    assert!(IndexFile::decode(&bad.encode()).is_err());

    // The sealed object: named by the plain BLAKE3 of its bytes, AD "repo object index v1".
    let k = keys();
    let obj = h(INDEX_OBJECT);
    assert_eq!(hex::encode(hash::object_hash(&obj)), INDEX_OBJECT_ID);
    let framed = crypto::open(&k.encryption, b"repo object index v1", &obj).unwrap();
    assert_eq!(framed[0], codec::FLAG_ZSTD);
    let payload = codec::decode(&k.encryption, b"repo object index v1", &obj, 1 << 30).unwrap();
    assert_eq!(payload, expect);
    assert!(codec::decode(&k.encryption, b"repo object snapshot v1", &obj, 1 << 30).is_err());
}

// ---------------------------------------------------------------- config and keys

const CONFIG_OBJECT: &str = "{\"version\":1,\
\"id\":\"0202020202020202020202020202020202020202020202020202020202020202\",\
\"chunker\":\"fastcdc-v2020-keyed-gear\",\
\"chunk_sizes\":{\"min\":524288,\"avg\":1048576,\"max\":8388608},\
\"blob_id\":\"blake3-keyed\",\"cipher\":\"xchacha20-poly1305\",\"compression\":\"zstd\",\
\"compression_level\":3,\"pack_size\":16777216}\n\
fd2ae81558cbb9a7a331aee3a9e6c19af032555a9e76f8e5e78598b8230c7d13\n";

#[test]
fn config_known_answer() {
    let k = keys();
    // Explicit sizes: the vector pins the format, not today's defaults.
    let sizes = ChunkerParams {
        min: 524288,
        avg: 1048576,
        max: 8388608,
    };
    let cfg = Config::new(RepoId([0x02; 32]), sizes);
    let bytes = StoredConfig::seal(&cfg, &k.config_mac);
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), CONFIG_OBJECT);
    let line = CONFIG_OBJECT.split('\n').next().unwrap();
    assert_eq!(
        blake3::keyed_hash(&k.config_mac, line.as_bytes())
            .to_hex()
            .as_str(),
        "fd2ae81558cbb9a7a331aee3a9e6c19af032555a9e76f8e5e78598b8230c7d13"
    );
    let parsed = StoredConfig::parse(&bytes).unwrap();
    assert_eq!(parsed.config, cfg);
    assert!(parsed.verify(&k.config_mac));
    assert_eq!(
        hex::encode(hash::object_hash(&bytes)),
        "9d392f836f4a40527a11de1f9250769c97c8e9dd83c80d9be9bb0bbec4bbca62"
    );
    let v2 = CONFIG_OBJECT.replace("\"version\":1", "\"version\":2");
    assert!(StoredConfig::parse(v2.as_bytes()).is_err());
}

const KEY_OBJECT: &str = r#"{
  "version": 1,
  "created": "2026-01-02T03:04:05Z",
  "host": "host",
  "user": "user",
  "kdf": "argon2id",
  "params": {
    "m_cost": 64,
    "t_cost": 1,
    "p_cost": 1
  },
  "salt": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
  "master": "88888888888888888888888888888888888888888888888866c88b4ba1a5d953c21aac59684ca4df81da1f3f9eee7d53102cc2a40a612f81c783dcbdab8e0767a5b25d2c7cbe4187"
}"#;

#[test]
fn key_object_known_answer() {
    let params = KdfParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let salt = [0x5a; 32];
    let kek = crypto::kdf::derive(b"password", &salt, params).unwrap();
    assert_eq!(
        hex::encode(*kek),
        "dff64cbd69fade35973ad3505fd6f2c7362e71badfb16b4afb439eb3c59f4b1b"
    );
    let wrapped = crypto::seal_with_nonce(&kek, &[0x88; 24], b"repo master key v1", &MASTER);
    assert_eq!(wrapped.len(), 72);
    let kf = KeyFile {
        version: 1,
        created: "2026-01-02T03:04:05Z".parse().unwrap(),
        host: "host".into(),
        user: "user".into(),
        kdf: "argon2id".into(),
        params,
        salt: hex::encode(salt),
        master: hex::encode(&wrapped),
    };
    let bytes = kf.encode();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), KEY_OBJECT);
    assert_eq!(
        hex::encode(hash::object_hash(&bytes)),
        "50a78a5ff0fabb9166d9ee16af03561dd9dd8c640485987099ba26080d4d5c54"
    );
    let opened = KeyFile::decode(KEY_OBJECT.as_bytes()).unwrap();
    assert_eq!(opened.open(b"password").unwrap().as_bytes(), &MASTER);
    assert!(opened.open(b"Password").is_err());
}

// ---------------------------------------------------------------- JSON objects

#[test]
fn snapshot_and_lock_json() {
    let snap = Snapshot {
        version: 1,
        time: "2026-01-02T03:04:05.123456789Z".parse().unwrap(),
        host: "host".into(),
        user: "user".into(),
        uid: 1000,
        gid: 1000,
        paths: vec!["/home/user/docs".into()],
        tags: vec!["daily".into()],
        excludes: vec!["*.tmp".into()],
        tree: BlobId([0xbb; 32]),
        parent: None,
        program_version: "repo 0.1.0".into(),
        summary: Summary {
            files_new: 3,
            dirs: 4,
            total_bytes: 10,
            bytes_read: 10,
            blobs_new: 5,
            data_added: 10,
            data_added_stored: 300,
            duration_secs: 0.25,
            ..Default::default()
        },
        original: None,
        damaged: Vec::new(),
    };
    let json = concat!(
        r#"{"version":1,"time":"2026-01-02T03:04:05.123456789Z","host":"host","user":"user","#,
        r#""uid":1000,"gid":1000,"paths":["/home/user/docs"],"tags":["daily"],"excludes":["*.tmp"],"#,
        r#""tree":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","parent":null,"#,
        r#""program_version":"repo 0.1.0","summary":{"files_new":3,"files_changed":0,"#,
        r#""files_unchanged":0,"dirs":4,"others":0,"errors":0,"total_bytes":10,"bytes_read":10,"#,
        r#""blobs_new":5,"data_added":10,"data_added_stored":300,"duration_secs":0.25}}"#
    );
    assert_eq!(String::from_utf8(snap.encode()).unwrap(), json);
    assert_eq!(Snapshot::decode(json.as_bytes()).unwrap(), snap);

    let lock = LockInfo {
        time: "2026-01-02T03:04:05.5Z".parse().unwrap(),
        exclusive: false,
        host: "host".into(),
        user: "user".into(),
        pid: 4242,
        command: "create".into(),
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        boot_id: Some("dceec5ad-80bb-42f0-97f2-c7c001d067b3".into()),
        pid_ns: Some(4026531836),
        start_time: Some(123456),
        nonce: Some("00112233445566778899aabbccddeeff".into()),
    };
    assert_eq!(
        serde_json::to_string(&lock).unwrap(),
        concat!(
            r#"{"time":"2026-01-02T03:04:05.500Z","exclusive":false,"host":"host","user":"user","pid":4242,"command":"create","#,
            r#""machine_id":"0123456789abcdef0123456789abcdef","boot_id":"dceec5ad-80bb-42f0-97f2-c7c001d067b3","#,
            r#""pid_ns":4026531836,"start_time":123456,"nonce":"00112233445566778899aabbccddeeff"}"#
        )
    );
    // Lock objects of older versions lack the holder fields: still readable.
    let old: LockInfo = serde_json::from_str(
        r#"{"time":"2026-01-02T03:04:05.500Z","exclusive":false,"host":"host","user":"user","pid":4242,"command":"create"}"#,
    )
    .unwrap();
    assert_eq!(old.machine_id, None);
    assert_eq!(old.nonce, None);
}

// ---------------------------------------------------------------- chunker

/// The gear table as SPEC.md defines it: 256 little-endian u64 words read in
/// order from the BLAKE3 XOF keyed with the chunker sub-key (empty input).
fn spec_gear(chunker_key: &[u8; 32]) -> Vec<u64> {
    let mut xof = blake3::Hasher::new_keyed(chunker_key).finalize_xof();
    let mut bytes = [0u8; 256 * 8];
    xof.fill(&mut bytes);
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

/// fastcdc 5.0 `MASKS`, indexed by log2 of a chunk size (SPEC.md section 11).
const MASKS: [u64; 26] = [
    0,
    0,
    0,
    0,
    0,
    0x0000000001804110,
    0x0000000001803110,
    0x0000000018035100,
    0x0000001800035300,
    0x0000019000353000,
    0x0000590003530000,
    0x0000d90003530000,
    0x0000d90103530000,
    0x0000d90303530000,
    0x0000d90313530000,
    0x0000d90f03530000,
    0x0000d90303537000,
    0x0000d90703537000,
    0x0000d90707537000,
    0x0000d91707537000,
    0x0000d91747537000,
    0x0000d91767537000,
    0x0000d93767537000,
    0x0000d93777537000,
    0x0000d93777577000,
    0x0000db3777577000,
];

/// The byte-at-a-time cut rule from SPEC.md section 11, written independently
/// of fastcdc so the spec's description is checked against the real chunker.
fn spec_cut(gear: &[u64], data: &[u8], p: ChunkerParams) -> usize {
    let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
    let bits = (avg as f64).log2().round() as usize;
    let (mask_s, mask_l) = (MASKS[bits + 1], MASKS[bits - 1]);
    let n = data.len();
    if n <= min {
        return n;
    }
    let remaining = n.min(max);
    let center = if n > max { avg } else { n.min(avg) };
    let small_end = center / 2 * 2;
    let end = remaining / 2 * 2;
    let mut hash: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(end).skip(min) {
        hash = (hash << 1).wrapping_add(gear[b as usize]);
        let mask = if i < small_end { mask_s } else { mask_l };
        if hash & mask == 0 {
            return i;
        }
    }
    remaining
}

fn spec_chunks(gear: &[u64], data: &[u8], p: ChunkerParams) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = spec_cut(gear, &data[pos..], p);
        out.push(n);
        pos += n;
    }
    out
}

fn chunker_input(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"repo spec chunker input")
        .finalize_xof()
        .fill(&mut data);
    data
}

#[test]
fn chunker_known_answer() {
    let k = keys();
    let gear = spec_gear(&k.chunker);
    // The XOF stream starts with the 32-byte keyed hash of the empty input.
    let first: Vec<u8> = gear[..4].iter().flat_map(|g| g.to_le_bytes()).collect();
    assert_eq!(first, blake3::keyed_hash(&k.chunker, b"").as_bytes());
    assert_eq!(
        &gear[..4],
        &[
            0x455191632d20dd9c,
            0x88cacf58be86f926,
            0xaeb655cfd24c96b0,
            0x3c798dcce35c3b87
        ]
    );
    use fastcdc::v2020::{Normalization, select_masks};
    assert_eq!(
        select_masks(1 << 20, Normalization::Level1),
        (0x0000d91767537000, 0x0000d91707537000)
    );
    assert_eq!(
        select_masks(4096, Normalization::Level1),
        (0x0000d90303530000, 0x0000d90003530000)
    );

    let p = ChunkerParams {
        min: 1024,
        avg: 4096,
        max: 16384,
    };
    let c = Chunker::new(&k.chunker, p).unwrap();
    let data = chunker_input(65536);
    let lens: Vec<usize> = c.chunks(&data).map(|r| r.len()).collect();
    assert_eq!(
        lens,
        vec![
            5619, 5269, 5553, 4527, 5461, 8311, 4534, 1539, 9083, 7063, 3534, 4277, 766
        ]
    );
    assert_eq!(spec_chunks(&gear, &data, p), lens);

    // Edge cases: odd tails, inputs shorter than avg or min, constant data.
    for len in [65535, 10_001, 3000, 1025, 1024, 5] {
        let d = chunker_input(len);
        let real: Vec<usize> = c.chunks(&d).map(|r| r.len()).collect();
        assert_eq!(spec_chunks(&gear, &d, p), real, "len {len}");
    }
    let zeros = vec![0u8; 40_000];
    let real: Vec<usize> = c.chunks(&zeros).map(|r| r.len()).collect();
    assert_eq!(spec_chunks(&gear, &zeros, p), real);

    // Default sizes on a few MiB.
    let d = ChunkerParams::default();
    let big = chunker_input(6 << 20);
    let c = Chunker::new(&k.chunker, d).unwrap();
    let real: Vec<usize> = c.chunks(&big).map(|r| r.len()).collect();
    assert_eq!(spec_chunks(&gear, &big, d), real);
}
