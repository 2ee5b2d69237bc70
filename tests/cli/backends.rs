//! Conformance suite: the same end-to-end scenario against every backend —
//! local disk, S3 (SeaweedFS), FTP/FTPS (pyftpdlib and ProFTPD) and restic
//! REST over HTTP and HTTPS (`rclone serve restic`) — with
//! an independent client checking what ends up on the server, and fault
//! tests that stop the server in the middle of a backup.
//!
//! `scripts/test` starts the servers and exports their URLs. Without them
//! the remote tests skip, except under CI, where a missing server fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Background, Cmp, Run, assert_same_tree, clean_command, random_bytes, repo_command, run, server,
    trust_test_ca_for, unique_url,
};

const PASSWORD: &str = "conformance-password";
const MARKER: &str = "PLAINTEXT-MARKER-c0ffee";

thread_local! {
    /// An S3 endpoint the commands built on this test's thread use instead of
    /// the suite's server: the outage test's own proxy, which it stops
    /// without taking the server away from the tests running beside it.
    static S3_ENDPOINT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The binary against `url` with the password (and the FTPS or REST test CA).
fn repo_cmd(url: &str, args: &[&str]) -> Command {
    let mut c = repo_command();
    c.args(args)
        .arg("-r")
        .arg(url)
        .env("REPO_PASSWORD", PASSWORD);
    trust_test_ca_for(&mut c, url);
    if let Some(endpoint) = S3_ENDPOINT.with(|e| e.borrow().clone()) {
        c.env("REPO_S3_ENDPOINT", endpoint);
    }
    c
}

/// Runs the real binary against `url`.
fn repo(url: &str, args: &[&str]) -> Run {
    run(repo_cmd(url, args))
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join(format!("dir-{MARKER}/sub"))).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("big.bin"), random_bytes(3 << 20, 7)).unwrap();
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

/// Types, contents, symlink targets and modes must survive every backend.
fn same_tree(a: &Path, b: &Path) {
    let cmp = Cmp {
        mode: true,
        ..Cmp::content_only()
    };
    assert_same_tree(a, b, cmp);
}

/// Object keys an independent client sees, and those containing the marker.
fn independent_listing(url: &str) -> (std::collections::BTreeMap<String, u64>, Vec<String>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cli/support/list_objects.py"
    );
    let mut c =
        clean_command(std::env::var("REPO_TEST_FTP_PYTHON").unwrap_or_else(|_| "python3".into()));
    trust_test_ca_for(c.arg(script).arg(url).arg(MARKER), url);
    let v = run(c).success().json();
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

/// The scenario every backend must pass. `independent`: read the stored objects with another
/// client too.
fn conformance(url: &str, independent: bool) {
    one_process_at_a_time(url, independent);
    exclusive_lock_scenario(url);
}

