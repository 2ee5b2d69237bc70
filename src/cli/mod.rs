//! Command line: arguments, password, progress display and rendering.
//! The only place that prints.

/// Every line of output goes through [`out_line`], which ends quietly on a
/// closed pipe (`repo ls latest | head`) instead of panicking as std's
/// `println!` does; declared before `mod plain` so that it is used there too.
macro_rules! println {
    () => {
        $crate::cli::out_line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::cli::out_line(format_args!($($t)*))
    };
}

mod plain;

use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

use repo::commands::{
    self, Context, cat, check, create, diff, dump, find, forget, human_bytes, init, key, lock, ls,
    prune, repair, restore, snapshots, stats, tag, unlock,
};
use repo::engine::progress::Progress;
use repo::format::rawkey::RawKey;
use repo::repository::Credentials;
use repo::storage::{BackendOptions, Location};

#[derive(Debug, Parser)]
#[command(
    name = "repo",
    version,
    about = "Encrypted, deduplicating snapshots of directory trees",
    after_help = "The password comes from REPO_PASSWORD, --password-file, --password-command, or a prompt on a terminal; --key-file / REPO_KEY_FILE (from `repo key export`) opens without one.\nExit codes: 0 ok, 1 error, 2 usage, 3 snapshot saved but some files unreadable or changed, 10 no repository, 11 locked, 12 wrong password, 13 no usable credential, 129 hung up, 130 interrupted, 141 output closed."
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
    #[arg(
        long,
        env = "REPO_PASSWORD_FILE",
        global = true,
        value_name = "FILE",
        value_parser = path_or_empty()
    )]
    password_file: Option<PathBuf>,
    /// Run COMMAND with sh -c and use its output as the password.
    #[arg(
        long,
        env = "REPO_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    password_command: Option<String>,
    /// Open the repository with the master key in FILE (from `repo key
    /// export`) instead of a password: no prompt and no KDF, for scheduled
    /// backups. The file must not be readable by group or others.
    #[arg(
        long,
        env = "REPO_KEY_FILE",
        global = true,
        value_name = "FILE",
        value_parser = path_or_empty()
    )]
    key_file: Option<PathBuf>,
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
    /// Search snapshots for paths matching glob patterns.
    Find(find::Args),
    /// Show what changed between two snapshots.
    Diff(diff::Args),
    /// Write a file, or a directory as a tar archive, from a snapshot to stdout.
    Dump(dump::Args),
    /// Add, remove or replace the tags of snapshots.
    Tag(tag::Args),
    /// Print a decrypted repository object as JSON.
    Cat(cat::Args),
    /// Sizes: restore size, stored size, blobs, deduplication and compression.
    Stats(stats::Args),
    /// List, add, change and remove the passwords that open the repository.
    Key(key::Args),
    /// Hold a lock on the repository until interrupted or for --duration.
    Lock(lock::Args),
    /// Remove snapshots by id or by a retention policy (--prune: then prune).
    Forget(forget::Args),
    /// Delete data no snapshot references; repack partly used packs.
    Prune(prune::Args),
    /// Rebuild damaged or lost parts of the repository from what is intact.
    Repair(repair::Args),
    /// Keep a readable copy of a folder (local, s3://, ftp://) in step with it.
    Mirror(commands::plain::Args),
    /// Two-way sync of plain folders, with conflict detection.
    Sync(commands::plain::Args),
}

/// Set once stdout's reader went away; the process then exits 141.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout; after the reader went away, nothing.
pub(crate) fn out_line(args: std::fmt::Arguments) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
        && is_broken_pipe(&anyhow::Error::new(e))
    {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Whether an error is (or wraps) a write to a closed pipe: the reader of
/// our output went away, as with `| head`.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
            || matches!(e.downcast_ref::<repo::Error>(),
                Some(repo::Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether stdout's reader went away during the run (exit 141).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// A path argument that may be empty: `REPO_KEY_FILE=` (set but empty)
/// then means "not given", as an empty variable does for most tools, not
/// "a value is required for '--key-file'".
fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from)
}

/// Progress on stderr: a bar on a terminal, plain warnings otherwise.
struct Display {
    bar: ProgressBar,
    /// Whether anything is drawn, decided once: asking the bar takes its
    /// lock, and `add_done` runs once per file on every worker.
    shown: bool,
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
            shown: !bar.is_hidden(),
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
        // Called once per file from every worker: a hidden bar costs nothing,
        // and a shown one gets a new message every 64 files, not every file.
        if !self.shown {
            return;
        }
        let before = self.files.fetch_add(files, Ordering::Relaxed);
        self.bar.inc(bytes);
        if files > 0 && (before / 64 != (before + files) / 64) {
            self.update_msg();
        }
    }

    fn warn(&self, path: &Path, message: &str) {
        self.say("error", path, message);
    }

    fn caveat(&self, path: &Path, message: &str) {
        self.say("warning", path, message);
    }
}

