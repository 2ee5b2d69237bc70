//! Conformance suite: the same end-to-end scenario against every backend —
//! local disk, S3 (SeaweedFS) and FTP/FTPS (pyftpdlib and ProFTPD) — with
//! an independent client checking what ends up on the server, and fault
//! tests that stop the server in the middle of a backup.
//!
//! `scripts/test` starts the servers and exports their URLs. Without them
//! the remote tests skip, except under CI, where a missing server fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::server;

const PASSWORD: &str = "conformance-password";
const MARKER: &str = "PLAINTEXT-MARKER-c0ffee";

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u64()
    )
}

fn rand_u64() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() % 1_000_000_007
}

/// Runs the real binary against `repo`.
fn repo(url: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repo"));
    c.args(args)
        .arg("-r")
        .arg(url)
        .env("REPO_PASSWORD", PASSWORD);
    if let Ok(ca) = std::env::var("REPO_TEST_FTP_CA") {
        c.env("REPO_CA_CERT", ca);
    }
    c.output().expect("run repo")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join(format!("dir-{MARKER}/sub"))).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("big.bin"), noise(3 << 20, 7)).unwrap();
    std::fs::write(
        root.join(format!("dir-{MARKER}/note-{MARKER}.txt")),
        MARKER.repeat(100),
    )
    .unwrap();
    for i in 0..30 {
        std::fs::write(
            root.join(format!("dir-{MARKER}/sub/f{i}.txt")),
            format!("file {i} {MARKER}\n").repeat(i + 1),
        )
        .unwrap();
    }
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link")).unwrap();
}

/// Compares two trees: types, contents, symlink targets, modes.
fn same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = std::fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "entries of {}", a.display());
    for n in names_a {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            ma.permissions().mode(),
            mb.permissions().mode(),
            "{}",
            pa.display()
        );
        if ma.is_dir() {
            same_tree(&pa, &pb);
        } else if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap()
            );
        } else {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "content of {}",
                pa.display()
            );
        }
    }
}

/// Object keys an independent client sees, and those containing the marker.
fn independent_listing(url: &str) -> (std::collections::BTreeMap<String, u64>, Vec<String>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cli/support/list_objects.py"
    );
    let mut c =
        Command::new(std::env::var("REPO_TEST_FTP_PYTHON").unwrap_or_else(|_| "python3".into()));
    c.arg(script).arg(url).arg(MARKER);
    if let Ok(ca) = std::env::var("REPO_TEST_FTP_CA") {
        c.env("REPO_CA_CERT", ca);
    }
    let out = ok(c.output().expect("run python3"), "independent listing");
    let v = json(&out);
    let objects = v["objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.as_u64().unwrap()))
        .collect();
    let marked = v["marker_in"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (objects, marked)
}

/// Every key must be the config or `<dir>/<64 hex>` (packs under a 2-hex fan-out).
fn assert_repository_layout(objects: &std::collections::BTreeMap<String, u64>) {
    let hex = |s: &str| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let mut dirs = BTreeSet::new();
    for key in objects.keys() {
        if key == "config" {
            continue;
        }
        let parts: Vec<&str> = key.split('/').collect();
        let ok = match parts.as_slice() {
            ["data", fan, id] => fan.len() == 2 && id.starts_with(fan) && hex(id),
            [dir, id] => ["keys", "index", "snapshots", "locks"].contains(dir) && hex(id),
            _ => false,
        };
        assert!(ok, "unexpected object {key:?} in the repository");
        dirs.insert(parts[0].to_string());
    }
    assert!(
        objects.contains_key("config"),
        "no config object: {objects:?}"
    );
    for d in ["keys", "data", "index", "snapshots"] {
        assert!(dirs.contains(d), "no {d}/ objects: {objects:?}");
    }
    assert!(
        !dirs.contains("locks"),
        "a lock was left behind: {objects:?}"
    );
}

/// The scenario every backend must pass.
fn conformance(url: &str, independent: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let init = ok(repo(url, &["init", "--json"]), "init");
    assert_eq!(json(&init)["id"].as_str().unwrap().len(), 64);

    let first = json(&ok(
        repo(url, &["create", "--json", src.to_str().unwrap()]),
        "first create",
    ));
    assert_eq!(first["summary"]["files_new"], 33);
    assert!(first["storage"]["requests"].as_u64().unwrap() > 0);

    std::fs::write(src.join("empty.txt"), b"now with content").unwrap();
    let second = json(&ok(
        repo(url, &["create", "--json", src.to_str().unwrap()]),
        "incremental create",
    ));
    assert_eq!(second["summary"]["files_changed"], 1, "{second}");
    assert_eq!(second["summary"]["files_unchanged"], 32, "{second}");
    assert!(
        second["summary"]["data_added"].as_u64().unwrap() < 100_000,
        "{second}"
    );

    let snaps = json(&ok(repo(url, &["snapshots", "--json"]), "snapshots"));
    assert_eq!(snaps.as_array().unwrap().len(), 2);

    let out = tmp.path().join("out");
    ok(
        repo(
            url,
            &[
                "restore",
                "latest",
                "--target",
                out.to_str().unwrap(),
                "--verify",
            ],
        ),
        "restore",
    );
    same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));

    let check = json(&ok(
        repo(url, &["check", "--read-data", "--json"]),
        "check --read-data",
    ));
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
    assert!(check["packs_read"].as_u64().unwrap() >= 2);

    let mut wrong = Command::new(env!("CARGO_BIN_EXE_repo"));
    if let Ok(ca) = std::env::var("REPO_TEST_FTP_CA") {
        wrong.env("REPO_CA_CERT", ca);
    }
    let wrong = wrong
        .args(["snapshots", "-r", url])
        .env("REPO_PASSWORD", "not the password")
        .output()
        .unwrap();
    assert_eq!(
        wrong.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let unlock = json(&ok(repo(url, &["unlock", "--json"]), "unlock"));
    assert!(
        unlock["removed"].as_array().unwrap().is_empty(),
        "no stale locks expected: {unlock}"
    );

    exclusive_lock_scenario(url);

    if independent {
        let (objects, marked) = independent_listing(url);
        assert_repository_layout(&objects);
        assert!(marked.is_empty(), "plaintext marker found in {marked:?}");
        let packs = objects.keys().filter(|k| k.starts_with("data/")).count();
        assert!(packs >= 2, "{objects:?}");
    }
}

