//! Claims that lapse, are removed, or are garbage.

use super::*;

/// `unlock --remove-all` removes the lock of a running backup: the backup
/// must notice and fail without a snapshot.
#[test]
fn backup_whose_lock_was_removed_writes_no_snapshot() {
    let f = fixture();
    let t = &f.t;
    let new = f.new.to_str().unwrap();
    let mut create = paused(
        t,
        &["create", "--json", new],
        "create-locked",
        None,
        "create",
    );
    let r = t.ok(["unlock", "--remove-all", "--json"]);
    assert_eq!(r.json()["removed"].as_array().unwrap().len(), 1, "{r}");
    create.signal(Signal::SIGCONT);
    let status = create.wait(Duration::from_secs(120));
    let out = create.output();
    assert!(
        !status.success(),
        "backup without its lock succeeded\n{out}"
    );
    assert!(out.contains("was removed by another process"), "{out}");
    assert_eq!(snapshot_ids(t).len(), 2, "no new snapshot\n{out}");
    assert!(check_clean(t));
    eprintln!("adversarial locks: lock removed under a backup: snapshots written: 0, data lost: 0");
}

/// The exclusive claim record is written once; a holder that keeps
/// refreshing its lock objects keeps the claim, however old the record:
/// `repo unlock` (stale locks only) must not remove it.
#[test]
fn long_exclusive_holder_keeps_its_claim() {
    let t = TestRepo::new();
    t.init();
    let mut c = cmd(&t, Some(STALE));
    let holder_out = t.join("holder.stdout");
    c.args(["lock", "--duration", "30s"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&holder_out).unwrap())
        .stderr(fs::File::create(t.join("holder.stderr")).unwrap());
    let _holder = Background {
        child: Some(c.spawn().unwrap()),
        stdout: holder_out,
        stderr: t.join("holder.stderr"),
    };
    let claim = t.repo.join("locks/exclusive/holder");
    assert!(wait_until(Duration::from_secs(60), || claim.exists()
        && !t.objects("locks").is_empty()));
    let before = fs::read(&claim).unwrap();
    outlive_stale_period();
    // `unlock` removes only stale locks: this holder's are not.
    let mut c = cmd(&t, Some(STALE));
    c.args(["unlock", "--json"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["removed"], serde_json::json!([]), "{r}");
    assert_eq!(
        fs::read(&claim).ok(),
        Some(before),
        "the live holder's claim was removed"
    );
    let mut c = cmd(&t, Some(STALE));
    c.arg("prune");
    let r = run(c);
    assert_eq!(r.code, 11, "{r}");
    eprintln!(
        "adversarial locks: exclusive claim older than the stale period kept by its live holder: claims removed: 0, data lost: 0"
    );
}

/// A garbage `locks/exclusive/holder` blocks exclusive commands; the
/// message must point to the fix, `repo unlock`, which removes it.
#[test]
fn garbage_claim_points_to_unlock() {
    let t = TestRepo::new();
    t.init();
    fs::create_dir_all(t.repo.join("locks/exclusive")).unwrap();
    fs::write(t.repo.join("locks/exclusive/holder"), b"garbage").unwrap();
    let r = t.run(["prune"]);
    assert_eq!(r.code, 11, "{r}");
    r.stderr_has("repo unlock");
    assert!(!r.stderr.contains("repo check"), "{r}");
    t.ok(["unlock"]);
    t.ok(["prune"]);
    eprintln!("adversarial locks: garbage claim: message names `repo unlock`, data lost: 0");
}

/// `repo lock` suspended past the stale period no longer keeps anyone out:
/// it must say so and exit instead of pretending to hold the lock.
#[test]
fn suspended_lock_holder_reports_the_lapse() {
    let t = TestRepo::new();
    t.init();
    let mut c = cmd(&t, Some(STALE));
    let out = t.join("holder.stdout");
    let err = t.join("holder.stderr");
    c.args(["lock", "--duration", "120s"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut holder = Background {
        child: Some(c.spawn().unwrap()),
        stdout: out,
        stderr: err,
    };
    assert!(wait_until(Duration::from_secs(60), || fs::read_to_string(
        &holder.stdout
    )
    .unwrap_or_default()
    .contains("holding")));
    holder.signal(Signal::SIGSTOP);
    outlive_stale_period();
    // Meanwhile another exclusive holder takes the repository over.
    let claim = t.repo.join("locks/exclusive/holder");
    let before = fs::read(&claim).unwrap();
    let mut c = cmd(&t, Some(STALE));
    let s_out = t.join("successor.stdout");
    let s_err = t.join("successor.stderr");
    c.args(["lock", "--duration", "120s"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&s_out).unwrap())
        .stderr(fs::File::create(&s_err).unwrap());
    let successor = Background {
        child: Some(c.spawn().unwrap()),
        stdout: s_out,
        stderr: s_err,
    };
    assert!(
        wait_until(Duration::from_secs(60), || fs::read_to_string(
            &successor.stdout
        )
        .unwrap_or_default()
        .contains("holding")),
        "{}",
        successor.output()
    );
    holder.signal(Signal::SIGCONT);
    let status = holder.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", holder.output());
    assert!(
        holder
            .output()
            .contains("no longer provably holds its repository lock"),
        "{}",
        holder.output()
    );
    let after = fs::read(&claim).expect("the successor's claim was removed by the lapsed holder");
    assert_ne!(after, before, "the successor holds the claim");
    drop(successor);
    eprintln!(
        "adversarial locks: suspended `repo lock`: lapse reported (exit 1), successor's claim kept, data lost: 0"
    );
}
