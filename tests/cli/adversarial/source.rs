//! Adversarial part: source (see tests/cli/adversarial/mod.rs).
//!
//! `create` must read only what it means to read: a source path below a
//! symlinked directory is recorded as the directory it resolves to, and an
//! entry swapped between `lstat` and `open` (for a symlink to a root-only
//! file, a symlink to another directory, a FIFO, a symlink to
//! `/dev/urandom`) is skipped with a warning and exit 3, never read. The race
//! window is opened by the pause point `source-after-lstat` (after a child's
//! `lstat`, before it is opened) or `source-after-open` (after a file is
//! opened, before it is read).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// Content of the root-only file the attacker wants in the backup.
const SECRET: &[u8] = b"root:$6$the-shadow-file-secret$:19000:0:99999:7:::";

/// A running `create --json` stopped at a pause point.
struct Paused {
    bg: Background,
}

/// Starts `create --json <src>` that stops itself at pause point `point`,
/// and waits until it has.
fn create_paused(t: &TestRepo, src: &Path, point: &str) -> Paused {
    let stdout = t.join(format!("{point}.stdout"));
    let stderr = t.join(format!("{point}.stderr"));
    let _ = fs::remove_file(t.join(point));
    let mut c = t.cmd();
    c.arg("create")
        .arg("--json")
        .arg(src)
        .env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", t.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    let bg = Background {
        child: Some(c.spawn().expect("spawn create")),
        stdout,
        stderr,
    };
    let marker = t.join(point);
    assert!(
        wait_until(Duration::from_secs(60), || marker.exists()),
        "create never reached pause point {point}\n{}",
        bg.output()
    );
    // The marker is written just before the process stops itself: a
    // SIGCONT sent in between would be lost and leave it stopped for good.
    let pid = bg.pid();
    assert!(
        wait_until(Duration::from_secs(60), || {
            crate::support::pause::is_stopped(pid)
        }),
        "create never stopped at pause point {point}\n{}",
        bg.output()
    );
    Paused { bg }
}

impl Paused {
    /// Resumes the process and waits (bounded: a hang fails the test)
    /// for its exit code, stdout and stderr.
    fn resume(mut self) -> (i32, String, String) {
        self.bg.signal(nix::sys::signal::Signal::SIGCONT);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.bg.exited() {
                break s;
            }
            if std::time::Instant::now() >= deadline {
                let out = self.bg.output();
                self.bg.kill_and_reap();
                panic!("create did not finish within 30 s after resuming (hung?)\n{out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.bg.child = None;
        (
            status.code().unwrap_or(-1),
            fs::read_to_string(&self.bg.stdout).unwrap_or_default(),
            fs::read_to_string(&self.bg.stderr).unwrap_or_default(),
        )
    }
}

/// Restores the latest snapshot into a fresh directory and returns it.
fn restore_latest(t: &TestRepo, name: &str) -> PathBuf {
    let target = t.join(name);
    t.restore("latest", &target, &[]);
    target
}

/// A source directory `src` holding one entry `victim` (a regular file
/// or a directory), owned by nobody when we are root, as an attacker's
/// home would be.
fn victim_tree(t: &TestRepo, dir_victim: bool) -> (PathBuf, PathBuf) {
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    let victim = src.join("victim");
    if dir_victim {
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("inside"), b"harmless").unwrap();
    } else {
        fs::write(&victim, b"harmless").unwrap();
    }
    if is_root() {
        chown_tree(&src, NOBODY, NOBODY);
    }
    (src, victim)
}

/// A root-only secret (mode 0600) outside the source.
fn secret_file(t: &TestRepo) -> PathBuf {
    let dir = t.join("private");
    fs::create_dir(&dir).unwrap();
    let p = dir.join("shadow");
    fs::write(&p, SECRET).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// One swap race: the victim is lstat'ed, then `swap` replaces it, then
/// create resumes. Returns (exit code, report, stderr).
fn race(
    t: &TestRepo,
    dir_victim: bool,
    swap: impl FnOnce(&Path),
) -> (i32, serde_json::Value, String) {
    t.init();
    let (src, victim) = victim_tree(t, dir_victim);
    let p = create_paused(t, &src, "source-after-lstat");
    swap(&victim);
    let (code, out, err) = p.resume();
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("create printed no JSON report ({e}):\n{out}\n{err}"));
    (code, report, err)
}

fn reported(report: &serde_json::Value, path_part: &str) -> bool {
    ["errors", "warnings"].iter().any(|k| {
        report[*k].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["path"].as_str().unwrap_or("").contains(path_part))
        })
    })
}