impl Display {
    fn say(&self, level: &str, path: &Path, message: &str) {
        self.warned.fetch_add(1, Ordering::Relaxed);
        let line = format!(
            "{level}: {}: {}",
            escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())),
            escape(message)
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| eprintln!("{line}"));
        }
        let _ = self.quiet;
    }
}

/// Most bytes of a password line read from a file or command.
const MAX_PASSWORD_LINE: u64 = 64 * 1024;

/// The first line of `r`, without its line end, reading no further than
/// that line: a FIFO or a command that keeps writing is not waited on to
/// its end, and `/dev/zero` costs at most [`MAX_PASSWORD_LINE`] bytes.
fn first_line(r: impl std::io::Read, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::new());
    let mut r = std::io::BufReader::new(std::io::Read::take(r, MAX_PASSWORD_LINE + 1));
    std::io::BufRead::read_until(&mut r, b'\n', &mut line)
        .map_err(|e| repo::Error::NoCredential(format!("cannot read {what}: {e}")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 > MAX_PASSWORD_LINE {
        bail!(repo::Error::NoCredential(format!(
            "{what} has no line end within its first {} KiB; a password is one line",
            MAX_PASSWORD_LINE / 1024
        )));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let what = format!("the password file {}", path.display());
    let f = std::fs::File::open(path).map_err(|e| {
        repo::Error::NoCredential(format!(
            "cannot open {what}: {e}; check --password-file / REPO_PASSWORD_FILE"
        ))
    })?;
    first_line(f, &what)
}

fn run_password_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| repo::Error::NoCredential(format!("cannot run the password command: {e}")))?;
    let line = match child.stdout.take() {
        Some(out) => first_line(out, "the password command's output"),
        None => Ok(Zeroizing::new(Vec::new())),
    };
    // The pipe is closed now: a command still writing gets SIGPIPE and ends.
    let status = child.wait().map_err(|e| {
        repo::Error::NoCredential(format!("cannot wait for the password command: {e}"))
    })?;
    let line = line?;
    // Ended by SIGPIPE after its first line: it wrote more than we read.
    let cut_short = !line.is_empty() && status_is_sigpipe(&status);
    if !status.success() && !cut_short {
        bail!(repo::Error::NoCredential(format!(
            "the password command failed ({status}); check --password-command / REPO_PASSWORD_COMMAND"
        )));
    }
    Ok(line)
}

/// A password command ended by SIGPIPE after its first line was read.
fn status_is_sigpipe(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGPIPE) || status.code() == Some(128 + libc::SIGPIPE)
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

/// A key file when one is named (REPO_PASSWORD is then not used), else the password.
fn credentials(cli: &Cli) -> Result<Credentials> {
    let Some(file) = &cli.key_file else {
        let init = matches!(cli.command, Command::Init(_));
        let pw = password(cli, init)?;
        // `key add` and `key passwd` refuse an empty password; so does init,
        // from every source (REPO_PASSWORD= included).
        if init && pw.is_empty() {
            bail!(repo::Error::Usage(
                "an empty password is not allowed: set a non-empty REPO_PASSWORD, password file or command"
                    .into()
            ));
        }
        return Ok(Credentials::Password(pw));
    };
    if cli.password_file.is_some() || cli.password_command.is_some() {
        bail!(repo::Error::Usage(
            "both a key file and a password file or command are given; use only one".into()
        ));
    }
    read_key_file(file)
}

