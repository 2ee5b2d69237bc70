//! `repo schedule JOB`: a systemd service and timer that run `repo run JOB`
//! (or, without systemd, the crontab line that would).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::config::Config;

/// `repo schedule`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ScheduleArgs {
    /// The job of the config file to schedule (or remove).
    #[arg(value_name = "JOB", required_unless_present = "list")]
    pub(super) job: Option<String>,
    /// When to run, in systemd's calendar syntax (`daily`, `hourly`,
    /// `Mon..Fri 02:30`, `*-*-* 03:00:00`; see `man systemd.time`).
    #[arg(long, value_name = "WHEN", default_value = "daily")]
    pub(super) on_calendar: String,
    /// Start up to this much later, at random (systemd's
    /// RandomizedDelaySec: `0`, `30min`, `2h`), so that many machines do not
    /// hit one server at the same instant.
    #[arg(long, value_name = "SPAN", default_value = "30min")]
    pub(super) randomized_delay: String,
    /// Install for the calling user (`~/.config/systemd/user`) instead of
    /// the system (`/etc/systemd/system`).
    #[arg(long)]
    pub(super) user: bool,
    /// List the jobs scheduled by repo.
    #[arg(long, conflicts_with_all = ["remove", "print"])]
    pub(super) list: bool,
    /// Remove the job's timer and service.
    #[arg(long)]
    pub(super) remove: bool,
    /// Print the units (and the crontab line) instead of writing anything.
    #[arg(long)]
    pub(super) print: bool,
}

/// Unit names of the scheduled jobs start with this.
const PREFIX: &str = "repo-job-";

pub(super) fn run(args: &ScheduleArgs, config_flag: Option<&Path>) -> Result<u8> {
    let dir = unit_dir(args.user)?;
    if args.list {
        return list(&dir);
    }
    let Some(job) = args.job.as_deref() else {
        bail!(repo::Error::Usage("name the job to schedule".into()));
    };
    check_name(job)?;
    if args.remove {
        return remove(&dir, job, args.user);
    }
    let config_path = Config::locate(config_flag).ok_or_else(|| {
        repo::Error::Usage(
            "no config file to schedule a job of: give --config FILE, or write \
             ~/.config/repo/repo.toml or /etc/repo/repo.toml"
                .into(),
        )
    })?;
    let config_path = std::fs::canonicalize(&config_path).map_err(|e| {
        repo::Error::Usage(format!(
            "cannot read the config file {}: {e}",
            config_path.display()
        ))
    })?;
    let config = Config::load(&config_path)?;
    if config.job(job).is_none() {
        let known: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        bail!(repo::Error::Usage(format!(
            "no job `{job}` in {}; its jobs: {}",
            config_path.display(),
            known.join(", ")
        )));
    }
    one_line("--on-calendar", &args.on_calendar)?;
    one_line("--randomized-delay", &args.randomized_delay)?;
    check_calendar(&args.on_calendar)?;
    let exe = std::env::current_exe()?;
    let command = [
        exe.as_os_str(),
        "--config".as_ref(),
        config_path.as_os_str(),
        "run".as_ref(),
        // A job may be named like a flag (`-n`).
        "--".as_ref(),
        job.as_ref(),
    ];
    let exec = command
        .iter()
        .map(|a| systemd_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let service = service_unit(job, &exec);
    let timer = timer_unit(job, args);
    let cron = cron_line(
        &args.on_calendar,
        &command
            .iter()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if args.print {
        println!(
            "# {}\n{service}\n# {}\n{timer}",
            dir.join(format!("{PREFIX}{job}.service")).display(),
            dir.join(format!("{PREFIX}{job}.timer")).display()
        );
        println!("# without systemd, this crontab line (crontab -e):\n{cron}");
        return Ok(super::exit::OK);
    }
    install(&dir, job, &service, &timer, args.user, &cron)
}

/// Where the units go.
fn unit_dir(user: bool) -> Result<PathBuf> {
    if !user {
        return Ok(PathBuf::from("/etc/systemd/system"));
    }
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    std::env::var_os("XDG_CONFIG_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".config"))
        })
        .map(|d| d.join("systemd/user"))
        .ok_or_else(|| {
            repo::Error::Usage("--user needs HOME or XDG_CONFIG_HOME to be set".into()).into()
        })
}

/// Job names become unit names: only the characters those allow.
fn check_name(job: &str) -> Result<()> {
    let ok = !job.is_empty()
        && job.len() <= 200
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(repo::Error::Usage(format!(
            "job name `{job}` cannot name a systemd unit: use letters, digits, `-`, `_` and `.` \
             (rename the [jobs.{job}] section)"
        )));
    }
    Ok(())
}

/// Refuses a value holding a line break or another control character: in
/// a unit file it would start a setting of its own (`Unit=` another
/// service, say).
fn one_line(flag: &str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        bail!(repo::Error::Usage(format!(
            "{flag} {value:?} holds a line break or another control character, which a unit \
             file cannot hold; give it on one line"
        )));
    }
    Ok(())
}