#[test]
fn source_below_symlinked_directory() {
    let t = TestRepo::new();
    t.init();
    fs::create_dir_all(t.join("real/d")).unwrap();
    fs::write(t.join("real/d/a"), b"x\n").unwrap();
    symlink("real", t.join("link")).unwrap();
    let src = t.join("link/d");
    let r = t.create([&src]);
    assert_eq!(r["errors"].as_array().map_or(0, Vec::len), 0, "{r:#}");
    t.ok(["check"]);
    let target = restore_latest(&t, "back");
    let a = restored(&target, &src).join("a");
    assert_eq!(
        fs::read(&a).ok().as_deref(),
        Some(&b"x\n"[..]),
        "{a:?} not restored"
    );
    assert!(
        fs::symlink_metadata(restored(&target, &t.join("link")))
            .unwrap()
            .is_dir(),
        "the symlinked ancestor is restored as the directory it resolves to"
    );
    eprintln!("adversarial source: symlinked ancestor: check clean, file restored, data lost: 0");
}

#[test]
fn file_swapped_for_symlink_to_root_only_file() {
    let t = TestRepo::new();
    let secret = secret_file(&t);
    let (code, report, err) = race(&t, false, |v| {
        fs::remove_file(v).unwrap();
        symlink(&secret, v).unwrap();
    });
    assert_eq!(code, 3, "a skipped entry exits 3\n{report:#}\n{err}");
    assert!(
        reported(&report, "victim"),
        "no warning names the victim:\n{report:#}\n{err}"
    );
    let target = restore_latest(&t, "back");
    let leaked = files_containing(&target, SECRET);
    assert!(leaked.is_empty(), "the secret was stored: {leaked:?}");
    eprintln!(
        "adversarial source: file swapped for a symlink to a root-only file: skipped, exit 3, leaked: 0"
    );
}

#[test]
fn directory_swapped_for_symlink_is_not_followed() {
    let t = TestRepo::new();
    let secret = secret_file(&t);
    let (code, report, err) = race(&t, true, |v| {
        fs::rename(v, v.with_file_name("moved")).unwrap();
        symlink(secret.parent().unwrap(), v).unwrap();
    });
    assert_eq!(code, 3, "a skipped entry exits 3\n{report:#}\n{err}");
    assert!(
        reported(&report, "victim"),
        "no warning names the victim:\n{report:#}\n{err}"
    );
    let target = restore_latest(&t, "back");
    let leaked = files_containing(&target, SECRET);
    assert!(
        leaked.is_empty(),
        "the symlinked directory was followed: {leaked:?}"
    );
    eprintln!(
        "adversarial source: directory swapped for a symlink: not followed, exit 3, leaked: 0"
    );
}