/// Reads a raw key file, refusing one that others can read (as ssh does
/// with private keys): the file alone opens the repository.
fn read_key_file(file: &Path) -> Result<Credentials> {
    let bad = |reason: String| {
        repo::Error::NoCredential(format!(
            "cannot use the key file {}: {reason}",
            file.display()
        ))
    };
    let unreadable = |e: std::io::Error| bad(format!("{e}; check --key-file / REPO_KEY_FILE"));
    // One open: the mode checked is that of the file then read. O_NONBLOCK:
    // a FIFO is refused below as not a regular file instead of waited on.
    let mut f = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true),
        libc::O_NONBLOCK,
    )
    .open(file)
    .map_err(unreadable)?;
    let md = f.metadata().map_err(unreadable)?;
    if !md.is_file() {
        bail!(bad(
            "it is not a regular file; name the file `repo key export` wrote".into()
        ));
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(bad(format!(
            "its mode is {mode:04o}, so others may read it and with it the whole repository; \
             run `chmod 600 {}`",
            file.display()
        )));
    }
    // One byte over the limit is enough for the decoder to refuse a large file.
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut f, repo::format::rawkey::MAX_RAW_KEY_LEN as u64 + 1),
        &mut bytes,
    )
    .map_err(unreadable)?;
    let (raw, master) = RawKey::decode(&bytes)
        .map_err(|e| bad(format!("{e}; make one with `repo key export FILE`")))?;
    Ok(Credentials::RawKey {
        master,
        key_id: raw.key,
        repository: raw.repository,
        file: file.to_path_buf(),
    })
}

