//! `repo run [JOB...]`: the jobs of the config file, one after another,
//! each run exactly as its command line would run it.

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::args::Cli;
use super::capture;
use super::config::{Config, Section, Target, Value, clap_mistake, mistake, section_args};
use super::exit;
use super::monitor;
use super::named;
use super::text::escape;

/// `repo run`'s own arguments.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RunArgs {
    /// Jobs to run, by name; all of them, in file order, when none is named.
    #[arg(value_name = "JOB")]
    pub(super) jobs: Vec<String>,
    /// List the jobs of the config file instead of running them.
    #[arg(long)]
    pub(super) list: bool,
    /// Run every job with --dry-run where its command has it (check and
    /// other read-only jobs run as usual).
    #[arg(long, short = 'n')]
    pub(super) dry_run: bool,
}

/// A job kind: the command it runs and the keys that are not flags.
struct Kind {
    name: &'static str,
    command: &'static str,
    /// Keys naming the command's positional arguments, with their ids.
    positionals: &'static [(&'static str, &'static str)],
    /// Whether the job works on a repository (`repository = ...`).
    repository: bool,
    dry_run: bool,
    /// Whether the job goes ahead without asking (`--yes`) unless it says
    /// `yes = false`: nobody is there to answer when a timer runs it.
    assume_yes: bool,
}

const PLAIN: &[(&str, &str)] = &[("source", "a"), ("destination", "b")];

const KINDS: &[Kind] = &[
    Kind {
        name: "backup",
        command: "create",
        positionals: &[("paths", "paths")],
        repository: true,
        dry_run: true,
        assume_yes: false,
    },
    Kind {
        name: "forget",
        command: "forget",
        positionals: &[],
        repository: true,
        dry_run: true,
        assume_yes: false,
    },
    Kind {
        name: "prune",
        command: "prune",
        positionals: &[],
        repository: true,
        dry_run: true,
        assume_yes: false,
    },
    Kind {
        name: "copy",
        command: "copy",
        positionals: &[("snapshots", "snapshots")],
        repository: true,
        dry_run: true,
        assume_yes: false,
    },
    Kind {
        name: "check",
        command: "check",
        positionals: &[],
        repository: true,
        dry_run: false,
        assume_yes: false,
    },
    Kind {
        name: "mirror",
        command: "mirror",
        positionals: PLAIN,
        repository: false,
        dry_run: true,
        assume_yes: true,
    },
    Kind {
        name: "sync",
        command: "sync",
        positionals: PLAIN,
        repository: false,
        dry_run: true,
        assume_yes: true,
    },
];

/// Keys of a job that are `repo run`'s own, not flags.
const JOB_KEYS: &[&str] = &[
    "kind",
    "repository",
    "stop-on-failure",
    "ping-url",
    "on-success",
    "on-failure",
];

/// Refuses a job whose own keys (not flags, so not checked by clap) have
/// the wrong type, before any job runs: `stop-on-failure = "true"` would
/// otherwise be ignored and `on-success = true` run `sh -c true`.
fn own_keys_typed(config: &Config, job: &Section) -> Result<()> {
    for entry in &job.entries {
        let (want, ok) = match entry.key.as_str() {
            "stop-on-failure" => ("true or false", matches!(entry.value, Value::Bool(_))),
            "ping-url" | "on-success" | "on-failure" => {
                ("a string", matches!(entry.value, Value::Str(_)))
            }
            _ => continue,
        };
        if !ok {
            anyhow::bail!(mistake(
                &config.path,
                entry.line,
                format!(
                    "key `{}` in {}: give {want}, not {}",
                    entry.key,
                    job.title(),
                    entry.value.type_name()
                )
            ));
        }
    }
    Ok(())
}

/// How one job ended.
struct Outcome {
    name: String,
    kind: String,
    code: u8,
    secs: f64,
}

