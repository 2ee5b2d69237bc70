//! `repo mirror` and `repo sync`: keep plain folders in step.
//!
//! Split in two so the CLI can show the plan, ask about conflicts and
//! confirm between [`prepare`] and [`apply`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::engine::archive::Excludes;
use crate::engine::plain::{self, Compare, Mode, Options, Prepared, Resolve, Select, Side};
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::storage::Location;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// First side (the source of a mirror): a folder, or an s3://, ftp:// or ftps:// URL.
    pub a: String,
    /// Second side (the destination of a mirror).
    pub b: String,
    /// backup: copy new and changed files; mirror: also delete what the source
    /// lacks; sync: both ways, with deletions known from the last sync.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// For files that differ where no history says which side changed.
    /// Default: source for backup and mirror, newer for sync.
    #[arg(long, value_enum)]
    pub select: Option<Select>,
    /// attr: size and mtime; attr+: also record hashes of copied files;
    /// hash: hash every file, which also finds silent corruption.
    #[arg(long, value_enum, default_value = "attr")]
    pub compare: Compare,
    /// How to settle conflicts: ask (on a terminal, skip otherwise), skip,
    /// local (first side wins), remote (second side wins), old, new.
    #[arg(long, value_enum, default_value = "ask")]
    pub resolve: Resolve,
    /// Delete and overwrite without keeping the old version in .repo/archive or .repo/trash.
    #[arg(long)]
    pub no_archive: bool,
    /// Show what would be done and change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Only paths matching GLOB (repeatable; `/` anchors at the top of the tree).
    #[arg(long = "include", short = 'i', value_name = "GLOB")]
    pub includes: Vec<String>,
    /// Leave out paths matching GLOB (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Everything a run needs between planning and doing.
pub struct Session<'a> {
    pub a: Side,
    pub b: Side,
    pub opts: Options<'a>,
    pub prepared: Prepared,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub a: String,
    pub b: String,
    pub mode: Mode,
    pub dry_run: bool,
    pub plan: plain::Plan,
    /// Conflicts left for a later run.
    pub unresolved: usize,
    pub hashed_files: u64,
    pub warnings: Vec<(String, String)>,
    /// Folders left alone because they are a side itself (a bind mount):
    /// (path, message). The run ends with exit code 3 when there are any.
    pub refused: Vec<(String, String)>,
    pub result: Option<plain::Report>,
    pub duration_secs: f64,
}

/// Opens both sides, scans them and plans the run.
pub fn prepare<'a>(
    args: &Args,
    default_mode: Mode,
    a: &Location,
    b: &Location,
    cancel: &'a AtomicBool,
) -> Result<Session<'a>> {
    let mode = args.mode.unwrap_or(default_mode);
    let select = args.select.unwrap_or(match mode {
        Mode::Sync => Select::Newer,
        Mode::Backup | Mode::Mirror => Select::Source,
    });
    if a.to_string() == b.to_string() {
        return Err(Error::Usage(format!(
            "both sides are {a}; give two different places"
        )));
    }
    match (a, b) {
        (Location::Local(pa), Location::Local(pb)) => refuse_overlap(pa, pb)?,
        (Location::Local(_), _) | (_, Location::Local(_)) => {}
        _ => refuse_remote_overlap(&a.to_string(), &b.to_string())?,
    }
    let filter = (!args.excludes.is_empty())
        .then(|| Excludes::new(&args.excludes, &[], false))
        .transpose()?;
    let includes = (!args.includes.is_empty())
        .then(|| Excludes::includes(&args.includes))
        .transpose()?;
    let side_a = Side::open(a, mode == Mode::Sync)?;
    let side_b = Side::open(b, true)?;
    let opts = Options {
        mode,
        select,
        compare: args.compare,
        archive: !args.no_archive,
        filter,
        cancel,
    };
    let mut prepared = plain::prepare(&side_a, &side_b, &opts)?;
    if let Some(inc) = &includes {
        restrict(&mut prepared, inc);
    }
    Ok(Session {
        a: side_a,
        b: side_b,
        opts,
        prepared,
    })
}

