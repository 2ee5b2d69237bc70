//! Errors and exit codes, damage found and named, unreadable sources, a
//! killed backup, locks of live and dead processes.

use super::*;

#[test]
fn wrong_password_exits_12_and_writes_nothing() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    simple_tree(&src, 50);
    let before = walk_all(&t.repo);
    for args in [vec!["snapshots"], vec!["create", src.to_str().unwrap()]] {
        let mut c = t.cmd_no_pw();
        c.env("REPO_PASSWORD", "not the password").args(&args);
        let r = run(c);
        r.code(12);
        assert!(r.stderr.to_lowercase().contains("password"), "{r}");
    }
    assert_eq!(
        walk_all(&t.repo),
        before,
        "a wrong password changed storage"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one table of failure cases and their exit codes
fn key_file_opens_without_a_password() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    simple_tree(&src, 60);
    let key = t.join("r.key");
    let export = [OsStr::new("key"), OsStr::new("export"), key.as_os_str()];
    t.ok(export).stdout_has("SSH private key");
    assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    let written = fs::read(&key).unwrap();
    t.run(export).code(2).stderr_has("already exists");
    assert_eq!(
        fs::read(&key).unwrap(),
        written,
        "export overwrote the file"
    );

    // Every command works with the file alone, through the variable or the
    // flag, and a password in the environment does not get in the way.
    let with_key = |file: &Path, args: &[&OsStr]| {
        let mut c = t.cmd_no_pw();
        c.env("REPO_KEY_FILE", file).args(args);
        run(c)
    };
    let r = with_key(
        &key,
        &[OsStr::new("create"), OsStr::new("--json"), src.as_os_str()],
    );
    r.success();
    assert!(r.json()["snapshot"].is_string(), "{r}");
    let target = t.join("restore");
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD", "not the password")
        .arg("--key-file")
        .arg(&key)
        .args(["restore", "latest", "--target"])
        .arg(&target);
    run(c).success();
    assert_same_tree(&src, &restored(&target, &src), Cmp::full());
    with_key(&key, &[OsStr::new("check"), OsStr::new("--read-data")]).success();
    let keys = with_key(
        &key,
        &[OsStr::new("key"), OsStr::new("list"), OsStr::new("--json")],
    );
    keys.success();
    assert_eq!(keys.json()["keys"][0]["current"], true, "{keys}");
    let pw = t.join("pw2");
    fs::write(&pw, "second password\n").unwrap();
    with_key(
        &key,
        &[
            OsStr::new("key"),
            OsStr::new("add"),
            OsStr::new("--new-password-file"),
            pw.as_os_str(),
        ],
    )
    .success();
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD", "second password").arg("snapshots");
    run(c).success();

    // Refusals: readable by others, another repository's file, an altered
    // or foreign file; each names the file and writes nothing. A file that
    // cannot be used at all exits 13 (no usable credential); one that is
    // tried and does not open this repository exits 12.
    let before = walk_all(&t.repo);
    chmod(&key, 0o644);
    with_key(&key, &[OsStr::new("snapshots")])
        .code(13)
        .stderr_has("chmod 600");
    chmod(&key, 0o600);
    let other = TestRepo::new();
    other.init();
    let other_key = other.join("o.key");
    other.ok([
        OsStr::new("key"),
        OsStr::new("export"),
        other_key.as_os_str(),
    ]);
    with_key(&other_key, &[OsStr::new("snapshots")])
        .code(12)
        .stderr_has("belongs to repository");
    let text = String::from_utf8(written).unwrap();
    let altered = t.join("altered.key");
    let at = text.find("\"master_key\": \"").unwrap() + 15;
    let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
    fs::write(
        &altered,
        format!("{}{flipped}{}", &text[..at], &text[at + 1..]),
    )
    .unwrap();
    chmod(&altered, 0o600);
    with_key(&altered, &[OsStr::new("snapshots")])
        .code(12)
        .stderr_has("altered");
    let garbage = t.join("garbage.key");
    fs::write(&garbage, "not a key").unwrap();
    chmod(&garbage, 0o600);
    let r = with_key(&garbage, &[OsStr::new("snapshots")]);
    r.code(13).stderr_has("not a raw key file");
    assert!(r.stderr.contains("garbage.key"), "{r}");
    assert_eq!(
        walk_all(&t.repo),
        before,
        "a refused key file changed storage"
    );

    // init needs a password; a key file and a password file do not mix.
    let fresh = t.join("fresh");
    let mut c = t.bare();
    c.env("REPO_KEY_FILE", &key)
        .arg("-r")
        .arg(&fresh)
        .arg("init");
    run(c).code(2).stderr_has("key export");
    let mut c = t.cmd_no_pw();
    c.env("REPO_KEY_FILE", &key)
        .arg("--password-file")
        .arg(&pw)
        .arg("snapshots");
    run(c).code(2);
}

