//! Hostile source trees: each is backed up (or skipped with a clear
//! message), never a hang, a crash or unbounded memory.
//!
//! Run alone with `cargo test --release --test cli hostile:: -- --nocapture`; each
//! test prints one `hostile:` line with what it did.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::support::*;

/// A test repository on a RAM-backed file system when there is one, so
/// a million files cost seconds rather than minutes of disk churn.
fn ram_repo() -> TestRepo {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("repo-hostile-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("repo-hostile-").tempdir()
    }
    .expect("tempdir");
    TestRepo::from_dir(dir)
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_million_empty_files() {
    let t = ram_repo();
    t.init();
    let src = t.join("src");
    let started = Instant::now();
    const DIRS: usize = 1000;
    const PER_DIR: usize = 1000;
    for d in 0..DIRS {
        let dir = src.join(format!("d{d:04}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_DIR {
            fs::File::create(dir.join(format!("f{f:04}"))).unwrap();
        }
    }
    let made = started.elapsed();
    let started = Instant::now();
    let run = t.ok([OsStr::new("create"), OsStr::new("--json"), src.as_os_str()]);
    let r = run.json();
    let first = started.elapsed();
    assert_eq!(
        n(&r["summary"]["files_new"]),
        (DIRS * PER_DIR) as u64,
        "{r:#}"
    );
    let started = Instant::now();
    let rerun = t.ok([OsStr::new("create"), OsStr::new("--json"), src.as_os_str()]);
    let again = rerun.json();
    let second = started.elapsed();
    assert_eq!(
        n(&again["summary"]["files_unchanged"]),
        (DIRS * PER_DIR) as u64
    );
    let check = t.ok(["check", "--read-data"]);
    // One directory back, to show the snapshot is usable.
    let target = t.join("restore");
    let restore = t.restore(&format!("latest:{}/d0999", src.display()), &target, &[]);
    assert_eq!(fs::read_dir(&target).unwrap().count(), PER_DIR);
    let peak = [&run, &rerun, &check, &restore]
        .iter()
        .map(|r| r.peak_rss_kib.max(0) as u64 / 1024)
        .max()
        .unwrap_or(0);
    let inherited = own_peak_rss_kib().max(0) as u64 / 1024;
    eprintln!(
        "hostile: 1,000,000 empty files: made in {made:.1?}, first backup {first:.1?}, unchanged {second:.1?}, peak RSS {peak} MiB"
    );
    // Memory grows with the tree's metadata, never with 1 MiB per file or
    // worse. A peak no higher than the test process's own (which every
    // command inherits) says nothing about the commands, so only a higher
    // one counts.
    assert!(
        peak < 1024 || peak <= inherited,
        "peak RSS {peak} MiB for a million empty files (test process: {inherited} MiB)"
    );
}

#[test]
fn a_ten_gib_sparse_file_restores_sparse() {
    let t = ram_repo();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let f = fs::File::create(src.join("disk.img")).unwrap();
    f.set_len(10 << 30).unwrap();
    // A little data in the middle, so it is not all holes.
    std::os::unix::fs::FileExt::write_at(&f, b"boot sector", 5 << 30).unwrap();
    drop(f);
    let started = Instant::now();
    let r = t.create([&src]);
    let took = started.elapsed();
    // Ten GiB of zeros dedup to one chunk and compress to almost nothing.
    assert!(n(&r["summary"]["data_added_stored"]) < 1 << 20, "{r:#}");
    let target = t.join("restore");
    t.restore("latest", &target, &[]);
    let back = restored(&target, &src.join("disk.img"));
    let md = fs::metadata(&back).unwrap();
    assert_eq!(md.len(), 10 << 30);
    assert!(
        md.blocks() * 512 < 64 << 20,
        "restored file uses {} bytes of disk: holes were written out",
        md.blocks() * 512
    );
    let mut buf = [0u8; 11];
    std::os::unix::fs::FileExt::read_exact_at(&fs::File::open(&back).unwrap(), &mut buf, 5 << 30)
        .unwrap();
    assert_eq!(&buf, b"boot sector");
    eprintln!(
        "hostile: 10 GiB sparse file: backup {took:.1?}, {} bytes stored, restored with {} KiB allocated",
        n(&r["summary"]["data_added_stored"]),
        md.blocks() / 2
    );
}

/// Deep paths, odd names, loops, FIFOs: all recorded and restored as they are.
#[test]
fn deep_paths_odd_names_loops_and_fifos() {
    let t = ram_repo();
    t.init();
    let src = t.join("src");
    // About 4,000 bytes below the source: 20 levels of 199-byte names.
    let mut deep = src.clone();
    for i in 0..20 {
        deep.push(format!("{i:02}{}", "d".repeat(197)));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf.txt"), "at the bottom").unwrap();
    let rel_len = deep.strip_prefix(&src).unwrap().as_os_str().len();
    assert!(rel_len >= 3990, "{rel_len}");
    let odd = src.join("odd");
    fs::create_dir_all(&odd).unwrap();
    for name in [
        &b"new\nline"[..],
        b"tab\there",
        b"\xff\xfeinvalid utf-8",
        b"-starts-with-dash",
        b" leading space",
        b"back\\slash",
    ] {
        fs::write(odd.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    // Symlink loops: never followed, stored as links.
    std::os::unix::fs::symlink("b", odd.join("a")).unwrap();
    std::os::unix::fs::symlink("a", odd.join("b")).unwrap();
    std::os::unix::fs::symlink("..", odd.join("parent")).unwrap();
    std::os::unix::fs::symlink("self", odd.join("self")).unwrap();
    // A FIFO nobody writes to: opening it for reading would block forever.
    nix::unistd::mkfifo(
        &odd.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let r = t.create([&src]);
    assert_eq!(r["errors"].as_array().map_or(0, Vec::len), 0, "{r:#}");
    let ls = t.ok(["ls", "latest", "--json"]).json();
    let paths: Vec<String> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("new\nline")), "{paths:?}");
    // Restore into a short target so the deep path stays under PATH_MAX.
    let target = PathBuf::from(format!("/tmp/rh{}", std::process::id()));
    let _ = fs::remove_dir_all(&target);
    t.restore("latest", &target, &[]);
    let back = restored(&target, &src);
    let cmp = compare_trees(&src, &back, Cmp::full());
    let _ = fs::remove_dir_all(&target);
    let count = cmp.unwrap_or_else(|d| panic!("restored tree differs: {d:?}"));
    eprintln!(
        "hostile: {rel_len}-byte deep path, 6 odd names, 4 looping symlinks and a FIFO: {count} entries restored identical"
    );
}

/// A file that grows and shrinks while it is read: backed up with a
/// warning or as some consistent state, and the repository stays sound.
#[test]
fn a_file_changing_size_during_backup() {
    let t = ram_repo();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let path = src.join("growing.log");
    write_random(&path, 8 << 20, 7);
    for i in 0..50 {
        write_random(&src.join(format!("other{i}.bin")), 256 << 10, i);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                // Alternate: grow by 1 MiB, shrink to 1 MiB.
                let len = if round.is_multiple_of(2) {
                    9 << 20
                } else {
                    1 << 20
                };
                f.set_len(len).unwrap();
                round += 1;
            }
            round
        })
    };
    let mut outcomes = Vec::new();
    let mut warned = 0;
    for _ in 0..5 {
        let r = t.run(["create", "--json", src.to_str().unwrap()]);
        assert!(
            r.code == 0 || r.code == 3,
            "create must finish, with a warning at most:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        outcomes.push(r.code);
        let report = r.json();
        let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
        for w in &warnings {
            let text = w.to_string();
            assert!(text.contains("changed while being read"), "{text}");
        }
        warned += warnings.len();
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    t.ok(["check", "--read-data"]);
    let target = t.join("restore");
    t.restore("latest", &target, &[]);
    for i in 0..50 {
        let name = format!("other{i}.bin");
        assert_eq!(
            fs::read(src.join(&name)).unwrap(),
            fs::read(restored(&target, &src.join(&name))).unwrap()
        );
    }
    eprintln!(
        "hostile: file resized {rounds} times during 5 backups: exit codes {outcomes:?}, {warned} 'changed while being read' warnings, check --read-data clean"
    );
}
