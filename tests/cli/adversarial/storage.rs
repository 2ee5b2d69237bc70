//! Adversarial part: storage (see tests/cli/adversarial/mod.rs).
//!
//! The repository directory is untrusted: planted huge objects, symlinks
//! and FIFOs in it, a flipped byte in an index object. Every command must
//! stay bounded in memory and time, name what it skipped, and never follow
//! a link out of the repository.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

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
    let mut c = clean_command("prlimit");
    c.arg(AS_LIMIT).arg(BIN).arg("-r").arg(&t.repo);
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

// ---------------------------------------------------------------------------
// Credentials, signals, pipes and messages at the CLI edge
// ---------------------------------------------------------------------------

/// `cmd` under an address-space limit, so an unbounded read fails fast
/// instead of eating the machine.
fn limit_memory(cmd: Command) -> Command {
    let mut c = clean_command("prlimit");
    c.arg(AS_LIMIT).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

#[test]
fn empty_password_is_refused_at_init() {
    let t = TestRepo::new();
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD", "").arg("init");
    run_within(c, QUICK).code(2).stderr_has("empty password");
    let pw = t.join("empty-pw");
    fs::write(&pw, "\n").unwrap();
    let mut c = t.cmd_no_pw();
    c.arg("--password-file").arg(&pw).arg("init");
    run_within(c, QUICK).code(2).stderr_has("empty password");
    assert!(!t.repo.join("config").exists(), "a repository was created");
}

#[test]
fn password_sources_are_read_to_the_first_line_only() {
    let (t, _) = repo_with_snapshot();
    let mut trials = 0;
    // /dev/zero: no line end within the bound, refused at once.
    let mut c = t.cmd_no_pw();
    c.args(["--password-file", "/dev/zero", "snapshots"]);
    let r = run_within(limit_memory(c), QUICK);
    r.code(13).stderr_has("/dev/zero").stderr_has("line end");
    trials += 1;
    // A FIFO whose writer keeps it open after the first line.
    let fifo = t.join("pw.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            f.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
            // Held open, no EOF, until the command is done.
            let _ = done_rx.recv_timeout(QUICK * 2);
        })
    };
    let mut c = t.cmd_no_pw();
    c.arg("--password-file").arg(&fifo).arg("snapshots");
    let r = run_within(c, QUICK);
    done_tx.send(()).unwrap();
    writer.join().unwrap();
    r.success();
    trials += 1;
    // A command that never stops writing: its first line is the password.
    let mut c = t.cmd_no_pw();
    c.args([
        "--password-command",
        &format!("yes '{PASSWORD}'"),
        "snapshots",
    ]);
    run_within(limit_memory(c), QUICK).success();
    trials += 1;
    // --exclude-file /dev/zero is bounded too.
    let src = t.join("src");
    let mut c = t.cmd();
    c.arg("create")
        .arg(&src)
        .args(["--exclude-file", "/dev/zero"]);
    run_within(limit_memory(c), QUICK)
        .code(2)
        .stderr_has("/dev/zero");
    trials += 1;
    eprintln!(
        "adversarial storage: {trials} unbounded credential/pattern sources, hung: 0, data lost: 0"
    );
}

