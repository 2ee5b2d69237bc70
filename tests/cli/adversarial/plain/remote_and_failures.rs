//! Foreign control folders on FTP and S3, a failed copy that is not a
//! deletion, plan output that escapes names.

use super::*;

/// The same refusals on a remote side: `.repo/` keys that are not ours, and
/// two places on one server where one holds the other.
fn foreign_control_on_remote(base: &str) -> usize {
    let url = unique_url(base, "plain-foreign");
    let tmp = tempfile::tempdir().unwrap();
    let (src, theirs) = (tmp.path().join("src"), tmp.path().join("theirs"));
    put_file(&src, "x.txt", "x", T0);
    put_file(&theirs, "manifest.xml", "<manifest/>", T0);
    // Somebody else's files under `.repo/` on the server.
    repo(&["mirror", s(&theirs), &format!("{url}/.repo"), "-y"]).success();
    let mut refused = 0;
    for cmd in ["mirror", "sync"] {
        let r = repo(&[cmd, s(&src), &url, "-y"]);
        r.code(2).stderr_has("is not a control folder of repo");
        refused += 1;
    }
    let back = tmp.path().join("back");
    repo(&["mirror", &format!("{url}/.repo"), s(&back), "-y"]).success();
    assert_eq!(tree(&back).len(), 1, "{:?}", tree(&back));
    // Two places on one server, one inside the other.
    let outer = format!("{url}-overlap");
    let inner = format!("{outer}/inner/copy");
    for (x, y) in [
        (outer.as_str(), inner.as_str()),
        (inner.as_str(), outer.as_str()),
    ] {
        repo(&["mirror", x, y, "-y"])
            .code(2)
            .stderr_has("must not overlap");
        refused += 1;
    }
    refused
}

#[test]
fn foreign_control_folder_on_ftp_and_s3_is_refused() {
    let mut refused = 0;
    for var in ["REPO_TEST_FTP_URL", "REPO_TEST_S3_URL"] {
        if let Some(base) = server(var) {
            refused += foreign_control_on_remote(&base);
        }
    }
    eprintln!(
        "adversarial plain: foreign .repo on remote sides: {refused} runs refused, data lost: 0"
    );
}

/// Runs the binary as nobody (through setpriv), for failures root cannot
/// meet (an unreadable file); `None` when that is not possible here.
fn repo_as_nobody(args: &[&str]) -> Option<Run> {
    let sp = if is_root() { setpriv() } else { None };
    let Some(sp) = sp else {
        assert!(
            std::env::var_os("CI").is_none(),
            "root and setpriv are needed under CI"
        );
        eprintln!("skipping: needs root and setpriv to run as nobody");
        return None;
    };
    let mut c = clean_command(sp);
    c.args(AS_NOBODY).arg(BIN);
    c.args(args);
    Some(run_within(c, Duration::from_secs(120)))
}

/// A copy that fails (here: the changed file cannot be read) must not make
/// the next run believe the other side deleted it: the failed path keeps
/// its history, and the destination's old version stays where it was.
#[test]
fn a_failed_copy_is_not_taken_for_a_deletion_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x.txt", "version 1", T0);
    put_file(&b, "x.txt", "version 1", T0);
    let chown = |p: &Path| {
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap()
    };
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "root is needed under CI");
        eprintln!("skipping: needs root");
        return;
    }
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    chown(&a);
    chown(&b);
    let Some(r) = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]) else {
        return;
    };
    r.success();
    // Edited on a, but unreadable to the run (as if locked or on a failing disk).
    put_file(&a, "x.txt", "version 2, the only copy", T1);
    chown(&a);
    fs::set_permissions(a.join("x.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let r = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]).unwrap();
    r.code(3);
    assert_eq!(
        read(&b, "x.txt").as_deref(),
        Some("version 1"),
        "a failed copy must leave the old version in place\n{r}"
    );
    // Readable again: the next run copies the edit; nothing is deleted.
    fs::set_permissions(a.join("x.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = repo_as_nobody(&["sync", s(&a), s(&b), "-y"]).unwrap();
    let live = (read(&a, "x.txt"), read(&b, "x.txt"));
    eprintln!(
        "adversarial plain: failed copy then rerun: a={:?} b={:?}, data lost: {}",
        live.0,
        live.1,
        usize::from(live.0.is_none())
    );
    r.success();
    assert_eq!(live.0.as_deref(), Some("version 2, the only copy"), "{r}");
    assert_eq!(live.1.as_deref(), Some("version 2, the only copy"), "{r}");
}

/// Names are shown escaped in the plan, notes and conflicts: a newline
/// cannot fake a second line, an escape sequence cannot recolour or move
/// the terminal, and two names that are not UTF-8 do not both show as U+FFFD.
#[test]
fn plan_output_escapes_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let names: [&[u8]; 4] = [b"two\nlines", b"red\x1b[31m", b"\xff\xfe", b"\xfe\xff"];
    for n in names {
        fs::write(a.join(std::ffi::OsStr::from_bytes(n)), b"x").unwrap();
    }
    // A conflict too: different content, equal times.
    put_file(&a, "same.txt", "one", T0);
    put_file(&b, "same.txt", "other", T0);
    let r = repo(&["sync", s(&a), s(&b), "--dry-run"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    let raw = all.contains('\x1b') || all.contains("two\nlines") || all.contains('\u{fffd}');
    eprintln!(
        "adversarial plain: plan output escaped: {}, leaked: {}",
        !raw,
        usize::from(raw)
    );
    assert!(!raw, "raw names in the output:\n{r}");
    for shown in ["two\\nlines", "red\\x1b[31m", "\\xff\\xfe", "\\xfe\\xff"] {
        assert!(all.contains(shown), "{shown} not shown escaped:\n{r}");
    }
}
