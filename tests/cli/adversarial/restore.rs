//! Adversarial part: restore (see tests/cli/adversarial/mod.rs).
//!
//! A restore must not be turnable against its user: `--delete` keeps what
//! an excluded directory holds and refuses a target holding the repository
//! it reads; an existing target keeps its own owner, mode and times; and a
//! local user who owns (part of) the target cannot, by swapping a directory
//! for a symlink while root restores, make root write, chown or chmod
//! anything outside the target.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
use crate::support::*;

/// Trials run and files found written, moved or changed where they must not be.
static TRIALS: AtomicU64 = AtomicU64::new(0);

fn report(part: &str, trials: u64, lost: u64) {
    TRIALS.fetch_add(trials, Ordering::Relaxed);
    eprintln!("adversarial restore ({part}): {trials} trials, data lost: {lost}");
}

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// `latest:<src>`, so the target maps onto `src` itself.
fn spec_of(src: &Path) -> String {
    format!("latest:{}", src.display())
}

fn restore_cmd(t: &TestRepo, spec: &str, target: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = t.cmd();
    c.arg("restore")
        .arg(spec)
        .arg("--target")
        .arg(target)
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// Skips a root-only test loudly, or fails it under CI.
fn need_root(name: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} needs root, and CI runs as root"
    );
    eprintln!("skipping {name}: not root");
    false
}

// ---------------------------------------------------------------------------
// Item 4: an excluded directory protects everything below it.
// ---------------------------------------------------------------------------

#[test]
fn delete_keeps_everything_below_an_excluded_directory() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("s");
    put(&src, "a.txt", "alpha");
    put(&src, "b/in-snapshot.dat", "from the snapshot");
    t.create([&src]);
    let mut lost = 0;
    let mut trials = 0;
    for (n, pattern) in ["b", "b/", "b/**", &format!("{}/b", src.display())]
        .iter()
        .enumerate()
    {
        let target = t.join(format!("target{n}"));
        put(&target, "b/keep.dat", "the user's own file");
        put(&target, "b/deeper/also.dat", "the user's own too");
        put(&target, "stray.txt", "not in the snapshot, not excluded");
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y", "--exclude", pattern],
        ));
        r.success();
        trials += 1;
        for kept in ["b/keep.dat", "b/deeper/also.dat"] {
            if !target.join(kept).exists() {
                lost += 1;
                eprintln!("--exclude {pattern}: {kept} was deleted\n{r}");
            }
        }
        assert!(
            !target.join("stray.txt").exists(),
            "--exclude {pattern}: stray.txt outside the exclusion was kept\n{r}"
        );
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    }
    report("delete --exclude DIR", trials, lost);
    assert_eq!(lost, 0, "files below an excluded directory were deleted");
}

// ---------------------------------------------------------------------------
// Item 5: --delete never deletes the repository it reads, and asks first.
// ---------------------------------------------------------------------------

#[test]
fn delete_refuses_a_target_that_contains_the_repository() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let before = walk_files(&t.repo).len();
    // The repository is <tmp>/repo: both <tmp> and the repository itself hold it.
    let mut trials = 0;
    for target in [t.path().to_path_buf(), t.repo.clone()] {
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y"],
        ));
        r.code(2).stderr_has("contains the repository");
        trials += 1;
        assert_eq!(walk_files(&t.repo).len(), before, "{r}");
    }
    // Through a symlinked path to the same directory as well.
    let link = t.join("link");
    std::os::unix::fs::symlink(t.path(), &link).unwrap();
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &link,
        &["--delete", "--no-archive", "-y"],
    ));
    r.code(2).stderr_has("contains the repository");
    trials += 1;
    t.ok(["check"]);
    report("delete over the repository", trials, 0);
}

#[test]
fn delete_asks_before_removing_and_needs_yes_without_a_terminal() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let target = t.join("target");
    put(&target, "mine.txt", "the user's");
    // No terminal and no -y: nothing is removed.
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.code(2).stderr_has("-y");
    assert!(target.join("mine.txt").exists(), "{r}");
    // The plan names what would go.
    r.stdout_has("mine.txt");
    // With -y it goes (to the trash).
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    r.success();
    assert!(!target.join("mine.txt").exists(), "{r}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    // Nothing to remove: no question.
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.success();
    report("delete confirmation", 3, 0);
}