#[test]
fn fifo_swapped_in_does_not_hang() {
    let t = TestRepo::new();
    let (code, report, err) = race(&t, false, |v| {
        fs::remove_file(v).unwrap();
        nix::unistd::mkfifo(v, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    });
    assert_eq!(code, 3, "a skipped entry exits 3\n{report:#}\n{err}");
    assert!(
        reported(&report, "victim"),
        "no warning names the victim:\n{report:#}\n{err}"
    );
    eprintln!("adversarial source: FIFO swapped in: no hang, skipped, exit 3, data lost: 0");
}

#[test]
fn symlink_to_urandom_swapped_in_is_not_read() {
    let t = TestRepo::new();
    let (code, report, err) = race(&t, false, |v| {
        fs::remove_file(v).unwrap();
        symlink("/dev/urandom", v).unwrap();
    });
    assert_eq!(code, 3, "a skipped entry exits 3\n{report:#}\n{err}");
    assert!(
        reported(&report, "victim"),
        "no warning names the victim:\n{report:#}\n{err}"
    );
    let read = report["summary"]["bytes_read"].as_u64().unwrap();
    assert!(
        read < 1024,
        "{read} bytes read from a swapped-in /dev/urandom"
    );
    let size = t.size();
    assert!(size < 1 << 20, "repository grew to {size} bytes");
    eprintln!(
        "adversarial source: symlink to /dev/urandom swapped in: {read} bytes read, repository {size} bytes, leaked: 0"
    );
}

#[test]
fn file_changed_while_read_exits_3_with_a_warning() {
    let t = TestRepo::new();
    t.init();
    let (src, victim) = victim_tree(&t, false);
    let p = create_paused(&t, &src, "source-after-open");
    fs::OpenOptions::new()
        .append(true)
        .open(&victim)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b" and more"))
        .unwrap();
    let (code, out, err) = p.resume();
    assert_eq!(code, 3, "a file changed while read exits 3\n{out}\n{err}");
    assert!(
        err.contains("warning:") && err.contains("changed while being read"),
        "stderr must warn (not error) about the change:\n{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reported(&report, "victim"), "{report:#}");
    eprintln!("adversarial source: file changed while read: warning, exit 3, data lost: 0");
}

#[test]
fn source_below_a_symlink_source_is_reported_not_dropped() {
    let t = TestRepo::new();
    t.init();
    fs::create_dir_all(t.join("real/d")).unwrap();
    fs::write(t.join("real/d/a"), b"x\n").unwrap();
    symlink("real", t.join("link")).unwrap();
    let mut c = t.cmd();
    c.arg("create")
        .arg("--json")
        .arg(t.join("link"))
        .arg(t.join("link/d"));
    let r = run(c);
    assert_eq!(r.code, 3, "a source that cannot be saved exits 3\n{r}");
    let report = r.json();
    assert!(reported(&report, "link/d"), "{report:#}");
    t.ok(["check"]);
    let target = restore_latest(&t, "back");
    let link = restored(&target, &t.join("link"));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    eprintln!(
        "adversarial source: source below a symlink source: reported, exit 3, link stored as a link, data lost: 0"
    );
}

#[test]
fn symlink_to_urandom_as_a_source_is_stored_as_the_link() {
    let t = TestRepo::new();
    t.init();
    let link = t.join("random");
    symlink("/dev/urandom", &link).unwrap();
    let mut c = t.cmd();
    c.arg("create").arg("--json").arg(&link);
    let r = run_within(c, Duration::from_secs(60));
    r.success();
    let report = r.json();
    assert_eq!(
        report["summary"]["bytes_read"].as_u64(),
        Some(0),
        "{report:#}"
    );
    let target = restore_latest(&t, "back");
    let back = restored(&target, &link);
    assert_eq!(fs::read_link(&back).unwrap(), Path::new("/dev/urandom"));
    eprintln!(
        "adversarial source: symlink to /dev/urandom as a source: stored as the link, 0 bytes read, leaked: 0"
    );
}

/// Levels of directories a hostile user builds below a source: deeper than
/// the walk goes (1,024), and deeper than a path can name (PATH_MAX), so
/// it is built with `mkdirat` relative to the previous level.
const HOSTILE_DEPTH: usize = 2100;

#[test]
fn hostile_deep_tree_does_not_crash_create() {
    use std::os::fd::AsFd;
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("top"), b"near the top").unwrap();
    let mut dir = fs::File::open(&src).unwrap();
    for _ in 0..HOSTILE_DEPTH {
        nix::sys::stat::mkdirat(
            dir.as_fd(),
            "d",
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        let next = nix::fcntl::openat(
            dir.as_fd(),
            "d",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        dir = fs::File::from(next);
    }
    drop(dir);
    let mut c = t.cmd();
    c.arg("create").arg("--json").arg(&src);
    let r = run_within(c, Duration::from_secs(120));
    assert_eq!(
        r.code,
        3,
        "too deep a tree is reported, not a crash\n{}",
        r.stderr.chars().take(2000).collect::<String>()
    );
    let report = r.json();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "one error for the cut-off level");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("deeper than"),
        "{}",
        errors[0]["message"]
    );
    t.ok(["check"]);
    let dirs = report["summary"]["dirs"].as_u64().unwrap();
    assert!(
        dirs > 1000,
        "the levels above the cut-off are kept: {dirs} directories"
    );
    remove_deep(&src);
    eprintln!(
        "adversarial source: {HOSTILE_DEPTH}-level hostile tree: no crash, cut off with an error, exit 3, {dirs} directories recorded, data lost: 0"
    );
}

/// Removes a deep chain `root/d/d/...` one level at a time (moving the rest
/// up), where a recursive removal would need a stack as deep as the tree.
fn remove_deep(root: &Path) {
    let (d, x) = (root.join("d"), root.join("x"));
    while d.join("d").is_dir() {
        fs::rename(d.join("d"), &x).unwrap();
        fs::remove_dir_all(&d).unwrap();
        fs::rename(&x, &d).unwrap();
    }
    let _ = fs::remove_dir_all(&d);
}
