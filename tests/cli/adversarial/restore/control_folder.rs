//! `--delete` and a `.repo` folder that is not ours.

use super::*;

// Review: `--delete` and a `.repo` folder that is not ours.

#[test]
fn delete_leaves_a_foreign_control_folder_and_a_snapshot_control_folder_alone() {
    let t = TestRepo::new();
    t.init();
    // A checkout made by Google's `repo` has its own `.repo/`.
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    put(&src, ".repo/manifest.jsonl", "the user's own manifest");
    put(&src, ".repo/manifest.xml", "<manifest/>");
    t.create([&src]);
    let mut bad = Vec::new();
    // 1. The snapshot's `.repo` restored with --delete must not be
    //    overwritten by (or mixed with) our manifest, trash and archive.
    let target = t.join("target");
    put(&target, "stray.txt", "the user's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    let manifest = fs::read(target.join(".repo/manifest.jsonl")).ok();
    if r.code == 0 && manifest.as_deref() != Some(&b"the user's own manifest"[..]) {
        bad.push(format!(
            "the snapshot's .repo/manifest.jsonl was overwritten: {:?}\n{r}",
            manifest.map(|m| String::from_utf8_lossy(&m).into_owned())
        ));
    }
    if r.code != 0 {
        // Refused: it says how to go on, and that works.
        r.code(2).stderr_has("--exclude");
        assert!(
            target.join("stray.txt").exists(),
            "refused after removing: {r}"
        );
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "-y", "--exclude", ".repo"],
        ));
        r.success();
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha", "{r}");
        assert!(!target.join("stray.txt").exists(), "{r}");
        assert!(target.join(".repo/FORMAT").exists(), "{r}");
    }
    // 2. A target whose `.repo` belongs to another tool: refused, untouched.
    let src2 = t.join("src2");
    put(&src2, "b.txt", "beta");
    t.create([&src2]);
    let target2 = t.join("checkout");
    put(&target2, ".repo/manifest.xml", "<manifest/>");
    put(&target2, "stray.txt", "the user's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src2),
        &target2,
        &["--delete", "-y"],
    ));
    let mut left: Vec<PathBuf> = listing(&target2.join(".repo"));
    left.sort();
    if r.code == 0 || left != [PathBuf::from("manifest.xml")] {
        bad.push(format!("a foreign .repo got {left:?}\n{r}"));
    }
    if !target2.join("stray.txt").exists() && r.code != 0 {
        bad.push("refused, yet stray.txt was removed".into());
    }
    report("foreign .repo", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn delete_plan_shows_hostile_names_escaped() {
    let (t, src) = alpha_snapshot();
    let target = t.join("target");
    put(&target, "precious/db.sqlite", "root's data");
    // A user owning part of the target names a file so that the plan looks
    // like it removes nothing: a fake line, then escapes erasing lines.
    let hostile = <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
        b"x\n  (nothing else)\n\x1b[2A\x1b[2K\r\xff".to_vec(),
    );
    fs::write(target.join(&hostile), "theirs").unwrap();
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &["--delete"]));
    r.code(2);
    let mut bad = Vec::new();
    if r.stdout.contains('\x1b') || r.stdout.contains("\n  (nothing else)") {
        bad.push(format!("raw control characters in the plan:\n{r}"));
    }
    if !r.stdout.contains("precious/") {
        bad.push(format!("the plan does not name precious/:\n{r}"));
    }
    report("hostile names in the plan", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn a_user_swapping_the_first_name_of_a_hard_link_gets_no_name_in_roots_directory() {
    if !need_root("a_user_swapping_the_first_name_of_a_hard_link_gets_no_name_in_roots_directory") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "top.txt", "top");
    put(&src, "a/first", "root's job");
    fs::create_dir_all(src.join("sys")).unwrap();
    fs::set_permissions(src.join("sys"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::hard_link(src.join("a/first"), src.join("sys/second")).unwrap();
    t.create([&src]);
    let mut bad = Vec::new();
    for (n, swap_in) in ["file", "symlink"].iter().enumerate() {
        // The user owns the target and its directory a/ (the restore gives
        // a/ the snapshot's owner only at the very end).
        let target = t.join(format!("target{n}"));
        fs::create_dir_all(target.join("a")).unwrap();
        chown_tree(&target, NOBODY, NOBODY);
        std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
        let point = "restore-pack-written";
        let child = restore_paused(&t, &spec_of(&src), &target, &[], point);
        let first = target.join("a/first");
        let replace = match *swap_in {
            "file" => format!("printf 'nobody was here' > '{}'", first.display()),
            _ => format!("ln -s /tmp/nobodys '{}'", first.display()),
        };
        as_nobody(&format!(
            "mv '{0}' '{0}.moved' && {replace}",
            first.display()
        ));
        let (code, stderr) = resume(&t, child, point);
        assert!(matches!(code, Some(0) | Some(1)), "{code:?}\n{stderr}");
        let second = target.join("sys/second");
        if let Ok(md) = fs::symlink_metadata(&second) {
            let theirs = fs::symlink_metadata(&first).ok();
            if md.file_type().is_symlink() || theirs.is_some_and(|f| f.ino() == md.ino()) {
                bad.push(format!(
                    "{swap_in}: sys/second is the user's {} (uid {})\n{stderr}",
                    if md.file_type().is_symlink() {
                        "symlink"
                    } else {
                        "file"
                    },
                    md.uid()
                ));
            }
        }
        let _ = fs::remove_dir_all(pause_dir_of(&t, point));
    }
    report("hard link to a swapped first name", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

fn pause_dir_of(t: &TestRepo, point: &str) -> PathBuf {
    t.join(format!("pause-{point}"))
}

/// Unmounts a bind mount when dropped (also when the test fails).
struct BindMount(PathBuf);

impl BindMount {
    fn new(from: &Path, at: &Path) -> Option<Self> {
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| BindMount(at.to_path_buf()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn delete_refuses_a_target_that_reaches_the_repository_through_a_mount() {
    if !need_root("delete_refuses_a_target_that_reaches_the_repository_through_a_mount") {
        return;
    }
    // The repository is <tmp>/disk/repo; the target <tmp>/srv has
    // <tmp>/disk bind-mounted at srv/data/mnt, so the repository's own path
    // is not below the target, yet --delete would walk into it.
    let t = TestRepo::from_dir(tempfile::tempdir().unwrap());
    let disk = t.join("disk");
    fs::create_dir_all(&disk).unwrap();
    let t = TestRepo {
        repo: disk.join("repo"),
        ..t
    };
    t.init();
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    t.create([&src]);
    let before = walk_files(&t.repo).len();
    let mut trials = 0;
    for mnt in ["data/mnt", "mnt"] {
        let target = t.join(format!("srv-{trials}"));
        fs::create_dir_all(target.join(mnt)).unwrap();
        let Some(_mount) = BindMount::new(&disk, &target.join(mnt)) else {
            eprintln!("skipping: mount --bind is not permitted here");
            return;
        };
        let r = run(restore_cmd(
            &t,
            &spec_of(&src),
            &target,
            &["--delete", "--no-archive", "-y"],
        ));
        trials += 1;
        assert_eq!(
            walk_files(&t.repo).len(),
            before,
            "the repository lost files through {mnt}\n{r}"
        );
        r.code(2).stderr_has("repository");
    }
    t.ok(["check"]);
    report("delete over a mounted repository", trials, 0);
}

#[test]
fn an_identical_file_hard_linked_from_outside_the_target_is_replaced_not_chowned() {
    if !need_root("an_identical_file_hard_linked_from_outside_the_target_is_replaced_not_chowned") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    put(&src, "f.txt", "same content");
    set_mtime(&src.join("f.txt"), 1_500_000_000, 0);
    std::os::unix::fs::lchown(src.join("f.txt"), Some(1234), Some(1234)).unwrap();
    fs::set_permissions(src.join("f.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
    t.create([&src]);
    // nobody's file outside the target, hard-linked into it under the
    // snapshot's name, with the same content and mtime.
    let outside = t.join("outside");
    put(&outside, "f.txt", "same content");
    set_mtime(&outside.join("f.txt"), 1_500_000_000, 0);
    let target = t.join("target");
    fs::create_dir_all(&target).unwrap();
    fs::hard_link(outside.join("f.txt"), target.join("f.txt")).unwrap();
    chown_tree(&outside, NOBODY, NOBODY);
    chown_tree(&target, NOBODY, NOBODY);
    let before = fs::metadata(outside.join("f.txt")).unwrap();
    let r = run(restore_cmd(&t, &spec_of(&src), &target, &[]));
    r.success();
    let after = fs::metadata(outside.join("f.txt")).unwrap();
    let restored = fs::metadata(target.join("f.txt")).unwrap();
    let mut bad = Vec::new();
    if (after.uid(), after.mode()) != (before.uid(), before.mode()) {
        bad.push(format!(
            "the file outside became {}:{:o} (was {}:{:o})",
            after.uid(),
            after.mode() & 0o7777,
            before.uid(),
            before.mode() & 0o7777
        ));
    }
    assert_eq!(
        (restored.uid(), restored.mode() & 0o7777),
        (1234, 0o4755),
        "{r}"
    );
    report("identical file linked from outside", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}\n{r}");
}

#[test]
fn delete_ignores_a_manifest_another_user_planted_in_the_target() {
    if !need_root("delete_ignores_a_manifest_another_user_planted_in_the_target") {
        return;
    }
    let (t, src) = alpha_snapshot();
    // nobody owns the target and its (marked) control folder, and plants
    // a 1 GiB sparse manifest (64 GiB would exhaust root's memory).
    let target = t.join("target");
    put(
        &target,
        ".repo/FORMAT",
        "{\"format\":\"repo-control\",\"version\":1}\n",
    );
    let manifest = target.join(".repo/manifest.jsonl");
    let f = fs::File::create(&manifest).unwrap();
    use std::io::Write;
    (&f).write_all(b"{\"format\":\"repo-manifest\",\"version\":1,\"created\":\"x\"}\n")
        .unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    // Run and reap it with wait4, for its own peak resident size.
    let err = t.join("planted.stderr");
    let child = restore_cmd(&t, &spec_of(&src), &target, &["--delete", "-y"])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let (out, peak_kib) = wait_measured(child).unwrap();
    let _ = fs::remove_file(&manifest);
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    assert!(
        out.status.success(),
        "restore failed ({}): {stderr}",
        out.status
    );
    assert_eq!(
        fs::read(target.join("a.txt")).unwrap(),
        b"alpha",
        "{stderr}"
    );
    // A spawned child starts from this process's peak resident size (exec
    // keeps the larger of the old and the new image's), which in the one
    // test binary may be anything: only what the restore adds counts.
    let allowed_kib = own_peak_rss_kib() + 256 * 1024;
    let bad = u64::from(peak_kib > allowed_kib);
    report("planted manifest", 1, bad);
    let r = stderr;
    assert_eq!(
        bad, 0,
        "the restore read the planted manifest: {peak_kib} KiB resident, \
         {allowed_kib} KiB allowed\n{r}"
    );
}

#[test]
fn delete_with_json_or_quiet_still_names_what_it_would_remove() {
    let (t, src) = alpha_snapshot();
    let target = t.join("target");
    put(&target, "precious.db", "the user's");
    let mut bad = Vec::new();
    for flag in ["--json", "--quiet"] {
        let mut c = t.cmd();
        c.arg(flag);
        c.arg("restore")
            .arg(spec_of(&src))
            .arg("--target")
            .arg(&target)
            .arg("--delete")
            .stdin(Stdio::null());
        let r = run(c);
        r.code(2);
        // The refusal says "listed above": the list must be somewhere.
        if !format!("{}{}", r.stdout, r.stderr).contains("precious.db") {
            bad.push(format!("{flag}: the entries to remove are not named\n{r}"));
        }
        if flag == "--json" && !r.stdout.trim().is_empty() {
            bad.push(format!("{flag}: text on stdout\n{r}"));
        }
    }
    assert!(target.join("precious.db").exists());
    report("delete plan with --json/--quiet", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn restore_refuses_a_target_inside_the_repository_even_without_delete() {
    let t = TestRepo::new();
    t.init();
    // A folder with a file named like a repository object.
    let src = t.join("proj");
    put(&src, "config", "the project's own config");
    put(&src, "keys/k", "the project's keys");
    t.create([&src]);
    let mut bad = Vec::new();
    for target in [t.repo.clone(), t.repo.join("restored"), t.repo.join("keys")] {
        let r = run(restore_cmd(&t, &spec_of(&src), &target, &[]));
        if r.code != 2 {
            bad.push(format!("restored into {}\n{r}", target.display()));
        }
        let c = t.run(["check"]);
        if c.code != 0 {
            bad.push(format!(
                "the repository is damaged after restoring into {}\n{c}",
                target.display()
            ));
            break;
        }
    }
    report("restore into the repository", 3, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn delete_that_cannot_remove_one_entry_still_restores_the_rest() {
    if !need_root("delete_that_cannot_remove_one_entry_still_restores_the_rest") {
        return;
    }
    let Some(sp) = setpriv() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv is needed under CI"
        );
        eprintln!("skipping: setpriv is not installed");
        return;
    };
    // nobody restores into its own target, which holds a directory of
    // root's that nobody can neither remove nor move.
    let mut t = TestRepo::new();
    t.prefix = nobody_prefix(sp);
    let src = t.join("src");
    put(&src, "a.txt", "alpha");
    put(&src, "d/b.txt", "beta");
    chown_tree(t.path(), NOBODY, NOBODY);
    t.init();
    t.create([&src]);
    let target = t.join("target");
    put(&target, "stray.txt", "not in the snapshot");
    chown_tree(&target, NOBODY, NOBODY);
    put(&target, "roots/file", "root's");
    let r = run(restore_cmd(
        &t,
        &spec_of(&src),
        &target,
        &["--delete", "-y"],
    ));
    let mut bad = Vec::new();
    if r.code != 1 || !r.stderr.contains("roots") {
        bad.push(format!(
            "the failed removal is not reported as a problem\n{r}"
        ));
    }
    for (f, body) in [("a.txt", "alpha"), ("d/b.txt", "beta")] {
        if fs::read(target.join(f)).ok().as_deref() != Some(body.as_bytes()) {
            bad.push(format!("{f} was not restored\n{r}"));
        }
    }
    if target.join("stray.txt").exists() {
        bad.push(format!("stray.txt was kept\n{r}"));
    }
    assert_eq!(fs::read(target.join("roots/file")).unwrap(), b"root's");
    report("delete with an unremovable entry", 1, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
}