/// Finds the password: environment, file, command, then a terminal prompt.
fn password(cli: &Cli, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    // Explicit sources win over REPO_PASSWORD, as in restic; two explicit ones are ambiguous.
    match (&cli.password_file, &cli.password_command) {
        (Some(_), Some(_)) => bail!(repo::Error::Usage(
            "both a password file and a password command are given; use only one".into()
        )),
        (Some(f), None) => return read_password_file(f),
        (None, Some(c)) => return run_password_command(c),
        (None, None) => {}
    }
    if let Some(p) = std::env::var_os("REPO_PASSWORD") {
        return Ok(Zeroizing::new(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
        ));
    }
    if !std::io::stdin().is_terminal() {
        bail!(repo::Error::NoCredential(
            "no password given: set REPO_PASSWORD, REPO_PASSWORD_FILE or REPO_PASSWORD_COMMAND, or run on a terminal to be asked".into()
        ));
    }
    let no_tty = |e: std::io::Error| {
        repo::Error::NoCredential(format!("cannot read the password from the terminal: {e}"))
    };
    let first =
        Zeroizing::new(rpassword::prompt_password("repository password: ").map_err(no_tty)?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter the password again: ").map_err(no_tty)?,
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

/// `restore --delete`: shows what would be removed and asks on a terminal,
/// as `mirror` does; without a terminal only `-y` goes ahead.
fn confirm_removals(
    gone: &[repo::engine::restore::mirror::Removal],
    target: &std::path::Path,
    quiet: bool,
) -> repo::Result<bool> {
    const SHOWN: usize = 200;
    // The list is part of the question: with --json or --quiet it goes to
    // stderr (stdout stays clean) rather than nowhere.
    let line = |l: String| {
        if quiet {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    };
    line(format!(
        "--delete: {} entr{} in {} that the snapshot lacks would be removed:",
        gone.len(),
        if gone.len() == 1 { "y" } else { "ies" },
        target.display()
    ));
    for g in gone.iter().take(SHOWN) {
        // Names come from the target, which other users may own:
        // escaped, so none can fake a line or erase one.
        let slash = if g.dir { "/" } else { "" };
        line(format!("  - {}{slash}", escape_bytes(&g.rel)));
    }
    if gone.len() > SHOWN {
        line(format!("  ... and {} more", gone.len() - SHOWN));
    }
    if !std::io::stdin().is_terminal() {
        return Err(repo::Error::Usage(format!(
            "--delete would remove {} entr{} from {} (listed above) but there is no terminal to \
             confirm: pass -y to go ahead",
            gone.len(),
            if gone.len() == 1 { "y" } else { "ies" },
            target.display()
        )));
    }
    plain::confirm().map_err(|e| repo::Error::Usage(format!("cannot ask for confirmation: {e}")))
}

fn short(hex: &str) -> &str {
    &hex[..8.min(hex.len())]
}

/// Parses arguments, runs the command, prints its report; returns the exit code.
pub fn main() -> Result<u8> {
    let mut cli = Cli::parse();
    for p in [&mut cli.key_file, &mut cli.password_file] {
        if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *p = None;
        }
    }
    if cli.password_command.as_deref() == Some("") {
        cli.password_command = None;
    }
    repo::error::warnings::set_sink(|m| eprintln!("warning: {}", escape(m)));
    // Repository objects (key objects above all) and restore scratch files are
    // private to the user; restored entries get their recorded modes afterwards.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cancel = Arc::new(AtomicBool::new(false));
    // Until the credentials are in hand nothing is held that needs cleaning
    // up, and reading them can block for good (a password FIFO nobody
    // writes to, a prompt): there the first signal ends the process at once.
    let at_once = AT_ONCE.get_or_init(|| Arc::new(AtomicBool::new(true)));
    let caught = Arc::new(AtomicUsize::new(0));
    // The first Ctrl-C, SIGTERM or SIGHUP (a closed terminal or ssh session)
    // asks for a clean stop (locks removed); a second one exits at once.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let code = if sig == signal_hook::consts::SIGHUP {
            129
        } else {
            130
        };
        signal_hook::flag::register_conditional_shutdown(sig, code, at_once.clone())?;
        signal_hook::flag::register_conditional_shutdown(sig, code, cancel.clone())?;
        signal_hook::flag::register_usize(sig, caught.clone(), sig as usize)?;
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    run(cli, &cancel).map_err(|e| match e.downcast_ref::<repo::Error>() {
        Some(repo::Error::Interrupted)
            if caught.load(Ordering::Relaxed) == signal_hook::consts::SIGHUP as usize =>
        {
            anyhow::Error::new(HungUp)
        }
        _ => e,
    })
}

/// Stopped by SIGHUP: exit code 129 (128 + 1), as shells report it.
#[derive(Debug, thiserror::Error)]
#[error("hung up (SIGHUP); the repository is left consistent and the lock was removed")]
pub struct HungUp;

/// Whether the first signal ends the process at once (see `main`).
static AT_ONCE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// While waiting on a person or a pipe for a password, with nothing held
/// that needs cleaning up, the first SIGINT/SIGTERM/SIGHUP ends the process
/// at once; otherwise it asks for a clean stop.
fn signals_end_at_once(on: bool) {
    if let Some(flag) = AT_ONCE.get() {
        flag.store(on, Ordering::SeqCst);
    }
}

fn run(cli: Cli, cancel: &Arc<AtomicBool>) -> Result<u8> {
    let backend = BackendOptions {
        s3_endpoint: cli.s3_endpoint.clone(),
        ca_cert: cli.ca_cert.clone(),
        connections: cli.connections,
    };
    if let Command::Mirror(a) | Command::Sync(a) = &cli.command {
        signals_end_at_once(false);
        let mode = if matches!(cli.command, Command::Sync(_)) {
            repo::engine::plain::Mode::Sync
        } else {
            repo::engine::plain::Mode::Mirror
        };
        return plain::run(
            a,
            mode,
            &backend,
            &ftp_password,
            cancel,
            cli.json,
            cli.quiet,
        );
    }
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
    let credentials = credentials(&cli)?;
    // From here a signal asks for a clean stop (locks removed).
    signals_end_at_once(false);
    let ctx = Context {
        location,
        credentials,
        // Problems with single paths are printed even with -q.
        progress: &display,
        cancel,
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
            // Each path was already reported on stderr as it happened.
            if !r.errors.is_empty() {
                eprintln!(
                    "{} file(s) could not be read and are missing from the snapshot; fix access and run create again",
                    r.errors.len()
                );
            }
            if !r.warnings.is_empty() {
                eprintln!(
                    "{} file(s) changed while being read; the snapshot holds what was read, run create again for a consistent copy",
                    r.warnings.len()
                );
            }
            Ok(if r.errors.is_empty() && r.warnings.is_empty() {
                0
            } else {
                3
            })
        }
        Command::Snapshots(a) => {
            let r = snapshots::run(ctx, a)?;
            match (a.group_by, json) {
                (Some(by), true) => print_json(&snapshots::group(r, by))?,
                (Some(by), false) => render_snapshot_groups(snapshots::group(r, by)),
                (None, true) => print_json(&r)?,
                (None, false) => render_snapshots(&r),
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
                        let link = match (&e.target_hex, &e.target) {
                            (Some(h), _) => {
                                format!(" -> {}", escape_bytes(&hex::decode(h).unwrap_or_default()))
                            }
                            (None, Some(t)) => format!(" -> {}", escape(t)),
                            (None, None) => String::new(),
                        };
                        writeln!(
                            out,
                            "{:<8} {:04o} {:>8} {:>8} {:>12} {} {}{link}{}",
                            e.kind,
                            e.mode,
                            owner,
                            group,
                            e.size,
                            &e.mtime[..19.min(e.mtime.len())],
                            entry_path(e),
                            damaged_suffix(&e.damaged)
                        )?;
                    } else {
                        writeln!(out, "{}{}", entry_path(e), damaged_suffix(&e.damaged))?;
                    }
                }
            }
            Ok(0)
        }
        Command::Restore(a) => {
            let ask = |gone: &[repo::engine::restore::mirror::Removal]| {
                confirm_removals(gone, &a.target, json || cli.quiet)
            };
            let r = restore::run(ctx, a, &ask)?;
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
                if a.delete {
                    say(format!(
                        "--delete: {} entries not in the snapshot removed, {} old versions kept under {}/.repo/",
                        r.deleted, r.archived, r.target
                    ));
                }
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
        Command::Find(a) => render(json, cli.quiet, &find::run(ctx, a)?, render_find),
        Command::Diff(a) => render(json, cli.quiet, &diff::run(ctx, a)?, render_diff),
        Command::Dump(a) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let r = match dump::run(ctx, a, &mut out) {
                // The reader went away (`| head`): stop quietly, as cat(1) does.
                Err(repo::Error::Io { cause, .. })
                    if cause.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    return Ok(141);
                }
                r => r?,
            };
            if cli.verbose > 0 {
                eprintln!(
                    "dumped {} of snapshot {} ({}): {} files, {} dirs, {} others, {}",
                    r.path,
                    short(&r.snapshot),
                    r.format,
                    r.stats.files,
                    r.stats.dirs,
                    r.stats.others,
                    human_bytes(r.stats.bytes)
                );
            }
            if r.stats.skipped > 0 {
                eprintln!(
                    "note: {} socket(s) left out: tar cannot hold them",
                    r.stats.skipped
                );
            }
            Ok(0)
        }
        Command::Tag(a) => render(json, cli.quiet, &tag::run(ctx, a)?, render_tag),
        Command::Cat(a) => {
            let text = cat::run(ctx, a)?;
            writeln!(std::io::stdout().lock(), "{text}")?;
            Ok(0)
        }
        Command::Stats(a) => render(json, cli.quiet, &stats::run(ctx, a)?, render_stats),
        Command::Key(a) => {
            // Asked before the repository is opened: nothing is held yet.
            signals_end_at_once(true);
            let pw = match a.action.new_password() {
                Some(n) => Some(new_password(n.new_password_file.as_deref())?),
                None => None,
            };
            signals_end_at_once(false);
            let r = key::run(ctx, a, pw.as_ref().map(|p| p.as_slice()))?;
            render(json, cli.quiet, &r, render_key)
        }
        Command::Lock(a) => {
            let (held, r) = lock::acquire(ctx, a)?;
            if !json {
                say(format!(
                    "holding {} lock (pid {}){}; Ctrl-C or SIGTERM releases it",
                    if r.exclusive {
                        "an exclusive"
                    } else {
                        "a shared"
                    },
                    r.pid,
                    a.duration
                        .map(|d| format!(" for {}s", d.as_secs()))
                        .unwrap_or_default()
                ));
                std::io::stdout().flush()?;
            }
            let r = lock::hold(held, a.duration, ctx.cancel)?;
            if json {
                print_json(&r)?;
            } else {
                say(format!("lock released after {:.1}s", r.held_secs));
            }
            Ok(0)
        }
        Command::Forget(a) => render(json, cli.quiet, &forget::run(ctx, a)?, render_forget),
        Command::Prune(a) => render(json, cli.quiet, &prune::run(ctx, a)?, render_prune),
        Command::Mirror(_) | Command::Sync(_) => bail!(repo::Error::Usage(
            "mirror and sync need no repository; they are run before one is opened".into()
        )),
        Command::Repair(a) => match repair::run(ctx, a)? {
            repair::Report::Index(r) => {
                for d in &r.damaged {
                    eprintln!("warning: {}: {}", d.object, d.message);
                }
                render(json, cli.quiet, &r, render_repair_index)
            }
            repair::Report::Snapshots(r) => render(json, cli.quiet, &r, render_repair_snapshots),
        },
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
                escape(&s.host).into_owned(),
                escape(&s.tags.join(",")).into_owned(),
                escape(&s.paths.join(" ")).into_owned(),
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

