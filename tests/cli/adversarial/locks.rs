//! Adversarial part: locks. A backup suspended (SIGSTOP, as a closed laptop
//! lid or a paused VM) longer than the stale period while another process
//! prunes, a prune suspended while a backup runs, lock holders in other pid
//! namespaces and on "other machines" under the same host name, a lock
//! removed under its holder, and a garbage exclusive claim.
//!
//! The stale period is shortened with `REPO_TEST_STALE_SECS`; races are
//! opened with the binary's pause points (`REPO_TEST_PAUSE`): `create-locked`
//! (create, right after taking its lock), `save-index` / `save-snapshot`
//! (before the lock check of that write), `…-checked` (between the check
//! and the write), `…-written` (between the write and the check after it),
//! and `prune-delete` (prune, before its lock check ahead of deleting).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

/// The shortened stale period of the suspension trials, in seconds.
const STALE: u64 = 4;

/// A repository with two snapshots: `keep` (must survive everything) and
/// `old` (forgotten during the trials, so prune deletes its packs), and a
/// third source `new` holding a copy of `old`'s files (so a backup of it
/// deduplicates against the packs prune deletes) and files of its own.
struct Fixture {
    t: TestRepo,
    keep: PathBuf,
    new: PathBuf,
    keep_id: String,
    old_id: String,
}

fn fixture() -> Fixture {
    let t = TestRepo::new();
    t.init();
    let keep = t.join("keep");
    simple_tree(&keep, 100);
    let old = t.join("old");
    simple_tree(&old, 200);
    let new = t.join("new");
    simple_tree(&new.join("copy"), 200);
    simple_tree(&new.join("own"), 300);
    let id = |v: serde_json::Value| v["snapshot"].as_str().expect("snapshot id").to_string();
    let keep_id = id(t.create([&keep]));
    let old_id = id(t.create([&old]));
    Fixture {
        t,
        keep,
        new,
        keep_id,
        old_id,
    }
}

/// `t.cmd()` with the shortened stale period.
fn cmd(t: &TestRepo, stale: Option<u64>) -> Command {
    let mut c = t.cmd();
    if let Some(s) = stale {
        c.env("REPO_TEST_STALE_SECS", s.to_string());
    }
    c
}

/// Starts `args` in the background, to stop itself at pause point `point`;
/// returns once it has stopped there.
fn paused(t: &TestRepo, args: &[&str], point: &str, stale: Option<u64>, name: &str) -> Background {
    let dir = t.join(format!("pause-{name}"));
    fs::create_dir_all(&dir).unwrap();
    let stdout = t.join(format!("{name}.stdout"));
    let stderr = t.join(format!("{name}.stderr"));
    let mut c = cmd(t, stale);
    c.args(args)
        .env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &dir)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    let mut bg = Background {
        child: Some(c.spawn().expect("spawn")),
        stdout,
        stderr,
    };
    let pid = bg.pid().as_raw();
    let stopped = wait_until(Duration::from_secs(120), || {
        crate::support::pause::paused_at(&dir, point, pid)
    });
    if !stopped {
        let status = bg.exited();
        panic!(
            "{args:?} never stopped at pause point {point} (exit: {status:?})\n{}",
            bg.output()
        );
    }
    bg
}

/// Lets the stale period pass (`periods` times) for a stopped holder: its
/// last refresh was before it stopped, so after this its lock is stale by age.
fn outlive_stale_periods(periods: u64) {
    std::thread::sleep(Duration::from_millis(periods * STALE * 1000 + 1200));
}

fn outlive_stale_period() {
    outlive_stale_periods(1)
}

fn snapshot_ids(t: &TestRepo) -> Vec<String> {
    t.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Restores `id` and compares it with `src`; false on any difference or failure.
fn restores_identical(t: &TestRepo, id: &str, src: &Path, name: &str) -> bool {
    let target = t.join(format!("restore-{name}"));
    let mut c = t.cmd();
    c.arg("restore").arg(id).arg("--target").arg(&target);
    let r = run(c);
    if r.code != 0 {
        eprintln!("restore of {id} failed: {r}");
        return false;
    }
    let ok = compare_trees(src, &restored(&target, src), Cmp::content_only()).is_ok();
    let _ = fs::remove_dir_all(&target);
    ok
}

/// `check --read-data` passes.
fn check_clean(t: &TestRepo) -> bool {
    let r = t.run(["check", "--read-data"]);
    if r.code != 0 {
        eprintln!("check --read-data failed: {r}");
    }
    r.code == 0
}

/// Root is needed for namespaces and bind mounts: skip loudly, except under CI.
fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (namespaces, bind mounts) and CI=true"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// How one trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The resumed side failed, without a snapshot or without deleting.
    FailedSafely,
    /// The resumed side finished, and its result is complete.
    Complete,
    /// Some snapshot cannot be restored, or `check --read-data` fails.
    Lost,
}

