//! FtpStore against real servers started by `scripts/ftp-servers.sh`:
//! pyftpdlib (FTP, FTPS, and FTP without EPSV/MLST/MLSD) and ProFTPD (FTP and FTPS).
//!
//! Server URLs come from the environment (`REPO_TEST_FTP_URL`, `REPO_TEST_FTPS_URL`,
//! `REPO_TEST_FTP_LEGACY_URL`, `REPO_TEST_PROFTPD_URL`, `REPO_TEST_PROFTPDS_URL`, CA in
//! `REPO_TEST_FTP_CA`). A missing
//! variable skips that server locally but fails the test when `CI` is set, so CI cannot pass by
//! testing nothing. Every test works in its own fresh directory on each server.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use repo::storage::ftp::{FtpConfig, FtpError, FtpStore};

use crate::backends::{free_port, wait_listening};
use crate::support::{random_bytes, server};

const SERVERS: [(&str, &str); 5] = [
    ("pyftpdlib", "REPO_TEST_FTP_URL"),
    ("pyftpdlib+tls", "REPO_TEST_FTPS_URL"),
    // Without EPSV, MLST and MLSD: PASV, LIST parsing and SIZE/MDTM.
    ("pyftpdlib-legacy", "REPO_TEST_FTP_LEGACY_URL"),
    ("proftpd", "REPO_TEST_PROFTPD_URL"),
    ("proftpd+tls", "REPO_TEST_PROFTPDS_URL"),
];

struct Server {
    name: &'static str,
    cfg: FtpConfig,
}

fn servers() -> Vec<Server> {
    let mut found = Vec::new();
    for (name, var) in SERVERS {
        let Some(url) = server(var) else {
            continue;
        };
        let mut cfg = FtpConfig::from_url(&url).expect("test server URL");
        if cfg.tls {
            let ca = std::env::var("REPO_TEST_FTP_CA").expect("REPO_TEST_FTP_CA for FTPS");
            cfg.ca_cert_pem = Some(std::fs::read(&ca).expect("read the test CA"));
        }
        found.push(Server { name, cfg });
    }
    found
}

/// A store rooted in a directory of its own, which does not exist yet.
fn store_in(server: &Server, test: &str, max_connections: usize) -> FtpStore {
    FtpStore::new(config_in(server, test, max_connections)).expect("store")
}

/// A store's settings, in a folder of its own.
fn config_in(server: &Server, test: &str, max_connections: usize) -> FtpConfig {
    let mut cfg = server.cfg.clone();
    cfg.root = format!(
        "/{test}-{}-{:08x}/repo",
        std::process::id(),
        rand::random::<u32>()
    );
    cfg.max_connections = max_connections;
    cfg
}

async fn get_bytes(store: &FtpStore, path: &Path) -> object_store::Result<Bytes> {
    store.get(path).await?.bytes().await
}

fn is_not_found<T: std::fmt::Debug>(r: &object_store::Result<T>) -> bool {
    matches!(r, Err(object_store::Error::NotFound { .. }))
}

