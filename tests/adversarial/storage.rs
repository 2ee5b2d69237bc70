//! Adversarial part: storage (see tests/adversarial.rs).
//!
//! The repository directory is untrusted: planted huge objects, symlinks
//! and FIFOs in it, a flipped byte in an index object. Every command must
//! stay bounded in memory and time, name what it skipped, and never follow
//! a link out of the repository.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// A command that must end (well) within this, even on a debug build.
const QUICK: Duration = Duration::from_secs(60);
/// Address-space limit for commands facing planted 8 GiB objects: reading
/// one whole fails under it ("memory allocation failed", exit 134).
const AS_LIMIT: &str = "--as=3000000000";

fn hex_name(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// An 8 GiB sparse file: no disk space, but 8 GiB if read whole.
fn plant_sparse(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = fs::File::create(path).unwrap();
    f.set_len(8 << 30).unwrap();
}

/// `repo ARGS` with the repository and password, under an address-space limit.
fn limited(t: &TestRepo, args: &[&str]) -> Run {
    let mut c = Command::new("prlimit");
    c.arg(AS_LIMIT).arg(BIN).arg("-r").arg(&t.repo);
    for v in REPO_ENV {
        c.env_remove(v);
    }
    c.env("REPO_PASSWORD", PASSWORD).args(args);
    let start = Instant::now();
    let r = run_within(c, QUICK);
    assert_ne!(r.code, 134, "aborted (out of memory?)\n{r}");
    assert!(start.elapsed() < QUICK, "{r}");
    r
}

fn repo_with_snapshot() -> (TestRepo, std::path::PathBuf) {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    simple_tree(&src, 11);
    t.create([src.to_str().unwrap()]);
    (t, src)
}

#[test]
fn oversized_objects_are_skipped_by_name() {
    let (t, src) = repo_with_snapshot();
    let (lock, index, snap, key) = (
        format!("locks/{}", hex_name('a')),
        format!("index/{}", hex_name('b')),
        format!("snapshots/{}", hex_name('c')),
        format!("keys/{}", hex_name('d')),
    );
    for k in [&lock, &index, &snap, &key] {
        plant_sparse(&t.repo.join(k));
    }
    let mut trials = 0;
    // Listings skip the huge snapshot and index objects, naming them.
    let r = limited(&t, &["snapshots"]);
    r.success().stderr_has(&snap);
    trials += 1;
    let r = limited(&t, &["ls", "latest"]);
    r.success().stderr_has(&index).stderr_has("skipped");
    trials += 1;
    let target = t.join("restored");
    let r = limited(
        &t,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    r.success();
    assert_same_tree(&src, &restored(&target, &src), Cmp::content_only());
    trials += 1;
    // Prune must not delete on the strength of an index it could not read.
    let r = limited(&t, &["prune"]);
    r.failure().stderr_has(&index).stderr_has("repair index");
    trials += 1;
    // unlock --remove-all removes the huge lock without reading it.
    let r = limited(&t, &["unlock", "--remove-all"]);
    r.success();
    assert!(!t.repo.join(&lock).exists(), "the huge lock is still there");
    trials += 1;
    // A huge config is refused by name, at once.
    fs::rename(t.repo.join("config"), t.join("config.real")).unwrap();
    plant_sparse(&t.repo.join("config"));
    let r = limited(&t, &["snapshots"]);
    r.code(1).stderr_has("config").stderr_has("bytes");
    trials += 1;
    eprintln!(
        "adversarial storage: {trials} commands against planted 8 GiB objects under {AS_LIMIT}, \
         aborted: 0, data lost: 0"
    );
}

#[test]
fn links_in_the_repository_are_never_followed() {
    let (t, src) = repo_with_snapshot();
    // Outside the repository: a directory holding a file named like a pack,
    // which prune would delete as "unindexed" if the walk followed the link.
    let outside = t.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim_name = format!("ee{}", &hex_name('1')[2..]);
    let victim = outside.join(&victim_name);
    fs::write(&victim, b"not yours").unwrap();
    symlink(&outside, t.repo.join("data/ee")).unwrap();
    // A symlinked pack file, and a FIFO where a pack would be.
    fs::create_dir_all(t.repo.join("data/ff")).unwrap();
    let linked = t.repo.join(format!("data/ff/ff{}", &hex_name('2')[2..]));
    symlink(&victim, &linked).unwrap();
    let fifo = t.repo.join(format!("data/ff/ff{}", &hex_name('3')[2..]));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let r = run_within(
        {
            let mut c = t.cmd();
            c.arg("prune");
            c
        },
        QUICK,
    );
    r.success().stderr_has("data/ee").stderr_has("ignored");
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"not yours",
        "prune reached outside"
    );
    let r = run_within(
        {
            let mut c = t.cmd();
            c.args(["check", "--read-data"]);
            c
        },
        QUICK,
    );
    r.success();
    let target = t.join("restored");
    t.restore("latest", &target, &[]);
    assert_same_tree(&src, &restored(&target, &src), Cmp::content_only());
    assert!(victim.exists());
    eprintln!("adversarial storage: links planted under data/: 3, followed: 0, data lost: 0");
}

#[test]
fn fifo_config_fails_at_once() {
    let (t, _) = repo_with_snapshot();
    fs::rename(t.repo.join("config"), t.join("config.real")).unwrap();
    nix::unistd::mkfifo(
        &t.repo.join("config"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // Opening a FIFO for reading waits for a writer, deaf to Ctrl-C; the
    // open must not block at all.
    let r = run_within(
        {
            let mut c = t.cmd();
            c.arg("snapshots");
            c
        },
        QUICK,
    );
    r.code(1)
        .stderr_has("config")
        .stderr_has("not a regular file");
}

#[test]
fn sighup_removes_the_lock() {
    let (t, _) = repo_with_snapshot();
    let mut bg = t.spawn(["lock"], "lock");
    assert!(
        wait_until(QUICK, || !t.objects("locks").is_empty()),
        "no lock appeared\n{}",
        bg.output()
    );
    bg.signal(nix::sys::signal::Signal::SIGHUP);
    let status = bg.wait(QUICK);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "killed by the signal\n{}",
        bg.output()
    );
    assert!(
        t.objects("locks").is_empty(),
        "lock left behind after SIGHUP: {:?}",
        t.objects("locks")
    );
}

#[test]
fn damaged_index_object_is_skipped_with_a_warning() {
    let t = TestRepo::new();
    t.init();
    let (a, b) = (t.join("a"), t.join("b"));
    simple_tree(&a, 21);
    t.create([a.to_str().unwrap()]);
    let first_index = t.objects("index");
    assert_eq!(first_index.len(), 1);
    simple_tree(&b, 22);
    t.create([b.to_str().unwrap()]);
    let damaged = first_index[0].clone();
    let name = object_name(&t.repo, &damaged);
    flip_byte(&damaged, 40);

    let mut trials = 0;
    // What the intact index describes is still listed and restored.
    let r = t.run(["ls", "latest"]);
    r.success().stderr_has(&name).stderr_has("repair index");
    trials += 1;
    let target = t.join("restored");
    t.restore("latest", &target, &[]).stderr_has(&name);
    assert_same_tree(&b, &restored(&target, &b), Cmp::content_only());
    trials += 1;
    // A backup goes on: it stores again what the damaged index hid.
    let c = t.join("c");
    simple_tree(&c, 21);
    let r = t.run(["create", c.to_str().unwrap()]);
    r.success().stderr_has(&name);
    trials += 1;
    // Prune refuses: the damaged index's packs would look unused.
    let before = t.objects("data").len();
    t.run(["prune"])
        .failure()
        .stderr_has(&name)
        .stderr_has("repair index");
    assert_eq!(t.objects("data").len(), before, "prune deleted packs");
    trials += 1;
    t.ok(["repair", "index"]);
    t.ok(["check", "--read-data"]);
    let target = t.join("restored-first");
    t.restore(t.snapshots()[0]["id"].as_str().unwrap(), &target, &[]);
    assert_same_tree(&a, &restored(&target, &a), Cmp::content_only());
    trials += 1;
    eprintln!("adversarial storage: {trials} commands over a damaged index object, data lost: 0");
}
