//! Helpers for the CLI integration tests: running the real binary with a
//! bounded wait, generating trees, comparing trees, inspecting storage.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod pause;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_repo");
/// Password used by every test repository.
pub const PASSWORD: &str = "correct horse battery staple";
/// Upper bound for one command (debug builds are slow, but not this slow).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(600);
/// Environment variables the binary reads; always cleared so the caller's
/// environment cannot leak into a test.
pub const REPO_ENV: [&str; 5] = [
    "REPO_PASSWORD",
    "REPO_KEY_FILE",
    "REPO_PASSWORD_FILE",
    "REPO_PASSWORD_COMMAND",
    "REPO_REPOSITORY",
];

/// A fresh place below the server URL `base` (`base/<tag>-<pid>-<nanos>`),
/// so runs against a long-lived test server never see each other's objects.
pub fn unique_url(base: &str, tag: &str) -> String {
    format!(
        "{}/{tag}-{}-{}",
        base.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// A test server's URL from the environment, or `None` (skip) outside CI;
/// under CI a missing server fails the test instead of skipping it.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: under CI every backend must be tested (run scripts/test)")
        }
        _ => {
            eprintln!("skipping: {var} is not set (scripts/test starts the servers)");
            None
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user and group tests drop to when running as root.
pub const NOBODY: u32 = 65534;

/// `setpriv` to run as nobody, if we are root and it exists.
pub fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// The outcome of one finished command.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_ne!(self.code, 0, "expected a failure\n{self}");
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr should contain {s:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout should contain {s:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// State of every thread of a process, for messages about hangs.
pub fn proc_dump(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(process {pid} is gone)");
    };
    for t in tasks.filter_map(|t| t.ok()).map(|t| t.path()) {
        let read = |f: &str| fs::read_to_string(t.join(f)).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        out += &format!(
            "thread {} {:<16} state {} in {}\n",
            t.file_name().unwrap().to_string_lossy(),
            read("comm").trim(),
            state.unwrap_or("?"),
            read("wchan")
        );
    }
    out
}

/// Runs `cmd` to completion (stdin is /dev/null) with a bounded wait.
pub fn run(cmd: Command) -> Run {
    run_within(cmd, CMD_TIMEOUT)
}

/// Like [`run`], failing the test if the command takes longer than `limit`.
pub fn run_within(mut cmd: Command, limit: Duration) -> Run {
    let what = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(r) => r.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let dump = proc_dump(pid);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!("{what} did not finish within {limit:?}\n{dump}");
        }
    };
    let code = out.status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + out.status.signal().unwrap_or(0)
    });
    Run {
        what,
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A background process that is killed (SIGKILL) and reaped when dropped,
/// so a failing test never leaves it behind.
pub struct Background {
    pub child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Background {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("send signal");
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// SIGKILL and reap, so its pid is really gone (a zombie would still
    /// answer kill(pid, 0)).
    pub fn kill_and_reap(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        c.wait().expect("reap")
    }

    /// Waits for a normal exit with a bounded wait.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                self.child = None;
                return s;
            }
            if Instant::now() >= deadline {
                let pid = self.child.as_ref().expect("running").id();
                panic!(
                    "background process did not finish within {limit:?}\n{}\n{}",
                    proc_dump(pid),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// A test repository in its own temporary directory
// ---------------------------------------------------------------------------

pub struct TestRepo {
    pub dir: TempDir,
    /// The repository location (`<dir>/repo`).
    pub repo: PathBuf,
    /// Runs every command through this prefix (e.g. setpriv as nobody).
    pub prefix: Vec<OsString>,
}

impl TestRepo {
    pub fn new() -> Self {
        Self::from_dir(
            tempfile::Builder::new()
                .prefix("repo-cli-")
                .tempdir()
                .expect("tempdir"),
        )
    }

    pub fn from_dir(dir: TempDir) -> Self {
        let repo = dir.path().join("repo");
        TestRepo {
            dir,
            repo,
            prefix: Vec::new(),
        }
    }

    /// The temporary directory holding everything of this test.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The binary (through the prefix) with a clean environment and no
    /// password and no repository.
    pub fn bare(&self) -> Command {
        let mut c = match self.prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        for v in REPO_ENV {
            c.env_remove(v);
        }
        c.current_dir(self.path());
        c
    }

    /// The binary with the repository and no password.
    pub fn cmd_no_pw(&self) -> Command {
        let mut c = self.bare();
        c.arg("-r").arg(&self.repo);
        c
    }

    /// The binary with the repository and the password.
    pub fn cmd(&self) -> Command {
        let mut c = self.cmd_no_pw();
        c.env("REPO_PASSWORD", PASSWORD);
        c
    }

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.args(args);
        run(c)
    }

    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let r = self.run(args);
        r.success();
        r
    }

    #[track_caller]
    pub fn init(&self) {
        self.ok(["init"]);
        assert!(self.repo.join("config").is_file(), "init wrote no config");
    }

    /// `create --json` that must succeed; returns the report.
    #[track_caller]
    pub fn create<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.arg("create").arg("--json").args(args);
        let r = run(c);
        r.success();
        r.json()
    }

    /// `snapshots --json`.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let v = self.ok(["snapshots", "--json"]).json();
        v.as_array().expect("snapshots --json is an array").clone()
    }

    /// `restore SPEC --target TARGET [extra]` that must succeed.
    #[track_caller]
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("restore")
            .arg(spec)
            .arg("--target")
            .arg(target)
            .args(extra);
        let r = run(c);
        r.success();
        r
    }

    /// Starts a command in the background, output to files in the test dir.
    pub fn spawn<I, S>(&self, args: I, name: &str) -> Background
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout = self.join(format!("{name}.stdout"));
        let stderr = self.join(format!("{name}.stderr"));
        let mut c = self.cmd();
        c.args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        let child = c.spawn().expect("spawn background command");
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    // --- storage inspection ---

    /// Every object file below `<repo>/<dir>` named by 64 hex digits
    /// (staging files of interrupted writes are not objects).
    pub fn objects(&self, dir: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.repo.join(dir);
        for f in walk_files(&root) {
            if f.file_name().and_then(OsStr::to_str).is_some_and(is_hex_id) {
                out.push(f);
            }
        }
        out.sort();
        out
    }

    /// Total bytes of every file in the repository.
    pub fn size(&self) -> u64 {
        walk_files(&self.repo)
            .iter()
            .map(|p| fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every regular file below `root` (not following symlinks).
pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else if md.is_file() {
            out.push(p);
        }
    }
    out
}