/// One suspended-backup trial: `create` stops at `point`, outlives the stale
/// period (`periods` times: after two, prune no longer keeps its young
/// unindexed packs), `forget old --prune` runs (and may judge the backup's lock
/// stale), the backup resumes. It must fail without a snapshot or leave a
/// complete one; every other snapshot must stay restorable.
fn suspended_create_trial(point: &str, periods: u64) -> Outcome {
    let f = fixture();
    let t = &f.t;
    let new = f.new.to_str().unwrap();
    let mut create = paused(t, &["create", "--json", new], point, Some(STALE), "create");
    outlive_stale_periods(periods);
    let mut c = cmd(t, Some(STALE));
    c.args(["forget", &f.old_id, "--prune", "--max-unused", "0"]);
    let p = run(c);
    assert_eq!(
        p.code, 0,
        "prune ignores the stale lock of a suspended backup: {p}"
    );
    if point == "save-index" && periods == 1 {
        // Its packs are stored, not yet indexed, and younger than the grace period.
        assert!(
            p.stdout.contains("unindexed pack(s) younger than"),
            "prune kept no young unindexed pack: {p}"
        );
    }
    create.signal(Signal::SIGCONT);
    let status = create.wait(Duration::from_secs(120));
    let out = create.output();
    let snaps = snapshot_ids(t);
    let mut lost = false;
    let mut outcome = Outcome::FailedSafely;
    if status.success() {
        let report: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&create.stdout).unwrap()).unwrap();
        let id = report["snapshot"]
            .as_str()
            .expect("snapshot id")
            .to_string();
        assert!(
            snaps.contains(&id),
            "{point}: reported snapshot missing\n{out}"
        );
        if restores_identical(t, &id, &f.new, "new") {
            outcome = Outcome::Complete;
        } else {
            eprintln!("{point}: the resumed backup's snapshot {id} lost data\n{out}");
            lost = true;
        }
    } else {
        assert_eq!(
            snaps,
            vec![f.keep_id.clone()],
            "{point}: a failed backup left a snapshot\n{out}"
        );
        assert!(
            out.contains("no longer provably holds its repository lock"),
            "{point}: {out}"
        );
    }
    if !check_clean(t) || !restores_identical(t, &f.keep_id, &f.keep, "keep") {
        lost = true;
    }
    if lost { Outcome::Lost } else { outcome }
}

/// `forget old --prune` stops just before deleting, outlives the stale
/// period; a backup that deduplicates against the packs prune is about to
/// delete runs meanwhile; prune resumes and must not delete them.
fn suspended_prune_trial() -> Outcome {
    let f = fixture();
    let t = &f.t;
    let mut prune = paused(
        t,
        &["forget", &f.old_id, "--prune", "--max-unused", "0"],
        "prune-delete",
        Some(STALE),
        "prune",
    );
    outlive_stale_period();
    let mut c = cmd(t, Some(STALE));
    c.args(["create", "--json"]).arg(&f.new);
    let r = run(c);
    assert_eq!(
        r.code, 0,
        "a backup ignores the stale lock of a suspended prune: {r}"
    );
    let id = r.json()["snapshot"].as_str().unwrap().to_string();
    prune.signal(Signal::SIGCONT);
    let status = prune.wait(Duration::from_secs(120));
    let mut outcome = Outcome::Complete;
    if !status.success() {
        assert!(
            prune
                .output()
                .contains("no longer provably holds its repository lock"),
            "{}",
            prune.output()
        );
        outcome = Outcome::FailedSafely;
    }
    if !check_clean(t)
        || !restores_identical(t, &id, &f.new, "new")
        || !restores_identical(t, &f.keep_id, &f.keep, "keep")
    {
        eprintln!("prune-delete: data lost\n{}", prune.output());
        outcome = Outcome::Lost;
    }
    outcome
}

/// No interleaving of a suspended backup (at each of its pause points) or a
/// suspended prune with the other side loses data. Trials run three at a
/// time: they mostly wait for the stale period to pass.
#[test]
fn suspended_writer_and_prune_never_lose_data() {
    let trials: Vec<(&str, u64)> = vec![
        ("create-locked", 1),
        ("save-index", 1),
        ("save-index-checked", 1),
        ("save-index-checked", 2),
        ("save-index-written", 2),
        ("save-snapshot", 1),
        ("save-snapshot-checked", 2),
        ("save-snapshot-written", 1),
        ("prune-delete", 1),
    ];
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for group in trials.chunks(3) {
        std::thread::scope(|scope| {
            let running: Vec<_> = group
                .iter()
                .map(|&(point, periods)| {
                    let h = scope.spawn(move || match point {
                        "prune-delete" => suspended_prune_trial(),
                        _ => suspended_create_trial(point, periods),
                    });
                    (format!("{point} x{periods}"), h)
                })
                .collect();
            for (name, h) in running {
                let outcome = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                outcomes.push((name, outcome));
            }
        });
    }
    let count = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    eprintln!(
        "adversarial locks: {} suspension trials ({} failed without a snapshot or deletion, {} completed), data lost: {}",
        outcomes.len(),
        count(Outcome::FailedSafely),
        count(Outcome::Complete),
        count(Outcome::Lost)
    );
    let lost: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Lost)
        .map(|(n, _)| n)
        .collect();
    assert!(lost.is_empty(), "data lost in trial(s) {lost:?}");
    assert_eq!(outcomes.len(), 9);
}

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

/// Waits until the process that wrote `marker` (a pause point's marker file)
/// is stopped there; returns its pid.
fn stopped_at(marker: &Path) -> i32 {
    let mut pid = 0;
    let ok = wait_until(Duration::from_secs(120), || {
        pid = fs::read_to_string(marker)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid > 0 && crate::support::pause::is_stopped(pid)
    });
    assert!(ok, "no process stopped at {}", marker.display());
    pid
}

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
        let id =
            serde_json::from_str::<serde_json::Value>(&fs::read_to_string(&create.stdout).unwrap())
                .unwrap()["snapshot"]
                .as_str()
                .unwrap()
                .to_string();
        restores_identical(t, &id, &f.new, "new")
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
        let id =
            serde_json::from_str::<serde_json::Value>(&fs::read_to_string(&create.stdout).unwrap())
                .unwrap()["snapshot"]
                .as_str()
                .unwrap()
                .to_string();
        restores_identical(t, &id, &f.new, "new")
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
