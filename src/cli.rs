//! Command line: arguments, password, progress display and rendering.
//! The only place that prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

use repo::commands::{
    self, Context, check, create, human_bytes, init, ls, restore, snapshots, unlock,
};
use repo::progress::{Progress, Silent};
use repo::storage::{BackendOptions, Location};

#[derive(Debug, Parser)]
#[command(
    name = "repo",
    version,
    about = "Encrypted, deduplicating snapshots of directory trees",
    after_help = "The password comes from REPO_PASSWORD, --password-file, --password-command, or a prompt on a terminal.\nExit codes: 0 ok, 1 error, 2 usage, 3 snapshot saved but some files unreadable, 10 no repository, 11 locked, 12 wrong password."
)]
struct Cli {
    /// Repository location: a directory or file:///path.
    #[arg(
        short = 'r',
        long = "repo",
        env = "REPO_REPOSITORY",
        global = true,
        value_name = "LOCATION"
    )]
    repo: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(long, env = "REPO_PASSWORD_FILE", global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run COMMAND with sh -c and use its output as the password.
    #[arg(
        long,
        env = "REPO_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    password_command: Option<String>,
    /// S3 endpoint for self-hosted servers (MinIO, Ceph, Garage, SeaweedFS...).
    #[arg(long, env = "REPO_S3_ENDPOINT", global = true, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Extra CA certificate (PEM) to trust for FTPS.
    #[arg(long, env = "REPO_CA_CERT", global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Parallel transfers to remote storage (default 8 for S3, 4 for FTP).
    #[arg(
        long,
        env = "REPO_CONNECTIONS",
        global = true,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    connections: usize,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more detail (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Back up files and directories into a new snapshot.
    #[command(alias = "backup")]
    Create(create::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// List files in a snapshot.
    Ls(ls::Args),
    /// Restore a snapshot into a directory.
    Restore(restore::Args),
    /// Verify the repository's structure and, with --read-data, all data.
    Check(check::Args),
    /// Remove stale locks.
    Unlock(unlock::Args),
}

/// Progress on stderr: a bar on a terminal, plain warnings otherwise.
struct Display {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
    warned: AtomicU64,
    quiet: bool,
}

impl Display {
    fn new(show: bool, quiet: bool) -> Self {
        let bar = if show {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        } else {
            ProgressBar::hidden()
        };
        Display {
            bar,
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            quiet,
        }
    }

    fn update_msg(&self) {
        let (f, t) = (
            self.files.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed),
        );
        if t > 0 {
            self.bar.set_message(format!("{f}/{t} files"));
        } else {
            self.bar.set_message(format!("{f} files"));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Display {
    fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        // The scanner may still be behind the backup; never show done > total.
        self.bar.set_length(bytes.max(self.bar.position()));
        self.update_msg();
    }

    fn add_done(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bar.inc(bytes);
        if files > 0 {
            self.update_msg();
        }
    }

    fn warn(&self, path: &Path, message: &str) {
        self.warned.fetch_add(1, Ordering::Relaxed);
        let line = format!("error: {}: {message}", path.display());
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| eprintln!("{line}"));
        }
        let _ = self.quiet;
    }
}

fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read password file {}", path.display()))?,
    );
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Zeroizing::new(
        line.strip_suffix(b"\r").unwrap_or(line).to_vec(),
    ))
}

fn run_password_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the password command")?;
    if !out.status.success() {
        bail!(repo::Error::Usage(format!(
            "the password command failed ({}); check --password-command / REPO_PASSWORD_COMMAND",
            out.status
        )));
    }
    let raw = Zeroizing::new(out.stdout);
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Zeroizing::new(
        line.strip_suffix(b"\r").unwrap_or(line).to_vec(),
    ))
}

/// The FTP server password when neither the URL nor ~/.netrc has it.
fn ftp_password(location: &Location) -> Result<String> {
    if let Ok(p) = std::env::var("REPO_FTP_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!(repo::Error::Usage(format!(
            "no FTP password for {location}: put it in ~/.netrc, set REPO_FTP_PASSWORD, or run on a terminal to be asked"
        )));
    }
    rpassword::prompt_password(format!("FTP password for {location}: "))
        .context("cannot read the FTP password")
}