#[test]
fn missing_repository_exits_10() {
    let t = TestRepo::new();
    // No directory at all.
    t.run(["snapshots"]).code(10).stderr_has("repo init");
    t.run(["create", "."]).code(10);
    assert!(!t.repo.exists(), "create made a repository directory");
    // An empty directory is not a repository either.
    fs::create_dir(&t.repo).unwrap();
    t.run(["snapshots"]).code(10);
    t.run(["check"]).code(10);
}

#[test]
fn init_twice_fails_without_touching_the_repository() {
    let t = TestRepo::new();
    t.init();
    let config = fs::read(t.repo.join("config")).unwrap();
    let keys = t.objects("keys");
    assert_eq!(keys.len(), 1);
    let mut c = t.cmd_no_pw();
    c.env("REPO_PASSWORD", "another password").arg("init");
    run(c).failure().stderr_has("already holds a repository");
    assert_eq!(fs::read(t.repo.join("config")).unwrap(), config);
    assert_eq!(t.objects("keys"), keys);
    t.ok(["snapshots"]);
}

#[test]
fn usage_errors_exit_2() {
    let t = TestRepo::new();
    t.init();
    t.run(["frobnicate"]).code(2);
    t.run(["create", "--no-such-flag", "."]).code(2);
    t.run(["create"]).code(2); // no paths
    t.run(["restore", "latest"]).code(2); // no --target
    for bad in ["0/3", "4/3", "1/0", "x", "101%", "-5%"] {
        t.run(["check", &format!("--read-data-subset={bad}")])
            .code(2);
    }
    t.run(["check", "--read-data", "--read-data-subset", "1/2"])
        .code(2);
    // No repository given at all.
    let mut c = t.bare();
    c.env("REPO_PASSWORD", PASSWORD).arg("snapshots");
    run(c).code(2).stderr_has("REPO_REPOSITORY");
    // A location scheme that is not supported.
    let mut c = t.bare();
    c.env("REPO_PASSWORD", PASSWORD)
        .args(["-r", "gopher://example.org/repo", "snapshots"]);
    run(c).code(2);
}

// ---------------------------------------------------------------------------
// 6. Damage is found and named
// ---------------------------------------------------------------------------