/// The scenario but for [`exclusive_lock_scenario`], which needs two processes connected at
/// once.
fn one_process_at_a_time(url: &str, independent: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let init = repo(url, &["init", "--json"]).success().json();
    assert_eq!(init["id"].as_str().unwrap().len(), 64);

    let first = repo(url, &["create", "--json", src.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(first["summary"]["files_new"], 33);
    assert!(first["storage"]["requests"].as_u64().unwrap() > 0);

    std::fs::write(src.join("empty.txt"), b"now with content").unwrap();
    let second = repo(url, &["create", "--json", src.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(second["summary"]["files_changed"], 1, "{second}");
    assert_eq!(second["summary"]["files_unchanged"], 32, "{second}");
    assert!(
        second["summary"]["data_added"].as_u64().unwrap() < 100_000,
        "{second}"
    );

    let snaps = repo(url, &["snapshots", "--json"]).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 2);

    let out = tmp.path().join("out");
    repo(
        url,
        &[
            "restore",
            "latest",
            "--target",
            out.to_str().unwrap(),
            "--verify",
        ],
    )
    .success();
    same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));

    let check = repo(url, &["check", "--read-data", "--json"])
        .success()
        .json();
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
    assert!(check["packs_read"].as_u64().unwrap() >= 2);

    let mut wrong = repo_cmd(url, &["snapshots"]);
    wrong.env("REPO_PASSWORD", "not the password");
    run(wrong).code(12);

    let unlock = repo(url, &["unlock", "--json"]).success().json();
    assert!(
        unlock["removed"].as_array().unwrap().is_empty(),
        "no stale locks expected: {unlock}"
    );

    if independent {
        let (objects, marked) = independent_listing(url);
        assert_repository_layout(&objects);
        assert!(marked.is_empty(), "plaintext marker found in {marked:?}");
        let packs = objects.keys().filter(|k| k.starts_with("data/")).count();
        assert!(packs >= 2, "{objects:?}");
    }
}

/// An exclusive lock (claimed with a conditional create, MKD on FTP; on
/// REST by writing its lock, then listing) keeps out
/// shared and exclusive users; once its holder is killed it is stale, a new
/// exclusive locker replaces it and `unlock` cleans up.
fn exclusive_lock_scenario(url: &str) {
    let spawn_lock = || {
        let mut c = repo_cmd(url, &["lock", "--duration", "5m"]);
        c.stdout(Stdio::piped()).stderr(Stdio::inherit());
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
    repo(url, &["check"]).code(11);
    repo(url, &["lock", "--duration", "1s"])
        .code(11)
        .stderr_has("exclusive");
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The holder is dead (same host, no such pid): its claim is stale and replaced.
    repo(url, &["lock", "--duration", "1s"]).success();
    repo(url, &["unlock"]).success();
    repo(url, &["check"]).success();
}

/// The scenario in a fresh place on the server `var` names, if it runs.
fn conformance_on(var: &str, independent: bool) {
    if let Some(base) = server(var) {
        conformance(&unique_url(&base, "conf"), independent);
    }
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
    conformance_on("REPO_TEST_S3_URL", true);
}

#[test]
fn ftp_pyftpdlib() {
    conformance_on("REPO_TEST_FTP_URL", true);
}

#[test]
fn ftps_pyftpdlib() {
    conformance_on("REPO_TEST_FTPS_URL", true);
}

#[test]
fn ftp_proftpd() {
    conformance_on("REPO_TEST_PROFTPD_URL", true);
}

/// ProFTPD with `MaxClientsPerHost 2` refuses a third login with 530; every command still
/// works with the default 8 connections (the pool shrinks to what the server allows, see
/// `storage/ftp/pool/limit.rs`; before, the first command failed on a refused login).
#[test]
fn ftp_proftpd_two_sessions_per_host() {
    // Two processes at once (a lock holder and another command) would need more sessions than
    // the server gives this host: that part is left out.
    if let Some(base) = server("REPO_TEST_PROFTPD_LIMITED_URL") {
        let url = unique_url(&base, "conf");
        one_process_at_a_time(&url, true);
        // The report says how many connections the server allowed, fewer than the default 8.
        // ProFTPD checks the limit in each session's own process as the password comes, so
        // logins sent at the same instant (those made ahead wait for the first, then go
        // together) may get through beyond it.
        let check = repo(&url, &["check", "--json"]).success().json();
        let allowed = check["storage"]["connections_allowed"].as_u64();
        assert!(matches!(allowed, Some(1..=7)), "{check}");
        let out = repo(&url, &["-v", "snapshots"]);
        let out = out.success();
        assert!(
            out.stderr.contains("the server allowed only"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn ftps_proftpd() {
    // Python's ftplib cannot resume TLS sessions, which ProFTPD requires by default for
    // data connections; the pyftpdlib FTPS test covers the independent view of FTPS.
    conformance_on("REPO_TEST_PROFTPDS_URL", false);
}

#[test]
fn rest_http() {
    conformance_on("REPO_TEST_REST_URL", true);
}

#[test]
fn rest_https() {
    conformance_on("REPO_TEST_RESTS_URL", true);
}

#[test]
fn malformed_urls_name_the_wrong_part() {
    for (url, part) in [
        ("s3:///prefix", "bucket"),
        ("ftp://", "host"),
        ("gopher://x/y", "gopher"),
        ("file://relative", "absolute"),
        ("rest:ftp://h/x", "scheme"),
        ("rest:https://", "host"),
        ("rest:https://h/x?create=true", "query"),
        ("rest:https://:secret@h/x", "without a user"),
    ] {
        let out = repo(url, &["snapshots"]);
        out.code(2);
        assert!(out.stderr.to_lowercase().contains(part), "{url}: {out}");
    }
}

/// A background `create` of enough data that it is still running when the server goes away.
fn start_big_create(url: &str, src: &Path) -> Background {
    std::fs::create_dir_all(src).unwrap();
    for i in 0..12 {
        std::fs::write(
            src.join(format!("r{i}.bin")),
            random_bytes(8 << 20, i + 100),
        )
        .unwrap();
    }
    let (stdout, stderr) = (src.with_extension("stdout"), src.with_extension("stderr"));
    let mut c = repo_cmd(url, &["create", "-q", src.to_str().unwrap()]);
    c.stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    Background {
        child: Some(c.spawn().unwrap()),
        stdout,
        stderr,
    }
}

/// After an outage: `check` is clean, earlier snapshots restore, a new backup works.
fn after_outage(url: &str, earlier: &Path, tmp: &Path) {
    let check = repo(url, &["check", "--read-data", "--json"])
        .success()
        .json();
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
    let out = tmp.join("restored");
    repo(
        url,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .success();
    same_tree(earlier, &out.join(earlier.strip_prefix("/").unwrap()));
    repo(url, &["unlock"]).success();
    repo(url, &["create", "-q", earlier.to_str().unwrap()]).success();
}

#[test]
fn s3_server_stopped_during_create() {
    let Some(base) = server("REPO_TEST_S3_URL") else {
        return;
    };
    // The server is reached through a proxy of this test's own, and the
    // proxy is what stops: stopping the server made the S3 tests running
    // at the same time fail.
    let server = std::env::var("REPO_S3_ENDPOINT").expect("REPO_S3_ENDPOINT");
    let target = server.trim_start_matches("http://").to_string();
    let port = free_port();
    S3_ENDPOINT.with(|e| *e.borrow_mut() = Some(format!("http://127.0.0.1:{port}")));
    let url = unique_url(&base, "fault");
    let tmp = tempfile::tempdir().unwrap();
    let mut proxy = tcp_proxy(port, &target, tmp.path());
    let small = tmp.path().join("small");
    make_tree(&small);
    repo(&url, &["init"]).success();
    repo(&url, &["create", "-q", small.to_str().unwrap()]).success();
    let mut child = start_big_create(&url, &tmp.path().join("big"));
    std::thread::sleep(Duration::from_millis(1500));
    proxy.kill_and_reap();
    let status = child.wait(Duration::from_secs(240));
    let _proxy = tcp_proxy(port, &target, tmp.path());
    assert!(
        !status.success(),
        "create should fail while the server is down"
    );
    let err = std::fs::read_to_string(&child.stderr).unwrap();
    assert!(
        err.contains("storage error") && err.contains("s3://"),
        "unclear error: {err}"
    );
    after_outage(&url, &small, tmp.path());
}

/// A port free on 127.0.0.1 right now.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits (up to 20 s) until something accepts connections on `port`.
pub(crate) fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy on `port` to `target` (`bench/delay_proxy.py` without
/// delay), once it accepts connections.
fn tcp_proxy(port: u16, target: &str, dir: &Path) -> Background {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/delay_proxy.py");
    let child = clean_command("python3")
        .args([script, "--listen", &port.to_string(), "--target", target])
        .args(["--delay-ms", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "the proxy");
    Background {
        child: Some(child),
        stdout: dir.join("proxy.out"),
        stderr: dir.join("proxy.err"),
    }
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
    let port = free_port();
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
        wait_listening(port, "the FTP server");
        c
    };
    let mut server_proc = spawn();
    let url = format!("ftp://fault:faultpw@127.0.0.1:{port}/repo");
    let small = tmp.path().join("small");
    make_tree(&small);
    repo(&url, &["init"]).success();
    repo(&url, &["create", "-q", small.to_str().unwrap()]).success();
    let mut child = start_big_create(&url, &tmp.path().join("big"));
    std::thread::sleep(Duration::from_millis(1500));
    server_proc.kill().unwrap();
    server_proc.wait().unwrap();
    let status = child.wait(Duration::from_secs(240));
    let mut server_proc = spawn();
    assert!(
        !status.success(),
        "create should fail while the server is down"
    );
    let err = std::fs::read_to_string(&child.stderr).unwrap();
    assert!(
        err.contains("ftp://fault@127.0.0.1") && !err.contains("faultpw"),
        "unclear error or leaked password: {err}"
    );
    after_outage(&url, &small, tmp.path());
    let _ = server_proc.kill();
    let _ = server_proc.wait();
    let _ = std::io::stderr().flush();
}
