//! The config file and `repo run`: named repositories and jobs, run as
//! their command lines would run, with mistakes pointed at file, line and
//! key. Against the real S3 and FTP test servers where the jobs use them.

mod mistakes;
mod monitor;
mod schedule;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    Cmp, Run, assert_same_tree, repo_command, run, server, simple_tree, trust_test_ca, unique_url,
    write_file,
};

/// A folder with a config file and what its jobs use.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(dir: &Path) -> Setup {
        write_file(&dir.join("pass"), b"job-password\n");
        std::fs::set_permissions(dir.join("pass"), std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup {
            dir: dir.to_path_buf(),
            config: dir.join("repo.toml"),
        }
    }

    /// Writes the config file, private to the user.
    fn write(&self, text: &str) {
        write_file(&self.config, text.as_bytes());
        self.chmod(0o600);
    }

    fn chmod(&self, mode: u32) {
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `repo ARGS` with this config file and nothing else.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = repo_command();
        trust_test_ca(&mut c);
        c.args(args)
            .env("REPO_CONFIG", &self.config)
            .env("REPO_CACHE_DIR", self.dir.join("cache"));
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.cmd(args))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `repo init` at `location` with the password file.
    fn init(&self, location: &str) {
        let mut c = repo_command();
        c.args([
            "init",
            "-r",
            location,
            "--password-file",
            &self.path("pass"),
        ]);
        run(c).success();
    }

    /// `[repositories.local]`: the folder `r1`, opened by the password file.
    fn local_section(&self) -> String {
        format!(
            "[repositories.local]\nlocation = \"{}\"\npassword-file = \"{}\"\n",
            self.path("r1"),
            self.path("pass")
        )
    }

    /// Snapshots of repository `name` from the file, as JSON.
    fn snapshots(&self, name: &str) -> Vec<serde_json::Value> {
        let r = self.run(&["-r", name, "snapshots", "--json"]);
        r.success();
        r.json().as_array().unwrap().clone()
    }
}

/// The config of issue 15 with the test servers: repositories `local` (a
/// folder) and `offsite` (S3, opened by a key file), jobs home, db,
/// retention, offsite (a copy), verify (a check) and photos (a mirror to FTP).
fn write_issue_config(
    s: &Setup,
    offsite: &str,
    home: &Path,
    photos: &Path,
    photo_url: &str,
    dump: &Path,
) {
    let (local, offsite) = (s.path("r1"), offsite.to_string());
    s.init(&local);
    s.init(&offsite);
    let key = s.path("offsite.key");
    let mut export = repo_command();
    export.args([
        "key",
        "export",
        &key,
        "-r",
        &offsite,
        "--password-file",
        &s.path("pass"),
    ]);
    run(export).success();
    let endpoint = std::env::var("REPO_S3_ENDPOINT").unwrap();
    s.write(&format!(
        r#"
[repositories.local]
location = "{local}"
password-file = "{pass}"

[repositories.offsite]
location = "{offsite}"
s3-endpoint = "{endpoint}"
key-file = "{key}"

[jobs.home]
kind = "backup"
repository = "local"
paths = ["{home}"]
exclude = ["**/.cache"]
tags = ["daily"]

[jobs.db]
kind = "backup"
repository = "local"
stdin-from-command = "cat '{dump}'"
stdin-filename = "app.sql"

[jobs.retention]
kind = "forget"
repository = "local"
keep-daily = 7
keep-weekly = 5
prune = true

[jobs.offsite]
kind = "copy"
repository = "local"
to = "offsite"

[jobs.verify]
kind = "check"
repository = "offsite"

[jobs.photos]
kind = "mirror"
source = "{photos}"
destination = "{photo_url}"
compare = "attr+"
"#,
        pass = s.path("pass"),
        home = home.display(),
        photos = photos.display(),
        dump = dump.display(),
    ));
}

