//! Prompts and rendering for `repo mirror` and `repo sync`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};

use repo::commands::human_bytes;
use repo::commands::plain::{self, Args, Session};
use repo::engine::plain::plan::{Action, Conflict, ConflictKind, NoteKind, Op, Why};
use repo::engine::plain::{Mode, Resolve, SideId};
use repo::format::manifest::{Entry, EntryKind};
use repo::storage::{BackendOptions, Location};

use super::exit;
use super::render::print_json;

fn side_name(s: SideId, mode: Mode) -> &'static str {
    match (s, mode) {
        (SideId::A, Mode::Sync) => "first side",
        (SideId::B, Mode::Sync) => "second side",
        (SideId::A, _) => "source",
        (SideId::B, _) => "destination",
    }
}

fn describe(e: Option<&Entry>) -> String {
    match e {
        None => "absent".into(),
        Some(e) if e.kind == EntryKind::File => format!(
            "{}, modified {}",
            human_bytes(e.size),
            chrono::DateTime::from_timestamp_nanos(e.mtime_ns)
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
        ),
        Some(e) => format!("{:?}", e.kind).to_lowercase(),
    }
}

fn conflict_text(c: &Conflict, mode: Mode) -> String {
    let what = match c.kind {
        ConflictKind::BothModified => "changed on both sides since the last sync".to_string(),
        ConflictKind::BothCreated => "created on both sides with different content".into(),
        ConflictKind::DeletedChanged { deleted } => format!(
            "deleted on the {} but changed on the {}",
            side_name(deleted, mode),
            side_name(deleted.other(), mode)
        ),
        ConflictKind::SameTime => {
            "differs on the two sides, with the same modification time, so neither is newer".into()
        }
        ConflictKind::ChangedOnDest => "changed on the destination since the last run".into(),
        ConflictKind::CreatedOnDest => "created on the destination since the last run".into(),
        ConflictKind::DeletedOnDest => "deleted on the destination since the last run".into(),
    };
    format!(
        "{}: {what} ({}: {}; {}: {})",
        super::escape_bytes(&c.path),
        side_name(SideId::A, mode),
        describe(c.a.as_ref()),
        side_name(SideId::B, mode),
        describe(c.b.as_ref())
    )
}

/// Asks on the terminal which side wins one conflict.
fn ask(c: &Conflict, mode: Mode) -> Result<Option<SideId>> {
    let stdin = std::io::stdin();
    loop {
        eprint!(
            "  {}\n  keep [1] {} / [2] {} / [s]kip? ",
            conflict_text(c, mode),
            side_name(SideId::A, mode),
            side_name(SideId::B, mode)
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        match line.trim() {
            "1" | "l" | "local" => return Ok(Some(SideId::A)),
            "2" | "r" | "remote" => return Ok(Some(SideId::B)),
            "s" | "skip" | "" => return Ok(None),
            _ => eprintln!("  answer 1, 2 or s"),
        }
    }
}

fn symbol(a: &Action) -> &'static str {
    match (a.op, a.why) {
        (Op::Delete { .. }, _) => "-",
        (_, Why::New) => "+",
        _ => "~",
    }
}

fn direction(a: &Action, mode: Mode) -> String {
    match a.op {
        Op::Copy { to } => format!("to {}", side_name(to, mode)),
        Op::Delete { on } => format!("on {}", side_name(on, mode)),
    }
}

/// Prints the planned changes as a tree of folders with counts and bytes.
fn render_plan(s: &Session, limit: usize) {
    let plan = &s.prepared.plan;
    let mode = s.opts.mode;
    let mut dirs: BTreeMap<Vec<u8>, Vec<&Action>> = BTreeMap::new();
    for a in &plan.actions {
        let dir = match a.path.iter().rposition(|&c| c == b'/') {
            Some(i) => a.path[..i].to_vec(),
            None => Vec::new(),
        };
        dirs.entry(dir).or_default().push(a);
    }
    let copies = plan
        .actions
        .iter()
        .filter(|a| matches!(a.op, Op::Copy { .. }))
        .count();
    let bytes: u64 = plan.actions.iter().map(|a| a.size).sum();
    let open = plan
        .conflicts
        .iter()
        .filter(|c| plan.keep_base.contains(&c.path))
        .count();
    println!(
        "plan: {} copies ({}), {} deletions, {} conflicts left ({} settled)",
        copies,
        human_bytes(bytes),
        plan.actions.len() - copies,
        open,
        plan.conflicts.len() - open
    );
    let mut shown = 0;
    for (dir, acts) in &dirs {
        if shown >= limit {
            println!("  ... and {} more changes", plan.actions.len() - shown);
            break;
        }
        let depth = if dir.is_empty() {
            0
        } else {
            dir.iter().filter(|&&c| c == b'/').count() + 1
        };
        let b: u64 = acts.iter().map(|a| a.size).sum();
        let name = if dir.is_empty() {
            "./".to_string()
        } else {
            format!("{}/", super::escape_bytes(dir))
        };
        println!(
            "{}{name}  ({} changes, {})",
            "  ".repeat(depth),
            acts.len(),
            human_bytes(b)
        );
        for a in acts {
            if shown >= limit {
                break;
            }
            shown += 1;
            let leaf = a.path.rsplit(|&c| c == b'/').next().unwrap_or(&a.path);
            let size = if a.size > 0 {
                format!("  {}", human_bytes(a.size))
            } else {
                String::new()
            };
            println!(
                "{}  {} {}{size}  ({:?} {})",
                "  ".repeat(depth),
                symbol(a),
                super::escape_bytes(leaf),
                a.why,
                direction(a, mode)
            );
        }
    }
}

