//! A partitioned backup, an unreadable live lock, clocks that lag.

use super::*;

/// A backup cut off from the lock directory (it becomes read-only in the
/// backup's own mount namespace, so every refresh fails) keeps running while
/// its lock goes stale, without being suspended: every fsync is slowed by
/// strace. A prune then deletes what it relies on; the backup must notice
/// the failed refreshes and write neither index nor snapshot.
#[test]
fn partitioned_backup_writes_no_snapshot() {
    if !need_root("partitioned_backup_writes_no_snapshot") {
        return;
    }
    let f = fixture();
    let t = &f.t;
    let dir = t.join("pause");
    fs::create_dir_all(&dir).unwrap();
    let mut c = clean_command("unshare");
    c.args(["--mount", "sh", "-c"])
        .arg(
            "mount --bind \"$0/locks\" \"$0/locks\" && exec strace -f -qq -o /dev/null \
             -e trace=fsync -e inject=fsync:delay_enter=1500000 \"$1\" -r \"$0\" create --json \"$2\"",
        )
        .arg(&t.repo)
        .arg(BIN)
        .arg(&f.new)
        .env("REPO_PASSWORD", PASSWORD)
        .env("REPO_TEST_STALE_SECS", STALE.to_string())
        .env("REPO_TEST_PAUSE", "create-locked,save-index")
        .env("REPO_TEST_PAUSE_DIR", &dir)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(t.join("create.stdout")).unwrap())
        .stderr(fs::File::create(t.join("create.stderr")).unwrap());
    let mut create = Background {
        child: Some(c.spawn().expect("spawn")),
        stdout: t.join("create.stdout"),
        stderr: t.join("create.stderr"),
    };
    let pid = stopped_at(&dir.join("create-locked"));
    // The partition: from now on the backup cannot write lock objects.
    let r = run({
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &pid.to_string(),
            "-m",
            "mount",
            "-o",
            "remount,bind,ro",
        ])
        .arg(t.repo.join("locks"));
        c
    });
    assert_eq!(r.code, 0, "{r}");
    let cont = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT).unwrap()
    };
    cont(pid);
    // It runs (slowly) up to its index write without being suspended.
    let pid = stopped_at(&dir.join("save-index"));
    let mut c = cmd(t, Some(STALE));
    c.args(["forget", &f.old_id, "--prune", "--max-unused", "0"]);
    let p = run(c);
    assert_eq!(
        p.code, 0,
        "the partitioned backup's lock went stale while it ran: {p}"
    );
    cont(pid);
    let status = create.wait(Duration::from_secs(120));
    let out = create.output();
    assert!(
        !status.success(),
        "a partitioned backup wrote a snapshot\n{out}"
    );
    assert!(out.contains("last refresh failed"), "{out}");
    assert_eq!(snapshot_ids(t), vec![f.keep_id.clone()], "{out}");
    assert!(check_clean(t));
    assert!(restores_identical(t, &f.keep_id, &f.keep, "keep"));
    eprintln!(
        "adversarial locks: partitioned backup (lock writes refused while it ran): snapshots written: 0, data lost: 0"
    );
}

/// A live lock that prune cannot read for a reason other than damage (here:
/// another user's lock file it has no permission to read; on S3 or FTP, a
/// failed request) is no evidence that nobody holds it: prune must stop,
/// not treat it as garbage and delete the packs a running backup wrote.
#[test]
fn unreadable_live_lock_stops_prune() {
    if !need_root("unreadable_live_lock_stops_prune") {
        return;
    }
    let Some(sp) = setpriv() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv is needed under CI"
        );
        eprintln!("SKIPPED unreadable_live_lock_stops_prune: needs setpriv");
        return;
    };
    let f = fixture();
    let t = &f.t;
    let new = f.new.to_str().unwrap();
    // The backup has stored its packs and is about to index them.
    let mut create = paused(t, &["create", "--json", new], "save-index", None, "create");
    // A repository shared with another user, who can read all but that lock.
    let repo_dir = t.join("repo");
    let st = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success());
    let locks: Vec<PathBuf> = fs::read_dir(repo_dir.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(locks.len(), 1, "the backup's lock: {locks:?}");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locks[0], fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = clean_command(sp);
    c.args(AS_NOBODY)
        .arg(BIN)
        .args(["prune", "--max-unused", "0", "-r"])
        .arg(&repo_dir)
        .env("REPO_PASSWORD", PASSWORD);
    let p = run(c);
    create.signal(Signal::SIGCONT);
    let status = create.wait(Duration::from_secs(120));
    let complete = status.success() && check_clean(t) && {
        restores_identical(t, &written_snapshot(&create), &f.new, "new")
    };
    let lost = usize::from(!complete);
    eprintln!(
        "adversarial locks: prune with an unreadable live lock exited {}, backup complete: {complete}, data lost: {lost}",
        p.code
    );
    assert_ne!(
        p.code, 0,
        "prune went ahead past a lock it could not read: {p}"
    );
    assert!(p.stderr.contains("locks/"), "names the lock: {p}");
    assert_eq!(lost, 0, "{}", create.output());
}

