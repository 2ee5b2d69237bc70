//! Whole-engine throughput on a generated 64 MiB tree (1038 files):
//! first backup into an empty repository, unchanged second backup, and a
//! full restore. Runs in a temporary directory; set REPO_BENCH_DIR to put it
//! on a particular file system (e.g. a tmpfs) instead of the default temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use repo::crypto::kdf::KdfParams;
use repo::engine::archive::{self, BackupOptions, Excludes};
use repo::engine::progress::Silent;
use repo::engine::restore::{self, RestoreOptions};
use repo::repository::{Credentials, InitOptions, Repository};
use repo::storage::Location;

const PASSWORD: &[u8] = b"bench";

fn temp_root() -> tempfile::TempDir {
    match std::env::var_os("REPO_BENCH_DIR") {
        Some(d) => tempfile::Builder::new()
            .prefix("repo-bench-")
            .tempdir_in(d)
            .expect("tempdir in REPO_BENCH_DIR"),
        None => tempfile::Builder::new()
            .prefix("repo-bench-")
            .tempdir()
            .expect("tempdir"),
    }
}

fn init_repo(dir: &Path) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..InitOptions::default()
    };
    Repository::init(&Location::Local(dir.to_path_buf()), PASSWORD, &opts).expect("init")
}

fn backup(repo: &Repository, src: &Path) {
    let cancel = AtomicBool::new(false);
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        excludes: Excludes::default(),
        one_file_system: false,
        dry_run: false,
        tags: Vec::new(),
        host: Some("bench".into()),
        parent: None,
        force: false,
        scan: false,
        in_flight: 2,
        time: None,
        cancel: &cancel,
    };
    let r = archive::backup(repo, &opts, &Silent).expect("backup");
    assert!(r.errors.is_empty(), "backup errors: {:?}", r.errors);
}

fn restore_latest(repo_dir: &Path, target: &Path) {
    let cancel = AtomicBool::new(false);
    let credentials = Credentials::Password(PASSWORD.to_vec().into());
    let repo =
        Repository::open(&Location::Local(repo_dir.to_path_buf()), &credentials).expect("open");
    let (_, snap) = repo.find_snapshot("latest").expect("snapshot");
    let index = repo.load_index().expect("index");
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        sub_path: "/".into(),
        include: None,
        exclude: None,
        verify: false,
        delete: false,
        archive: true,
        cancel: &cancel,
        confirm: &|_| Ok(true),
        protect: Vec::new(),
        damaged: restore::damaged_notes(&snap),
    };
    let r = restore::restore(&repo, &index, snap.tree, &opts, &Silent).expect("restore");
    assert!(r.errors.is_empty(), "restore errors: {:?}", r.errors);
}

fn bench(c: &mut Criterion) {
    let root = temp_root();
    let src: PathBuf = root.path().join("src");
    let bytes = common::make_tree(&src);

    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(bytes));

    // A fresh repository for every sample; init is not timed.
    g.bench_function("backup_first_64MiB", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir_in(root.path()).expect("tempdir");
                let r = init_repo(&d.path().join("repo"));
                (d, r)
            },
            |(d, r)| {
                backup(&r, &src);
                d
            },
            BatchSize::PerIteration,
        )
    });

    // One repository; every sample adds an unchanged snapshot of the same tree.
    let repo_dir = root.path().join("repo");
    let repo = init_repo(&repo_dir);
    backup(&repo, &src);
    g.bench_function("backup_unchanged_64MiB", |b| b.iter(|| backup(&repo, &src)));

    // Open + load index + restore into an empty directory; deleting it is not timed.
    g.bench_function("restore_64MiB", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(root.path()).expect("tempdir"),
            |t| {
                restore_latest(&repo_dir, t.path());
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