/// Every path below `root` (files, dirs, links), relative, sorted.
pub fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p != root {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Where a restore puts the backed-up absolute path `abs`.
pub fn restored(target: &Path, abs: &Path) -> PathBuf {
    target.join(abs.strip_prefix("/").expect("absolute path"))
}

/// Relative path of a storage object inside the repository (e.g. `data/ab/ab12…`).
pub fn object_name(repo: &Path, obj: &Path) -> String {
    obj.strip_prefix(repo)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// XORs one byte of a file; returns the original content.
pub fn flip_byte(path: &Path, offset: usize) -> Vec<u8> {
    let orig = fs::read(path).expect("read object");
    let mut bad = orig.clone();
    bad[offset] ^= 0x5a;
    write_over(path, &bad);
    orig
}

/// Rewrites a (possibly read-only) file in place.
pub fn write_over(path: &Path, bytes: &[u8]) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// Generating data
// ---------------------------------------------------------------------------

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

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Sets atime and mtime of `path` itself (symlinks are not followed).
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Changes the owner of every path below and including `root` (no symlink following).
pub fn chown_tree(root: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).unwrap();
    for p in walk_all(root) {
        std::os::unix::fs::lchown(root.join(p), Some(uid), Some(gid)).unwrap();
    }
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
    pub root: PathBuf,
    pub xattrs: bool,
    pub big: PathBuf,
    pub sparse: PathBuf,
    pub hard_links: Vec<PathBuf>,
}

pub const SPARSE_LEN: u64 = 64 * 1024 * 1024;
pub const BIG_LEN: usize = 20 * 1000 * 1000;

/// Builds a tree with every metadata case the format claims to keep.
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
        root: root.to_path_buf(),
        xattrs,
        big: p("big.bin"),
        sparse,
        hard_links: vec![p("hard/one"), p("hard/two"), p("nested/a/three")],
    }
}

// ---------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------

/// What [`compare_trees`] compares besides type, content and link targets.
#[derive(Debug, Clone, Copy)]
pub struct Cmp {
    pub mode: bool,
    pub owner: bool,
    pub mtime: bool,
    pub xattrs: bool,
    /// Mtime of the two roots themselves.
    pub root_mtime: bool,
}

impl Cmp {
    /// Everything this process can expect a restore to reproduce.
    pub fn full() -> Self {
        Cmp {
            mode: true,
            owner: is_root(),
            mtime: true,
            xattrs: true,
            root_mtime: true,
        }
    }

    pub fn content_only() -> Self {
        Cmp {
            mode: false,
            owner: false,
            mtime: false,
            xattrs: false,
            root_mtime: false,
        }
    }
}

fn kind(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "unknown"
    }
}

fn xattrs_of(p: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let Ok(names) = xattr::list(p) else {
        return BTreeMap::new();
    };
    names
        .filter_map(|n| {
            let v = xattr::get(p, &n).ok().flatten()?;
            Some((n, v))
        })
        .collect()
}

struct Comparer {
    cmp: Cmp,
    diffs: Vec<String>,
    /// (dev, ino) in the source -> ino in the copy, and back.
    fwd: HashMap<(u64, u64), (u64, u64)>,
    back: HashMap<(u64, u64), (u64, u64)>,
    entries: usize,
}

