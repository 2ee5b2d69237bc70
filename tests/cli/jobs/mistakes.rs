//! Every mistake in the config file: exit 2, naming file, line and key.

use super::Setup;

/// Runs `args` with `config` and expects exit 2 with `file:line:` and
/// every one of `words` in the message.
fn refused(s: &Setup, config: &str, args: &[&str], line: usize, words: &[&str]) {
    s.write(config);
    let r = s.run(args);
    r.code(2);
    r.stderr_has(&format!("{}:{line}:", s.config.display()));
    for w in words {
        r.stderr_has(w);
    }
}

#[test]
fn each_mistake_names_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    let repo = s.local_section();
    let job = |body: &str| {
        format!("{repo}\n[jobs.home]\nkind = \"backup\"\nrepository = \"local\"\n{body}")
    };
    // Lines: 1-3 the repository, 4 blank, 5 [jobs.home], 6 kind, 7 repository, 8 the key.
    refused(
        &s,
        &job("paths = [\"/tmp\"]\ntagz = [\"x\"]\n"),
        &["run"],
        9,
        &["unknown key `tagz`", "[jobs.home]", "repo create --help"],
    );
    refused(
        &s,
        &job("paths = 5\n"),
        &["run"],
        8,
        &["key `paths`", "string"],
    );
    refused(
        &s,
        &job("paths = [\"/tmp\"]\none-file-system = \"yes\"\n"),
        &["run"],
        9,
        &["key `one-file-system`", "true or false"],
    );
    refused(
        &s,
        &job("paths = [\"/tmp\"]\nhost = [\"a\", \"b\"]\n"),
        &["run"],
        9,
        &["key `host`", "one value"],
    );
    let forget = format!(
        "{repo}\n[jobs.old]\nkind = \"forget\"\nrepository = \"local\"\nkeep-daily = \"seven\"\n"
    );
    refused(&s, &forget, &["run"], 8, &["keep-daily", "seven"]);
    let nowhere = format!(
        "{repo}\n[jobs.home]\nkind = \"backup\"\nrepository = \"nowhere\"\npaths = [\"/tmp\"]\n"
    );
    refused(
        &s,
        &nowhere,
        &["run"],
        7,
        &["key `repository`", "no [repositories.nowhere]"],
    );
    let kind = format!("{repo}\n[jobs.home]\nkind = \"backups\"\n");
    refused(&s, &kind, &["run"], 6, &["kind", "backup, forget"]);
    // Repository sections are checked where they are used: `-r NAME`.
    let bad_repo = format!("{repo}exclude = [\"x\"]\n");
    refused(
        &s,
        &bad_repo,
        &["-r", "local", "snapshots"],
        4,
        &["unknown key `exclude`", "[repositories.local]"],
    );
    refused(
        &s,
        "[repositories.local]\npassword-file = \"/p\"\n",
        &["-r", "local", "snapshots"],
        1,
        &["needs `location"],
    );
    refused(
        &s,
        "[jobs.a]\nkind = \"backup\"\npaths = [\"/a\"\n",
        &["run"],
        3,
        &["not valid TOML"],
    );
    // No such job, no such file.
    s.write(&job("paths = [\"/tmp\"]\n"));
    s.run(&["run", "other"])
        .code(2)
        .stderr_has("no job `other`");
    let mut c = s.cmd(&["run"]);
    c.env("REPO_CONFIG", tmp.path().join("missing.toml"));
    crate::support::run(c).code(2).stderr_has("missing.toml");
}

#[test]
fn a_file_others_can_read_may_not_hold_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    let text = "[jobs.photos]\nkind = \"mirror\"\nsource = \"/tmp/a\"\ndestination = \"ftp://me:secret@127.0.0.1:1/p\"\n";
    s.write(text);
    s.chmod(0o640);
    let r = s.run(&["run", "--list"]);
    r.code(2);
    r.stderr_has("chmod 600")
        .stderr_has(&format!("{}:4:", s.config.display()))
        .stderr_has("key `destination` in [jobs.photos]");
    assert!(
        !r.stderr.contains("secret"),
        "the password is not shown: {r}"
    );
    s.chmod(0o600);
    let listed = s.run(&["run", "--list"]);
    listed.success().stdout_has("photos").stdout_has("me:***@");
    assert!(!listed.stdout.contains("secret"), "{listed}");
    // Without a password in it the file may be readable.
    s.write("[jobs.photos]\nkind = \"mirror\"\nsource = \"/tmp/a\"\ndestination = \"/tmp/b\"\n");
    s.chmod(0o644);
    s.run(&["run", "--list"]).success();
}

