//! Keys (add, list, passwd, remove) and `repo lock`.

use super::*;

#[test]
fn key_add_list_passwd_remove() {
    let e = Env::init();
    let with = |pw: &str, args: &[&str]| {
        let mut c = e.cmd_with_password(pw);
        c.args(args);
        run(c)
    };
    let keys = |pw: &str| -> Vec<Value> {
        let o = with(pw, &["key", "list", "--json"]);
        o.code(0);
        o.json()["keys"].as_array().unwrap().clone()
    };
    let first = keys(PASSWORD);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["current"], true);
    let original = first[0]["id"].as_str().unwrap().to_string();

    let pw_file = e.join("second");
    fs::write(&pw_file, "second password\n").unwrap();
    let added = e.json([
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        pw_file.as_os_str(),
    ])["added"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = keys("second password");
    assert_eq!(listed.len(), 2);
    for k in &listed {
        assert_eq!(k["current"], k["id"] == added.as_str(), "{k}");
    }
    // The key in use cannot be removed.
    let o = with("second password", &["key", "remove", &added[..8]]);
    o.code(2);
    assert!(o.stderr.contains("opened the repository"), "{o}");
    // Another one can.
    let r = with(
        "second password",
        &["key", "remove", &original[..8], "--json"],
    );
    r.code(0);
    assert_eq!(r.json()["removed"], original.as_str());
    with(PASSWORD, &["key", "list"]).code(12);
    // The last key cannot be removed either (it is also the one in use).
    with("second password", &["key", "remove", &added]).code(2);

    // passwd: a new key for the new password, the old key gone.
    let third = e.join("third");
    fs::write(&third, "third password").unwrap();
    let mut c = e.cmd_with_password("second password");
    c.args(["key", "passwd", "--json", "--new-password-file"])
        .arg(&third);
    let o = run(c);
    o.code(0);
    assert_eq!(o.json()["removed"], added.as_str());
    with("second password", &["snapshots"]).code(12);
    assert_eq!(keys("third password").len(), 1);
    // Without a file and without a terminal there is no new password.
    with("third password", &["key", "add"]).code(2);
    let empty = e.join("empty");
    fs::write(&empty, "\n").unwrap();
    let mut c = e.cmd_with_password("third password");
    c.args(["key", "add", "--new-password-file"]).arg(&empty);
    run(c).code(2);
}

#[test]
fn lock_holds_off_other_commands_until_released() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("f"), b"x");
    e.create(&src, &[]);

    let mut c = e.cmd();
    c.arg("lock")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let holder = c.spawn().expect("spawn lock");
    let start = Instant::now();
    while e.object_ids("locks").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lock never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = e.run(["prune"]);
    o.code(11);
    assert!(o.stderr.contains("exclusive lock"), "{o}");
    e.run([OsStr::new("create"), src.as_os_str()]).code(11);
    e.run(["forget", "--keep-last", "1"]).code(11);
    // Listing needs no lock.
    e.ok(["snapshots"]);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = holder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lock exits cleanly on SIGTERM: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("holding an exclusive lock"));
    assert!(e.object_ids("locks").is_empty(), "lock removed");
    e.ok(["prune"]);

    // --duration ends by itself.
    let t = Instant::now();
    let r = e.json(["lock", "--duration", "1s"]);
    assert_eq!(r["interrupted"], false);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(e.object_ids("locks").is_empty());

    // A killed holder leaves a stale lock: ignored by others, removed by unlock.
    let mut c = e.cmd();
    c.args(["lock", "--shared"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = c.spawn().unwrap();
    while e.object_ids("locks").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "lock never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A shared lock keeps out exclusive users only.
    e.run(["prune"]).code(11);
    e.ok([OsStr::new("create"), src.as_os_str()]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(e.object_ids("locks").len(), 1);
    // Prune removes the stale lock it ignores (SPEC.md §10.1), so nothing
    // is left for `unlock`.
    e.ok(["prune"]);
    assert!(e.object_ids("locks").is_empty());
    let r = e.json(["unlock"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 0);
}
