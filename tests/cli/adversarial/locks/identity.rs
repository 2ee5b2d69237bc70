//! Whose lock is it: another pid namespace, a bind-mounted lock, another
//! machine.

use super::*;

/// A prune in another pid namespace (same host name, same machine) cannot
/// see the backup's pid: it must judge the lock by age and refuse.
#[test]
fn prune_in_other_pid_namespace_respects_live_lock() {
    if !need_root("prune_in_other_pid_namespace_respects_live_lock") {
        return;
    }
    let f = fixture();
    let t = &f.t;
    t.ok(["forget", &f.old_id]);
    let packs = t.objects("data");
    let new = f.new.to_str().unwrap();
    let mut create = paused(
        t,
        &["create", "--json", new],
        "create-locked",
        None,
        "create",
    );
    let mut c = clean_command("unshare");
    c.args(["--pid", "--fork", "--mount-proc", BIN, "-r"])
        .arg(&t.repo)
        .arg("prune")
        .env("REPO_PASSWORD", PASSWORD);
    let r = run(c);
    assert_eq!(r.code, 11, "prune from another pid namespace: {r}");
    r.stderr_has("locked")
        .stderr_has("another machine, boot or pid namespace")
        .stderr_has("repo unlock --remove-all");
    assert_eq!(t.objects("data"), packs, "prune deleted packs");
    create.signal(Signal::SIGCONT);
    assert!(
        create.wait(Duration::from_secs(120)).success(),
        "{}",
        create.output()
    );
    assert_eq!(snapshot_ids(t).len(), 2);
    assert!(check_clean(t));
    let id = snapshot_ids(t).pop().unwrap();
    assert!(restores_identical(t, &id, &f.new, "new"));
    eprintln!(
        "adversarial locks: pid namespace: prune refused (exit 11), packs deleted: 0, data lost: 0"
    );
}

/// A prune that runs, under the same host name and in the same pid
/// namespace, as `cmd` with `file` bind-mounted over `target`.
fn prune_with_bind(t: &TestRepo, file: &Path, target: &str) -> Run {
    let mut c = clean_command("unshare");
    c.arg("--mount")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "mount --bind \"$0\" {target} && exec \"$1\" -r \"$2\" prune"
        ))
        .arg(file)
        .arg(BIN)
        .arg(&t.repo)
        .env("REPO_PASSWORD", PASSWORD);
    run(c)
}

/// Two machine ids (and two boot ids) under one host name: a lock whose
/// process is gone here says nothing about the other machine, so only the
/// lock's age may make it stale there.
#[test]
fn lock_of_other_machine_is_not_judged_by_pid() {
    if !need_root("lock_of_other_machine_is_not_judged_by_pid") {
        return;
    }
    let f = fixture();
    let t = &f.t;
    t.ok(["forget", &f.old_id]);
    let packs = t.objects("data");
    // A holder killed without removing its lock: its pid is gone here.
    let mut holder = t.spawn(["lock", "--shared"], "holder");
    assert!(wait_until(Duration::from_secs(60), || !t
        .objects("locks")
        .is_empty()));
    holder.kill_and_reap();
    let other_machine = t.join("machine-id");
    fs::write(&other_machine, "0123456789abcdef0123456789abcdef\n").unwrap();
    let other_boot = t.join("boot-id");
    fs::write(&other_boot, "00000000-1111-2222-3333-444444444444\n").unwrap();
    let mut refused = 0;
    for (file, target) in [
        (&other_machine, "/etc/machine-id"),
        (&other_boot, "/proc/sys/kernel/random/boot_id"),
    ] {
        let r = prune_with_bind(t, file, target);
        assert_eq!(r.code, 11, "prune with another {target}: {r}");
        r.stderr_has("locked")
            .stderr_has("cannot tell whether its holder still runs");
        assert_eq!(t.objects("data"), packs, "prune deleted packs");
        refused += 1;
    }
    // On the holder's own machine and boot the dead pid proves it stale.
    t.ok(["prune"]);
    assert!(
        t.objects("data").len() < packs.len(),
        "prune deleted nothing"
    );
    assert!(check_clean(t));
    assert!(restores_identical(t, &f.keep_id, &f.keep, "keep"));
    eprintln!(
        "adversarial locks: other machine/boot under one host name: {refused} prunes refused, data lost: 0"
    );
}
