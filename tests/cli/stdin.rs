//! Backups of a stream: `create --stdin` and `create --stdin-from-command`
//! (issue 15). The stream becomes one file `/NAME` of the snapshot; a
//! command that fails leaves no snapshot.

use std::fs;
use std::path::Path;

use crate::support::*;
use serde_json::Value;

/// A few MiB of pseudo-random bytes followed by repeated text.
fn stream_bytes() -> Vec<u8> {
    let mut data = random_bytes(3 << 20, 15);
    for i in 0..40_000 {
        data.extend_from_slice(format!("row {} of the table, unchanged text\n", i % 97).as_bytes());
    }
    data
}

/// `create --json ARGS` with `input` as standard input; must succeed.
fn create_from(t: &TestRepo, input: &Path, args: &[&str]) -> Value {
    let mut c = t.cmd();
    c.arg("create").arg("--json").args(args);
    let r = run_with_stdin(c, fs::File::open(input).expect("open the input"));
    r.success();
    r.json()
}

fn ids(t: &TestRepo) -> Vec<String> {
    t.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect()
}

#[test]
fn stdin_round_trips_dedups_and_finds_its_parent() {
    let t = TestRepo::new();
    t.init();
    let data = stream_bytes();
    let input = t.join("input");
    write_file(&input, &data);

    let first = create_from(&t, &input, &["--stdin", "--stdin-filename", "app.sql"]);
    let id = first["snapshot"].as_str().expect("snapshot id").to_string();
    assert_eq!(first["summary"]["files_new"], 1, "{first:#}");
    assert_eq!(first["summary"]["total_bytes"], data.len() as u64);
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/app.sql"]));

    let target = t.join("restored");
    t.restore(&id, &target, &[]);
    let back = fs::read(target.join("app.sql")).expect("restored file");
    assert!(back == data, "restored file differs from standard input");
    let dumped = t.ok(["dump", &id, "/app.sql"]);
    assert!(
        dumped.stdout_bytes == data,
        "dump differs from standard input"
    );

    // The same job again: the first run is its parent, and its data is
    // stored already (only the root tree, whose mtime differs, is new).
    let second = create_from(&t, &input, &["--stdin", "--stdin-filename", "app.sql"]);
    assert_eq!(second["parent"].as_str(), Some(id.as_str()), "{second:#}");
    assert_eq!(second["summary"]["files_unchanged"], 1, "{second:#}");
    let added = second["summary"]["data_added"]
        .as_u64()
        .expect("data_added");
    assert!(added < 4096, "second identical run added {added} bytes");
}

#[test]
fn stdin_default_name_tags_host_and_dry_run() {
    let t = TestRepo::new();
    t.init();
    let input = t.join("input");
    write_file(&input, b"a small stream\n");

    let dry = create_from(&t, &input, &["--stdin", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(t.snapshots().is_empty(), "a dry run wrote a snapshot");

    create_from(&t, &input, &["--stdin", "--tag", "db", "--host", "dbhost"]);
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/stdin"]));
    assert_eq!(snaps[0]["tags"], serde_json::json!(["db"]));
    assert_eq!(snaps[0]["host"], "dbhost");
    let dumped = t.ok(["dump", "latest", "stdin"]);
    assert_eq!(dumped.stdout_bytes, b"a small stream\n");
}

#[test]
fn command_output_round_trips() {
    let t = TestRepo::new();
    t.init();
    let body = t.join("body");
    write_random(&body, 3_000_000, 16);
    let cmd = format!(
        "printf 'header\\n'; cat '{}'; printf 'end\\n'",
        body.display()
    );
    let mut want = b"header\n".to_vec();
    want.extend(fs::read(&body).expect("body"));
    want.extend_from_slice(b"end\n");

    let report = t.create(["--stdin-from-command", &cmd, "--stdin-filename", "dump.bin"]);
    let id = report["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string();
    let target = t.join("restored");
    t.restore(&id, &target, &[]);
    let back = fs::read(target.join("dump.bin")).expect("restored file");
    assert!(
        back == want,
        "restored file differs from the command's output"
    );
    // The command's standard input is /dev/null, not ours: `cat` ends at once.
    // Nor does it see the repository's password.
    t.create(["--stdin-from-command", "cat; echo \"done${REPO_PASSWORD}\""]);
    assert_eq!(t.ok(["dump", "latest", "/stdin"]).stdout_bytes, b"done\n");
}

#[test]
fn failing_commands_leave_no_snapshot() {
    let t = TestRepo::new();
    t.init();
    t.create(["--stdin-from-command", "echo first"]);
    let before = ids(&t);
    let cases = [
        ("echo partial; echo boom >&2; exit 3", "boom"),
        (
            "head -c 2000000 /dev/urandom; echo boom >&2; exit 3",
            "exited with code 3",
        ),
        (
            "echo partial; echo dying >&2; kill -9 $$",
            "killed by signal 9",
        ),
        ("no-such-program-5f3a", "no-such-program-5f3a: not found"),
    ];
    for (cmd, says) in cases {
        let r = t.run(["create", "--stdin-from-command", cmd]);
        r.code(1)
            .stderr_has(says)
            .stderr_has("no snapshot was written");
        assert_eq!(ids(&t), before, "a snapshot appeared after {cmd:?}");
    }
    // What the failed commands sent is unreferenced: the repository is
    // consistent, and prune removes it.
    t.ok(["check"]);
    let pruned = t.ok(["prune", "--json"]).json();
    assert!(pruned["blobs_unused"].as_u64() > Some(0), "{pruned:#}");
    t.ok(["check", "--read-data"]);
}

#[test]
fn bad_names_and_mixed_sources_are_usage_errors() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir(&src).expect("mkdir");
    for name in ["", ".", "..", "a/b", "/abs", "dir/"] {
        t.run([
            "create",
            "--stdin-from-command",
            "echo x",
            "--stdin-filename",
            name,
        ])
        .code(2)
        .stderr_has("--stdin-filename");
    }
    let src = src.to_str().expect("utf-8 path");
    t.run(["create", "--stdin", src])
        .code(2)
        .stderr_has("cannot be used with");
    t.run(["create", "--stdin-from-command", "echo x", src])
        .code(2)
        .stderr_has("cannot be used with");
    t.run(["create", "--stdin", "--stdin-from-command", "echo x"])
        .code(2)
        .stderr_has("cannot be used with");
    t.run(["create", "--stdin", "--exclude", "*.o"])
        .code(2)
        .stderr_has("cannot be used with");
    t.run(["create", "--stdin-filename", "x", src]).code(2);
    t.run(["create", "--stdin-from-command", " "]).code(2);
    assert!(t.snapshots().is_empty());
}