/// Asks "go ahead? [y/N]" on the terminal (also for `restore --delete`).
pub(super) fn confirm() -> Result<bool> {
    eprint!("go ahead? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Runs `mirror` or `sync` end to end; returns the exit code.
#[allow(clippy::too_many_arguments)]
pub fn run(
    args: &Args,
    default_mode: Mode,
    backend: &BackendOptions,
    password: &dyn Fn(&Location) -> Result<String>,
    cancel: &AtomicBool,
    json: bool,
    quiet: bool,
) -> Result<u8> {
    let started = std::time::Instant::now();
    let mut locs = Vec::new();
    for spec in [&args.a, &args.b] {
        let mut l = Location::parse(spec, backend)?;
        if l.needs_password() {
            l.set_password(password(&l)?);
        }
        locs.push(l);
    }
    let mut s = plain::prepare(args, default_mode, &locs[0], &locs[1], cancel)?;
    let mode = s.opts.mode;
    let tty = std::io::stdin().is_terminal();
    print_findings(&s, mode, json || quiet);
    let conflicts = s.prepared.plan.conflicts.clone();
    if !conflicts.is_empty() {
        eprintln!("{} conflict(s):", conflicts.len());
        for c in &conflicts {
            eprintln!("  {}", conflict_text(c, mode));
        }
        for (i, c) in conflicts.iter().enumerate() {
            let winner = match args.resolve {
                Resolve::Ask if tty && !args.dry_run => ask(c, mode)?,
                r => c.winner(r),
            };
            if let Some(w) = winner {
                s.prepared.plan.settle(i, w, mode);
            }
        }
    }
    let has_work = !s.prepared.plan.actions.is_empty();
    if !json && !quiet && has_work {
        render_plan(&s, if args.dry_run { usize::MAX } else { 200 });
    }
    if has_work && !args.dry_run && !args.yes {
        if !tty {
            bail!(repo::Error::Usage(
                "changes are planned but there is no terminal to confirm them: pass -y to go ahead, or --dry-run to only look".into()
            ));
        }
        if !confirm()? {
            eprintln!("nothing changed");
            return Ok(exit::DECLINED);
        }
    }
    // The bar starts only now, so it never draws over the questions above.
    let show = std::io::stderr().is_terminal() && !quiet && !json && has_work && !args.dry_run;
    let display = super::Display::new(show, quiet);
    // A run that changes nothing still records what it saw on both sides,
    // so the next one knows the history (deletions, one-sided edits).
    let report = s.apply(args.dry_run, &display, started);
    display.finish();
    let report = report?;
    let corrupt = report
        .plan
        .notes
        .iter()
        .any(|n| matches!(n.kind, NoteKind::Corrupt { .. }));
    let errors = report.result.as_ref().map_or(0, |r| r.errors.len());
    super::capture::report(&report);
    if json {
        print_json(&report)?;
    } else if !quiet {
        print_outcome(&report, mode);
    }
    if report.unresolved > 0 {
        eprintln!(
            "{} conflict(s) were left alone; run again with --resolve local|remote|old|new, or on a terminal to be asked",
            report.unresolved
        );
    }
    if corrupt {
        eprintln!(
            "corrupted files were found; they were not copied over good copies. Restore them from a backup or the other side"
        );
    }
    let refused = !report.refused.is_empty();
    Ok(
        if errors > 0 || report.unresolved > 0 || corrupt || refused {
            exit::PARTIAL
        } else {
            exit::OK
        },
    )
}

/// What preparing found before anything is asked or done: warnings,
/// refusals and notes (corrupt files, differing files under `--select
/// none`, folders kept). `silent` (`--json`, `-q`) keeps stdout clean.
fn print_findings(s: &plain::Session, mode: Mode, silent: bool) {
    for (path, msg) in &s.prepared.warnings {
        eprintln!(
            "warning: {}",
            super::escape_controls(&format!("{path}: {msg}"))
        );
    }
    for (_, msg) in &s.prepared.refused {
        eprintln!("error: {}", super::escape_controls(msg));
    }
    let notes = &s.prepared.plan.notes;
    for n in notes {
        let p = super::escape_bytes(&n.path);
        match n.kind {
            NoteKind::Corrupt { side } => eprintln!(
                "CORRUPT: {p} on the {}: size and mtime are as recorded but the content no longer matches the recorded BLAKE3",
                side_name(side, mode)
            ),
            NoteKind::Differs => {
                if !silent {
                    println!("differs (not copied, --select none): {p}")
                }
            }
            NoteKind::KeptDir { side } => eprintln!(
                "note: folder {p} on the {} is kept: something inside it stays",
                side_name(side, mode)
            ),
        }
    }
}

/// The one-line summary of a finished run.
fn print_outcome(report: &plain::Report, mode: Mode) {
    match &report.result {
        Some(r) if r.copied + r.deleted + r.dirs + r.archived == 0 && r.errors.is_empty() => {
            println!(
                "already in step: nothing to do ({} conflict(s) left)",
                report.unresolved
            )
        }
        Some(r) => println!(
            "{}: copied {} file(s) ({}{}), created {} folder(s), deleted {}, kept {} old version(s) under .repo/, {} conflict(s) left, {:.2}s",
            if mode == Mode::Sync { "synced" } else { "done" },
            r.copied,
            human_bytes(r.bytes),
            if r.linked > 0 {
                format!("; {} as hard links", r.linked)
            } else {
                String::new()
            },
            r.dirs,
            r.deleted,
            r.archived,
            report.unresolved,
            report.duration_secs
        ),
        None => println!("dry run: nothing changed"),
    }
}
