//! Folders and files swapped or created while a run is under way.

use super::*;

/// A folder on one side replaced by a symlink to a folder outside both
/// trees (by a user who owns that side): the run must never reach through
/// the symlink, neither moving the outside files into the trash nor writing
/// there; the folder replaced goes aside whole, and nothing is lost.
#[test]
fn folder_replaced_by_symlink_is_never_followed() {
    let mut outside_touched = 0;
    let mut runs = 0;
    for history in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, out) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("outside"),
        );
        put_file(&a, "d/f", "mine", T0);
        put_file(&a, "d/g", "also mine", T0);
        put_file(&out, "f", "precious, not ours", T0);
        put_file(&out, "g", "more of it", T0);
        let mut g = Guard::new([&a, &b]);
        if history {
            g.run(&["sync", s(&a), s(&b), "-y"]).success();
            fs::remove_dir_all(b.join("d")).unwrap();
        } else {
            fs::create_dir_all(&b).unwrap();
        }
        std::os::unix::fs::symlink(&out, b.join("d")).unwrap();
        let r = g.run(&["sync", s(&a), s(&b), "-y"]);
        runs += 1;
        let outside = tree(&out);
        let intact = outside.len() == 2
            && outside.get("f").map(String::as_str) == Some("precious, not ours")
            && outside.get("g").map(String::as_str) == Some("more of it");
        if !intact {
            outside_touched += 1;
            eprintln!("history {history}: outside changed: {outside:?}\n{r}");
        }
        r.success();
    }
    eprintln!(
        "adversarial plain: folder replaced by a symlink: {runs} runs, outside touched: {outside_touched}"
    );
    assert_eq!(outside_touched, 0);
}

/// A file that appears on the destination after the scan (the user saves
/// it while the run copies) is never replaced unseen: it is kept, and the
/// path is left for the next run to decide.
#[test]
fn file_created_during_the_run_is_not_overwritten() {
    let mut lost_total = 0;
    for mode in ["sync", "mirror"] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, pause) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("pause"),
        );
        fs::create_dir_all(&b).unwrap();
        fs::create_dir_all(&pause).unwrap();
        put_file(&a, "n.txt", "from a", T0);
        let mut c = clean_command(BIN);
        c.args([mode, s(&a), s(&b), "-y"])
            .env("REPO_TEST_PAUSE", "plain-copy")
            .env("REPO_TEST_PAUSE_DIR", &pause)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert!(
            wait_until(Duration::from_secs(60), || {
                crate::support::pause::paused_at(&pause, "plain-copy", pid)
            }),
            "{mode} never paused"
        );
        // The user saves a file of the same name on b meanwhile.
        put_file(&b, "n.txt", "the user's own, saved meanwhile", T1);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        let out = child.wait_with_output().unwrap();
        let mut have = HashSet::new();
        contents(&b, &mut have);
        let lost = usize::from(!have.contains(b"the user's own, saved meanwhile".as_slice()));
        if lost > 0 {
            eprintln!(
                "{mode}: the user's file was replaced unseen; exit {:?}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lost_total += lost;
    }
    eprintln!("adversarial plain: files created during a run: 2 runs, data lost: {lost_total}");
    assert_eq!(lost_total, 0);
}

/// The folder just made on the destination is swapped for a symlink to a
/// file outside (by the user who owns that side) before its mode is set:
/// the mode must not land on the outside file (root would make it readable
/// to everyone).
#[test]
fn folder_mode_is_not_set_through_a_swapped_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, pause, secret) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("pause"),
        tmp.path().join("secret"),
    );
    fs::create_dir_all(a.join("d")).unwrap();
    fs::set_permissions(a.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&pause).unwrap();
    fs::write(&secret, "shadow").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = clean_command(BIN);
    c.args(["mirror", s(&a), s(&b), "-y"])
        .env("REPO_TEST_PAUSE", "plain-dir-made")
        .env("REPO_TEST_PAUSE_DIR", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    assert!(
        wait_until(Duration::from_secs(60), || {
            crate::support::pause::paused_at(&pause, "plain-dir-made", pid)
        }),
        "mirror never paused"
    );
    fs::remove_dir(b.join("d")).unwrap();
    std::os::unix::fs::symlink(&secret, b.join("d")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = child.wait_with_output().unwrap();
    let mode = fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
    let leaked = usize::from(mode != 0o600);
    eprintln!(
        "adversarial plain: folder mode through a swapped symlink: secret mode {mode:o}, leaked: {leaked}"
    );
    assert_eq!(leaked, 0, "{}", String::from_utf8_lossy(&out.stderr));
}