/// Runs `restore --delete` under script(1), so it has a terminal, answering `answer`.
fn restore_on_a_terminal(t: &TestRepo, src: &Path, target: &Path, answer: &str) -> (bool, String) {
    let cmd = format!(
        "REPO_PASSWORD='{PASSWORD}' '{BIN}' -r '{}' restore '{}' --target '{}' --delete",
        t.repo.display(),
        spec_of(src),
        target.display()
    );
    let mut child = clean_command("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), out)
}

#[test]
fn delete_on_a_terminal_removes_only_after_yes() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let target = t.join("target");
    put(&target, "mine.txt", "the user's");
    let (ok, out) = restore_on_a_terminal(&t, &src, &target, "n\n");
    assert!(!ok, "declined, yet it succeeded: {out}");
    assert!(
        out.contains("mine.txt") && out.contains("go ahead? [y/N]"),
        "{out}"
    );
    assert!(
        target.join("mine.txt").exists(),
        "removed without a yes: {out}"
    );
    assert!(
        !target.join("a.txt").exists(),
        "restored without a yes: {out}"
    );
    let (ok, out) = restore_on_a_terminal(&t, &src, &target, "y\n");
    assert!(ok, "{out}");
    assert!(!target.join("mine.txt").exists(), "{out}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    report("delete on a terminal", 2, 0);
}

// ---------------------------------------------------------------------------
// Item 10: an existing target keeps its owner, mode and times.
// ---------------------------------------------------------------------------

#[test]
fn existing_target_keeps_its_owner_mode_and_times() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("home/alice");
    put(&src, "notes.txt", "alice's");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o1777)).unwrap();
    set_mtime(&src, 1_000_000_000, 0);
    if is_root() {
        std::os::unix::fs::lchown(&src, Some(1234), Some(1234)).unwrap();
    }
    t.create([&src]);
    let target = t.join("srv/existing");
    put(&target, "old.txt", "already there");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o750)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let before = fs::metadata(&target).unwrap();
    t.restore(&spec_of(&src), &target, &[]);
    let after = fs::metadata(&target).unwrap();
    let mut changed = Vec::new();
    if after.mode() & 0o7777 != 0o750 {
        changed.push(format!("mode {:o}", after.mode() & 0o7777));
    }
    if (after.uid(), after.gid()) != (before.uid(), before.gid()) {
        changed.push(format!("owner {}:{}", after.uid(), after.gid()));
    }
    if after.mtime() < before.mtime() {
        changed.push(format!("mtime set back to {}", after.mtime()));
    }
    assert_eq!(fs::read(target.join("notes.txt")).unwrap(), b"alice's");
    // A target the restore creates gets the snapshot's metadata.
    let fresh = t.join("srv/fresh");
    t.restore(&spec_of(&src), &fresh, &[]);
    let md = fs::metadata(&fresh).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        0o1777,
        "a new target gets the recorded mode"
    );
    assert_eq!(
        md.mtime(),
        1_000_000_000,
        "a new target gets the recorded mtime"
    );
    if is_root() {
        assert_eq!(md.uid(), 1234, "a new target gets the recorded owner");
    }
    report("existing target", 2, changed.len() as u64);
    assert!(
        changed.is_empty(),
        "the existing target changed: {changed:?}"
    );
}

// ---------------------------------------------------------------------------
// Item 9: a user racing a root restore over a target they own.
// ---------------------------------------------------------------------------

/// Runs `sh -c script` as nobody (through setpriv) or, without setpriv, as
/// root doing exactly what nobody could.
fn as_nobody(script: &str) {
    let mut c = match setpriv() {
        Some(sp) => {
            let mut c = std::process::Command::new(sp);
            c.args(AS_NOBODY);
            c.arg("sh");
            c
        }
        None => std::process::Command::new("sh"),
    };
    let st = c.arg("-c").arg(script).status().expect("run sh");
    assert!(st.success(), "the attacker's script failed: {script}");
}

/// Every entry below `dir` (its whole listing, recursively).
fn listing(dir: &Path) -> Vec<PathBuf> {
    walk_all(dir)
}

struct RaceOutcome {
    written_outside: Vec<PathBuf>,
    changed_outside: Vec<String>,
}

/// Restores `src` as root over `target` (owned by nobody); at pause point
/// `point` nobody swaps `target/d` for a symlink to `outside` (a root-only
/// directory holding `victim.txt`).
/// One race: where the restore stops, which directory the user swaps, and
/// how the restore runs.
struct Race<'a> {
    name: &'a str,
    point: &'a str,
    /// The directory (relative to the target) swapped for a symlink.
    swapped: &'a str,
    extra: &'a [&'a str],
    /// Entries already in the target before the restore (relative paths).
    existing: &'a [&'a str],
    /// A file descriptor limit for the restore (`ulimit -n`), so that
    /// directories are reopened from their kept ancestors instead of kept.
    fd_limit: Option<u32>,
}

