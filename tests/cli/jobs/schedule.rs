//! `repo schedule`: units that systemd accepts, listed and removed; the
//! crontab line where systemd does not run.

use std::path::Path;
use std::process::Command;

use super::Setup;
use crate::support::run;

/// `systemd-analyze verify` of `files`: clean, with not one warning.
fn verified(files: &[&Path]) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .args(files)
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing (scripts/test installs systemd)"
        );
        return;
    };
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn a_job_is_scheduled_listed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    s.write(&format!(
        "[jobs.home]\nkind = \"backup\"\nrepository = \"{}\"\npaths = [\"/tmp\"]\n\n[jobs.\"two words\"]\nkind = \"check\"\nrepository = \"{}\"\n",
        s.path("r1"),
        s.path("r1")
    ));
    let xdg = tmp.path().join("xdg");
    let cmd = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env("XDG_CONFIG_HOME", &xdg);
        c
    };
    let units = xdg.join("systemd/user");
    // --print writes nothing.
    let printed = run(cmd(&["schedule", "home", "--user", "--print"]));
    printed
        .success()
        .stdout_has("OnCalendar=daily")
        .stdout_has("crontab");
    assert!(!units.exists());
    let r = run(cmd(&[
        "schedule",
        "home",
        "--user",
        "--on-calendar",
        "Mon..Fri 02:30",
        "--randomized-delay",
        "10min",
    ]));
    r.success();
    let service = units.join("repo-job-home.service");
    let timer = units.join("repo-job-home.timer");
    let timer_text = std::fs::read_to_string(&timer).unwrap();
    for line in [
        "OnCalendar=Mon..Fri 02:30",
        "Persistent=true",
        "RandomizedDelaySec=10min",
    ] {
        assert!(timer_text.contains(line), "{timer_text}");
    }
    let service_text = std::fs::read_to_string(&service).unwrap();
    for line in [
        "Nice=19",
        "IOSchedulingClass=idle",
        "\"run\" \"--\" \"home\"",
        "\"--config\"",
    ] {
        assert!(service_text.contains(line), "{service_text}");
    }
    verified(&[&service, &timer]);
    if !Path::new("/run/systemd/system").is_dir() {
        r.stdout_has("crontab -e").stdout_has("'run' '--' 'home'");
    }
    run(cmd(&["schedule", "--list", "--user"]))
        .success()
        .stdout_has("home")
        .stdout_has("Mon..Fri 02:30");
    // Mistakes: exit 2, nothing written.
    run(cmd(&[
        "schedule",
        "home",
        "--user",
        "--on-calendar",
        "someday",
    ]))
    .code(2)
    .stderr_has("calendar");
    run(cmd(&["schedule", "away", "--user"]))
        .code(2)
        .stderr_has("no job `away`");
    run(cmd(&["schedule", "two words", "--user"]))
        .code(2)
        .stderr_has("cannot name a systemd unit");
    run(cmd(&["schedule", "--remove", "home", "--user"])).success();
    assert!(!service.exists() && !timer.exists());
    run(cmd(&["schedule", "--remove", "home", "--user"]))
        .code(2)
        .stderr_has("not scheduled");
}

#[test]
fn odd_schedule_values_cannot_break_the_units_or_the_crontab_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A config file in a folder whose name cron would cut at `%`.
    let dir = tmp.path().join("50%off");
    std::fs::create_dir(&dir).unwrap();
    let s = Setup::new(&dir);
    s.write(&format!(
        "[jobs.home]\nkind = \"check\"\nrepository = \"{}\"\n",
        s.path("r1")
    ));
    let xdg = tmp.path().join("xdg");
    let cmd = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env("XDG_CONFIG_HOME", &xdg);
        c
    };
    // A newline would add a line of its own to the timer (here: start
    // another unit).
    run(cmd(&[
        "schedule",
        "home",
        "--user",
        "--randomized-delay",
        "10min\nUnit=other.service",
    ]))
    .code(2)
    .stderr_has("randomized-delay");
    assert!(!xdg.join("systemd/user").exists());
    // cron turns an unescaped `%` into a newline.
    let printed = run(cmd(&["schedule", "home", "--user", "--print"]));
    printed.success().stdout_has("50\\%off");
}

/// A job whose name looks like a flag is still the job the timer runs
/// (`[jobs."-n"]` must not make every run a dry run of all jobs).
#[test]
fn a_job_named_like_a_flag_is_run_as_that_job() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new(tmp.path());
    crate::support::write_file(&tmp.path().join("a/f"), b"x");
    s.write(&format!(
        "[jobs.\"-n\"]\nkind = \"mirror\"\nsource = \"{}\"\ndestination = \"{}\"\n",
        s.path("a"),
        s.path("b")
    ));
    let mut c = s.cmd(&["schedule", "--user", "--print", "--", "-n"]);
    c.env("XDG_CONFIG_HOME", tmp.path().join("xdg"));
    let printed = run(c);
    printed.success();
    // Run what cron would: the crontab line less its five time fields.
    let line = printed.stdout.lines().last().unwrap();
    let command: String = line.splitn(6, ' ').nth(5).unwrap().to_string();
    let mut sh = crate::support::clean_command("sh");
    sh.args(["-c", &command]);
    run(sh).success();
    assert!(tmp.path().join("b/f").exists(), "the job ran: {printed}");
}