/// Refuses a calendar expression systemd would not take, where
/// `systemd-analyze` can tell.
fn check_calendar(spec: &str) -> Result<()> {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["calendar", spec])
        .output()
    else {
        return Ok(());
    };
    if !out.status.success() {
        bail!(repo::Error::Usage(format!(
            "--on-calendar {spec:?} is not a systemd calendar expression ({}); try `daily`, \
             `hourly`, `Mon..Fri 02:30` or `*-*-* 03:00:00` (see `man systemd.time`)",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn service_unit(job: &str, exec: &str) -> String {
    format!(
        "[Unit]\n\
         Description=repo job {job}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         # The cache of remote repositories: /var/cache/repo, or ~/.cache/repo for --user.\n\
         CacheDirectory=repo\n\
         Environment=REPO_CACHE_DIR=%C/repo\n\
         # Backups give way to everything else on the machine.\n\
         Nice=19\n\
         IOSchedulingClass=idle\n\
         CPUSchedulingPolicy=batch\n"
    )
}

fn timer_unit(job: &str, args: &ScheduleArgs) -> String {
    format!(
        "[Unit]\n\
         Description=Run repo job {job} ({})\n\
         \n\
         [Timer]\n\
         OnCalendar={}\n\
         # A run missed while the machine was off or asleep happens at the next boot.\n\
         Persistent=true\n\
         RandomizedDelaySec={}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        args.on_calendar, args.on_calendar, args.randomized_delay
    )
}

/// A word of an `ExecStart=` line: quoted, with systemd's specifiers (`%`)
/// and variables (`$`) escaped.
fn systemd_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A word for `sh`: single-quoted.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The crontab line for the common calendar expressions; for others, a
/// daily line to adapt.
fn cron_line(spec: &str, command: &str) -> String {
    let time = |hm: &str| -> Option<String> {
        let (h, m) = hm.split_once(':')?;
        let (h, m): (u8, u8) = (h.parse().ok()?, m.get(..2)?.parse().ok()?);
        (h < 24 && m < 60).then(|| format!("{m} {h} * * *"))
    };
    let when = match spec {
        "minutely" => Some("* * * * *".to_string()),
        "hourly" => Some("0 * * * *".to_string()),
        "daily" => Some("0 0 * * *".to_string()),
        "weekly" => Some("0 0 * * 1".to_string()),
        "monthly" => Some("0 0 1 * *".to_string()),
        other => time(other.trim_start_matches("*-*-* ")),
    };
    // cron turns an unescaped `%` of the command into a line break.
    let command = command.replace('%', "\\%");
    match when {
        Some(w) => format!("{w} {command}"),
        None => format!("0 3 * * * {command}    # adapt the time: cron cannot say {spec:?}"),
    }
}

/// Whether systemd runs this machine (as `sd_booted()` tells).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether the calling user's systemd instance runs without a login
/// (`loginctl enable-linger`), so that `--user` timers fire while logged out.
fn lingering() -> bool {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .is_some_and(|u| Path::new("/var/lib/systemd/linger").join(u.name).exists())
}

fn systemctl(user: bool, args: &[&str]) -> Result<()> {
    let mut c = std::process::Command::new("systemctl");
    if user {
        c.arg("--user");
    }
    let status = c.args(args).status()?;
    if !status.success() {
        bail!("`systemctl {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Writes the units and, under systemd, enables the timer.
fn install(
    dir: &Path,
    job: &str,
    service: &str,
    timer: &str,
    user: bool,
    cron: &str,
) -> Result<u8> {
    std::fs::create_dir_all(dir)?;
    for (ext, text) in [("service", service), ("timer", timer)] {
        let path = dir.join(format!("{PREFIX}{job}.{ext}"));
        let tmp = dir.join(format!(".{PREFIX}{job}.{ext}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        println!("wrote {}", path.display());
    }
    let timer_name = format!("{PREFIX}{job}.timer");
    if systemd_running() {
        systemctl(user, &["daemon-reload"])?;
        systemctl(user, &["enable", "--now", &timer_name])?;
        let scope = if user { " --user" } else { "" };
        println!(
            "enabled {timer_name}: `systemctl{scope} list-timers` shows the next run, \
             `journalctl{scope} -u {PREFIX}{job}.service` the output"
        );
        if user && !lingering() {
            println!(
                "note: your timers run only while you are logged in; `loginctl enable-linger` \
                 runs them always"
            );
        }
    } else {
        println!(
            "systemd is not running here, so nothing was enabled; to run the job from cron \
             instead, add this line with `crontab -e`:\n{cron}"
        );
    }
    Ok(super::exit::OK)
}

/// `--remove`: disables the timer and deletes both units.
fn remove(dir: &Path, job: &str, user: bool) -> Result<u8> {
    let timer_name = format!("{PREFIX}{job}.timer");
    let files: Vec<PathBuf> = ["service", "timer"]
        .iter()
        .map(|ext| dir.join(format!("{PREFIX}{job}.{ext}")))
        .filter(|p| p.exists())
        .collect();
    if files.is_empty() {
        bail!(repo::Error::Usage(format!(
            "job `{job}` is not scheduled in {} (see `repo schedule --list{}`)",
            dir.display(),
            if user { " --user" } else { "" }
        )));
    }
    if systemd_running() {
        systemctl(user, &["disable", "--now", &timer_name])?;
    }
    for f in &files {
        std::fs::remove_file(f)?;
        println!("removed {}", f.display());
    }
    if systemd_running() {
        systemctl(user, &["daemon-reload"])?;
    }
    Ok(super::exit::OK)
}

/// `--list`: the jobs with a timer written by repo, and when they run.
fn list(dir: &Path) -> Result<u8> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(job) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(".timer"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let when = text
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap_or("?")
            .to_string();
        found.push((job.to_string(), when));
    }
    found.sort();
    if found.is_empty() {
        println!("no jobs scheduled in {}", dir.display());
    }
    for (job, when) in found {
        println!("{job:<16} {when}");
    }
    Ok(super::exit::OK)
}