#[test]
fn no_usable_credential_exits_13() {
    let (t, _) = repo_with_snapshot();
    let key = t.join("k.key");
    t.ok([OsStr::new("key"), OsStr::new("export"), key.as_os_str()]);
    let garbage = t.join("garbage.key");
    fs::write(&garbage, "not a key").unwrap();
    chmod(&garbage, 0o600);
    let open = t.join("open.key");
    fs::copy(&key, &open).unwrap();
    chmod(&open, 0o644);
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec![OsStr::new("--password-file"), OsStr::new("/no/such/file")],
            "/no/such/file",
        ),
        (
            vec![OsStr::new("--password-command"), OsStr::new("exit 3")],
            "password command",
        ),
        (
            vec![OsStr::new("--key-file"), OsStr::new("/no/such/key")],
            "/no/such/key",
        ),
        (
            vec![OsStr::new("--key-file"), garbage.as_os_str()],
            "garbage.key",
        ),
        (
            vec![OsStr::new("--key-file"), open.as_os_str()],
            "chmod 600",
        ),
        (vec![], "REPO_PASSWORD"),
    ];
    let before = walk_all(&t.repo);
    for (args, says) in &cases {
        let mut c = t.cmd_no_pw();
        c.args(args).arg("snapshots");
        run_within(c, QUICK).code(13).stderr_has(says);
    }
    // A password that opens no key is still "wrong password".
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD", "not it").arg("snapshots");
    run_within(c, QUICK).code(12);
    // An empty REPO_KEY_FILE is "not set", not a usage error.
    let mut c = t.cmd();
    c.env("REPO_KEY_FILE", "").arg("snapshots");
    run_within(c, QUICK).success();
    assert_eq!(
        walk_all(&t.repo),
        before,
        "a refused credential changed storage"
    );
}

#[test]
fn closed_pipe_ends_quietly() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        fs::write(src.join(format!("a-file-with-a-longish-name-{i:05}")), "x").unwrap();
    }
    t.create([src.to_str().unwrap()]);
    for args in [
        vec!["ls", "latest"],
        vec!["ls", "--json", "latest"],
        vec!["find", "a-file*"],
        vec!["find", "--json", "a-file*"],
    ] {
        let mut c = t.cmd();
        c.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read_exact(&mut out, &mut first).unwrap();
        drop(out); // `| head -c 64`
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed: {err}");
    }
}

#[test]
fn names_are_escaped_in_text_and_exact_in_json() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let names: [&[u8]; 4] = [b"two\nlines", b"\x1b[31mred", b"bad\xff", b"bad\xfe"];
    for n in names {
        fs::write(src.join(OsStr::from_bytes(n)), "x").unwrap();
    }
    t.create([src.to_str().unwrap()]);
    for args in [vec!["ls", "latest"], vec!["find", "*"]] {
        let r = t.ok(&args);
        assert!(!r.stdout.contains('\x1b'), "{args:?}: raw escape printed");
        r.stdout_has("two\\nlines")
            .stdout_has("\\x1b[31mred")
            .stdout_has("bad\\xff")
            .stdout_has("bad\\xfe");
    }
    for (args, key) in [
        (vec!["ls", "--json", "latest"], "entries"),
        (vec!["find", "--json", "*"], "matches"),
    ] {
        let v = t.ok(&args).json();
        let hexes: Vec<String> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["path_hex"].as_str().map(String::from))
            .collect();
        for n in &names[2..] {
            let want = hex::encode(src.join(OsStr::from_bytes(n)).as_os_str().as_bytes());
            assert!(
                hexes.contains(&want),
                "{args:?}: no path_hex {want} in {hexes:?}"
            );
        }
        assert_eq!(hexes.len(), 2, "path_hex only for names that are not UTF-8");
    }
    // Host and tags are shown escaped in the snapshot table too.
    t.ok([
        OsStr::new("create"),
        src.as_os_str(),
        OsStr::new("--host"),
        OsStr::new("\x1b]0;owned\x07host"),
        OsStr::new("--tag"),
        OsStr::new("a\nb"),
    ]);
    let r = t.ok(["snapshots"]);
    assert!(
        !r.stdout.contains('\x1b'),
        "raw escape in the snapshot table"
    );
    r.stdout_has("\\x1b]0;owned\\x07host").stdout_has("a\\nb");
}