async fn sorted_listing(store: &FtpStore, prefix: Option<&Path>) -> Vec<(String, u64)> {
    let mut all: Vec<_> = store
        .list(prefix)
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .expect("list");
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_round_trip_keeps_every_byte_value() {
    for server in servers() {
        let store = store_in(&server, "bytes", 2);
        // All 256 values, plus CR/LF patterns an ASCII-mode transfer would rewrite.
        let mut data: Vec<u8> = (0..=255u8).collect();
        data.extend_from_slice(b"\n\r\n\r\r\n\n\x00\xff\x1a");
        let path = Path::from("data/00/all-bytes");
        store.put(&path, data.clone().into()).await.unwrap();
        let got = get_bytes(&store, &path).await.unwrap();
        assert_eq!(got.as_ref(), data.as_slice(), "{}", server.name);
        let meta = store.head(&path).await.unwrap();
        assert_eq!(meta.size, data.len() as u64, "{}", server.name);
        assert_eq!(meta.location, path);
        let age = chrono::Utc::now() - meta.last_modified;
        assert!(
            age.num_minutes().abs() < 10,
            "{}: mtime {}",
            server.name,
            meta.last_modified
        );
        // Overwrite replaces the content; an empty object is an object too.
        store
            .put(&path, PutPayload::from_static(b"second"))
            .await
            .unwrap();
        assert_eq!(get_bytes(&store, &path).await.unwrap().as_ref(), b"second");
        let empty = Path::from("empty");
        store.put(&empty, PutPayload::new()).await.unwrap();
        assert!(get_bytes(&store, &empty).await.unwrap().is_empty());
        assert_eq!(store.head(&empty).await.unwrap().size, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_object() {
    for server in servers() {
        let store = store_in(&server, "large", 2);
        let data = random_bytes(10 * 1024 * 1024, 7);
        let path = Path::from("packs/big");
        // Several chunks, as callers that stream into a PutPayload produce.
        let payload: PutPayload = data
            .chunks(3 * 1024 * 1024 + 17)
            .map(Bytes::copy_from_slice)
            .collect();
        store.put(&path, payload).await.unwrap();
        let got = get_bytes(&store, &path).await.unwrap();
        assert!(
            got.as_ref() == data.as_slice(),
            "{}: content differs",
            server.name
        );
        let tail = store
            .get_range(&path, data.len() as u64 - 1000..data.len() as u64)
            .await
            .unwrap();
        assert_eq!(tail.as_ref(), &data[data.len() - 1000..]);
        store.delete(&path).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_in_a_row_on_one_connection() {
    for server in servers() {
        // One connection: every early-stopped download must leave it usable (or be replaced).
        let store = store_in(&server, "ranges", 1);
        let data = random_bytes(16 * 1024 * 1024 + 5, 11);
        let n = data.len() as u64;
        let path = Path::from("obj");
        store.put(&path, data.clone().into()).await.unwrap();
        let cases = [
            (GetRange::Bounded(0..10), 0..10),
            (GetRange::Bounded(1000..2000), 1000..2000),
            (GetRange::Bounded(n - 10..n), n - 10..n),
            (GetRange::Bounded(5..n + 100), 5..n),
            (GetRange::Offset(n - 4096), n - 4096..n),
            (GetRange::Suffix(100), n - 100..n),
            (
                GetRange::Bounded(2 * 1024 * 1024..2 * 1024 * 1024 + 1),
                2097152..2097153,
            ),
            (GetRange::Bounded(0..1024 * 1024), 0..1024 * 1024),
        ];
        for round in 0..2 {
            for (range, expected) in &cases {
                let opts = GetOptions::new().with_range(Some(range.clone()));
                let result = store
                    .get_opts(&path, opts)
                    .await
                    .unwrap_or_else(|e| panic!("{} round {round} {range:?}: {e}", server.name));
                assert_eq!(&result.range, expected, "{} {range:?}", server.name);
                assert_eq!(result.meta.size, n);
                let bytes = result.bytes().await.unwrap();
                let (a, b) = (expected.start as usize, expected.end as usize);
                assert!(
                    bytes.as_ref() == &data[a..b],
                    "{} {range:?}: wrong bytes",
                    server.name
                );
            }
        }
        let ranges = [0..1, 100..200, 1_500_000..1_500_100, n - 1..n];
        let parts = store.get_ranges(&path, &ranges).await.unwrap();
        for (range, part) in ranges.iter().zip(parts) {
            assert_eq!(
                part.as_ref(),
                &data[range.start as usize..range.end as usize]
            );
        }
        // A range starting past the end is an error, not an empty result.
        assert!(store.get_range(&path, n + 1..n + 2).await.is_err());
        // HEAD-style get transfers nothing but reports the object.
        let head = store
            .get_opts(&path, GetOptions::new().with_head(true))
            .await
            .unwrap();
        assert_eq!(head.meta.size, n);
        eprintln!(
            "{}: {} control connection(s) for {} range reads",
            server.name,
            store.connections_opened(),
            cases.len() * 2 + 3
        );
        // And the connection still works for uploads afterwards.
        store
            .put(&Path::from("after"), PutPayload::from_static(b"ok"))
            .await
            .unwrap();
        assert_eq!(
            get_bytes(&store, &Path::from("after"))
                .await
                .unwrap()
                .as_ref(),
            b"ok"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_nested_prefixes() {
    for server in servers() {
        let store = store_in(&server, "list", 4);
        assert!(
            sorted_listing(&store, None).await.is_empty(),
            "missing root lists as empty"
        );
        let objects = [
            ("a/b/c.bin", 3),
            ("a/b/d.bin", 4),
            ("a/e.bin", 5),
            ("ab/x.bin", 6),
            ("f.bin", 7),
            ("a/b/deep/er/g.bin", 8),
        ];
        for (name, len) in objects {
            store
                .put(&Path::from(name), vec![b'x'; len].into())
                .await
                .unwrap();
        }
        let mut all: Vec<_> = objects
            .iter()
            .map(|(n, l)| (n.to_string(), *l as u64))
            .collect();
        all.sort();
        for force_list in [false, true] {
            store.force_list_command(force_list);
            let label = format!("{} (LIST={force_list})", server.name);
            assert_eq!(sorted_listing(&store, None).await, all, "{label}");
            let a: Vec<_> = sorted_listing(&store, Some(&Path::from("a")))
                .await
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(
                a,
                ["a/b/c.bin", "a/b/d.bin", "a/b/deep/er/g.bin", "a/e.bin"],
                "{label}: prefix a must not include ab/"
            );
            assert_eq!(
                sorted_listing(&store, Some(&Path::from("a/b/deep")))
                    .await
                    .len(),
                1
            );
            assert!(
                sorted_listing(&store, Some(&Path::from("nope")))
                    .await
                    .is_empty()
            );

            let level = store
                .list_with_delimiter(Some(&Path::from("a")))
                .await
                .unwrap();
            let objs: Vec<_> = level
                .objects
                .iter()
                .map(|m| m.location.to_string())
                .collect();
            assert_eq!(objs, ["a/e.bin"], "{label}");
            assert_eq!(level.objects[0].size, 5);
            assert_eq!(level.common_prefixes, [Path::from("a/b")], "{label}");
            let top = store.list_with_delimiter(None).await.unwrap();
            let mut prefixes: Vec<_> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
            prefixes.sort();
            assert_eq!(prefixes, ["a", "ab"], "{label}");
            let objs: Vec<_> = top.objects.iter().map(|m| m.location.to_string()).collect();
            assert_eq!(objs, ["f.bin"], "{label}");
            let offset: Vec<_> = store
                .list_with_offset(None, &Path::from("a/e.bin"))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            assert_eq!(offset.len(), 2, "{label}: {offset:?}");
        }
        store.force_list_command(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_mode_reports_collisions() {
    for server in servers() {
        let store = store_in(&server, "create", 2);
        let path = Path::from("keys/k1");
        let create = PutOptions::from(PutMode::Create);
        store
            .put_opts(&path, PutPayload::from_static(b"first"), create.clone())
            .await
            .unwrap();
        let again = store
            .put_opts(&path, PutPayload::from_static(b"second"), create)
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{}: {again:?}",
            server.name
        );
        assert_eq!(get_bytes(&store, &path).await.unwrap().as_ref(), b"first");
        let err = again.unwrap_err().to_string();
        assert!(
            err.contains("keys/k1") && err.contains("127.0.0.1"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_not_found() {
    for server in servers() {
        let store = store_in(&server, "delete", 2);
        let path = Path::from("snapshots/s1");
        store
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        store.delete(&path).await.unwrap();
        assert!(is_not_found(&store.get(&path).await), "{}", server.name);
        assert!(is_not_found(&store.delete(&path).await), "{}", server.name);
        assert!(is_not_found(
            &store.head(&Path::from("no/such/object")).await
        ));
        let missing = store.get(&Path::from("snapshots/none")).await;
        assert!(is_not_found(&missing), "{}", server.name);
        let message = missing.unwrap_err().to_string();
        assert!(message.contains("snapshots/none"), "{message}");
        assert!(message.contains("ftp"), "{message}");
        assert!(!message.contains("repo-test-pw"), "{message}");
        // A directory is not an object.
        assert!(is_not_found(&store.get(&Path::from("snapshots")).await));

        let paths: Vec<Path> = (0..5).map(|i| Path::from(format!("d/{i}"))).collect();
        for p in &paths {
            store.put(p, PutPayload::from_static(b"1")).await.unwrap();
        }
        let mut input: Vec<_> = paths.iter().cloned().map(Ok).collect();
        input.push(Ok(Path::from("d/missing")));
        let results: Vec<_> = store
            .delete_stream(stream::iter(input).boxed())
            .collect()
            .await;
        for (p, r) in paths.iter().zip(&results) {
            assert_eq!(r.as_ref().unwrap(), p);
        }
        assert!(matches!(
            results[5],
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(
            sorted_listing(&store, Some(&Path::from("d")))
                .await
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy() {
    for server in servers() {
        let store = store_in(&server, "rename", 2);
        let (a, b, c) = (Path::from("tmp/a"), Path::from("final/b"), Path::from("c"));
        store.put(&a, PutPayload::from_static(b"A")).await.unwrap();
        // The target directory does not exist yet.
        store.rename(&a, &b).await.unwrap();
        assert!(is_not_found(&store.get(&a).await));
        assert_eq!(get_bytes(&store, &b).await.unwrap().as_ref(), b"A");
        assert!(is_not_found(&store.rename(&a, &c).await), "{}", server.name);

        store.put(&c, PutPayload::from_static(b"C")).await.unwrap();
        let clash = store.rename_if_not_exists(&b, &c).await;
        assert!(
            matches!(clash, Err(object_store::Error::AlreadyExists { .. })),
            "{clash:?}"
        );
        store.rename(&b, &c).await.unwrap();
        assert_eq!(get_bytes(&store, &c).await.unwrap().as_ref(), b"A");

        store.copy(&c, &a).await.unwrap();
        assert_eq!(get_bytes(&store, &a).await.unwrap().as_ref(), b"A");
        assert_eq!(get_bytes(&store, &c).await.unwrap().as_ref(), b"A");
        let clash = store.copy_if_not_exists(&c, &a).await;
        assert!(
            matches!(clash, Err(object_store::Error::AlreadyExists { .. })),
            "{clash:?}"
        );
        assert!(is_not_found(&store.copy(&b, &a).await));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_directories_for_locks() {
    for server in servers() {
        let store = store_in(&server, "locks", 2);
        let s = store.clone();
        let (first, second, nested) = tokio::task::spawn_blocking(move || {
            let first = s.create_dir_exclusive("locks/exclusive").unwrap();
            let second = s.create_dir_exclusive("locks/exclusive").unwrap();
            s.remove_dir("locks/exclusive").unwrap();
            let nested = s.create_dir_exclusive("locks/exclusive").unwrap();
            (first, second, nested)
        })
        .await
        .unwrap();
        assert!(first, "{}: first MKD creates", server.name);
        assert!(!second, "{}: second MKD finds it", server.name);
        assert!(nested, "{}: recreated after remove_dir", server.name);

        // Several contenders at once: exactly one wins.
        let winners: usize = futures::future::join_all((0..6).map(|_| {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.create_dir_exclusive("locks/race").unwrap())
        }))
        .await
        .into_iter()
        .map(|r| usize::from(r.unwrap()))
        .sum();
        assert_eq!(winners, 1, "{}", server.name);

        let s = store.clone();
        let missing = tokio::task::spawn_blocking(move || s.remove_dir("locks/none"))
            .await
            .unwrap();
        assert!(
            matches!(missing, Err(FtpError::NotFound { .. })),
            "{missing:?}"
        );
        // Lock directories never show up as objects.
        assert!(sorted_listing(&store, None).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_from_eight_tasks() {
    for server in servers() {
        let store = Arc::new(store_in(&server, "concurrent", 4));
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..4u64 {
                        // All tasks race to create the same fresh directories.
                        let path = Path::from(format!("data/{:02x}/t{t}-{i}", i % 2));
                        let data = random_bytes(50_000 + (t * 4 + i) as usize, t * 100 + i);
                        store.put(&path, data.into()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let listed = sorted_listing(&store, Some(&Path::from("data"))).await;
        assert_eq!(listed.len(), 32, "{}", server.name);
        for t in 0..8u64 {
            for i in 0..4u64 {
                let path = Path::from(format!("data/{:02x}/t{t}-{i}", i % 2));
                let got = get_bytes(&store, &path).await.unwrap();
                assert!(got.as_ref() == random_bytes(50_000 + (t * 4 + i) as usize, t * 100 + i));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_is_buffered() {
    for server in servers() {
        let store = store_in(&server, "multipart", 2);
        let path = Path::from("packs/multi");
        let mut upload = store.put_multipart(&path).await.unwrap();
        let parts = [
            random_bytes(1000, 1),
            random_bytes(2000, 2),
            random_bytes(10, 3),
        ];
        for part in &parts {
            upload.put_part(part.clone().into()).await.unwrap();
        }
        upload.complete().await.unwrap();
        let expected: Vec<u8> = parts.concat();
        assert_eq!(
            get_bytes(&store, &path).await.unwrap().as_ref(),
            expected.as_slice()
        );

        let mut aborted = store
            .put_multipart(&Path::from("packs/aborted"))
            .await
            .unwrap();
        aborted
            .put_part(PutPayload::from_static(b"x"))
            .await
            .unwrap();
        aborted.abort().await.unwrap();
        assert!(is_not_found(
            &store.head(&Path::from("packs/aborted")).await
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_without_leaking_it() {
    for server in servers() {
        let mut cfg = server.cfg.clone();
        cfg.password = "definitely-wrong-pw".into();
        let store = FtpStore::new(cfg).unwrap();
        let started = std::time::Instant::now();
        let err = store.head(&Path::from("x")).await.unwrap_err().to_string();
        assert!(err.contains("login"), "{}: {err}", server.name);
        assert!(err.contains("REPO_FTP_PASSWORD"), "what to do: {err}");
        assert!(!err.contains("definitely-wrong-pw"), "{err}");
        // 530 is permanent: no backoff rounds.
        assert!(
            started.elapsed().as_secs() < 5,
            "{}: took {:?}",
            server.name,
            started.elapsed()
        );
        assert!(!format!("{store:?} {store}").contains("wrong-pw"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_operation_logs_in_the_whole_pool() {
    for server in servers() {
        let store = Arc::new(store_in(&server, "warmup", 3));
        let path = Path::from("obj");
        store
            .put(&path, random_bytes(1000, 5).into())
            .await
            .unwrap();
        // The other two connections log in meanwhile, not when operations first need them.
        let mut waited = 0;
        while store.connections_opened() < 3 && waited < 200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(store.connections_opened(), 3, "{}", server.name);
        let reads: Vec<_> = (0..3)
            .map(|_| {
                let (store, path) = (Arc::clone(&store), path.clone());
                tokio::spawn(async move { get_bytes(&store, &path).await })
            })
            .collect();
        for read in reads {
            assert_eq!(read.await.unwrap().unwrap().len(), 1000, "{}", server.name);
        }
        // Three operations at once ran on the connections already logged in.
        assert_eq!(store.connections_opened(), 3, "{}", server.name);
    }
}

/// Reads with a `SizeLimit`, as the repository makes them: no stat first (so no modification
/// time), the object's size when it is over the limit, and no data then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limited_reads() {
    use repo::storage::ftp::SizeLimit;
    let limited = |limit: u64| {
        let mut opts = GetOptions::new();
        opts.extensions.insert(SizeLimit(limit));
        opts
    };
    for server in servers() {
        let store = store_in(&server, "limit", 2);
        let data = random_bytes(100_000, 9);
        let path = Path::from("index/obj");
        store.put(&path, data.clone().into()).await.unwrap();
        let got = store.get_opts(&path, limited(100_000)).await.unwrap();
        assert_eq!(got.meta.size, 100_000, "{}", server.name);
        assert_eq!(got.meta.last_modified, chrono::DateTime::UNIX_EPOCH);
        assert!(got.bytes().await.unwrap().as_ref() == data.as_slice());
        let over = store.get_opts(&path, limited(99_999)).await.unwrap();
        assert_eq!(over.meta.size, 100_000, "{}", server.name);
        assert!(over.bytes().await.unwrap().is_empty());
        let missing = store.get_opts(&Path::from("index/none"), limited(10)).await;
        assert!(is_not_found(&missing), "{}: {missing:?}", server.name);
        // The connection is still in step after the early stop.
        let empty = Path::from("empty");
        store.put(&empty, PutPayload::new()).await.unwrap();
        let got = store.get_opts(&empty, limited(0)).await.unwrap();
        assert!(got.bytes().await.unwrap().is_empty(), "{}", server.name);
    }
}

/// Names are UTF-8 on the wire: the servers announce UTF8 in FEAT, so no `OPTS UTF8 ON` is
/// sent, and non-ASCII names must still round-trip (mirror and sync store any file name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_names() {
    for server in servers() {
        let store = store_in(&server, "utf8", 2);
        let path = Path::from("données/naïve 名前.txt");
        store
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let got = get_bytes(&store, &path).await;
        assert_eq!(got.unwrap().as_ref(), b"x", "{}", server.name);
        let listed = sorted_listing(&store, None).await;
        assert_eq!(listed, [(path.to_string(), 1)], "{}", server.name);
    }
}

/// Commands go out together where no reply is needed to write the next (see
/// `src/storage/ftp/control.rs`). Once the first transfer has shown the server's passive mode,
/// an upload is two round trips (EPSV + STOR, then RNFR + RNTO), a download, a ranged read and a
/// listing one each; one command at a time they were five, two, three and two. Counted by the
/// client: the batches of commands it sent and waited on, and the commands in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_operation() {
    use repo::storage::ftp::SizeLimit;
    for server in servers() {
        let cfg = config_in(&server, "round-trips", 1);
        let store = FtpStore::new(cfg.clone()).expect("store");
        let (a, b) = (Path::from("d/a"), Path::from("d/b"));
        // Large enough that the ranged read's early stop always meets a 426 (a small file may
        // be sent whole before the stop: then a 226). Stored by another client: a second upload
        // would spend the measured connection's last TLS ticket (see pool/connect.rs).
        let large = Path::from("large");
        let other = FtpStore::new(cfg).expect("store");
        other
            .put(&large, random_bytes(8 << 20, 3).into())
            .await
            .unwrap();
        // Logs in, learns the passive mode, creates d/.
        store.put(&a, random_bytes(1000, 1).into()).await.unwrap();
        let opened = store.connections_opened();
        let idle = store.replies_read_idle();
        let ahead = store.data_connections_ahead();
        let mut last = store.round_trips();
        let mut step = |what: &str, round_trips: u64, commands: u64| {
            let now = store.round_trips();
            let spent = (now.0 - last.0, now.1 - last.1);
            assert_eq!(spent, (round_trips, commands), "{}: {what}", server.name);
            last = now;
        };
        // Downloads first: over TLS, ProFTPD hands out a new session ticket for the next data
        // connection only on those (an upload spends one; see pool/connect.rs).
        let mut limited = GetOptions::new();
        limited.extensions.insert(SizeLimit(1000));
        let got = store.get_opts(&a, limited.clone()).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().len(), 1000, "{}", server.name);
        step("download", 1, 2);
        limited.range = Some(GetRange::Bounded(10..20));
        let got = store.get_opts(&large, limited).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().len(), 10, "{}", server.name);
        // The ranged read's 426 is read after it returns, and the next data port asked for
        // then: counted by the time the listing (on the same, only connection) is done.
        let listed = store.list_with_delimiter(Some(&Path::from("d"))).await;
        assert_eq!(listed.unwrap().objects.len(), 1, "{}", server.name);
        step("ranged read and listing", 2, 5);
        store.put(&b, random_bytes(1000, 2).into()).await.unwrap();
        step("upload", 2, 4);
        assert_eq!(store.connections_opened(), opened, "{}", server.name);
        // The next data port's reply was read while the connection was idle after the
        // download, the ranged read and the listing (the upload's comes with the rename's), and
        // the ranged read's 426 after it returned.
        let now = store.replies_read_idle();
        assert_eq!(
            (now.0 - idle.0, now.1 - idle.1),
            (3, 1),
            "{}: passive replies and early stops' replies read while idle",
            server.name
        );
        // On plain FTP each of the four transfers found its data connection open: opened while
        // the connection was idle after the operation before (see control/data.rs).
        let now = store.data_connections_ahead();
        let expected = if server.cfg.tls { 0 } else { 4 };
        assert_eq!(
            (now.0 - ahead.0, now.1 - ahead.1),
            (expected, 0),
            "{}: transfers on data connections opened ahead, and ones found closed",
            server.name
        );
    }
}

/// A server may close a data connection made before its transfer command (pyftpdlib's test
/// mode `close-idle-data` does). The transfer that finds its connection opened ahead closed asks
/// for a new port instead, and the store opens no more ahead; every operation works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_data_connections_opened_ahead_gets_none_again() {
    if server("REPO_TEST_FTP_URL").is_none() {
        return;
    }
    let own = OwnServer::start("close-idle-data");
    let store = own.store(1);
    let first = Path::from("d/0");
    store
        .put(&first, random_bytes(5000, 0).into())
        .await
        .unwrap();
    // The server closes the connection opened ahead once it is accepted; waiting here makes
    // sure that has happened before the next transfer looks.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        get_bytes(&store, &first).await.unwrap(),
        random_bytes(5000, 0)
    );
    for i in 1..4u64 {
        let path = Path::from(format!("d/{i}"));
        store
            .put(&path, random_bytes(5000, i).into())
            .await
            .unwrap();
        assert_eq!(
            get_bytes(&store, &path).await.unwrap(),
            random_bytes(5000, i)
        );
    }
    assert_eq!(
        sorted_listing(&store, Some(&Path::from("d"))).await.len(),
        4
    );
    assert_eq!(
        store.data_connections_ahead(),
        (0, 1),
        "transfers on data connections opened ahead, and ones found closed"
    );
}

/// Runs, one after another with a pause before each (so the data connection opened ahead has
/// waited long enough for `ahead-*` servers to close it), a download, a listing and an upload
/// on a new store against `own`, checking each; returns the store.
async fn transfers_after_pauses(own: &OwnServer, dir: &str) -> FtpStore {
    let store = own.store(1);
    let first = Path::from(format!("{dir}/0"));
    store
        .put(&first, random_bytes(5000, 0).into())
        .await
        .unwrap();
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(150));
    pause().await;
    assert_eq!(
        get_bytes(&store, &first).await.expect("download"),
        random_bytes(5000, 0)
    );
    pause().await;
    assert_eq!(
        sorted_listing(&store, Some(&Path::from(dir))).await.len(),
        1
    );
    pause().await;
    let second = Path::from(format!("{dir}/1"));
    store
        .put(&second, random_bytes(7000, 1).into())
        .await
        .expect("upload");
    pause().await;
    assert_eq!(
        get_bytes(&store, &second).await.unwrap(),
        random_bytes(7000, 1)
    );
    store
}

/// A server that closes the data connection opened ahead just as the transfer command comes
/// (a race the look before the command cannot win), then answers `150` and waits for another
/// (mode `ahead-silent`, as pyftpdlib does; `ahead-503` also refuses the next passive command
/// meanwhile; `ahead-mute` sends the `150` only once another comes): the first transfer that
/// meets it moves nothing, is judged lost, and is repeated at once on a new connection; no more
/// are opened ahead. Before this was handled, downloads failed for good (the `229` or `503` of
/// the next passive command read as their verdict) or waited a minute for the `150`, and
/// uploads a minute for a verdict that never came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_data_connections_as_the_command_comes_costs_one_repeat() {
    if server("REPO_TEST_FTP_URL").is_none() {
        return;
    }
    for mode in ["ahead-silent", "ahead-503", "ahead-mute"] {
        let own = OwnServer::start(mode);
        let store = transfers_after_pauses(&own, "down").await;
        assert_eq!(
            (store.data_connections_ahead(), store.connections_opened()),
            ((1, 1), 2),
            "{mode}: a download on a connection opened ahead, lost; the connection replaced"
        );
        // An upload meeting it first: the server resets its bytes, and no verdict comes.
        let store = upload_after_pause(&own).await;
        assert_eq!(
            (store.data_connections_ahead(), store.connections_opened()),
            ((1, 1), 2),
            "{mode}: an upload on a connection opened ahead, lost; the connection replaced"
        );
    }
}

/// An upload on a new store against `own`, then another after a pause, so that the second
/// meets the data connection opened ahead; both checked. Returns the store.
async fn upload_after_pause(own: &OwnServer) -> FtpStore {
    let store = own.store(1);
    store
        .put(&Path::from("up/0"), random_bytes(100, 0).into())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let path = Path::from("up/1");
    store
        .put(&path, random_bytes(9000, 1).into())
        .await
        .expect("upload");
    assert_eq!(
        get_bytes(&store, &path).await.unwrap(),
        random_bytes(9000, 1)
    );
    store
}

/// A server that refuses a transfer whose data connection came before the command with `425`
/// (mode `ahead-425`): the transfer asks for a new port on the same session, and the store
/// opens no more ahead. Before, every such transfer dropped its session and logged in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_data_connections_opened_ahead_keeps_its_session() {
    if server("REPO_TEST_FTP_URL").is_none() {
        return;
    }
    let own = OwnServer::start("ahead-425");
    let store = transfers_after_pauses(&own, "d").await;
    assert_eq!(
        (store.data_connections_ahead(), store.connections_opened()),
        ((1, 1), 1),
        "one transfer on a connection opened ahead, refused; one login in all"
    );
    let store = upload_after_pause(&own).await;
    assert_eq!(
        (store.data_connections_ahead(), store.connections_opened()),
        ((1, 1), 1),
        "an upload on a connection opened ahead, refused and repeated; one login in all"
    );
}

/// The pool logs its connections in at once when first used, but those made ahead of need send
/// the password only once another login proved it good: a wrong password costs a failed login
/// per operation started before the refusal came, not one per connection (fail2ban's default
/// bans a client after five), and every operation fails with the refusal. With the right one,
/// all eight log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_sent_once_not_once_per_connection() {
    if server("REPO_TEST_FTP_URL").is_none() {
        return;
    }
    let own = OwnServer::start("plain");
    let mut cfg = own.config();
    cfg.password = "not the password".into();
    cfg.max_connections = 8;
    let store = FtpStore::new(cfg).expect("store");
    // Two operations at once, as a command starts: each would log in itself.
    let (x, y) = (Path::from("x"), Path::from("y"));
    let (a, b) = tokio::join!(get_bytes(&store, &x), get_bytes(&store, &y));
    for err in [a.unwrap_err(), b.unwrap_err()] {
        assert!(err.to_string().contains("530"), "{err}");
    }
    let sent = store.logins();
    assert!(
        (1..=2).contains(&sent),
        "{sent} logins sent the wrong password"
    );
    // A later operation fails with the refusal without sending the password again.
    assert!(get_bytes(&store, &x).await.is_err());
    assert_eq!(store.logins(), sent);

    let store = own.store(8);
    store
        .put(&Path::from("x"), random_bytes(10, 0).into())
        .await
        .unwrap();
    let mut waited = 0;
    while store.logins() < 8 && waited < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        store.logins(),
        8,
        "all connections log in with the right password"
    );
}

/// A server that allows this client three sessions (pyftpdlib's `max_cons_per_ip`, mode
/// `limit-3`) refuses the pool's other logins with 421: the pool shrinks to the three it is
/// allowed, and many concurrent operations run on those, none refused or retried (without the
/// limit the operations that find no idle connection try to log in again, and are refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limiting_sessions_per_client_gets_no_more() {
    if server("REPO_TEST_FTP_URL").is_none() {
        return;
    }
    let own = OwnServer::start("limit-3");
    let store = Arc::new(own.store(8));
    for round in 0..2u64 {
        let results: Vec<_> = stream::iter(0..32u64)
            .map(|i| {
                let store = Arc::clone(&store);
                async move {
                    let path = Path::from(format!("d/{round}-{i}"));
                    store.put(&path, random_bytes(3000, i).into()).await?;
                    get_bytes(&store, &path).await
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for r in results {
            assert_eq!(r.expect("every operation succeeds").len(), 3000);
        }
    }
    assert_eq!(
        sorted_listing(&store, Some(&Path::from("d"))).await.len(),
        64
    );
    assert_eq!(
        (store.connection_limit(), store.connections_opened()),
        (3, 8),
        "connections allowed at the end, and logins tried: the first eight at once, none after"
    );
}

/// A pyftpdlib server of one test, in one of the test script's modes (see
/// `scripts/ftp-servers.sh`), stopped when the test ends.
struct OwnServer {
    child: std::process::Child,
    port: u16,
    _home: tempfile::TempDir,
}

impl OwnServer {
    fn start(mode: &str) -> Self {
        let python = std::env::var("REPO_TEST_FTP_PYTHON").unwrap_or_else(|_| "python3".into());
        let script =
            std::env::var("REPO_TEST_FTP_SERVER_SCRIPT").expect("REPO_TEST_FTP_SERVER_SCRIPT");
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = std::process::Command::new(&python)
            .args([&script, mode, &port.to_string()])
            .args([home.path().to_str().unwrap(), "own", "ownpw"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, "the FTP server");
        Self {
            child,
            port,
            _home: home,
        }
    }

    /// A store of `connections` connections to this server.
    fn store(&self, connections: usize) -> FtpStore {
        let mut cfg = self.config();
        cfg.max_connections = connections;
        FtpStore::new(cfg).expect("store")
    }

    fn config(&self) -> FtpConfig {
        FtpConfig::from_url(&format!("ftp://own:ownpw@127.0.0.1:{}/repo", self.port)).expect("URL")
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