/// The config of the issue, with the test servers: a local and an S3
/// repository, backups to both, retention, a check, and a mirror to FTP.
#[test]
fn the_jobs_of_a_config_file_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (Some(s3), Some(ftp)) = (server("REPO_TEST_S3_URL"), server("REPO_TEST_FTP_URL")) else {
        return;
    };
    let s = Setup::new(tmp.path());
    let home = tmp.path().join("home");
    simple_tree(&home, 71);
    write_file(&home.join("me/.cache/junk"), b"cached junk");
    let photos = tmp.path().join("photos");
    simple_tree(&photos, 72);
    let dump = tmp.path().join("app.sql");
    crate::support::write_random(&dump, 1_500_000, 76);
    let photo_url = unique_url(&ftp, "photos");
    write_issue_config(
        &s,
        &unique_url(&s3, "jobs"),
        &home,
        &photos,
        &photo_url,
        &dump,
    );
    let listed = s.run(&["run", "--list"]);
    listed.success();
    for job in ["home", "db", "retention", "offsite", "verify", "photos"] {
        listed.stdout_has(job);
    }
    let r = s.run(&["run"]);
    r.success();
    assert_eq!(r.stdout.matches(" ok").count(), 6, "{r}");
    // Both repositories hold the snapshots; the file's settings opened them.
    let local_snaps = s.snapshots("local");
    assert_eq!(local_snaps.len(), 2);
    assert_eq!(local_snaps[0]["tags"], serde_json::json!(["daily"]));
    assert_eq!(s.snapshots("offsite").len(), 2);
    // The copies restore identical from the offsite repository.
    let out = tmp.path().join("restored");
    let home_copy = s.snapshots("offsite")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.run(&[
        "-r",
        "offsite",
        "restore",
        &home_copy,
        "--target",
        out.to_str().unwrap(),
    ])
    .success();
    std::fs::remove_dir_all(home.join("me/.cache")).unwrap(); // excluded
    let restored = out.join(home.strip_prefix("/").unwrap());
    assert_same_tree(&home, &restored, Cmp::content_only());
    let db = s.run(&["-r", "offsite", "dump", "latest", "/app.sql"]);
    db.success();
    assert!(
        db.stdout_bytes == std::fs::read(&dump).unwrap(),
        "the db dump, byte for byte"
    );
    // A second run of the copy job copies nothing.
    let again = s.run(&["run", "offsite", "--json"]);
    again.success();
    assert_eq!(again.json()["copied"], serde_json::json!([]), "{again}");
    assert_eq!(s.snapshots("offsite").len(), 2);
    let home_id = local_snaps[0]["id"].as_str().unwrap().to_string();
    let ls = s.run(&["-r", "local", "ls", &home_id]);
    ls.success();
    assert!(!ls.stdout.contains(".cache"), "excluded: {ls}");
    // The mirror on the FTP server is a readable copy of the folder.
    let back = tmp.path().join("back");
    let mut c = s.cmd(&["mirror", &photo_url, back.to_str().unwrap(), "--yes"]);
    c.env_remove("REPO_CONFIG");
    run(c).success();
    // (The copy's control folder came along with it.)
    std::fs::remove_dir_all(back.join(".repo")).unwrap();
    assert_same_tree(&photos, &back, Cmp::content_only());
    // --dry-run passes through: nothing new is written.
    write_file(&home.join("new-file"), b"new");
    s.run(&["run", "--dry-run", "home", "offsite"]).success();
    assert_eq!(s.snapshots("local").len(), 2);
    assert_eq!(s.snapshots("offsite").len(), 2);
    // Jobs by name: the new snapshot, then only it is copied.
    s.run(&["run", "home", "offsite"]).success();
    assert_eq!(s.snapshots("local").len(), 3);
    assert_eq!(s.snapshots("offsite").len(), 3);
}

#[test]
fn a_failing_job_does_not_stop_the_others_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    let src = tmp.path().join("src");
    simple_tree(&src, 73);
    s.init(&s.path("r1"));
    let jobs = format!(
        r#"{local}
[jobs.broken]
kind = "backup"
repository = "{missing}"
password-file = "{pass}"
paths = ["{src}"]

[jobs.fine]
kind = "backup"
repository = "local"
paths = ["{src}"]
"#,
        local = s.local_section(),
        pass = s.path("pass"),
        missing = s.path("no-such-repo"),
        src = src.display(),
    );
    s.write(&jobs);
    let r = s.run(&["run"]);
    // The worst exit code: no repository (10).
    r.code(10);
    r.stdout_has("FAILED (exit 10)");
    assert_eq!(s.snapshots("local").len(), 1, "the second job ran: {r}");
    s.write(&format!("stop-on-failure = true\n{jobs}"));
    let r = s.run(&["run"]);
    r.code(10);
    r.stdout_has("not run");
    assert_eq!(
        s.snapshots("local").len(),
        1,
        "stopped after the failure: {r}"
    );
    // The good job alone succeeds.
    s.run(&["run", "fine"]).success();
}