/// The system's config file is private to root when it holds a password
/// (as required): another user's `-r NAME` (a folder of that name) must
/// not fail on it, that user has no config file of their own.
#[test]
fn a_default_config_the_user_cannot_read_is_not_theirs() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let file = xdg.join("repo/repo.toml");
    crate::support::write_file(&file, b"[repositories.r1]\nlocation = \"/x\"\n");
    for p in [tmp.path(), &xdg, &xdg.join("repo")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file: run as nobody then.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let bin = crate::support::BIN;
    // `-r NAME` and `copy --to NAME` alike.
    for args in [
        ["-r", "not-here", "snapshots", ""],
        ["-r", "./not-here", "copy", "--to=not-there"],
    ] {
        let mut c = if root {
            let mut c = crate::support::clean_command("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
            c
        } else {
            crate::support::clean_command(bin)
        };
        c.args(args.iter().filter(|a| !a.is_empty()))
            .current_dir(tmp.path())
            .env("XDG_CONFIG_HOME", &xdg)
            .env("REPO_PASSWORD", "pw")
            .env("REPO_TO_PASSWORD", "pw")
            .env("REPO_CACHE_DIR", tmp.path().join("cache"));
        // No repository there (10), not a config file it may not read (2).
        crate::support::run(c).code(10);
    }
}

/// `repo run`'s own keys are checked like the flags: a quoted `"true"`
/// must not silently let the jobs go on after a failure.
#[test]
fn a_jobs_own_keys_of_the_wrong_type_are_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    let job = |body: &str| {
        format!(
            "[jobs.home]\nkind = \"check\"\nrepository = \"{}\"\n{body}",
            s.path("no-such-repo")
        )
    };
    // Lines: 1 [jobs.home], 2 kind, 3 repository, 4 the key.
    refused(
        &s,
        &job("stop-on-failure = \"true\"\n"),
        &["run"],
        4,
        &["key `stop-on-failure`", "[jobs.home]", "true or false"],
    );
    for key in ["ping-url", "on-success", "on-failure"] {
        refused(
            &s,
            &job(&format!("{key} = true\n")),
            &["run"],
            4,
            &[&format!("key `{key}`"), "string"],
        );
    }
}

/// A repository section's value clap refuses, met through `-r NAME`, is
/// pointed at like every other mistake.
#[test]
fn a_bad_value_in_a_repository_section_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    refused(
        &s,
        &format!(
            "[repositories.local]\nlocation = \"{}\"\nconnections = \"many\"\n",
            s.path("r1")
        ),
        &["-r", "local", "snapshots"],
        3,
        &["[repositories.local]", "--connections"],
    );
}

/// The file names commands run as its user (hooks, password-command), by
/// root under a system timer: nobody else may be able to change it.
#[test]
fn a_file_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.write("[jobs.photos]\nkind = \"mirror\"\nsource = \"/tmp/a\"\ndestination = \"/tmp/b\"\non-success = \"true\"\n");
    for mode in [0o666, 0o620] {
        s.chmod(mode);
        let r = s.run(&["run", "--list"]);
        r.code(2);
        r.stderr_has("chmod go-w");
    }
    s.chmod(0o644);
    s.run(&["run", "--list"]).success();
}

/// A ping URL may carry a password (basic auth): a failed ping's warning
/// goes to the journal, and must not show it.
#[test]
fn a_failed_pings_warning_hides_the_urls_password() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    crate::support::write_file(&tmp.path().join("a/f"), b"x");
    s.write(&format!(
        "[jobs.copy]\nkind = \"mirror\"\nsource = \"{}\"\ndestination = \"{}\"\n\
         ping-url = \"http://me:s3cret@127.0.0.1:1/ping\"\n",
        s.path("a"),
        s.path("b")
    ));
    let r = s.run(&["run"]);
    r.success().stderr_has("ping").stderr_has("me:***@");
    assert!(!r.stderr.contains("s3cret"), "{r}");
}
