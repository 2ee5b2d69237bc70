//! Command line: arguments, secrets, progress and rendering; the only
//! place that prints.
//!
//! - `args`: the clap types; `secrets`: passwords and key files;
//!   `progress`: the bar on stderr; `dispatch`: each command paired with
//!   its report's renderer (`render/`); `exit`: every exit code; `text`:
//!   escaping for the terminal; `plain`: mirror and sync.

/// Every line of output goes through [`out_line`], which ends quietly on a
/// closed pipe (`repo ls latest | head`) instead of panicking as std's
/// `println!` does; declared before the modules so that it is used there too.
macro_rules! println {
    () => {
        $crate::cli::out_line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::cli::out_line(format_args!($($t)*))
    };
}

/// Every line on stderr goes through [`err_line`], which also keeps it for
/// the job of `repo run` that printed it (see `capture`).
macro_rules! eprintln {
    ($($t:tt)*) => {
        $crate::cli::err_line(format_args!($($t)*))
    };
}

mod args;
mod capture;
mod config;
mod dispatch;
pub mod exit;
mod jobs;
mod monitor;
mod named;
mod plain;
mod progress;
mod render;
mod schedule;
mod secrets;
mod text;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Result;

use repo::commands::Context;
use repo::storage::{BackendOptions, Location};

use args::{Cli, Command};
use exit::{HungUp, is_broken_pipe};
use progress::Display;
use text::{escape, escape_bytes, escape_controls};

/// Set once stdout's reader went away; the process then exits 141.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout; after the reader went away, nothing.
pub(crate) fn out_line(args: std::fmt::Arguments) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let text = args.to_string();
    capture::line(&text);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        && is_broken_pipe(&anyhow::Error::new(e))
    {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Writes one line to stderr (a closed stderr is ignored, as by
/// `std::eprintln!`'s callers nothing could be done about it).
pub(crate) fn err_line(args: std::fmt::Arguments) {
    let text = args.to_string();
    capture::line(&text);
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(text.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}

/// Whether stdout's reader went away during the run (exit 141).
fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// Empty values (`REPO_KEY_FILE=`) mean "not given", as for most tools.
fn normalize(cli: &mut Cli) {
    for p in [
        &mut cli.key_file,
        &mut cli.password_file,
        &mut cli.cache_dir,
        &mut cli.config,
    ] {
        if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *p = None;
        }
    }
    if cli.password_command.as_deref() == Some("") {
        cli.password_command = None;
    }
}

pub fn main() -> Result<u8> {
    let (mut cli, matches) = named::parse(std::env::args_os().collect())?;
    normalize(&mut cli);
    named::resolve_destination(&mut cli, None)?;
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
    let outcome = match &cli.command {
        Command::Schedule(a) => schedule::run(a, cli.config.as_deref()),
        Command::Run(a) => jobs::run(a, &cli, &matches, &cancel, &|job| {
            signals_end_at_once(true);
            run(job, &cancel)
        }),
        _ => run(cli, &cancel),
    };
    outcome.map_err(|e| match e.downcast_ref::<repo::Error>() {
        Some(repo::Error::Interrupted)
            if caught.load(Ordering::Relaxed) == signal_hook::consts::SIGHUP as usize =>
        {
            anyhow::Error::new(HungUp)
        }
        _ => e,
    })
}

/// Where the cache of remote repositories (and of large local indexes'
/// files) lives: `--cache-dir`, else
/// `$XDG_CACHE_HOME/repo`, else `~/.cache/repo`; none with `--no-cache` or
/// without a home directory.
fn cache_root(cli: &Cli) -> Option<std::path::PathBuf> {
    if cli.no_cache {
        return None;
    }
    if let Some(dir) = &cli.cache_dir {
        return Some(dir.clone());
    }
    let absolute = |v: std::ffi::OsString| {
        let p = std::path::PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|d| d.join("repo"))
}

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

/// How to reach remote storage, from the global flags.
fn backend(cli: &Cli) -> BackendOptions {
    BackendOptions {
        s3_endpoint: cli.s3_endpoint.clone(),
        ca_cert: cli.ca_cert.clone(),
        connections: cli.connections,
    }
}

fn run(cli: Cli, cancel: &Arc<AtomicBool>) -> Result<u8> {
    let backend = backend(&cli);
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
            &secrets::ftp_password,
            cancel,
            cli.json,
            cli.quiet,
        );
    }
    let mut location = Location::parse(cli.repo.as_deref().unwrap_or(""), &backend)?;
    if location.needs_password() {
        location.set_password(secrets::ftp_password(&location)?);
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
    let credentials = secrets::credentials(&cli)?;
    // From here a signal asks for a clean stop (locks removed).
    signals_end_at_once(false);
    let ctx = Context {
        location,
        credentials,
        cache: cache_root(&cli),
        // Problems with single paths are printed even with -q.
        progress: &display,
        cancel,
    };
    let code = dispatch::dispatch(&cli, &ctx, show_bar);
    display.finish();
    code
}