/// Where `path` is or would be: resolved part by part while the parts
/// exist (symlinks followed, `..` taken physically, as the kernel does),
/// then lexically for the parts still to be created.
fn resolve(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    let mut real = PathBuf::from("/");
    let mut exists = true;
    for part in abs.components() {
        match part {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                real.pop();
            }
            Component::Normal(name) => {
                real.push(name);
                if exists {
                    match real.canonicalize() {
                        Ok(c) => real = c,
                        Err(_) => exists = false,
                    }
                }
            }
        }
    }
    Ok(real)
}

/// Whether `inner` is `outer` or lies below it: by resolved path, and by
/// device and inode of each existing ancestor, which also sees through bind
/// mounts and hard-to-spot aliases.
fn inside(inner: &Path, outer: &Path) -> bool {
    if inner.starts_with(outer) {
        return true;
    }
    let Ok(top) = std::fs::metadata(outer) else {
        return false;
    };
    inner
        .ancestors()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == top.dev() && m.ino() == top.ino()))
}

/// Refuses two local sides where one holds the other: a copy nested into
/// its own source grows by itself on every run, and a sync of such a pair
/// sees its own output as new files.
fn refuse_overlap(a: &Path, b: &Path) -> Result<()> {
    let (ra, rb) = (resolve(a)?, resolve(b)?);
    let (outer, inner) = if inside(&rb, &ra) {
        (a, b)
    } else if inside(&ra, &rb) {
        (b, a)
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "{} is inside {} (or is the same folder): the two sides must not overlap; \
         give two folders where neither holds the other (for example a destination next to the source rather than inside it)",
        inner.display(),
        outer.display()
    )))
}

/// Two places on one store (same bucket or server) where one key prefix
/// holds the other; keys have no aliases, so comparing the names is enough.
fn refuse_remote_overlap(a: &str, b: &str) -> Result<()> {
    let dir = |s: &str| format!("{}/", s.trim_end_matches('/'));
    let (da, db) = (dir(a), dir(b));
    if da.starts_with(&db) || db.starts_with(&da) {
        let (inner, outer) = if da.len() >= db.len() { (a, b) } else { (b, a) };
        return Err(Error::Usage(format!(
            "{inner} is inside {outer} (or is the same place): the two sides must not overlap; \
             give two places where neither holds the other"
        )));
    }
    Ok(())
}

/// `--include`: act only on matching paths (and folders above them).
fn restrict(p: &mut Prepared, inc: &Excludes) {
    let matches = |path: &[u8]| {
        let mut shown = std::path::PathBuf::from("/");
        let mut any = false;
        for part in path.split(|&c| c == b'/') {
            shown.push(String::from_utf8_lossy(part).as_ref());
            any |= inc.is_excluded(&shown);
        }
        any
    };
    let plan = &mut p.plan;
    let mut dropped = Vec::new();
    plan.actions.retain(|a| {
        let keep = matches(&a.path);
        if !keep {
            dropped.push(a.path.clone());
        }
        keep
    });
    plan.conflicts.retain(|c| matches(&c.path));
    plan.notes.retain(|n| matches(&n.path));
    plan.keep_base.extend(dropped);
}

impl Session<'_> {
    /// Carries out the plan (unless `dry_run`) and reports.
    pub fn apply(
        self,
        dry_run: bool,
        progress: &dyn Progress,
        started: std::time::Instant,
    ) -> Result<Report> {
        let result = if dry_run {
            None
        } else {
            Some(plain::execute(
                &self.a,
                &self.b,
                &self.prepared,
                &self.opts,
                progress,
            )?)
        };
        let unresolved = self
            .prepared
            .plan
            .conflicts
            .iter()
            .filter(|c| self.prepared.plan.keep_base.contains(&c.path))
            .count();
        Ok(Report {
            a: self.a.name(),
            b: self.b.name(),
            mode: self.opts.mode,
            dry_run,
            unresolved,
            hashed_files: self.prepared.hashed,
            warnings: self.prepared.warnings,
            refused: self.prepared.refused,
            plan: self.prepared.plan,
            result,
            duration_secs: started.elapsed().as_secs_f64(),
        })
    }
}