/// Prints a report as JSON or, unless quiet, as text.
fn render<T: serde::Serialize>(json: bool, quiet: bool, r: &T, text: fn(&T)) -> Result<u8> {
    if json {
        print_json(r)?;
    } else if !quiet {
        text(r);
    }
    Ok(0)
}

/// The new password for `key add` / `key passwd`: from a file, or asked twice.
fn new_password(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let pw = match file {
        Some(f) => read_password_file(f)?,
        None => {
            if !std::io::stdin().is_terminal() {
                bail!(repo::Error::Usage(
                    "no new password: give --new-password-file FILE, or run on a terminal to be asked"
                        .into()
                ));
            }
            let first = Zeroizing::new(
                rpassword::prompt_password("new password: ")
                    .context("cannot read the new password from the terminal")?,
            );
            let again = Zeroizing::new(
                rpassword::prompt_password("enter the new password again: ")
                    .context("cannot read the new password")?,
            );
            if *first != *again {
                bail!(repo::Error::Usage("the new passwords do not match".into()));
            }
            Zeroizing::new(first.as_bytes().to_vec())
        }
    };
    if pw.is_empty() {
        bail!(repo::Error::Usage(
            "an empty password is not allowed".into()
        ));
    }
    Ok(pw)
}

fn local_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn render_snapshot_groups(groups: Vec<snapshots::Group>) {
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("snapshots for {}:", g.group);
        render_snapshots(&g.snapshots);
    }
    if groups.is_empty() {
        println!("0 snapshot(s)");
    }
}

