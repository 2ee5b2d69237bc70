//! One renderer per command report: how it reads for people, and as JSON.
//! `dispatch` pairs each command's `run` with its report's [`Render`].

mod admin;
mod backup;
mod copy;
mod listing;
mod maintenance;

use std::io::Write;

use anyhow::Result;

use repo::commands::human_bytes;

pub(super) use admin::lock_held;
pub(super) use backup::confirm_removals;

/// The global options that shape output.
pub(super) struct View {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
}

impl View {
    /// A line on stdout, unless `-q`.
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// With `-v`, what the command cost ([`storage_line`]) on stdout, after
    /// a report that is read by people.
    pub fn say_storage(&self, s: &repo::storage::StatsReport) {
        if self.verbose > 0 {
            self.say(storage_line(s));
        }
    }

    /// With `-v`, what the command cost on stderr, for commands whose stdout
    /// is the listing or the data asked for (`ls`, `snapshots`, `dump`);
    /// not again with `--json` where the report holds it (`in_json`).
    pub fn note_storage(&self, s: &repo::storage::StatsReport, in_json: bool) {
        if self.verbose > 0 && !(self.json && in_json) {
            eprintln!("{}", storage_line(s));
        }
    }
}

/// How a command's report is shown.
pub(super) trait Render: serde::Serialize {
    /// The command's arguments, for what they change in the text
    /// (`ls -l`, `restore --verify`).
    type Args;

    /// Whether [`Render::text`] is called even with `-q`: for listings that
    /// are the point of the command (`snapshots`, `ls`, `cat`), and for
    /// reports whose problems go to stderr in any case (`check`, `repair`).
    const TEXT_WHEN_QUIET: bool = false;

    /// The report for people on stdout; not called with `--json`.
    fn text(&self, args: &Self::Args, view: &View) -> Result<()>;

    /// The report as JSON on stdout.
    fn json(&self) -> Result<()> {
        print_json(self)
    }

    /// What follows the report in any format: summary lines on stderr, and
    /// the exit code, or the error that ends the run.
    fn outcome(&self, _view: &View) -> Result<u8> {
        Ok(super::exit::OK)
    }
}

/// Shows a report as the options ask; returns the exit code.
pub(super) fn show<R: Render>(report: &R, args: &R::Args, view: &View) -> Result<u8> {
    super::capture::report(report);
    if view.json {
        report.json()?;
    } else if !view.quiet || R::TEXT_WHEN_QUIET {
        report.text(args, view)?;
    }
    report.outcome(view)
}

/// A value as pretty JSON on stdout (also mirror's and sync's reports).
pub(super) fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The cost in requests and bytes, shown with `-v`.
fn storage_line(s: &repo::storage::StatsReport) -> String {
    let mut line = format!(
        "Storage: {} requests, {} sent, {} received",
        s.requests,
        human_bytes(s.bytes_sent),
        human_bytes(s.bytes_received)
    );
    if s.cache_hits + s.cache_misses > 0 {
        line += &format!("; cache: {} hits, {} misses", s.cache_hits, s.cache_misses);
    }
    if let Some(n) = s.connections_allowed {
        let noun = if n == 1 { "connection" } else { "connections" };
        line += &format!("; the server allowed only {n} {noun} at once");
    }
    line
}