#[test]
fn corruption_is_detected_and_named() {
    let t = TestRepo::new();
    let src = t.join("src");
    simple_tree(&src, 60);
    write_random(&src.join("three-mb.bin"), 3_000_000, 61);
    t.init();
    t.create([&src]);
    t.ok(["check", "--read-data"])
        .stdout_has("no errors were found");

    let pack = t
        .objects("data")
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let pack_name = object_name(&t.repo, &pack);
    let pack_len = fs::metadata(&pack).unwrap().len() as usize;

    // A flipped byte in a pack: reading the data finds it...
    let orig = flip_byte(&pack, pack_len / 2);
    t.run(["check", "--read-data"])
        .code(1)
        .stderr_has(&pack_name);
    // ...and a restore does not silently write wrong data.
    let target = t.join("restore-damaged");
    let r = t.run([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    r.failure().stderr_has(&pack_name);
    // --read-data-subset n/m reads the pack in exactly one of its m parts.
    let hex = pack.file_name().unwrap().to_str().unwrap();
    let part = u32::from_str_radix(&hex[..8], 16).unwrap() % 2 + 1;
    t.run(["check", &format!("--read-data-subset={part}/2")])
        .code(1)
        .stderr_has(&pack_name);
    let other = t.run(["check", &format!("--read-data-subset={}/2", 3 - part)]);
    assert!(!other.stderr.contains(&pack_name), "{other}");
    write_over(&pack, &orig);

    // A truncated pack: the structure check sees the size, the data check the content.
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len((pack_len - 100) as u64)
        .unwrap();
    t.run(["check"]).code(1).stderr_has(&pack_name);
    t.run(["check", "--read-data"])
        .code(1)
        .stderr_has(&pack_name);
    write_over(&pack, &orig);

    // A pack that is gone.
    let moved = t.join("pack-moved-away");
    fs::rename(&pack, &moved).unwrap();
    t.run(["check"]).code(1).stderr_has(&pack_name);
    fs::rename(&moved, &pack).unwrap();

    // A damaged config: nothing opens the repository, and it says why.
    let config = t.repo.join("config");
    let orig = flip_byte(&config, 5);
    t.run(["snapshots"]).code(1).stderr_has("config");
    write_over(&config, &orig);

    // A flipped byte in an index object.
    let index = t.objects("index").pop().unwrap();
    let index_name = object_name(&t.repo, &index);
    let orig = flip_byte(&index, fs::metadata(&index).unwrap().len() as usize / 2);
    t.run(["check"]).code(1).stderr_has(&index_name);
    write_over(&index, &orig);

    // A flipped byte in a snapshot object.
    let snap = t.objects("snapshots").pop().unwrap();
    let snap_name = object_name(&t.repo, &snap);
    let orig = flip_byte(&snap, fs::metadata(&snap).unwrap().len() as usize / 2);
    t.run(["check"]).code(1).stderr_has(&snap_name);
    write_over(&snap, &orig);

    // Undone, everything is whole again.
    t.ok(["check", "--read-data"])
        .stdout_has("no errors were found");
}

// ---------------------------------------------------------------------------
// 7. Unreadable source files
// ---------------------------------------------------------------------------

#[test]
fn unreadable_source_file_exits_3_and_keeps_the_snapshot() {
    let mut t = TestRepo::new();
    if is_root() {
        // Root reads everything; drop to nobody for the whole test.
        let Some(sp) = setpriv() else {
            eprintln!("skipping: running as root and setpriv is not installed");
            return;
        };
        t.prefix = nobody_prefix(sp);
    }
    let src = t.join("src");
    let files = simple_tree(&src, 70);
    let locked = src.join("locked.txt");
    fs::write(&locked, b"you cannot read me\n").unwrap();
    let locked_dir = src.join("locked-dir");
    fs::create_dir(&locked_dir).unwrap();
    fs::write(locked_dir.join("inside.txt"), b"nor me\n").unwrap();
    if is_root() {
        chown_tree(t.path(), NOBODY, NOBODY);
    }
    chmod(&locked, 0o000);
    chmod(&locked_dir, 0o000);
    // Make sure the situation is real before relying on it.
    if !t.prefix.is_empty() {
        let mut cat = std::process::Command::new(&t.prefix[0]);
        cat.args(&t.prefix[1..]).arg("cat").arg(&locked);
        if run(cat).code == 0 {
            eprintln!("skipping: nobody can read a mode 000 file here");
            return;
        }
    } else if fs::read(&locked).is_ok() {
        eprintln!("skipping: a mode 000 file is readable here");
        return;
    }

    t.init();
    let mut c = t.cmd();
    c.arg("create").arg("--json").arg(&src);
    let r = run(c);
    r.code(3)
        .stderr_has(&lossy(&locked))
        .stderr_has(&lossy(&locked_dir));
    let report = r.json();
    let err_paths: BTreeSet<String> = errors_of(&report)
        .iter()
        .map(|e| s(&e["path"]).to_string())
        .collect();
    assert_eq!(
        err_paths,
        BTreeSet::from([lossy(&locked), lossy(&locked_dir)]),
        "{r}"
    );
    assert!(report["snapshot"].is_string(), "{r}");

    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], report["snapshot"]);
    assert_eq!(u(&snaps[0]["summary"]["errors"]), 2);

    let target = t.join("restore");
    t.restore("latest", &target, &[]);
    for f in &files {
        assert_eq!(
            fs::read(restored(&target, f)).unwrap(),
            fs::read(f).unwrap(),
            "{}",
            f.display()
        );
    }
    assert!(!restored(&target, &locked).exists());
    let rd = restored(&target, &locked_dir);
    assert!(rd.is_dir(), "the unreadable directory itself is kept");
    chmod(&rd, 0o755);
    assert_eq!(fs::read_dir(&rd).unwrap().count(), 0);
    chmod(&locked_dir, 0o755);
    chmod(&locked, 0o644);
}

// ---------------------------------------------------------------------------
// 8. A backup killed with SIGKILL
// ---------------------------------------------------------------------------