/// Finds the password: environment, file, command, then a terminal prompt.
fn password(cli: &Cli, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = std::env::var_os("REPO_PASSWORD") {
        return Ok(Zeroizing::new(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
        ));
    }
    if let Some(f) = &cli.password_file {
        return read_password_file(f);
    }
    if let Some(c) = &cli.password_command {
        return run_password_command(c);
    }
    if !std::io::stdin().is_terminal() {
        bail!(repo::Error::Usage(
            "no password given: set REPO_PASSWORD, REPO_PASSWORD_FILE or REPO_PASSWORD_COMMAND, or run on a terminal to be asked".into()
        ));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("repository password: ")
            .context("cannot read the password from the terminal")?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter the password again: ")
                .context("cannot read the password")?,
        );
        if *first != *again {
            bail!(repo::Error::Usage("the passwords do not match".into()));
        }
        if first.is_empty() {
            bail!(repo::Error::Usage(
                "an empty password is not allowed".into()
            ));
        }
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn short(hex: &str) -> &str {
    &hex[..8.min(hex.len())]
}

/// Parses arguments, runs the command, prints its report; returns the exit code.
pub fn main() -> Result<u8> {
    let cli = Cli::parse();
    // Repository objects (key objects above all) and restore scratch files are
    // private to the user; restored entries get their recorded modes afterwards.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cancel = Arc::new(AtomicBool::new(false));
    // First Ctrl-C asks for a clean stop (locks removed); a second one exits at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, cancel.clone())?;
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    let backend = BackendOptions {
        s3_endpoint: cli.s3_endpoint.clone(),
        ca_cert: cli.ca_cert.clone(),
        connections: cli.connections,
    };
    let mut location = Location::parse(cli.repo.as_deref().unwrap_or(""), &backend)?;
    if location.needs_password() {
        location.set_password(ftp_password(&location)?);
    }
    let tty = std::io::stderr().is_terminal();
    let show_bar = tty
        && !cli.quiet
        && !cli.json
        && matches!(
            cli.command,
            Command::Create(_) | Command::Restore(_) | Command::Check(_)
        );
    let display = Display::new(show_bar, cli.quiet);
    let pw = password(&cli, matches!(cli.command, Command::Init(_)))?;
    let ctx = Context {
        location,
        password: pw,
        progress: if show_bar || !cli.quiet {
            &display
        } else {
            &Silent
        },
        cancel: &cancel,
    };
    let code = dispatch(&cli, &ctx, show_bar);
    display.finish();
    code
}

fn dispatch(cli: &Cli, ctx: &Context, show_bar: bool) -> Result<u8> {
    let json = cli.json;
    let say = |s: String| {
        if !cli.quiet {
            println!("{s}");
        }
    };
    match &cli.command {
        Command::Init(a) => {
            let r = init::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                say(format!(
                    "created repository {} at {}",
                    short(&r.id),
                    r.location
                ));
                say("Keep the password safe: without it the data cannot be recovered.".into());
            }
            Ok(0)
        }
        Command::Create(a) => {
            let r = create::run(ctx, a, show_bar)?;
            if json {
                print_json(&r)?;
            } else {
                render_create(&r, cli.quiet, cli.verbose);
            }
            // Each unreadable path was already reported on stderr as it happened.
            if !r.errors.is_empty() {
                eprintln!(
                    "{} file(s) could not be read and are missing from the snapshot; fix access and run create again",
                    r.errors.len()
                );
                return Ok(3);
            }
            Ok(0)
        }
        Command::Snapshots(a) => {
            let r = snapshots::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                render_snapshots(&r);
            }
            Ok(0)
        }
        Command::Ls(a) => {
            let r = ls::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                let mut out = std::io::stdout().lock();
                for e in &r.entries {
                    if a.long {
                        let owner = if e.user.is_empty() {
                            e.uid.to_string()
                        } else {
                            e.user.clone()
                        };
                        let group = if e.group.is_empty() {
                            e.gid.to_string()
                        } else {
                            e.group.clone()
                        };
                        let link = e
                            .target
                            .as_ref()
                            .map(|t| format!(" -> {t}"))
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "{:<8} {:04o} {:>8} {:>8} {:>12} {} {}{link}",
                            e.kind,
                            e.mode,
                            owner,
                            group,
                            e.size,
                            &e.mtime[..19.min(e.mtime.len())],
                            e.path
                        )?;
                    } else {
                        writeln!(out, "{}", e.path)?;
                    }
                }
            }
            Ok(0)
        }
        Command::Restore(a) => {
            let r = restore::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                say(format!(
                    "restored snapshot {} to {}: {} files ({} already identical), {} dirs, {} others, {} in {:.1}s{}",
                    short(&r.snapshot),
                    r.target,
                    r.files,
                    r.skipped_files,
                    r.dirs,
                    r.others,
                    human_bytes(r.bytes),
                    r.duration_secs,
                    if a.verify {
                        format!(", {} files verified", r.verified_files)
                    } else {
                        String::new()
                    }
                ));
                if cli.verbose > 0 {
                    say(storage_line(&r.storage));
                }
            }
            if !r.errors.is_empty() {
                bail!(
                    "{} problem(s) during restore (listed above); those files may be missing or incomplete",
                    r.errors.len()
                );
            }
            Ok(0)
        }
        Command::Check(a) => {
            let r = check::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                say(format!(
                    "checked {} snapshots, {} trees, {} packs, {} blobs; read {} packs ({})",
                    r.snapshots,
                    r.trees,
                    r.packs,
                    r.blobs,
                    r.packs_read,
                    human_bytes(r.bytes_read)
                ));
                if cli.verbose > 0 {
                    say(storage_line(&r.storage));
                }
                for n in &r.notices {
                    if cli.verbose > 0 {
                        eprintln!("notice: {}: {}", n.object, n.message);
                    }
                }
                if !r.notices.is_empty() && cli.verbose == 0 {
                    eprintln!(
                        "notice: {} unused pack(s) not referenced by any index (-v lists them)",
                        r.notices.len()
                    );
                }
                for e in &r.errors {
                    eprintln!("error: {}: {}", e.object, e.message);
                }
            }
            if !r.errors.is_empty() {
                bail!(
                    "check found {} problem(s); the objects are listed above",
                    r.errors.len()
                );
            }
            if !json {
                say("no errors were found".into());
            }
            Ok(0)
        }
        Command::Unlock(a) => {
            let r = unlock::run(ctx, a)?;
            if json {
                print_json(&r)?;
            } else {
                say(format!("removed {} lock(s)", r.removed.len()));
            }
            Ok(0)
        }
    }
}