fn render_find(r: &find::Report) {
    let mut current = "";
    for m in &r.matches {
        if m.snapshot != current {
            current = &m.snapshot;
            println!("snapshot {}:", short(current));
        }
        let e = &m.entry;
        println!(
            "  {:<8} {:04o} {:>12} {} {}",
            e.kind,
            e.mode,
            e.size,
            &e.mtime[..19.min(e.mtime.len())],
            entry_path(e)
        );
    }
    let hit: std::collections::BTreeSet<&str> =
        r.matches.iter().map(|m| m.snapshot.as_str()).collect();
    println!(
        "{} match(es) in {} of {} snapshot(s) searched",
        r.matches.len(),
        hit.len(),
        r.snapshots.len()
    );
}

fn render_diff(r: &diff::Report) {
    println!(
        "comparing snapshot {} to {}:",
        short(&r.snapshot1),
        short(&r.snapshot2)
    );
    for c in &r.diff.changes {
        let fields = if c.fields.is_empty() {
            String::new()
        } else {
            format!("  ({})", c.fields.join(", "))
        };
        println!("{}    {}{fields}", c.change.marker(), escape(&c.path));
    }
    let d = &r.diff;
    println!();
    println!(
        "Files:    {} new, {} removed, {} changed",
        d.added.files, d.removed.files, d.modified.files
    );
    println!("Dirs:     {} new, {} removed", d.added.dirs, d.removed.dirs);
    println!(
        "Others:   {} new, {} removed, {} changed",
        d.added.others, d.removed.others, d.modified.others
    );
    println!(
        "Data:     {} added, {} removed, changed files {} -> {}",
        human_bytes(d.added.bytes),
        human_bytes(d.removed.bytes),
        human_bytes(d.modified.bytes_before),
        human_bytes(d.modified.bytes_after)
    );
    println!(
        "Metadata: {} entries changed only in metadata; {} identical subtrees skipped",
        d.metadata_only, d.identical_subtrees
    );
}

fn render_tag(r: &tag::Report) {
    for c in &r.snapshots {
        match &c.new {
            Some(new) => println!(
                "snapshot {} saved as {}: tags [{}]",
                short(&c.old),
                short(new),
                c.tags.join(", ")
            ),
            None => println!(
                "snapshot {} unchanged: tags [{}]",
                short(&c.old),
                c.tags.join(", ")
            ),
        }
    }
}

