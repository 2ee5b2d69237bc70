//! A side mounted inside a side is never walked, and a mount does not look
//! like a deletion to sync.

use super::*;

/// Runs the binary with `args` in a mount namespace of its own where
/// `from` is bind-mounted on `on` (so the mount ends with the run and never
/// outlives a failed test); `None` when mounts are not permitted here.
fn repo_with_bind(from: &Path, on: &Path, args: &[&str]) -> Option<Run> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "root (bind mounts) is needed under CI"
        );
        eprintln!("SKIPPED: bind-mount tests need root");
        return None;
    }
    let mut c = clean_command("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" \"$1\" || exit 99; shift; exec \"$@\"")
        .arg(from)
        .arg(on)
        .arg(BIN)
        .args(args);
    let r = run_within(c, Duration::from_secs(60));
    if r.code == 99 {
        assert!(
            std::env::var_os("CI").is_none(),
            "mount --bind must work under CI\n{r}"
        );
        eprintln!("SKIPPED: mount --bind is not permitted here\n{r}");
        return None;
    }
    Some(r)
}

/// One side bind-mounted inside the other (or inside itself): the walk
/// must not take that folder for content. Without the guard a mirror finds
/// `b/sub` (the source itself) missing from the source and deletes what is
/// in it, the source's files; a sync copies the source into itself. The
/// folder is reported (exit 3), nothing in it or above it is touched, and
/// the rest of the run goes on.
#[test]
fn a_side_mounted_inside_a_side_is_never_walked() {
    // (what is mounted, where, command): a = source, b = destination.
    // (what is mounted, where, command, a flag, message): a is the source,
    // b the destination; deletions go to .repo/trash unless --no-archive
    // (`--exclude=/none` leaves nothing out).
    let cases: [(&str, &str, &str, &str, &str); 9] = [
        ("a", "b/sub", "mirror", "--no-archive", "is the source"),
        ("a", "b/sub", "mirror", "--exclude=/none", "is the source"),
        ("a", "b/sub", "sync", "--no-archive", "is the first side"),
        ("b", "a/sub", "mirror", "--no-archive", "is the destination"),
        (
            "b",
            "a/sub",
            "sync",
            "--exclude=/none",
            "is the second side",
        ),
        ("a", "a/sub", "mirror", "--no-archive", "is the source"),
        ("a", "b/deep/sub", "mirror", "--no-archive", "is the source"),
        // A folder of the source, not its top, mounted in the destination.
        (
            "a/d",
            "b/sub",
            "mirror",
            "--no-archive",
            "on the destination and",
        ),
        (
            "a/d",
            "b/sub",
            "sync",
            "--no-archive",
            "on the second side and",
        ),
    ];
    let mut trials = 0;
    let mut lost_total = 0;
    for (from, on, cmd, flag, says) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        put_file(&a, "keep.txt", "a's only copy", T0);
        put_file(&a, "d/inner.txt", "a's inner file", T0);
        put_file(&b, "old.txt", "b's stale file", T0);
        fs::create_dir_all(tmp.path().join(on)).unwrap();
        let before_a = tree(&a);
        let Some(r) = repo_with_bind(
            &tmp.path().join(from),
            &tmp.path().join(on),
            &[cmd, s(&a), s(&b), "-y", flag],
        ) else {
            return;
        };
        trials += 1;
        let after_a = tree(&a);
        let mut lost = 0;
        for (k, v) in &before_a {
            if after_a.get(k) != Some(v) && !(on.starts_with("a/") && k.starts_with("sub/")) {
                lost += 1;
            }
        }
        // Nothing new appears in a, but b's own file when syncing (no copy
        // of a into itself below the mount point).
        let grown = after_a
            .keys()
            .filter(|k| !(before_a.contains_key(*k) || (cmd == "sync" && *k == "old.txt")))
            .count();
        // Nor does b get a copy of a side under the mount point's name
        // (found below it once the mount is gone).
        let rel = on.split_once('/').map_or("", |(_, r)| r);
        let nested = tree(&b)
            .keys()
            .filter(|k| k.starts_with(&format!("{rel}/")))
            .count();
        lost_total += lost;
        eprintln!(
            "{cmd} {flag} with {from} on {on}: exit {}, changed in a: {lost}, new in a: {grown}, \
             nested in b: {nested}",
            r.code
        );
        assert_eq!(
            nested, 0,
            "{cmd} {flag} {from} on {on}: a side copied into b\n{r}"
        );
        assert_eq!(
            lost, 0,
            "{cmd} {flag} {from} on {on}: a's files changed\n{r}"
        );
        assert_eq!(
            grown, 0,
            "{cmd} {flag} {from} on {on}: files appeared in a\n{r}"
        );
        r.code(3);
        r.stderr_has(&format!("{} {says}", tmp.path().join(on).display()));
        r.stderr_has("unmount it");
        if cmd == "mirror" && from.starts_with('a') {
            // The rest of the run went on: b is a copy of a (mount point aside).
            assert_eq!(
                read(&b, "keep.txt").as_deref(),
                Some("a's only copy"),
                "{r}"
            );
            assert_eq!(read(&b, "old.txt"), None, "{r}");
        }
    }
    eprintln!(
        "adversarial plain: sides mounted inside sides: {trials} trials, data lost: {lost_total}"
    );
    assert_eq!(lost_total, 0);
}

/// A sync with history, then the first side mounted over the second's
/// `sub` (hiding what `sub` holds): `sub` must not look deleted (which would
/// delete the first side's copy) nor changed, and once the mount is gone
/// the next run finds nothing to do.
#[test]
fn a_mount_does_not_look_like_a_deletion_to_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "top.txt", "top", T0);
    put_file(&a, "sub/mine.txt", "in sub", T0);
    fs::create_dir_all(&b).unwrap();
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    assert_eq!(read(&b, "sub/mine.txt").as_deref(), Some("in sub"));
    let before = present(&[&a, &b]);
    let Some(r) = repo_with_bind(&a, &b.join("sub"), &["sync", s(&a), s(&b), "-y"]) else {
        return;
    };
    let after = repo(&["sync", s(&a), s(&b), "-y"]);
    let lost = lost(&before, &[&a, &b]);
    let (ta, tb) = (tree(&a), tree(&b));
    eprintln!(
        "adversarial plain: sync across a mount: exit {}, then {}, data lost: {}",
        r.code,
        after.code,
        lost.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}\n{r}\n{after}");
    r.code(3);
    r.stderr_has("is the first side");
    after.success();
    after.stdout_has("already in step");
    let want: BTreeMap<String, String> = [("sub/mine.txt", "in sub"), ("top.txt", "top")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(ta, want, "{r}\n{after}");
    assert_eq!(tb, want, "{r}\n{after}");
}
