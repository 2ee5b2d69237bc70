//! A user racing a root restore over a target they own.

use super::*;

// Item 9: a user racing a root restore over a target they own.

struct RaceOutcome {
    written_outside: Vec<PathBuf>,
    changed_outside: Vec<String>,
}

/// Restores `src` as root over `target` (owned by nobody); at pause point
/// `point` nobody swaps `target/d` for a symlink to `outside` (a root-only
/// directory holding `victim.txt`).
/// One race: where the restore stops, which directory the user swaps, and
/// how the restore runs.
struct Race<'a> {
    name: &'a str,
    point: &'a str,
    /// The directory (relative to the target) swapped for a symlink.
    swapped: &'a str,
    extra: &'a [&'a str],
    /// Entries already in the target before the restore (relative paths).
    existing: &'a [&'a str],
    /// A file descriptor limit for the restore (`ulimit -n`), so that
    /// directories are reopened from their kept ancestors instead of kept.
    fd_limit: Option<u32>,
}

#[allow(clippy::too_many_lines)] // one race, staged step by step
fn race(t: &TestRepo, src: &Path, r: &Race) -> RaceOutcome {
    let (name, point) = (r.name, r.point);
    let target = t.join(format!("target-{name}"));
    fs::create_dir_all(&target).unwrap();
    for e in r.existing {
        // `.repo/FORMAT` is our control folder's marker (a `.repo` without
        // it belongs to somebody else, and `--delete` refuses it).
        let body = if e.ends_with("/FORMAT") {
            "{\"format\":\"repo-control\",\"version\":1}\n"
        } else {
            "already in the target"
        };
        put(&target, e, body);
    }
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let outside = t.join(format!("root-only-{name}"));
    fs::create_dir_all(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    // Same names as the snapshot's d/, so a path-based chown/chmod/truncate would hit them.
    let victims = ["victim.txt", "empty.txt", "stray.txt"];
    for v in victims {
        fs::write(outside.join(v), "root's secret").unwrap();
        fs::set_permissions(outside.join(v), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let stat = |p: &Path| {
        fs::symlink_metadata(p)
            .ok()
            .map(|md| (md.mode(), md.uid(), md.gid(), md.len(), md.mtime()))
    };
    let mut watched: Vec<PathBuf> = victims.iter().map(|v| outside.join(v)).collect();
    watched.push(outside.clone());
    let before: Vec<_> = watched.iter().map(|p| (p.clone(), stat(p))).collect();
    let pause_dir = t.join(format!("pause-{name}"));
    fs::create_dir_all(&pause_dir).unwrap();
    let mut c = t.cmd();
    if r.name == "reopen" {
        // One pack at a time, so packs after the pause reopen the file.
        c.args(["--connections", "1"]);
    }
    c.arg("restore")
        .arg(spec_of(src))
        .arg("--target")
        .arg(&target)
        .args(r.extra)
        .stdin(Stdio::null());
    if let Some(n) = r.fd_limit {
        let mut args = vec![std::ffi::OsString::from(BIN)];
        args.extend(c.get_args().map(|a| a.to_os_string()));
        let mut sh = clean_command("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .args(args)
            .env("REPO_PASSWORD", PASSWORD)
            .current_dir(t.path())
            .stdin(Stdio::null());
        c = sh;
    }
    c.env("REPO_TEST_PAUSE", point)
        .env("REPO_TEST_PAUSE_DIR", &pause_dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(t.join(format!("{name}.stderr"))).unwrap());
    let mut child = c.spawn().expect("spawn restore");
    let marker = pause_dir.join(point);
    let paused = wait_until(Duration::from_secs(120), || marker.exists());
    if !paused {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "restore never reached pause point {point}: {}",
            fs::read_to_string(t.join(format!("{name}.stderr"))).unwrap_or_default()
        );
    }
    // Wait until the process is really stopped (the marker is written just before).
    let pid = child.id();
    assert!(
        wait_until(Duration::from_secs(10), || {
            crate::support::pause::is_stopped(pid)
        }),
        "restore did not stop at {point}"
    );
    let d = target.join(r.swapped);
    // A directory is swapped for a symlink to the root-only directory, a
    // file for a symlink to the root-only file of the same name.
    let link_to = if r.swapped.ends_with(".txt") {
        outside.join(Path::new(r.swapped).file_name().unwrap())
    } else {
        outside.clone()
    };
    as_nobody(&format!(
        "mv '{}' '{}' && ln -s '{}' '{}'",
        d.display(),
        target.join(format!("{}.moved", r.swapped)).display(),
        link_to.display(),
        d.display()
    ));
    let (status, stderr) = resume(t, child, name);
    assert!(
        matches!(status, Some(0) | Some(1)),
        "restore at {point}: {status:?}\n{stderr}"
    );
    eprintln!("race {name}: restore exit {status:?}; {}", stderr.trim());
    assert!(
        !stderr.contains("Too many open files"),
        "restore ran out of descriptors: {stderr}"
    );
    if point != "restore-before-removals" {
        assert_eq!(
            fs::read(target.join("top.txt")).ok().as_deref(),
            Some(&b"top"[..]),
            "restore at {point} did not restore the rest: {stderr}"
        );
    }
    let written_outside: Vec<PathBuf> = listing(&outside)
        .into_iter()
        .filter(|p| !victims.iter().any(|v| p == Path::new(v)))
        .collect();
    let mut changed_outside = Vec::new();
    for (p, was) in before {
        let now = stat(&p);
        if now != was {
            changed_outside.push(format!(
                "{} (mode, uid, gid, size, mtime) {now:?} (was {was:?})",
                p.display()
            ));
        }
    }
    for v in victims {
        if fs::read(outside.join(v)).ok().as_deref() != Some(&b"root's secret"[..]) {
            changed_outside.push(format!("{v}'s content"));
        }
    }
    RaceOutcome {
        written_outside,
        changed_outside,
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one race, staged step by step
fn a_user_swapping_a_directory_for_a_symlink_cannot_steer_a_root_restore() {
    if !need_root("a_user_swapping_a_directory_for_a_symlink_cannot_steer_a_root_restore") {
        return;
    }
    let t = TestRepo::new();
    t.ok(["init", "--pack-size", "1048576"]);
    let src = t.join("src");
    put(&src, "top.txt", "top");
    // Several packs' worth (the repository's packs are 1 MiB), so it is
    // written by several packs and reopened between them.
    fs::create_dir_all(src.join("d")).unwrap();
    write_random(&src.join("d/victim.txt"), 4 << 20, 9);
    put(&src, "d/new.txt", "a new file");
    put(&src, "d/e/deep.txt", "deeper");
    put(&src, "d/empty.txt", "");
    std::os::unix::fs::symlink("new.txt", src.join("d/link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("d/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut trials = 0;
    let mut bad = Vec::new();
    let pads: Vec<String> = (0..40).map(|i| format!("pad{i:02}/x")).collect();
    for p in &pads {
        put(&src, p, "padding");
    }
    put(&src, "x/d/victim.txt", "deep victim");
    put(&src, "x/d/empty.txt", "");
    chown_tree(&src, 1234, 1234);
    fs::set_permissions(src.join("d/victim.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    t.create([&src]);
    let races = [
        Race {
            name: "dirs",
            point: "restore-dirs-created",
            swapped: "d",
            extra: &[],
            existing: &[],
            fd_limit: None,
        },
        Race {
            name: "meta",
            point: "restore-before-metadata",
            swapped: "d",
            extra: &[],
            existing: &[],
            fd_limit: None,
        },
        // Too few descriptors to keep every directory: x/d is reopened from
        // x by name each time, and the swap must still not redirect it.
        Race {
            name: "reopened",
            point: "restore-dirs-created",
            swapped: "x/d",
            extra: &[],
            // x is the user's own directory, so they may rename in it.
            existing: &["x/theirs.txt"],
            fd_limit: Some(64),
        },
        Race {
            name: "reopened-meta",
            point: "restore-before-metadata",
            swapped: "x/d",
            extra: &[],
            // x is the user's own directory, so they may rename in it.
            existing: &["x/theirs.txt"],
            fd_limit: Some(64),
        },
        // --delete: the stray file is removed relative to d's verified
        // descriptor, never as a path through the symlink.
        Race {
            name: "delete",
            point: "restore-before-removals",
            swapped: "d",
            extra: &["--delete", "--no-archive", "-y"],
            existing: &["d/stray.txt", "d/victim.txt"],
            fd_limit: None,
        },
        Race {
            name: "delete-archive",
            point: "restore-before-removals",
            swapped: "d",
            extra: &["--delete", "-y"],
            existing: &["d/stray.txt", "d/victim.txt"],
            fd_limit: None,
        },
        // A file written by several packs: between two packs the user swaps
        // it for a symlink to a root-only file; the next pack must not write
        // through it (it reopens without following, and checks the inode).
        Race {
            name: "reopen",
            point: "restore-pack-written",
            swapped: "d/victim.txt",
            extra: &[],
            existing: &["d/theirs.txt"],
            fd_limit: None,
        },
        // The target's manifest is written through the target's descriptor:
        // a `.repo` swapped for a symlink gets nothing written through it.
        Race {
            name: "manifest",
            point: "restore-before-metadata",
            swapped: ".repo",
            extra: &["--delete", "--no-archive", "-y"],
            existing: &[".repo/FORMAT", ".repo/theirs.txt"],
            fd_limit: None,
        },
    ];
    for r in &races {
        let point = r.name;
        let o = race(&t, &src, r);
        trials += 1;
        for p in &o.written_outside {
            bad.push(format!("{point}: wrote {} outside the target", p.display()));
        }
        for c in &o.changed_outside {
            bad.push(format!("{point}: changed {c} outside the target"));
        }
    }
    report("symlink swap race", trials, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}");
    let _ = OsStr::new("");
}