fn render_stats(r: &stats::Report) {
    let s = &r.stats;
    println!("Snapshots:       {}", s.snapshots);
    match r.mode {
        stats::Mode::RestoreSize => {
            println!(
                "Restore size:    {} ({} files, {} dirs, {} others)",
                human_bytes(s.restore_size),
                s.files,
                s.dirs,
                s.others
            );
        }
        stats::Mode::RawData => {
            println!(
                "Blobs:           {} data, {} tree",
                s.data_blobs, s.tree_blobs
            );
            println!(
                "Raw data:        {} (+ {} of trees)",
                human_bytes(s.raw_data),
                human_bytes(s.raw_trees)
            );
            println!("Stored size:     {}", human_bytes(s.stored_size));
            println!("Restore size:    {}", human_bytes(s.restore_size));
            println!("Dedup ratio:     {:.2}x", s.dedup_ratio);
            println!("Compression:     {:.2}x", s.compression_ratio);
        }
    }
    println!(
        "Repository:      {} packs, {}; {} index object(s)",
        r.repository_packs,
        human_bytes(r.repository_pack_bytes),
        r.repository_index_objects
    );
}

fn render_key(r: &key::Report) {
    if !r.keys.is_empty() {
        println!(" {:<8}  {:<19}  {:<16}  User", "ID", "Created", "Host");
        for k in &r.keys {
            let created = k
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|t| local_time(&t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|| "?".into());
            let mut line = format!(
                "{}{:<8}  {:<19}  {:<16}  {}",
                if k.current { "*" } else { " " },
                short(&k.id),
                created,
                escape(&k.host),
                escape(&k.user)
            );
            if let Some(e) = &k.error {
                line.push_str(&format!("  (unreadable: {})", escape(e)));
            }
            println!("{}", line.trim_end());
        }
        println!("* the key that opened the repository now");
    }
    match (&r.added, &r.removed) {
        (Some(a), Some(rm)) => println!(
            "password changed: added key {}, removed key {}",
            short(a),
            short(rm)
        ),
        (Some(a), None) => println!("added key {}", short(a)),
        (None, Some(rm)) => println!("removed key {}", short(rm)),
        (None, None) => {}
    }
    if let Some(f) = &r.exported {
        println!(
            "wrote the master key to {} (mode 0600); use it with --key-file or REPO_KEY_FILE.\n\
             Anyone who holds this file can read and change the repository, and changing or \
             removing passwords does not revoke it: keep it like an SSH private key.",
            f.display()
        );
    }
}

fn render_forget(r: &forget::Report) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for g in &r.groups {
        println!("snapshots for {}:", g.group);
        println!("  keep {} snapshot(s):", g.keep.len());
        for k in &g.keep {
            println!(
                "    {}  {}  {}",
                k.short_id,
                local_time(&k.time),
                k.reasons.join(", ")
            );
        }
        if !g.remove.is_empty() {
            println!("  {verb} {} snapshot(s):", g.remove.len());
            for x in &g.remove {
                println!("    {}  {}", x.short_id, local_time(&x.time));
            }
        }
    }
    if r.groups.is_empty() {
        for id in &r.removed {
            println!("{verb} snapshot {}", short(id));
        }
    }
    println!("{verb} {} snapshot(s) in all", r.removed.len());
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
    if let Some(p) = &r.prune {
        render_prune(p);
    }
}

/// ` [damaged: …]` after an `ls` entry a repaired snapshot lists as damaged.
fn damaged_suffix(d: &Option<String>) -> String {
    d.as_ref()
        .map(|d| format!("  [damaged: {}]", escape(d)))
        .unwrap_or_default()
}

fn render_repair_index(r: &repo::engine::check::repair::RepairIndexReport) {
    println!(
        "scanned {} packs: {} blobs; {} damaged pack(s)",
        r.packs_scanned,
        r.blobs_indexed,
        r.damaged.len()
    );
    match &r.new_index {
        Some(id) => println!(
            "wrote index {} replacing {} old index object(s); run `repo check` next",
            short(id),
            r.old_indexes
        ),
        None => println!(
            "dry run: would replace {} index object(s) with one",
            r.old_indexes
        ),
    }
}