#[test]
fn the_command_line_and_the_environment_win_over_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    write_file(&tmp.path().join("wrong"), b"not-the-password\n");
    s.write(&format!(
        "[repositories.local]\nlocation = \"{}\"\npassword-file = \"{}\"\n",
        s.path("r1"),
        s.path("wrong")
    ));
    s.run(&["-r", "local", "snapshots"]).code(12);
    s.run(&[
        "-r",
        "local",
        "snapshots",
        "--password-file",
        &s.path("pass"),
    ])
    .success();
    let mut c = s.cmd(&["-r", "local", "snapshots"]);
    c.env("REPO_PASSWORD", "job-password");
    run(c).success();
    // A folder that happens to have a repository's name: ./NAME.
    let mut c = s.cmd(&["-r", "./local", "snapshots"]);
    c.current_dir(tmp.path())
        .env("REPO_PASSWORD", "job-password");
    run(c).code(10);
}

#[test]
fn a_job_backs_up_what_a_command_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    let dump = tmp.path().join("dump.sql");
    crate::support::write_random(&dump, 2_000_000, 75);
    s.write(&format!(
        r#"{local}
[jobs.db]
kind = "backup"
repository = "local"
stdin-from-command = "cat '{dump}'"
stdin-filename = "app.sql"

[jobs.db-broken]
kind = "backup"
repository = "local"
stdin-from-command = "echo partial; echo 'pg_dump: connection refused' >&2; exit 3"
stdin-filename = "app.sql"
tags = ["broken"]
"#,
        local = s.local_section(),
        dump = dump.display(),
    ));
    let r = s.run(&["run"]);
    r.code(1);
    r.stderr_has("connection refused");
    let snaps = s.snapshots("local");
    assert_eq!(snaps.len(), 1, "only the good command's snapshot: {r}");
    let out = s.run(&["-r", "local", "dump", "latest", "/app.sql"]);
    out.success();
    assert!(
        out.stdout_bytes == std::fs::read(&dump).unwrap(),
        "byte for byte"
    );
}

/// A job's own way of unlocking wins over its repository's as a whole, as
/// the command line's does: a password file never meets the section's key
/// file.
#[test]
fn a_jobs_password_file_replaces_its_repositorys_key_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    s.write(&format!(
        "[repositories.local]\nlocation = \"{}\"\nkey-file = \"{}\"\n\n\
         [jobs.verify]\nkind = \"check\"\nrepository = \"local\"\npassword-file = \"{}\"\n",
        s.path("r1"),
        s.path("elsewhere.key"),
        s.path("pass")
    ));
    s.run(&["run", "verify"]).success();
}

/// `repo run --dry-run` over a job that is a dry run of its own: one
/// `--dry-run`, not a usage error for giving it twice.
#[test]
fn a_dry_run_job_runs_under_run_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    let src = tmp.path().join("src");
    simple_tree(&src, 74);
    s.init(&s.path("r1"));
    s.write(&format!(
        "[jobs.try]\nkind = \"backup\"\nrepository = \"{}\"\npassword-file = \"{}\"\n\
         dry-run = true\npaths = [\"{}\"]\n",
        s.path("r1"),
        s.path("pass"),
        src.display()
    ));
    s.run(&["run", "--dry-run"]).success();
    s.run(&["run"]).success();
}

/// A job's own `stop-on-failure = false` wins over the top of the file's.
#[test]
fn a_jobs_own_stop_on_failure_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    s.write(&format!(
        "stop-on-failure = true\n\n\
         [jobs.optional]\nkind = \"check\"\nrepository = \"{}\"\npassword-file = \"{}\"\n\
         stop-on-failure = false\n\n\
         [jobs.main]\nkind = \"check\"\nrepository = \"{}\"\npassword-file = \"{}\"\n",
        s.path("no-such-repo"),
        s.path("pass"),
        s.path("r1"),
        s.path("pass")
    ));
    let r = s.run(&["run"]);
    r.code(10);
    assert!(!r.stdout.contains("not run"), "{r}");
}

/// `REPO_CONFIG=` (set but empty, as an environment file may leave it)
/// means "not given", as `REPO_KEY_FILE=` does: the default file is read,
/// and commands without a config work.
#[test]
fn an_empty_repo_config_means_the_default_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.init(&s.path("r1"));
    let xdg = tmp.path().join("xdg");
    write_file(&xdg.join("repo/repo.toml"), s.local_section().as_bytes());
    let mut c = s.cmd(&["-r", "local", "snapshots"]);
    c.env("REPO_CONFIG", "").env("XDG_CONFIG_HOME", &xdg);
    run(c).success();
    let mut c = s.cmd(&["-r", &s.path("r1"), "snapshots"]);
    c.env("REPO_CONFIG", "")
        .env("REPO_PASSWORD", "job-password");
    run(c).success();
}