/// A backup whose clock did not run while it was suspended (a paused VM
/// resumes with its clock behind until it is corrected) or runs behind the
/// pruning host's: by its own clock its lock is fresh, yet prune judged it
/// stale. Modelled by giving prune a stale period of 1 s while the backup
/// keeps the real 30 min. The backup must not write a snapshot that relies
/// on what prune deleted: prune removes the locks it ignores before it
/// looks at anything, so the backup's next check finds its lock gone.
#[test]
fn backup_with_a_lagging_clock_fails_safely() {
    let f = fixture();
    let t = &f.t;
    let new = f.new.to_str().unwrap();
    // Deduplicated against `old`'s packs, about to write its index.
    let mut create = paused(t, &["create", "--json", new], "save-index", None, "create");
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = cmd(t, Some(1));
    c.args(["forget", &f.old_id, "--prune", "--max-unused", "0"]);
    let p = run(c);
    assert_eq!(p.code, 0, "prune judged the backup's lock stale: {p}");
    create.signal(Signal::SIGCONT);
    let status = create.wait(Duration::from_secs(120));
    let out = create.output();
    let snaps = snapshot_ids(t);
    let complete = if status.success() {
        restores_identical(t, &written_snapshot(&create), &f.new, "new")
    } else {
        assert_eq!(
            snaps,
            vec![f.keep_id.clone()],
            "failed backup left a snapshot\n{out}"
        );
        true
    };
    let clean = check_clean(t) && restores_identical(t, &f.keep_id, &f.keep, "keep");
    let lost = usize::from(!complete || !clean);
    eprintln!(
        "adversarial locks: backup with a lagging clock: exit {:?}, data lost: {lost}",
        status.code()
    );
    assert_eq!(lost, 0, "{out}");
}

/// The other way round: a prune whose clock lags stops just before
/// deleting; a backup (stale period 1 s, as if its clock ran ahead) ignores
/// the prune's lock and deduplicates against packs the prune is about to
/// delete. The backup removes the lock it ignores, so the resumed prune
/// finds its lock gone and deletes nothing.
#[test]
fn prune_with_a_lagging_clock_deletes_nothing() {
    let f = fixture();
    let t = &f.t;
    let mut prune = paused(
        t,
        &["forget", &f.old_id, "--prune", "--max-unused", "0"],
        "prune-delete",
        None,
        "prune",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = cmd(t, Some(1));
    c.args(["create", "--json"]).arg(&f.new);
    let r = run(c);
    assert_eq!(r.code, 0, "the backup ignores the prune's lock: {r}");
    let id = r.json()["snapshot"].as_str().unwrap().to_string();
    prune.signal(Signal::SIGCONT);
    let status = prune.wait(Duration::from_secs(120));
    let ok = check_clean(t)
        && restores_identical(t, &id, &f.new, "new")
        && restores_identical(t, &f.keep_id, &f.keep, "keep");
    let lost = usize::from(!ok);
    eprintln!(
        "adversarial locks: prune with a lagging clock: exit {:?}, data lost: {lost}",
        status.code()
    );
    assert_eq!(lost, 0, "{}", prune.output());
}

/// The id of the snapshot a finished `create --json` in the background wrote.
fn written_snapshot(create: &Background) -> String {
    let out = fs::read_to_string(&create.stdout).unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot in create's output: {out}"))
        .to_string()
}