/// An exclusive lock (claimed with a conditional create, MKD on FTP) keeps out
/// shared and exclusive users; once its holder is killed it is stale, a new
/// exclusive locker replaces it and `unlock` cleans up.
fn exclusive_lock_scenario(url: &str) {
    let spawn_lock = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_repo"));
        c.args(["lock", "--duration", "5m", "-r", url])
            .env("REPO_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Ok(ca) = std::env::var("REPO_TEST_FTP_CA") {
            c.env("REPO_CA_CERT", ca);
        }
        c.spawn().unwrap()
    };
    let mut holder = spawn_lock();
    // `lock` announces on stdout once it holds the lock (or fails and exits).
    let mut line = String::new();
    let stdout = holder.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert!(
        line.contains("holding an exclusive lock"),
        "lock failed: {line}"
    );
    let shared = repo(url, &["check"]);
    assert_eq!(
        shared.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&shared.stderr)
    );
    let exclusive = repo(url, &["lock", "--duration", "1s"]);
    assert_eq!(
        exclusive.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&exclusive.stderr)
    );
    assert!(String::from_utf8_lossy(&exclusive.stderr).contains("exclusive"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The holder is dead (same host, no such pid): its claim is stale and replaced.
    ok(
        repo(url, &["lock", "--duration", "1s"]),
        "exclusive lock after the holder died",
    );
    ok(repo(url, &["unlock"]), "unlock");
    ok(repo(url, &["check"]), "check after unlock");
}

fn with_dir(base: &str, name: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), unique(name))
}

#[test]
fn local_disk() {
    let tmp = tempfile::tempdir().unwrap();
    conformance(tmp.path().join("repo").to_str().unwrap(), false);
    let url = format!("file://{}", tmp.path().join("repo2").display());
    conformance(&url, false);
}

#[test]
fn s3_seaweedfs() {
    let Some(base) = server("REPO_TEST_S3_URL") else {
        return;
    };
    conformance(&with_dir(&base, "conf"), true);
}

#[test]
fn ftp_pyftpdlib() {
    let Some(base) = server("REPO_TEST_FTP_URL") else {
        return;
    };
    conformance(&with_dir(&base, "conf"), true);
}

#[test]
fn ftps_pyftpdlib() {
    let Some(base) = server("REPO_TEST_FTPS_URL") else {
        return;
    };
    conformance(&with_dir(&base, "conf"), true);
}