fn render_repair_snapshots(r: &repo::engine::check::repair::RepairSnapshotsReport) {
    if r.packs_read > 0 || r.blobs_failed > 0 {
        println!(
            "read {} pack(s): {} data blob(s) failed authentication",
            r.packs_read, r.blobs_failed
        );
    }
    for s in &r.repaired {
        println!(
            "snapshot {}: {} damaged path(s)",
            short(&s.old),
            s.damaged.len()
        );
        for d in &s.damaged {
            if d.kind == "dir" {
                println!("  dir  {}: contents lost ({})", escape(&d.path), d.reason);
            } else {
                println!(
                    "  file {}: {} bytes lost ({})",
                    escape(&d.path),
                    d.size,
                    d.reason
                );
            }
        }
        match &s.new {
            None => println!(
                "  would be rewritten{}",
                if r.forget {
                    " and the original deleted"
                } else {
                    ""
                }
            ),
            Some(new) => println!(
                "  rewritten as {}; original {}",
                short(new),
                if s.forgotten {
                    "deleted"
                } else {
                    "kept (delete it with `repo forget` once you no longer need it)"
                }
            ),
        }
    }
    if r.repaired.is_empty() {
        println!(
            "no damage found in {} snapshot(s){}",
            r.snapshots_checked,
            if r.packs_read == 0 {
                " (add --read-data to also authenticate the data)"
            } else {
                ""
            }
        );
    } else if r.dry_run {
        println!(
            "dry run: {} of {} snapshot(s) would be rewritten; nothing was changed",
            r.repaired.len(),
            r.snapshots_checked
        );
    } else {
        println!(
            "rewrote {} of {} snapshot(s) ({} new tree blobs); run `repo prune` to remove the damaged data{}",
            r.repaired.len(),
            r.snapshots_checked,
            r.trees_written,
            if r.forget {
                ""
            } else {
                " once the originals are forgotten"
            }
        );
    }
}

fn render_prune(r: &repo::engine::prune::PruneReport) {
    let would = if r.dry_run { "would be " } else { "" };
    println!(
        "{} snapshot(s) use {} blobs; {} unused blob entries ({})",
        r.snapshots,
        r.blobs_used,
        r.blobs_unused,
        human_bytes(r.bytes_unused)
    );
    println!(
        "packs: {} ({}) before; {} {would}removed, {} {would}repacked, {} unindexed {would}removed, {} kept",
        r.packs_before,
        human_bytes(r.bytes_before),
        r.packs_removed,
        r.packs_repacked,
        r.packs_unindexed,
        r.packs_kept
    );
    if r.packs_unindexed_kept > 0 {
        println!(
            "kept: {} unindexed pack(s) younger than {} min, since a lock that is stale only by its age exists (a suspended backup may still index them; the next prune removes them once older)",
            r.packs_unindexed_kept,
            r.unindexed_grace_secs.div_ceil(60)
        );
    }
    if r.blobs_repacked > 0 {
        println!(
            "repack: {} blobs ({}) {}copied{}",
            r.blobs_repacked,
            human_bytes(r.bytes_repacked),
            if r.dry_run { "would be " } else { "" },
            if r.dry_run {
                String::new()
            } else {
                format!(" into {} new pack(s)", r.packs_written)
            }
        );
    }
    if !r.dry_run && (r.index_written > 0 || r.index_removed > 0) {
        println!(
            "index: wrote {} object(s), removed {}",
            r.index_written, r.index_removed
        );
    }
    println!(
        "{}: {} packs, {} ({} freed)",
        if r.dry_run {
            "estimated after"
        } else {
            "after"
        },
        r.packs_after,
        human_bytes(r.bytes_after),
        human_bytes(r.bytes_before.saturating_sub(r.bytes_after))
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}

/// Text safe to print on a terminal: control characters (newline, escape,
/// C1 ...) as `\n`, `\t`, `\r` or `\xNN`, bytes that are not UTF-8 as
/// `\xNN`, and a backslash as `\\`, so that no name can move the cursor,
/// recolour the screen, or pass for two lines or for another name.
pub(crate) fn escape_bytes(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// An error line safe for a terminal: control characters escaped as by
/// [`escape_bytes`] (a name in a message cannot move the cursor or fake a
/// second line); backslashes are left alone, so paths in messages read as
/// usual.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&escape_bytes(c.to_string().as_bytes()));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`escape_bytes`] for text that is already a string.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(|c| c.is_control() || c == '\\') {
        std::borrow::Cow::Owned(escape_bytes(s.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The path of an `ls`/`find` entry for text output: its raw bytes when
/// they are not UTF-8, escaped.
fn entry_path(e: &ls::Entry) -> String {
    match e.path_hex.as_deref().and_then(|h| hex::decode(h).ok()) {
        Some(raw) => escape_bytes(&raw),
        None => escape(&e.path).into_owned(),
    }
}