#[test]
fn messages_say_what_is_wrong() {
    let (t, src) = repo_with_snapshot();
    t.run(["find", "a["]).code(2).stderr_has("find pattern");
    let target = t.join("r");
    t.run([
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "a[",
    ])
    .code(2)
    .stderr_has("include pattern");
    let file = t.join("a-file");
    fs::write(&file, "x").unwrap();
    let mut c = t.bare();
    c.env("REPO_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(&file)
        .arg("snapshots");
    run_within(c, QUICK).code(10).stderr_has("not a directory");
    // A name in an error message cannot colour the terminal either.
    let mut c = t.bare();
    c.env("REPO_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(t.join("\x1b[31mred/repo"))
        .arg("snapshots");
    let r = run_within(c, QUICK);
    r.code(10).stderr_has("\\x1b[31mred");
    assert!(!r.stderr.contains('\x1b'), "raw escape in an error: {r}");
    t.run(["ls", ""]).code(2).stderr_has("empty");
    t.run(["check", "--read-data-subset", "0%"])
        .code(2)
        .stderr_has("above 0");
    // A tiny percentage still reads a pack.
    let r = t.ok(["check", "--json", "--read-data-subset", "0.001%"]);
    assert!(r.json()["packs_read"].as_u64().unwrap() >= 1, "{r}");
    // Many valid `**` patterns compile.
    let list = t.join("excludes");
    let lines: Vec<String> = (0..12_000).map(|i| format!("**/x{i}/**/y")).collect();
    fs::write(&list, lines.join("\n")).unwrap();
    t.ok([
        OsStr::new("create"),
        src.as_os_str(),
        OsStr::new("--exclude-file"),
        list.as_os_str(),
    ]);
}

/// Whether `pid` is blocked opening a FIFO that has no writer.
fn blocked_in_fifo_open(pid: nix::unistd::Pid) -> bool {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    wchan == "wait_for_partner"
}

#[test]
fn first_signal_ends_a_blocked_credential_read() {
    let (t, _) = repo_with_snapshot();
    let fifo = t.join("nobody-writes.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // A key file that is a FIFO is refused at once, not waited on.
    let key = t.join("key.fifo");
    nix::unistd::mkfifo(&key, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut c = t.cmd_no_pw();
    c.arg("--key-file").arg(&key).arg("snapshots");
    run_within(c, QUICK)
        .code(13)
        .stderr_has("not a regular file");
    let password_fifo = [
        OsStr::new("--password-file"),
        fifo.as_os_str(),
        OsStr::new("snapshots"),
    ];
    let new_password_fifo = [
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        fifo.as_os_str(),
    ];
    for (sig, code, args) in [
        (nix::sys::signal::Signal::SIGINT, 130, &password_fifo[..]),
        (nix::sys::signal::Signal::SIGTERM, 130, &password_fifo),
        (nix::sys::signal::Signal::SIGHUP, 129, &password_fifo),
        (nix::sys::signal::Signal::SIGINT, 130, &new_password_fifo),
    ] {
        let mut bg = t.spawn(args, "blocked");
        let pid = bg.pid();
        assert!(
            wait_until(QUICK, || blocked_in_fifo_open(pid)),
            "never blocked in open\n{}",
            bg.output()
        );
        bg.signal(sig);
        let status = bg.wait(QUICK);
        assert_eq!(status.code(), Some(code), "{sig}: {}", bg.output());
    }
}

#[test]
fn planted_key_metadata_is_escaped_in_key_list() {
    let (t, _) = repo_with_snapshot();
    // Key objects are plaintext: anyone with write access to the storage can
    // plant one whose host and user are terminal escape sequences.
    let original = fs::read_to_string(&t.objects("keys")[0]).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["host"] = "\x1b]0;owned\x07h".into();
    v["user"] = "u\nfake line".into();
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    fs::write(t.repo.join("keys").join(&name), &bytes).unwrap();
    let r = t.ok(["key", "list"]);
    assert!(!r.stdout.contains('\x1b'), "raw escape in key list: {r}");
    r.stdout_has("\\x1b]0;owned\\x07h")
        .stdout_has("u\\nfake line");
}