/// Runs the selected jobs; the exit code is the worst of theirs.
pub(super) fn run(
    args: &RunArgs,
    cli: &Cli,
    matches: &ArgMatches,
    cancel: &Arc<AtomicBool>,
    run_one: &dyn Fn(Cli) -> Result<u8>,
) -> Result<u8> {
    let path = Config::locate(cli.config.as_deref()).ok_or_else(|| {
        repo::Error::Usage(
            "no config file: none given with --config or REPO_CONFIG, and neither \
             $XDG_CONFIG_HOME/repo/repo.toml (~/.config/repo/repo.toml) nor /etc/repo/repo.toml \
             exists; write one (README: \"Scheduled backups\")"
                .into(),
        )
    })?;
    let config = Config::load(&path)?;
    if args.list {
        list(&config);
        return Ok(exit::OK);
    }
    let jobs = select(&config, &args.jobs)?;
    for job in &jobs {
        own_keys_typed(&config, job)?;
    }
    let passthrough = command_line_globals(matches);
    let mut outcomes = Vec::new();
    let mut metrics = Vec::new();
    for job in &jobs {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let (outcome, metric) = run_job(&config, job, args, &passthrough, cli, matches, run_one);
        // The job's own setting, else the top of the file's.
        let stop = match job.get("stop-on-failure").map(|e| &e.value) {
            Some(Value::Bool(b)) => *b,
            _ => config.stop_on_failure,
        };
        let code = outcome.code;
        outcomes.push(outcome);
        metrics.push(metric);
        if failed(code) && stop {
            break;
        }
    }
    if let Some(file) = &config.metrics_file
        && !args.dry_run
        && let Err(e) = monitor::write_metrics(file, &metrics)
    {
        monitor::warn(&format!(
            "cannot write the metrics file {}: {e}; check `metrics-file` in {}",
            file.display(),
            config.path.display()
        ));
    }
    summary(&outcomes, &jobs, cli);
    Ok(worst(&outcomes))
}

/// Runs one job with its pings and hooks.
fn run_job(
    config: &Config,
    job: &Section,
    args: &RunArgs,
    passthrough: &[OsString],
    cli: &Cli,
    matches: &ArgMatches,
    run_one: &dyn Fn(Cli) -> Result<u8>,
) -> (Outcome, monitor::Metric) {
    let setting = |k: &str| job.get(k).and_then(|e| e.value.scalar());
    // A dry run tells no monitor anything.
    let ping = setting("ping-url").filter(|_| !args.dry_run);
    let kind = kind_name(job);
    if !cli.quiet && !cli.json {
        eprintln!("== job {} ({})", escape(&job.name), escape(&kind));
    }
    if let Some(url) = &ping {
        monitor::ping(url, "/start", None);
    }
    let (start, began) = (Instant::now(), std::time::SystemTime::now());
    capture::start();
    let code =
        exit::code(job_cli(config, job, passthrough, args.dry_run, matches).and_then(run_one));
    let captured = capture::finish();
    let secs = start.elapsed().as_secs_f64();
    if !args.dry_run {
        if let Some(url) = &ping {
            let body = Some(monitor::output(&captured));
            monitor::ping(url, if failed(code) { "/fail" } else { "" }, body);
        }
        let hook = if failed(code) {
            "on-failure"
        } else {
            "on-success"
        };
        if let Some(command) = setting(hook) {
            monitor::hook(&command, &job.name, &kind, code, &captured);
        }
    }
    let metric = monitor::Metric {
        job: job.name.clone(),
        kind: kind.clone(),
        start: began,
        secs,
        code,
        report: captured.report,
    };
    let outcome = Outcome {
        name: job.name.clone(),
        kind,
        code,
        secs,
    };
    (outcome, metric)
}

fn kind_name(job: &Section) -> String {
    job.get("kind")
        .and_then(|e| e.value.scalar())
        .unwrap_or_default()
}

/// Whether an exit code is a failure (3, "saved, but some files could not
/// be read", is a warning).
fn failed(code: u8) -> bool {
    code != exit::OK && code != exit::PARTIAL
}

/// The worst exit code: the first failure's, else 3 if any job warned.
fn worst(outcomes: &[Outcome]) -> u8 {
    let codes = || outcomes.iter().map(|o| o.code);
    codes()
        .find(|&c| failed(c))
        .or_else(|| codes().find(|&c| c == exit::PARTIAL))
        .unwrap_or(exit::OK)
}