#[test]
fn ftp_proftpd() {
    let Some(base) = server("REPO_TEST_PROFTPD_URL") else {
        return;
    };
    conformance(&with_dir(&base, "conf"), true);
}

#[test]
fn ftps_proftpd() {
    let Some(base) = server("REPO_TEST_PROFTPDS_URL") else {
        return;
    };
    // Python's ftplib cannot resume TLS sessions, which ProFTPD requires by default for
    // data connections; the pyftpdlib FTPS test covers the independent view of FTPS.
    conformance(&with_dir(&base, "conf"), false);
}

#[test]
fn malformed_urls_name_the_wrong_part() {
    for (url, part) in [
        ("s3:///prefix", "bucket"),
        ("ftp://", "host"),
        ("gopher://x/y", "gopher"),
        ("file://relative", "absolute"),
    ] {
        let out = repo(url, &["snapshots"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains(part), "{url}: {err}");
    }
}

/// A background `create` of enough data that it is still running when the server goes away.
fn start_big_create(url: &str, src: &Path) -> Child {
    std::fs::create_dir_all(src).unwrap();
    for i in 0..12 {
        std::fs::write(src.join(format!("r{i}.bin")), noise(8 << 20, i + 100)).unwrap();
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_repo"));
    c.args(["create", "-q", src.to_str().unwrap(), "-r", url])
        .env("REPO_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("create did not finish within {limit:?} after the server stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After an outage: `check` is clean, earlier snapshots restore, a new backup works.
fn after_outage(url: &str, earlier: &Path, tmp: &Path) {
    let check = json(&ok(
        repo(url, &["check", "--read-data", "--json"]),
        "check after outage",
    ));
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
    let out = tmp.join("restored");
    ok(
        repo(
            url,
            &["restore", "latest", "--target", out.to_str().unwrap()],
        ),
        "restore after outage",
    );
    same_tree(earlier, &out.join(earlier.strip_prefix("/").unwrap()));
    ok(repo(url, &["unlock"]), "unlock");
    ok(
        repo(url, &["create", "-q", earlier.to_str().unwrap()]),
        "create after outage",
    );
}

#[test]
fn s3_server_stopped_during_create() {
    let Some(base) = server("REPO_TEST_S3_URL") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-server.sh");
    let url = with_dir(&base, "fault");
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    make_tree(&small);
    ok(repo(&url, &["init"]), "init");
    ok(
        repo(&url, &["create", "-q", small.to_str().unwrap()]),
        "first create",
    );
    let child = start_big_create(&url, &tmp.path().join("big"));
    std::thread::sleep(Duration::from_millis(1500));
    let stop = Command::new(script).arg("stop").status().unwrap();
    assert!(stop.success());
    let out = wait_with_timeout(child, Duration::from_secs(240));
    let start = Command::new(script).arg("start").output().unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    assert!(
        !out.status.success(),
        "create should fail while the server is down"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage error") && err.contains("s3://"),
        "unclear error: {err}"
    );
    after_outage(&url, &small, tmp.path());
}

#[test]
fn ftp_server_stopped_during_create() {
    let Some(_) = server("REPO_TEST_FTP_URL") else {
        return;
    };
    let python = std::env::var("REPO_TEST_FTP_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::env::var("REPO_TEST_FTP_SERVER_SCRIPT").expect("REPO_TEST_FTP_SERVER_SCRIPT");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("ftp-home");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spawn = || {
        let c = Command::new(&python)
            .args([
                &script,
                "plain",
                &port.to_string(),
                home.to_str().unwrap(),
                "fault",
                "faultpw",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "FTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    };
    let mut server_proc = spawn();
    let url = format!("ftp://fault:faultpw@127.0.0.1:{port}/repo");
    let small = tmp.path().join("small");
    make_tree(&small);
    ok(repo(&url, &["init"]), "init");
    ok(
        repo(&url, &["create", "-q", small.to_str().unwrap()]),
        "first create",
    );
    let child = start_big_create(&url, &tmp.path().join("big"));
    std::thread::sleep(Duration::from_millis(1500));
    server_proc.kill().unwrap();
    server_proc.wait().unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(240));
    let mut server_proc = spawn();
    assert!(
        !out.status.success(),
        "create should fail while the server is down"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ftp://fault@127.0.0.1") && !err.contains("faultpw"),
        "unclear error or leaked password: {err}"
    );
    after_outage(&url, &small, tmp.path());
    let _ = server_proc.kill();
    let _ = server_proc.wait();
    let _ = std::io::stderr().flush();
}
