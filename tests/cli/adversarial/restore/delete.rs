//! --delete and the target: an excluded directory protects what is below
//! it, the repository read is never deleted, an existing target keeps its
//! owner, mode and times.

use super::*;

// Item 4: an excluded directory protects everything below it.

#[test]
fn delete_keeps_everything_below_an_excluded_directory() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("s");
    put(&src, "a.txt", "alpha");
    put(&src, "b/in-snapshot.dat", "from the snapshot");
    t.create([&src]);
    let mut lost = 0;
    let mut trials = 0;
    for (n, pattern) in ["b", "b/", "b/**", &format!("{}/b", src.display())]
        .iter()
        .enumerate()
    {
        let target = t.join(format!("target{n}"));
        put(&target, "b/keep.dat", "the user's own file");
        put(&target, "b/deeper/also.dat", "the user's own too");
        put(&target, "stray.txt", "not in the snapshot, not excluded");
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y", "--exclude", pattern],
        ));
        r.success();
        trials += 1;
        for kept in ["b/keep.dat", "b/deeper/also.dat"] {
            if !target.join(kept).exists() {
                lost += 1;
                eprintln!("--exclude {pattern}: {kept} was deleted\n{r}");
            }
        }
        assert!(
            !target.join("stray.txt").exists(),
            "--exclude {pattern}: stray.txt outside the exclusion was kept\n{r}"
        );
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    }
    report("delete --exclude DIR", trials, lost);
    assert_eq!(lost, 0, "files below an excluded directory were deleted");
}

// Item 5: --delete never deletes the repository it reads, and asks first.

#[test]
fn delete_refuses_a_target_that_contains_the_repository() {
    let (t, src) = alpha_snapshot();
    let before = walk_files(&t.repo).len();
    // The repository is <tmp>/repo: both <tmp> and the repository itself hold it.
    let mut trials = 0;
    for target in [t.path().to_path_buf(), t.repo.clone()] {
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y"],
        ));
        r.code(2).stderr_has("contains the repository");
        trials += 1;
        assert_eq!(walk_files(&t.repo).len(), before, "{r}");
    }
    // Through a symlinked path to the same directory as well.
    let link = t.join("link");
    std::os::unix::fs::symlink(t.path(), &link).unwrap();
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &link,
        &["--delete", "--no-archive", "-y"],
    ));
    r.code(2).stderr_has("contains the repository");
    trials += 1;
    t.ok(["check"]);
    report("delete over the repository", trials, 0);
}

#[test]
fn delete_asks_before_removing_and_needs_yes_without_a_terminal() {
    let (t, src) = alpha_snapshot();
    let target = t.join("target");
    put(&target, "mine.txt", "the user's");
    // No terminal and no -y: nothing is removed.
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.code(2).stderr_has("-y");
    assert!(target.join("mine.txt").exists(), "{r}");
    // The plan names what would go.
    r.stdout_has("mine.txt");
    // With -y it goes (to the trash).
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    r.success();
    assert!(!target.join("mine.txt").exists(), "{r}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    // Nothing to remove: no question.
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.success();
    report("delete confirmation", 3, 0);
}

/// Runs `restore --delete` under script(1), so it has a terminal, answering `answer`.
fn restore_on_a_terminal(t: &TestRepo, src: &Path, target: &Path, answer: &str) -> (bool, String) {
    let cmd = format!(
        "REPO_PASSWORD='{PASSWORD}' '{BIN}' -r '{}' restore '{}' --target '{}' --delete",
        t.repo.display(),
        spec_of(src),
        target.display()
    );
    let mut child = clean_command("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), out)
}

#[test]
fn delete_on_a_terminal_removes_only_after_yes() {
    let (t, src) = alpha_snapshot();
    let target = t.join("target");
    put(&target, "mine.txt", "the user's");
    let (ok, out) = restore_on_a_terminal(&t, &src, &target, "n\n");
    assert!(!ok, "declined, yet it succeeded: {out}");
    assert!(
        out.contains("mine.txt") && out.contains("go ahead? [y/N]"),
        "{out}"
    );
    assert!(
        target.join("mine.txt").exists(),
        "removed without a yes: {out}"
    );
    assert!(
        !target.join("a.txt").exists(),
        "restored without a yes: {out}"
    );
    let (ok, out) = restore_on_a_terminal(&t, &src, &target, "y\n");
    assert!(ok, "{out}");
    assert!(!target.join("mine.txt").exists(), "{out}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    report("delete on a terminal", 2, 0);
}

// Item 10: an existing target keeps its owner, mode and times.

#[test]
fn existing_target_keeps_its_owner_mode_and_times() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("home/alice");
    put(&src, "notes.txt", "alice's");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o1777)).unwrap();
    set_mtime(&src, 1_000_000_000, 0);
    if is_root() {
        std::os::unix::fs::lchown(&src, Some(1234), Some(1234)).unwrap();
    }
    t.create([&src]);
    let target = t.join("srv/existing");
    put(&target, "old.txt", "already there");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o750)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let before = fs::metadata(&target).unwrap();
    t.restore(&spec_of(&src), &target, &[]);
    let after = fs::metadata(&target).unwrap();
    let mut changed = Vec::new();
    if after.mode() & 0o7777 != 0o750 {
        changed.push(format!("mode {:o}", after.mode() & 0o7777));
    }
    if (after.uid(), after.gid()) != (before.uid(), before.gid()) {
        changed.push(format!("owner {}:{}", after.uid(), after.gid()));
    }
    if after.mtime() < before.mtime() {
        changed.push(format!("mtime set back to {}", after.mtime()));
    }
    assert_eq!(fs::read(target.join("notes.txt")).unwrap(), b"alice's");
    // A target the restore creates gets the snapshot's metadata.
    let fresh = t.join("srv/fresh");
    t.restore(&spec_of(&src), &fresh, &[]);
    let md = fs::metadata(&fresh).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        0o1777,
        "a new target gets the recorded mode"
    );
    assert_eq!(
        md.mtime(),
        1_000_000_000,
        "a new target gets the recorded mtime"
    );
    if is_root() {
        assert_eq!(md.uid(), 1234, "a new target gets the recorded owner");
    }
    report("existing target", 2, changed.len() as u64);
    assert!(
        changed.is_empty(),
        "the existing target changed: {changed:?}"
    );
}
