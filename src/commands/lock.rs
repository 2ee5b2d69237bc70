//! `repo lock`: hold a lock on the repository (by default exclusive, which
//! keeps every other command that takes a lock out) until interrupted or
//! for a given time. Useful for maintenance on the storage itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Context;
use crate::error::{Error, Result};
use crate::repository::lock::{self, LockGuard};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How long to hold the lock (like 90s, 10m, 2h, 1d, 1h30m); default: until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Take a shared lock instead, which keeps out only exclusive users (prune, forget, tag).
    #[arg(long)]
    pub shared: bool,
}

/// Parses `90s`, `10m`, `2h`, `1d`, `1h30m` (s, m = minutes, h, d).
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("duration {s:?} is invalid: write it like 90s, 10m, 2h or 1h30m");
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let v: u64 = num.parse().map_err(|_| bad())?;
        total = v
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub exclusive: bool,
    pub pid: u32,
    /// How long it was held, in seconds (0 right after taking it).
    pub held_secs: f64,
    /// Whether it ended because of an interruption rather than `--duration`.
    pub interrupted: bool,
}

/// A lock taken by `repo lock`.
pub(crate) struct Held {
    guard: LockGuard,
    since: Instant,
    exclusive: bool,
}

/// Takes the lock, tells `held` (the CLI shows it is held), then keeps it
/// as [`hold`] does and reports how long it was held.
pub fn run(ctx: &Context, args: &Args, held: &dyn Fn(&Report) -> Result<()>) -> Result<Report> {
    let (lock, report) = acquire(ctx, args)?;
    held(&report)?;
    hold(lock, args.duration, ctx.cancel)
}

/// Takes the lock; [`run`] reports it and then calls [`hold`].
fn acquire(ctx: &Context, args: &Args) -> Result<(Held, Report)> {
    let repo = ctx.open()?;
    let guard = lock::lock(&repo, !args.shared, "lock")?;
    let report = Report {
        exclusive: !args.shared,
        pid: std::process::id(),
        held_secs: 0.0,
        interrupted: false,
    };
    Ok((
        Held {
            guard,
            since: Instant::now(),
            exclusive: !args.shared,
        },
        report,
    ))
}

/// Keeps the lock (refreshed in the background) until `duration` has
/// passed or `cancel` is set, then removes it.
fn hold(held: Held, duration: Option<Duration>, cancel: &AtomicBool) -> Result<Report> {
    let interrupted = loop {
        if cancel.load(Ordering::Relaxed) {
            break true;
        }
        // Suspended past the stale period, the lock no longer keeps anyone out.
        if let Some(e) = held.guard.lapsed() {
            drop(held.guard);
            return Err(e);
        }
        if duration.is_some_and(|d| held.since.elapsed() >= d) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = Report {
        exclusive: held.exclusive,
        pid: std::process::id(),
        held_secs: held.since.elapsed().as_secs_f64(),
        interrupted,
    };
    drop(held.guard);
    if interrupted && duration.is_some() {
        return Err(Error::Interrupted);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        for bad in ["", "10", "m", "1x", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