fn storage_line(s: &repo::storage::StatsReport) -> String {
    format!(
        "Storage: {} requests, {} sent, {} received",
        s.requests,
        human_bytes(s.bytes_sent),
        human_bytes(s.bytes_received)
    )
}

fn render_create(r: &create::Report, quiet: bool, verbose: u8) {
    if quiet {
        return;
    }
    let s = &r.summary;
    println!(
        "Files:   {} new, {} changed, {} unchanged",
        s.files_new, s.files_changed, s.files_unchanged
    );
    println!("Dirs:    {}   Others: {}", s.dirs, s.others);
    println!(
        "Added:   {} ({} stored) in {} new blobs",
        human_bytes(s.data_added),
        human_bytes(s.data_added_stored),
        s.blobs_new
    );
    println!(
        "Processed {} files, {} in {:.1}s ({} read)",
        s.files_new + s.files_changed + s.files_unchanged,
        human_bytes(s.total_bytes),
        s.duration_secs,
        human_bytes(s.bytes_read)
    );
    if verbose > 0 {
        println!("{}", storage_line(&r.storage));
    }
    match (&r.snapshot, r.dry_run) {
        (Some(id), _) => println!(
            "snapshot {} saved{}",
            short(id),
            r.parent
                .as_deref()
                .map(|p| format!(" (parent {})", short(p)))
                .unwrap_or_default()
        ),
        (None, true) => println!("dry run: nothing was written"),
        (None, false) => {}
    }
}

fn render_snapshots(list: &[snapshots::Entry]) {
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|e| {
            let s = &e.snapshot;
            [
                e.short_id.clone(),
                s.time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                s.host.clone(),
                s.tags.join(","),
                s.paths.join(" "),
                commands::human_bytes(s.summary.total_bytes),
            ]
        })
        .collect();
    let head = ["ID", "Time", "Host", "Tags", "Paths", "Size"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |c: &[String; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {:>w5$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5]
        )
    };
    println!("{}", line(&head.map(String::from)).trim_end());
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 10));
    for r in &rows {
        println!("{}", line(r).trim_end());
    }
    println!("{} snapshot(s)", rows.len());
}