/// One line per job; jobs not run (after a stop) say so.
fn summary(outcomes: &[Outcome], jobs: &[&Section], cli: &Cli) {
    if cli.quiet && outcomes.iter().all(|o| !failed(o.code)) {
        return;
    }
    let mut lines = Vec::new();
    for job in jobs {
        lines.push(match outcomes.iter().find(|o| o.name == job.name) {
            Some(o) => format!(
                "job {:<16} {:<7} {:>7.1}s  {}",
                escape(&o.name),
                escape(&o.kind),
                o.secs,
                match o.code {
                    exit::OK => "ok".to_string(),
                    exit::PARTIAL => "ok, with warnings (exit 3)".to_string(),
                    c => format!("FAILED (exit {c})"),
                }
            ),
            None => format!(
                "job {:<16} {:<7}          not run",
                escape(&job.name),
                escape(&kind_name(job))
            ),
        });
    }
    for l in lines {
        // With --json stdout holds each job's report; the table goes aside.
        if cli.json {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    }
}

/// `repo run --list`.
fn list(config: &Config) {
    for job in &config.jobs {
        let on = job
            .get("repository")
            .or_else(|| job.get("destination"))
            .and_then(|e| e.value.scalar())
            .unwrap_or_default();
        println!(
            "{:<16} {:<7} {}",
            job.name,
            kind_name(job),
            monitor::hide_password(&on)
        );
    }
}

/// The jobs named (all when none is), checked to exist.
fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a Section>> {
    if names.is_empty() {
        if config.jobs.is_empty() {
            anyhow::bail!(repo::Error::Usage(format!(
                "{} has no jobs: add a [jobs.NAME] section",
                config.path.display()
            )));
        }
        return Ok(config.jobs.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.job(n).ok_or_else(|| {
                let known: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
                anyhow::Error::new(repo::Error::Usage(format!(
                    "no job `{n}` in {}; its jobs: {}",
                    config.path.display(),
                    known.join(", ")
                )))
            })
        })
        .collect()
}

/// The global flags `repo run` itself was given on the command line: they
/// apply to every job and win over the file. (What the environment gives
/// applies anyway.)
fn command_line_globals(matches: &ArgMatches) -> Vec<OsString> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let id = arg.get_id().as_str();
        let (Some(long), Some(ValueSource::CommandLine)) =
            (arg.get_long(), matches.value_source(id))
        else {
            continue;
        };
        if matches!(long, "repo" | "config") {
            continue;
        }
        match arg.get_action() {
            ArgAction::SetTrue => out.push(format!("--{long}").into()),
            ArgAction::Count => {
                out.extend((0..matches.get_count(id)).map(|_| OsString::from(format!("--{long}"))));
            }
            _ => {
                for v in matches.get_raw(id).into_iter().flatten() {
                    let mut a = OsString::from(format!("--{long}="));
                    a.push(v);
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The command line job `job` stands for, parsed.
fn job_cli(
    config: &Config,
    job: &Section,
    passthrough: &[OsString],
    dry_run: bool,
    matches: &ArgMatches,
) -> Result<Cli> {
    let file = &config.path;
    let kind_entry = job.get("kind");
    let kind = kind_entry
        .and_then(|e| e.value.scalar())
        .and_then(|k| KINDS.iter().find(|x| x.name == k))
        .ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            mistake(
                file,
                kind_entry.map_or(job.line, |e| e.line),
                format!("{} needs `kind =` one of {}", job.title(), names.join(", ")),
            )
        })?;
    let given = |key: &str| named::given(matches, key);
    let mut argv: Vec<OsString> = vec!["repo".into()];
    argv.extend(passthrough.iter().cloned());
    if kind.repository {
        let (globals, location) = repository_of(config, job, matches)?;
        argv.extend(globals);
        argv.push(format!("--repo={location}").into());
    }
    let target = Target::Command {
        name: kind.command,
        positionals: kind.positionals,
    };
    let own = section_args(&Cli::command(), &target, job, file, JOB_KEYS, &given)?;
    argv.extend(own.globals);
    argv.push(kind.command.into());
    // (Once: a job may be a dry run of its own, `dry-run = true`.)
    let own_dry_run = own.command.iter().any(|a| a == "--dry-run");
    argv.extend(own.command);
    if dry_run && kind.dry_run && !own_dry_run {
        argv.push("--dry-run".into());
    }
    if kind.assume_yes && job.get("yes").is_none() {
        argv.push("--yes".into());
    }
    argv.extend(own.positionals);
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| clap_mistake(file, job, &e))?;
    let mut cli = Cli::from_arg_matches(&parsed)?;
    super::normalize(&mut cli);
    named::resolve_destination(&mut cli, Some(config))?;
    Ok(cli)
}

/// The repository a job names: a section of the file, else a location.
fn repository_of(
    config: &Config,
    job: &Section,
    matches: &ArgMatches,
) -> Result<(Vec<OsString>, String)> {
    let entry = job.get("repository").ok_or_else(|| {
        mistake(
            &config.path,
            job.line,
            format!(
                "{} needs `repository =`: the name of a [repositories.NAME] section, or a location",
                job.title()
            ),
        )
    })?;
    let Value::Str(name) = &entry.value else {
        anyhow::bail!(mistake(
            &config.path,
            entry.line,
            format!("key `repository` in {}: give a string", job.title())
        ));
    };
    match config.repository(name) {
        // The job's own keys win over its repository's; a job that says how
        // to unlock says it instead of all of the repository's ways.
        Some(section) => named::repository_args(&config.path, section, &|k| {
            let credential = named::CREDENTIALS.contains(&k)
                && named::CREDENTIALS.iter().any(|c| job.get(c).is_some());
            named::given(matches, k) || job.get(k).is_some() || credential
        }),
        None if named::is_name(name) => anyhow::bail!(mistake(
            &config.path,
            entry.line,
            format!(
                "key `repository` in {}: no [repositories.{name}] in the file (write ./{name} for \
                 a folder of that name)",
                job.title()
            )
        )),
        None => Ok((Vec::new(), name.clone())),
    }
}