impl Comparer {
    fn diff(&mut self, rel: &Path, msg: String) {
        self.diffs.push(format!("{:?}: {msg}", rel));
    }

    fn entry(&mut self, a: &Path, b: &Path, rel: &Path, is_root: bool) {
        self.entries += 1;
        let ma = fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
        let mb = match fs::symlink_metadata(b) {
            Ok(m) => m,
            Err(e) => return self.diff(rel, format!("missing in the copy ({e})")),
        };
        let (ka, kb) = (kind(&ma), kind(&mb));
        if ka != kb {
            return self.diff(rel, format!("type {ka} became {kb}"));
        }
        if self.cmp.mode && ka != "symlink" && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            self.diff(
                rel,
                format!(
                    "mode {:o} became {:o}",
                    ma.mode() & 0o7777,
                    mb.mode() & 0o7777
                ),
            );
        }
        if self.cmp.owner && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            self.diff(
                rel,
                format!(
                    "owner {}:{} became {}:{}",
                    ma.uid(),
                    ma.gid(),
                    mb.uid(),
                    mb.gid()
                ),
            );
        }
        if self.cmp.mtime
            && (!is_root || self.cmp.root_mtime)
            && (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec())
        {
            self.diff(
                rel,
                format!(
                    "mtime {}.{:09} became {}.{:09}",
                    ma.mtime(),
                    ma.mtime_nsec(),
                    mb.mtime(),
                    mb.mtime_nsec()
                ),
            );
        }
        if self.cmp.xattrs {
            let (xa, xb) = (xattrs_of(a), xattrs_of(b));
            if xa != xb {
                self.diff(rel, format!("xattrs {xa:?} became {xb:?}"));
            }
        }
        match ka {
            "file" => {
                if ma.len() != mb.len() {
                    self.diff(rel, format!("size {} became {}", ma.len(), mb.len()));
                } else if fs::read(a).unwrap() != fs::read(b).unwrap() {
                    self.diff(rel, "content differs".into());
                }
                if ma.nlink() > 1 || mb.nlink() > 1 {
                    let (ia, ib) = ((ma.dev(), ma.ino()), (mb.dev(), mb.ino()));
                    match (self.fwd.get(&ia).copied(), self.back.get(&ib).copied()) {
                        (None, None) => {
                            self.fwd.insert(ia, ib);
                            self.back.insert(ib, ia);
                        }
                        (Some(x), Some(y)) if x == ib && y == ia => {}
                        (f, _) => self.diff(
                            rel,
                            format!(
                                "hard links not preserved: source inode {} maps to {:?}, copy inode {}",
                                ia.1,
                                f.map(|x| x.1),
                                ib.1
                            ),
                        ),
                    }
                }
            }
            "symlink" => {
                let (ta, tb) = (fs::read_link(a).unwrap(), fs::read_link(b).unwrap());
                if ta != tb {
                    self.diff(rel, format!("link target {ta:?} became {tb:?}"));
                }
            }
            "dir" => {
                let names = |d: &Path| -> BTreeSet<OsString> {
                    fs::read_dir(d)
                        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                        .map(|e| e.unwrap().file_name())
                        .collect()
                };
                let (na, nb) = (names(a), names(b));
                for extra in nb.difference(&na) {
                    self.diff(&rel.join(extra), "extra in the copy".into());
                }
                for n in &na {
                    if nb.contains(n) {
                        self.entry(&a.join(n), &b.join(n), &rel.join(n), false);
                    } else {
                        self.diff(&rel.join(n), "missing in the copy".into());
                    }
                }
            }
            "chardev" | "blockdev" if ma.rdev() != mb.rdev() => {
                self.diff(rel, format!("rdev {} became {}", ma.rdev(), mb.rdev()));
            }
            _ => {}
        }
    }
}

/// Compares two trees; returns the number of entries compared or the differences.
pub fn compare_trees(a: &Path, b: &Path, cmp: Cmp) -> Result<usize, Vec<String>> {
    let mut c = Comparer {
        cmp,
        diffs: Vec::new(),
        fwd: HashMap::new(),
        back: HashMap::new(),
        entries: 0,
    };
    c.entry(a, b, Path::new("."), true);
    if c.diffs.is_empty() {
        Ok(c.entries)
    } else {
        Err(c.diffs)
    }
}

/// Asserts two trees are the same; returns the number of entries compared.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path, cmp: Cmp) -> usize {
    match compare_trees(a, b, cmp) {
        Ok(n) => n,
        Err(d) => panic!(
            "{} differences between {} and {}:\n  {}",
            d.len(),
            a.display(),
            b.display(),
            d.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ")
        ),
    }
}

/// Searches every file below `root` for `needle`; returns the files containing it.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walk_files(root)
        .into_iter()
        .filter(|f| {
            let bytes = fs::read(f).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}