#[test]
fn killed_backup_leaves_a_consistent_repository() {
    let t = TestRepo::new();
    let small = t.join("small");
    simple_tree(&small, 80);
    t.init();
    let first = t.create([&small]);
    let first_id = s(&first["snapshot"]).to_string();

    // 48 MiB of random data fills several 16 MiB packs, while a huge sparse
    // file keeps the backup running until it is killed.
    let random = t.join("random");
    fs::create_dir(&random).unwrap();
    for i in 0..3 {
        write_urandom(&random.join(format!("part{i}.bin")), 16 * 1024 * 1024);
    }
    let huge = t.join("huge");
    fs::create_dir(&huge).unwrap();
    write_huge_sparse(&huge.join("zeros.img"));
    let packs_before = t.objects("data").len();
    let mut bg = t.spawn(
        [OsStr::new("create"), random.as_os_str(), huge.as_os_str()],
        "killed",
    );
    let stored = wait_until(Duration::from_secs(300), || {
        t.objects("data").len() > packs_before || bg.exited().is_some()
    });
    assert!(stored, "no pack was stored within the time limit");
    assert!(
        bg.exited().is_none(),
        "the backup ended before it could be killed\n{}",
        bg.output()
    );
    let locks = t.objects("locks");
    assert_eq!(locks.len(), 1, "the running backup holds one lock");
    let status = bg.kill_and_reap();
    assert!(!status.success());
    assert!(t.objects("data").len() > packs_before);

    // The leftovers are harmless: check passes, old snapshots restore.
    t.ok(["check"]);
    assert_eq!(t.snapshots().len(), 1, "the killed backup wrote a snapshot");
    let target = t.join("restore");
    t.restore(&first_id, &target, &[]);
    assert_same_tree(&small, &restored(&target, &small), Cmp::full());

    // A new backup succeeds despite the stale lock and the stray packs.
    let again = t.create([&random]);
    assert_eq!(u(&again["summary"]["files_new"]), 3, "{again:#}");
    assert_eq!(
        t.objects("locks"),
        locks,
        "create removed a lock it did not own"
    );

    // `unlock` removes the dead process's lock.
    let un = t.ok(["unlock", "--json"]).json();
    let removed: Vec<&str> = un["removed"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(
        removed,
        vec![locks[0].file_name().unwrap().to_str().unwrap()]
    );
    assert!(t.objects("locks").is_empty());
    t.ok(["check", "--read-data"]);
}

// ---------------------------------------------------------------------------
// 9. Locks of live and dead processes
// ---------------------------------------------------------------------------

#[test]
fn live_locks_are_kept_and_stale_locks_removed() {
    let t = TestRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    write_huge_sparse(&src.join("zeros.img"));
    t.init();
    let lock_names = || -> BTreeSet<String> {
        t.objects("locks")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let removed = |v: &Value| -> BTreeSet<String> {
        v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| s(x).to_string())
            .collect()
    };
    // Starts a backup and freezes it (SIGSTOP) once it holds its lock, so
    // it stays alive however fast the machine is.
    let start_frozen = |name: &str| -> (Background, String) {
        let before = lock_names();
        let mut bg = t.spawn([OsStr::new("create"), src.as_os_str()], name);
        let got = wait_until(Duration::from_secs(120), || {
            lock_names().len() > before.len() || bg.exited().is_some()
        });
        assert!(got, "no lock seen in time\n{}", bg.output());
        assert!(bg.exited().is_none(), "create ended early\n{}", bg.output());
        bg.signal(Signal::SIGSTOP);
        let new: Vec<String> = lock_names().difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "{new:?}");
        (bg, new[0].clone())
    };

    let (mut a, lock_a) = start_frozen("a");
    // The process is alive: `unlock` must leave its lock alone.
    let un = t.ok(["unlock", "--json"]).json();
    assert!(removed(&un).is_empty(), "{un}");
    assert_eq!(lock_names(), BTreeSet::from([lock_a.clone()]));

    // Killed (and reaped), its lock is stale.
    a.kill_and_reap();
    let (mut b, lock_b) = start_frozen("b");
    let un = t.ok(["unlock", "--json"]).json();
    assert_eq!(removed(&un), BTreeSet::from([lock_a.clone()]));
    assert_eq!(lock_names(), BTreeSet::from([lock_b.clone()]));

    // --remove-all removes even a live process's lock.
    let un = t.ok(["unlock", "--remove-all", "--json"]).json();
    assert_eq!(removed(&un), BTreeSet::from([lock_b]));
    assert!(lock_names().is_empty());

    // The frozen backup resumes and still stops cleanly on Ctrl-C, though
    // its lock is gone.
    b.signal(Signal::SIGCONT);
    b.signal(Signal::SIGINT);
    let st = b.wait(Duration::from_secs(120));
    assert_eq!(st.code(), Some(130), "{st:?}\n{}", b.output());
    assert!(lock_names().is_empty());
    t.ok(["check"]);
    assert!(t.snapshots().is_empty());
}

/// A file name with a newline and a terminal escape whose data pack is
/// gone (and out of the rebuilt index): check names the file in its
/// problems, and a hostile name must not move the cursor or fake a line
/// there (README: every name is escaped on a terminal).
#[test]
fn check_escapes_hostile_names_in_its_problems() {
    let t = TestRepo::new();
    let src = t.join("src");
    let evil = "evil\x1b[2J\nerror: fake line";
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join(evil), 200_000, 62);
    t.init();
    t.create([&src]);
    let data_pack = t
        .objects("data")
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(data_pack).unwrap();
    t.ok(["repair", "index"]);
    let r = t.run(["check"]);
    r.code(1);
    assert!(r.stderr.contains("evil"), "{r}");
    assert!(
        !r.stderr.contains('\x1b'),
        "raw escape in check's output: {r}"
    );
    assert!(
        !r.stderr.contains("\nerror: fake line"),
        "a name faked a line: {r}"
    );
}