fn race(t: &TestRepo, src: &Path, r: &Race) -> RaceOutcome {
    let (name, point) = (r.name, r.point);
    let target = t.join(format!("target-{name}"));
    fs::create_dir_all(&target).unwrap();
    for e in r.existing {
        // `.repo/FORMAT` is our control folder's marker (a `.repo` without
        // it belongs to somebody else, and `--delete` refuses it).
        let body = if e.ends_with("/FORMAT") {
            "{\"format\":\"repo-control\",\"version\":1}\n"
        } else {
            "already in the target"
        };
        put(&target, e, body);
    }
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let outside = t.join(format!("root-only-{name}"));
    fs::create_dir_all(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    // Same names as the snapshot's d/, so a path-based chown/chmod/truncate would hit them.
    let victims = ["victim.txt", "empty.txt", "stray.txt"];
    for v in victims {
        fs::write(outside.join(v), "root's secret").unwrap();
        fs::set_permissions(outside.join(v), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let stat = |p: &Path| {
        fs::symlink_metadata(p)
            .ok()
            .map(|md| (md.mode(), md.uid(), md.gid(), md.len(), md.mtime()))
    };
    let mut watched: Vec<PathBuf> = victims.iter().map(|v| outside.join(v)).collect();
    watched.push(outside.clone());
    let before: Vec<_> = watched.iter().map(|p| (p.clone(), stat(p))).collect();
    let pause_dir = t.join(format!("pause-{name}"));
    fs::create_dir_all(&pause_dir).unwrap();
    let mut c = t.cmd();
    if r.name == "reopen" {
        // One pack at a time, so packs after the pause reopen the file.
        c.args(["--connections", "1"]);
    }
    c.arg("restore")
        .arg(spec_of(src))
        .arg("--target")
        .arg(&target)
        .args(r.extra)
        .stdin(Stdio::null());
    if let Some(n) = r.fd_limit {
        let mut args = vec![std::ffi::OsString::from(BIN)];
        args.extend(c.get_args().map(|a| a.to_os_string()));
        let mut sh = clean_command("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .args(args)
            .env("REPO_PASSWORD", PASSWORD)
            .current_dir(t.path())
            .stdin(Stdio::null());
        c = sh;
    }
    c.env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &pause_dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(t.join(format!("{name}.stderr"))).unwrap());
    let mut child = c.spawn().expect("spawn restore");
    let marker = pause_dir.join(point);
    let paused = wait_until(Duration::from_secs(120), || marker.exists());
    if !paused {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "restore never reached pause point {point}: {}",
            fs::read_to_string(t.join(format!("{name}.stderr"))).unwrap_or_default()
        );
    }
    // Wait until the process is really stopped (the marker is written just before).
    let pid = child.id();
    assert!(
        wait_until(Duration::from_secs(10), || {
            crate::support::pause::is_stopped(pid)
        }),
        "restore did not stop at {point}"
    );
    let d = target.join(r.swapped);
    // A directory is swapped for a symlink to the root-only directory, a
    // file for a symlink to the root-only file of the same name.
    let link_to = if r.swapped.ends_with(".txt") {
        outside.join(Path::new(r.swapped).file_name().unwrap())
    } else {
        outside.clone()
    };
    as_nobody(&format!(
        "mv '{}' '{}' && ln -s '{}' '{}'",
        d.display(),
        target.join(format!("{}.moved", r.swapped)).display(),
        link_to.display(),
        d.display()
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "restore hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = fs::read_to_string(t.join(format!("{name}.stderr"))).unwrap_or_default();
    assert!(
        matches!(status.code(), Some(0) | Some(1)),
        "restore at {point}: {status}\n{stderr}"
    );
    eprintln!("race {name}: restore {status}; {}", stderr.trim());
    assert!(
        !stderr.contains("Too many open files"),
        "restore ran out of descriptors: {stderr}"
    );
    if point != "restore-before-removals" {
        assert_eq!(
            fs::read(target.join("top.txt")).ok().as_deref(),
            Some(&b"top"[..]),
            "restore at {point} did not restore the rest: {stderr}"
        );
    }
    let written_outside: Vec<PathBuf> = listing(&outside)
        .into_iter()
        .filter(|p| !victims.iter().any(|v| p == Path::new(v)))
        .collect();
    let mut changed_outside = Vec::new();
    for (p, was) in before {
        let now = stat(&p);
        if now != was {
            changed_outside.push(format!(
                "{} (mode, uid, gid, size, mtime) {now:?} (was {was:?})",
                p.display()
            ));
        }
    }
    for v in victims {
        if fs::read(outside.join(v)).ok().as_deref() != Some(&b"root's secret"[..]) {
            changed_outside.push(format!("{v}'s content"));
        }
    }
    RaceOutcome {
        written_outside,
        changed_outside,
    }
}

#[test]
fn a_user_swapping_a_directory_for_a_symlink_cannot_steer_a_root_restore() {
    if !need_root("a_user_swapping_a_directory_for_a_symlink_cannot_steer_a_root_restore") {
        return;
    }
    let t = TestRepo::new();
    t.ok(["init", "--pack-size", "1048576"]);
    let src = t.join("src");
    put(&src, "top.txt", "top");
    // Several packs' worth (the repository's packs are 1 MiB), so it is
    // written by several packs and reopened between them.
    fs::create_dir_all(src.join("d")).unwrap();
    write_random(&src.join("d/victim.txt"), 4 << 20, 9);
    put(&src, "d/new.txt", "a new file");
    put(&src, "d/e/deep.txt", "deeper");
    put(&src, "d/empty.txt", "");
    std::os::unix::fs::symlink("new.txt", src.join("d/link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("d/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut trials = 0;
    let mut bad = Vec::new();
    let pads: Vec<String> = (0..40).map(|i| format!("pad{i:02}/x")).collect();
    for p in &pads {
        put(&src, p, "padding");
    }
    put(&src, "x/d/victim.txt", "deep victim");
    put(&src, "x/d/empty.txt", "");
    chown_tree(&src, 1234, 1234);
    fs::set_permissions(src.join("d/victim.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    t.create([&src]);
    let races = [
        Race {
            name: "dirs",
            point: "restore-dirs-created",
            swapped: "d",
            extra: &[],
            existing: &[],
            fd_limit: None,
        },
        Race {
            name: "meta",
            point: "restore-before-metadata",
            swapped: "d",
            extra: &[],
            existing: &[],
            fd_limit: None,
        },
        // Too few descriptors to keep every directory: x/d is reopened from
        // x by name each time, and the swap must still not redirect it.
        Race {
            name: "reopened",
            point: "restore-dirs-created",
            swapped: "x/d",
            extra: &[],
            // x is the user's own directory, so they may rename in it.
            existing: &["x/theirs.txt"],
            fd_limit: Some(64),
        },
        Race {
            name: "reopened-meta",
            point: "restore-before-metadata",
            swapped: "x/d",
            extra: &[],
            // x is the user's own directory, so they may rename in it.
            existing: &["x/theirs.txt"],
            fd_limit: Some(64),
        },
        // --delete: the stray file is removed relative to d's verified
        // descriptor, never as a path through the symlink.
        Race {
            name: "delete",
            point: "restore-before-removals",
            swapped: "d",
            extra: &["--delete", "--no-archive", "-y"],
            existing: &["d/stray.txt", "d/victim.txt"],
            fd_limit: None,
        },
        Race {
            name: "delete-archive",
            point: "restore-before-removals",
            swapped: "d",
            extra: &["--delete", "-y"],
            existing: &["d/stray.txt", "d/victim.txt"],
            fd_limit: None,
        },
        // A file written by several packs: between two packs the user swaps
        // it for a symlink to a root-only file; the next pack must not write
        // through it (it reopens without following, and checks the inode).
        Race {
            name: "reopen",
            point: "restore-pack-written",
            swapped: "d/victim.txt",
            extra: &[],
            existing: &["d/theirs.txt"],
            fd_limit: None,
        },
        // The target's manifest is written through the target's descriptor:
        // a `.repo` swapped for a symlink gets nothing written through it.
        Race {
            name: "manifest",
            point: "restore-before-metadata",
            swapped: ".repo",
            extra: &["--delete", "--no-archive", "-y"],
            existing: &[".repo/FORMAT", ".repo/theirs.txt"],
            fd_limit: None,
        },
    ];
    for r in &races {
        let point = r.name;
        let o = race(&t, &src, r);
        trials += 1;
        for p in &o.written_outside {
            bad.push(format!("{point}: wrote {} outside the target", p.display()));
        }
        for c in &o.changed_outside {
            bad.push(format!("{point}: changed {c} outside the target"));
        }
    }
    report("symlink swap race", trials, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
    let _ = OsStr::new("");
}

// ---------------------------------------------------------------------------
// Item 19: holes at file-system block granularity.
// ---------------------------------------------------------------------------

#[test]
fn zero_blocks_inside_a_chunk_are_restored_as_holes() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    // Smaller than the minimum chunk size: one chunk, mostly zeros, not all.
    let mut data = random_bytes(8192, 19);
    data.extend(std::iter::repeat_n(0u8, 256 * 1024));
    data.extend(random_bytes(8192 + 100, 20));
    fs::write(src.join("mostly-zeros.bin"), &data).unwrap();
    t.create([&src]);
    let target = t.join("target");
    t.restore(&spec_of(&src), &target, &[]);
    let out = target.join("mostly-zeros.bin");
    assert_eq!(fs::read(&out).unwrap(), data);
    let allocated = fs::metadata(&out).unwrap().blocks() * 512;
    report("holes", 1, 0);
    assert!(
        allocated <= 64 * 1024,
        "{allocated} bytes allocated for {} bytes with 256 KiB of zero blocks",
        data.len()
    );
}

#[test]
fn an_existing_directory_the_user_cannot_read_is_still_restored_into() {
    // Mode 0300: the owner may create entries in it but not list it.
    let mut t = TestRepo::new();
    if is_root() {
        let Some(sp) = setpriv() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "setpriv is needed under CI"
            );
            eprintln!("skipping: running as root and setpriv is not installed");
            return;
        };
        t.prefix = nobody_prefix(sp);
    }
    let src = t.join("src");
    put(&src, "d/f.txt", "inside");
    if is_root() {
        chown_tree(t.path(), NOBODY, NOBODY);
    }
    t.init();
    t.create([&src]);
    let target = t.join("target");
    put(&target, "d/old.txt", "already there");
    if is_root() {
        chown_tree(&target, NOBODY, NOBODY);
    }
    fs::set_permissions(target.join("d"), fs::Permissions::from_mode(0o300)).unwrap();
    let r = t.run([
        OsStr::new("restore"),
        OsStr::new(&spec_of(&src)),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let mode = fs::metadata(target.join("d")).unwrap().mode() & 0o7777;
    fs::set_permissions(target.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
    r.success();
    assert_eq!(fs::read(target.join("d/f.txt")).unwrap(), b"inside", "{r}");
    assert_eq!(
        mode, 0o755,
        "the directory did not get its recorded mode: {r}"
    );
    report("unreadable existing directory", 1, 0);
}

// ---------------------------------------------------------------------------
// Review: metadata goes only to the file the restore created or checked.
// ---------------------------------------------------------------------------

/// Starts `restore` stopped at pause point `point`; returns the child once
/// it is stopped there.
fn restore_paused(
    t: &TestRepo,
    spec: &str,
    target: &Path,
    extra: &[&str],
    point: &str,
) -> std::process::Child {
    let pause_dir = t.join(format!("pause-{point}"));
    fs::create_dir_all(&pause_dir).unwrap();
    let mut c = restore_cmd(t, spec, target, extra);
    c.env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &pause_dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(t.join(format!("{point}.stderr"))).unwrap());
    let mut child = c.spawn().expect("spawn restore");
    let pid = child.id();
    let stopped = wait_until(Duration::from_secs(120), || {
        crate::support::pause::paused_at(&pause_dir, point, pid)
    });
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "restore never stopped at {point}: {}",
            fs::read_to_string(t.join(format!("{point}.stderr"))).unwrap_or_default()
        );
    }
    child
}

/// Resumes a paused restore and waits for it; returns its exit code and stderr.
fn resume(t: &TestRepo, mut child: std::process::Child, point: &str) -> (Option<i32>, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "restore hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = fs::read_to_string(t.join(format!("{point}.stderr"))).unwrap_or_default();
    (status.code(), stderr)
}

#[test]
fn a_user_swapping_in_their_own_file_gets_no_setuid_root_from_a_root_restore() {
    if !need_root("a_user_swapping_in_their_own_file_gets_no_setuid_root_from_a_root_restore") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    // An empty setuid-root file (created by the restore, metadata set later
    // by name) and a non-empty one the target already holds identically
    // (skipped, metadata set later by name).
    put(&src, "empty-suid", "");
    put(&src, "same-suid", "the real tool");
    put(&src, "top.txt", "top");
    set_mtime(&src.join("same-suid"), 1_500_000_000, 0);
    for f in ["empty-suid", "same-suid"] {
        fs::set_permissions(src.join(f), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    t.create([&src]);
    let target = t.join("home-of-nobody");
    put(&target, "same-suid", "the real tool");
    set_mtime(&target.join("same-suid"), 1_500_000_000, 0);
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    let point = "restore-before-metadata";
    let child = restore_paused(&t, &spec_of(&src), &target, &[], point);
    // nobody owns the directory: it may rename what root made and put its own file there.
    let mut script = String::new();
    for f in ["empty-suid", "same-suid"] {
        let p = target.join(f);
        script.push_str(&format!(
            "mv '{0}' '{0}.moved' && printf '#!/bin/sh\\nid\\n' > '{0}' && chmod 755 '{0}' && ",
            p.display()
        ));
    }
    script.push_str("true");
    as_nobody(&script);
    // Without setpriv the swap is made by root emulating nobody: compare
    // with the owner the swapped-in files had.
    let owners: Vec<u32> = ["empty-suid", "same-suid"]
        .iter()
        .map(|f| fs::symlink_metadata(target.join(f)).unwrap().uid())
        .collect();
    let (code, stderr) = resume(&t, child, point);
    assert!(matches!(code, Some(0) | Some(1)), "{code:?}\n{stderr}");
    let mut bad = Vec::new();
    for (f, owner) in ["empty-suid", "same-suid"].iter().zip(owners) {
        let md = fs::symlink_metadata(target.join(f)).unwrap();
        if md.uid() != owner || md.mode() & 0o6000 != 0 {
            bad.push(format!(
                "{f}: nobody's file became {}:{} mode {:o}",
                md.uid(),
                md.gid(),
                md.mode() & 0o7777
            ));
        }
    }
    assert_eq!(
        fs::read(target.join("top.txt")).unwrap(),
        b"top",
        "{stderr}"
    );
    report("metadata of a swapped-in file", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}\n{stderr}");
}

// ---------------------------------------------------------------------------
// Review: `--delete` and a `.repo` folder that is not ours.
// ---------------------------------------------------------------------------

#[test]
fn delete_leaves_a_foreign_control_folder_and_a_snapshot_control_folder_alone() {
    let t = TestRepo::new();
    t.init();
    // A checkout made by Google's `repo` has its own `.repo/`.
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    put(&src, ".repo/manifest.jsonl", "the user's own manifest");
    put(&src, ".repo/manifest.xml", "<manifest/>");
    t.create([&src]);
    let mut bad = Vec::new();
    // 1. The snapshot's `.repo` restored with --delete must not be
    //    overwritten by (or mixed with) our manifest, trash and archive.
    let target = t.join("target");
    put(&target, "stray.txt", "the user's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    let manifest = fs::read(target.join(".repo/manifest.jsonl")).ok();
    if r.code == 0 && manifest.as_deref() != Some(&b"the user's own manifest"[..]) {
        bad.push(format!(
            "the snapshot's .repo/manifest.jsonl was overwritten: {:?}\n{r}",
            manifest.map(|m| String::from_utf8_lossy(&m).into_owned())
        ));
    }
    if r.code != 0 {
        // Refused: it says how to go on, and that works.
        r.code(2).stderr_has("--exclude");
        assert!(
            target.join("stray.txt").exists(),
            "refused after removing: {r}"
        );
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "-y", "--exclude", ".repo"],
        ));
        r.success();
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha", "{r}");
        assert!(!target.join("stray.txt").exists(), "{r}");
        assert!(target.join(".repo/FORMAT").exists(), "{r}");
    }
    // 2. A target whose `.repo` belongs to another tool: refused, untouched.
    let src2 = t.join("src2");
    put(&src2, "b.txt", "beta");
    t.create([&src2]);
    let target2 = t.join("checkout");
    put(&target2, ".repo/manifest.xml", "<manifest/>");
    put(&target2, "stray.txt", "the user's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src2),
        &target2,
        &["--delete", "-y"],
    ));
    let mut left: Vec<PathBuf> = listing(&target2.join(".repo"));
    left.sort();
    if r.code == 0 || left != [PathBuf::from("manifest.xml")] {
        bad.push(format!("a foreign .repo got {left:?}\n{r}"));
    }
    if !target2.join("stray.txt").exists() && r.code != 0 {
        bad.push("refused, yet stray.txt was removed".into());
    }
    report("foreign .repo", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn delete_plan_shows_hostile_names_escaped() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let target = t.join("target");
    put(&target, "precious/db.sqlite", "root's data");
    // A user owning part of the target names a file so that the plan looks
    // like it removes nothing: a fake line, then escapes erasing lines.
    let hostile = <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
        b"x\n  (nothing else)\n\x1b[2A\x1b[2K\r\xff".to_vec(),
    );
    fs::write(target.join(&hostile), "theirs").unwrap();
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.code(2);
    let mut bad = Vec::new();
    if r.stdout.contains('\x1b') || r.stdout.contains("\n  (nothing else)") {
        bad.push(format!("raw control characters in the plan:\n{r}"));
    }
    if !r.stdout.contains("precious/") {
        bad.push(format!("the plan does not name precious/:\n{r}"));
    }
    report("hostile names in the plan", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn a_user_swapping_the_first_name_of_a_hard_link_gets_no_name_in_roots_directory() {
    if !need_root("a_user_swapping_the_first_name_of_a_hard_link_gets_no_name_in_roots_directory") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "top.txt", "top");
    put(&src, "a/first", "root's job");
    fs::create_dir_all(src.join("sys")).unwrap();
    fs::set_permissions(src.join("sys"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::hard_link(src.join("a/first"), src.join("sys/second")).unwrap();
    t.create([&src]);
    let mut bad = Vec::new();
    for (n, swap_in) in ["file", "symlink"].iter().enumerate() {
        // The user owns the target and its directory a/ (the restore gives
        // a/ the snapshot's owner only at the very end).
        let target = t.join(format!("target{n}"));
        fs::create_dir_all(target.join("a")).unwrap();
        chown_tree(&target, NOBODY, NOBODY);
        std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
        let point = "restore-pack-written";
        let child = restore_paused(&t, &spec_of(&src), &target, &[], point);
        let first = target.join("a/first");
        let replace = match *swap_in {
            "file" => format!("printf 'nobody was here' > '{}'", first.display()),
            _ => format!("ln -s /tmp/nobodys '{}'", first.display()),
        };
        as_nobody(&format!(
            "mv '{0}' '{0}.moved' && {replace}",
            first.display()
        ));
        let (code, stderr) = resume(&t, child, point);
        assert!(matches!(code, Some(0) | Some(1)), "{code:?}\n{stderr}");
        let second = target.join("sys/second");
        if let Ok(md) = fs::symlink_metadata(&second) {
            let theirs = fs::symlink_metadata(&first).ok();
            if md.file_type().is_symlink() || theirs.is_some_and(|f| f.ino() == md.ino()) {
                bad.push(format!(
                    "{swap_in}: sys/second is the user's {} (uid {})\n{stderr}",
                    if md.file_type().is_symlink() {
                        "symlink"
                    } else {
                        "file"
                    },
                    md.uid()
                ));
            }
        }
        let _ = fs::remove_dir_all(pause_dir_of(&t, point));
    }
    report("hard link to a swapped first name", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

fn pause_dir_of(t: &TestRepo, point: &str) -> PathBuf {
    t.join(format!("pause-{point}"))
}

/// Unmounts a bind mount when dropped (also when the test fails).
struct BindMount(PathBuf);

impl BindMount {
    fn new(from: &Path, at: &Path) -> Option<Self> {
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| BindMount(at.to_path_buf()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn delete_refuses_a_target_that_reaches_the_repository_through_a_mount() {
    if !need_root("delete_refuses_a_target_that_reaches_the_repository_through_a_mount") {
        return;
    }
    // The repository is <tmp>/disk/repo; the target <tmp>/srv has
    // <tmp>/disk bind-mounted at srv/data/mnt, so the repository's own path
    // is not below the target, yet --delete would walk into it.
    let t = TestRepo::from_dir(tempfile::tempdir().unwrap());
    let disk = t.join("disk");
    fs::create_dir_all(&disk).unwrap();
    let t = TestRepo {
        repo: disk.join("repo"),
        ..t
    };
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let before = walk_files(&t.repo).len();
    let mut trials = 0;
    for mnt in ["data/mnt", "mnt"] {
        let target = t.join(format!("srv-{trials}"));
        fs::create_dir_all(target.join(mnt)).unwrap();
        let Some(_mount) = BindMount::new(&disk, &target.join(mnt)) else {
            eprintln!("skipping: mount --bind is not permitted here");
            return;
        };
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y"],
        ));
        trials += 1;
        assert_eq!(
            walk_files(&t.repo).len(),
            before,
            "the repository lost files through {mnt}\n{r}"
        );
        r.code(2).stderr_has("repository");
    }
    t.ok(["check"]);
    report("delete over a mounted repository", trials, 0);
}

#[test]
fn an_identical_file_hard_linked_from_outside_the_target_is_replaced_not_chowned() {
    if !need_root("an_identical_file_hard_linked_from_outside_the_target_is_replaced_not_chowned") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "f.txt", "same content");
    set_mtime(&src.join("f.txt"), 1_500_000_000, 0);
    std::os::unix::fs::lchown(src.join("f.txt"), Some(1234), Some(1234)).unwrap();
    fs::set_permissions(src.join("f.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
    t.create([&src]);
    // nobody's file outside the target, hard-linked into it under the
    // snapshot's name, with the same content and mtime.
    let outside = t.join("outside");
    put(&outside, "f.txt", "same content");
    set_mtime(&outside.join("f.txt"), 1_500_000_000, 0);
    let target = t.join("target");
    fs::create_dir_all(&target).unwrap();
    fs::hard_link(outside.join("f.txt"), target.join("f.txt")).unwrap();
    chown_tree(&outside, NOBODY, NOBODY);
    chown_tree(&target, NOBODY, NOBODY);
    let before = fs::metadata(outside.join("f.txt")).unwrap();
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &[]));
    r.success();
    let after = fs::metadata(outside.join("f.txt")).unwrap();
    let restored = fs::metadata(target.join("f.txt")).unwrap();
    let mut bad = Vec::new();
    if (after.uid(), after.mode()) != (before.uid(), before.mode()) {
        bad.push(format!(
            "the file outside became {}:{:o} (was {}:{:o})",
            after.uid(),
            after.mode() & 0o7777,
            before.uid(),
            before.mode() & 0o7777
        ));
    }
    assert_eq!(
        (restored.uid(), restored.mode() & 0o7777),
        (1234, 0o4755),
        "{r}"
    );
    report("identical file linked from outside", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}\n{r}");
}

/// This process's peak resident size in KiB (`VmHWM`).
fn own_peak_kib() -> i64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn delete_ignores_a_manifest_another_user_planted_in_the_target() {
    if !need_root("delete_ignores_a_manifest_another_user_planted_in_the_target") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    // nobody owns the target and its (marked) control folder, and plants
    // a 1 GiB sparse manifest (64 GiB would exhaust root's memory).
    let target = t.join("target");
    put(
        &target,
        ".repo/FORMAT",
        "{\"format\":\"repo-control\",\"version\":1}\n",
    );
    let manifest = target.join(".repo/manifest.jsonl");
    let f = fs::File::create(&manifest).unwrap();
    use std::io::Write;
    (&f).write_all(b"{\"format\":\"repo-manifest\",\"version\":1,\"created\":\"x\"}\n")
        .unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    // Run and reap it with wait4, for its own peak resident size.
    let err = t.join("planted.stderr");
    let child = restore_cmd(&t, &spec_of(&src), &target, &["--delete", "-y"])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only to the two locals passed by pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    let _ = fs::remove_file(&manifest);
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(pid > 0, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "restore failed ({status}): {stderr}"
    );
    assert_eq!(
        fs::read(target.join("a.txt")).unwrap(),
        b"alpha",
        "{stderr}"
    );
    // A spawned child starts from this process's peak resident size (exec
    // keeps the larger of the old and the new image's), which in the one
    // test binary may be anything: only what the restore adds counts.
    let peak_kib = usage.ru_maxrss;
    let allowed_kib = own_peak_kib() + 256 * 1024;
    let bad = u64::from(peak_kib > allowed_kib);
    report("planted manifest", 1, bad);
    let r = stderr;
    assert_eq!(
        bad, 0,
        "the restore read the planted manifest: {peak_kib} KiB resident, \
         {allowed_kib} KiB allowed\n{r}"
    );
}

#[test]
fn delete_with_json_or_quiet_still_names_what_it_would_remove() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let target = t.join("target");
    put(&target, "precious.db", "the user's");
    let mut bad = Vec::new();
    for flag in ["--json", "--quiet"] {
        let mut c = t.cmd();
        c.arg(flag);
        c.arg("restore")
            .arg(spec_of(&src))
            .arg("--target")
            .arg(&target)
            .arg("--delete")
            .stdin(Stdio::null());
        let r = run(c);
        r.code(2);
        // The refusal says "listed above": the list must be somewhere.
        if !format!("{}{}", r.stdout, r.stderr).contains("precious.db") {
            bad.push(format!("{flag}: the entries to remove are not named\n{r}"));
        }
        if flag == "--json" && !r.stdout.trim().is_empty() {
            bad.push(format!("{flag}: text on stdout\n{r}"));
        }
    }
    assert!(target.join("precious.db").exists());
    report("delete plan with --json/--quiet", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn restore_refuses_a_target_inside_the_repository_even_without_delete() {
    let t = TestRepo::new();
    t.init();
    // A folder with a file named like a repository object.
    let src = t.join("proj");
    put(&src, "config", "the project's own config");
    put(&src, "keys/k", "the project's keys");
    t.create([&src]);
    let mut bad = Vec::new();
    for target in [t.repo.clone(), t.repo.join("restored"), t.repo.join("keys")] {
        let r = run(restore_cmd(&t, &spec_of(&src), &target, &[]));
        if r.code != 2 {
            bad.push(format!("restored into {}\n{r}", target.display()));
        }
        let c = t.run(["check"]);
        if c.code != 0 {
            bad.push(format!(
                "the repository is damaged after restoring into {}\n{c}",
                target.display()
            ));
            break;
        }
    }
    report("restore into the repository", 3, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn delete_that_cannot_remove_one_entry_still_restores_the_rest() {
    if !need_root("delete_that_cannot_remove_one_entry_still_restores_the_rest") {
        return;
    }
    let Some(sp) = setpriv() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv is needed under CI"
        );
        eprintln!("skipping: setpriv is not installed");
        return;
    };
    // nobody restores into its own target, which holds a directory of
    // root's that nobody can neither remove nor move.
    let mut t = TestRepo::new();
    t.prefix = nobody_prefix(sp);
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    put(&src, "d/b.txt", "beta");
    chown_tree(t.path(), NOBODY, NOBODY);
    t.init();
    t.create([&src]);
    let target = t.join("target");
    put(&target, "stray.txt", "not in the snapshot");
    chown_tree(&target, NOBODY, NOBODY);
    put(&target, "roots/file", "root's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    let mut bad = Vec::new();
    if r.code != 1 || !r.stderr.contains("roots") {
        bad.push(format!(
            "the failed removal is not reported as a problem\n{r}"
        ));
    }
    for (f, body) in [("a.txt", "alpha"), ("d/b.txt", "beta")] {
        if fs::read(target.join(f)).ok().as_deref() != Some(body.as_bytes()) {
            bad.push(format!("{f} was not restored\n{r}"));
        }
    }
    if target.join("stray.txt").exists() {
        bad.push(format!("stray.txt was kept\n{r}"));
    }
    assert_eq!(fs::read(target.join("roots/file")).unwrap(), b"root's");
    report("delete with an unremovable entry", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}
