//! The FTP command sequences behind each object operation, run on one
//! pooled connection: stat, list, make and remove directories, delete,
//! rename. Each turns the server's many ways of saying "no" into the one
//! answer the store needs, and says when a lost reply leaves the outcome
//! unknown.

use std::sync::Arc;

use super::FtpError;
use super::listing::{self, Entry, Kind};
use super::pool::Session;
use chrono::{DateTime, Utc};

/// `"/a/b/"` → `"/a/b"`, `"/"` → `"/"`, `""` → `""` (the login directory).
pub(super) fn normalize_root(root: &str) -> String {
    match root.trim_end_matches('/') {
        "" if root.starts_with('/') => "/".to_string(),
        trimmed => trimmed.to_string(),
    }
}

/// Joins with exactly one `/`; an empty side yields the other.
pub(super) fn join(base: &str, rel: &str) -> String {
    match (base, rel) {
        (base, "") => base.to_string(),
        ("", rel) => rel.to_string(),
        (base, rel) if base.ends_with('/') => format!("{base}{rel}"),
        (base, rel) => format!("{base}/{rel}"),
    }
}

/// `"/a/b"` → `("/a", "b")`, `"/b"` → `("/", "b")`, `"b"` → `("", "b")`.
pub(super) fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The directories to create, outermost first: `"/a/b"` → `["/a", "/a/b"]`.
pub(super) fn ancestors_top_down(dir: &str) -> Vec<&str> {
    dir.match_indices('/')
        .map(|(i, _)| &dir[..i])
        .chain(std::iter::once(dir))
        .filter(|p| !p.is_empty() && *p != "/")
        .collect()
}

/// `None` for the login directory, which FTP commands address by omitting the path.
pub(super) fn dir_arg(dir: &str) -> Option<&str> {
    (!dir.is_empty()).then_some(dir)
}

pub(super) fn temp_name() -> String {
    format!("{}{:016x}", listing::TEMP_PREFIX, rand::random::<u64>())
}

pub(super) fn not_found(s: &Session<'_>, path: &str) -> FtpError {
    FtpError::NotFound {
        server: Arc::clone(s.server()),
        path: path.to_string(),
    }
}

fn already_exists(s: &Session<'_>, path: &str) -> FtpError {
    FtpError::AlreadyExists {
        server: Arc::clone(s.server()),
        path: path.to_string(),
    }
}

/// For a write that must not replace: [`FtpError::AlreadyExists`] if a file
/// is at `remote`. A check, not race-free: FTP has no conditional create.
pub(super) fn refuse_existing(s: &mut Session<'_>, remote: &str) -> Result<(), FtpError> {
    match stat_file(s, remote)? {
        Some(_) => Err(already_exists(s, remote)),
        None => Ok(()),
    }
}

/// Whether the server refused with one of `codes` (as opposed to a connection failure).
pub(super) fn refused_with(e: &FtpError, codes: &[u32]) -> bool {
    e.reply_code().is_some_and(|c| codes.contains(&c))
}

/// A permanent negative reply (5xx): the server refused, the connection is fine.
pub(super) fn refused_permanently(e: &FtpError) -> bool {
    e.reply_code().is_some_and(|c| (500..600).contains(&c))
}

/// Size and modification time of a regular file, `None` if there is none at `remote`.
pub(super) struct FileStat {
    pub(super) size: u64,
    pub(super) modified: Option<DateTime<Utc>>,
}

pub(super) fn stat_file(s: &mut Session<'_>, remote: &str) -> Result<Option<FileStat>, FtpError> {
    let features = s.features();
    if features.mlst {
        return match s.command("MLST", remote, |ftp| ftp.mlst(remote)) {
            Ok(line) => {
                let entry = listing::parse_mlsx(&line)
                    .ok_or_else(|| s.error("MLST", remote, suppaftp::FtpError::BadResponse))?;
                Ok((entry.kind == Kind::File).then_some(FileStat {
                    size: entry.size,
                    modified: entry.modified,
                }))
            }
            Err(e) if refused_with(&e, &[550]) => Ok(None),
            Err(e) => Err(e),
        };
    }
    // SIZE fails with 550 for directories too, which is what a file lookup wants.
    let size = match s.command("SIZE", remote, |ftp| ftp.size(remote)) {
        Ok(size) => size,
        Err(e) if refused_with(&e, &[550]) => return Ok(None),
        Err(e) => return Err(e),
    };
    let modified = if features.mdtm {
        match s.command("MDTM", remote, |ftp| ftp.mdtm(remote)) {
            Ok(t) => Some(t),
            Err(e) if refused_permanently(&e) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    Ok(Some(FileStat { size, modified }))
}

/// The kind of whatever is at `remote`, `None` if nothing is.
pub(super) fn stat_kind(s: &mut Session<'_>, remote: &str) -> Result<Option<Kind>, FtpError> {
    // The top (or login) directory exists by definition; this also ends the recursion through
    // list_dir below.
    if remote.is_empty() || remote == "/" {
        return Ok(Some(Kind::Dir));
    }
    if s.features().mlst {
        return match s.command("MLST", remote, |ftp| ftp.mlst(remote)) {
            Ok(line) => Ok(listing::parse_mlsx(&line).map(|e| e.kind)),
            Err(e) if refused_with(&e, &[550]) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let (parent, name) = split_parent(remote);
    Ok(list_dir(s, parent)?
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.kind))
}

/// Lists a directory; hidden entries are dropped and a missing directory is empty.
pub(super) fn list_dir(s: &mut Session<'_>, dir: &str) -> Result<Vec<Entry>, FtpError> {
    let mlsd = s.use_mlsd();
    let (op, parse): (_, fn(&str) -> Option<Entry>) = if mlsd {
        ("MLSD", listing::parse_mlsx)
    } else {
        ("LIST", listing::parse_list)
    };
    let command = match dir_arg(dir) {
        Some(dir) => format!("{op} {dir}"),
        None => op.to_string(),
    };
    let lines = match s.listing(op, dir, &command) {
        Ok(lines) => lines,
        // Servers disagree on how to say "no such directory" (550, 450, pyftpdlib's 501 for
        // MLSD); these codes also mean other things, so look before calling it empty.
        Err(e) if refused_with(&e, &[450, 501, 550]) => {
            return match stat_kind(s, dir)? {
                Some(Kind::Dir) => Err(e),
                _ => Ok(Vec::new()),
            };
        }
        Err(e) => return Err(e),
    };
    Ok(lines
        .iter()
        .filter_map(|line| parse(line))
        .filter(|e| !listing::is_hidden(&e.name) && !e.name.contains('/'))
        .collect())
}

/// Creates every missing directory of `dir`, outermost first, in one round trip: the server
/// carries out the MKDs in order, each whatever became of the one before.
///
/// MKD of an existing directory fails with a 5xx reply like many other problems, so failures are
/// ignored here; the command that needed the directory reports the real error.
pub(super) fn make_dirs(s: &mut Session<'_>, dir: &str) -> Result<(), FtpError> {
    let commands: Vec<String> = ancestors_top_down(dir)
        .iter()
        .map(|path| format!("MKD {path}"))
        .collect();
    if commands.is_empty() {
        return Ok(());
    }
    let batch: Vec<&str> = commands.iter().map(String::as_str).collect();
    s.command("MKD", dir, |ftp| {
        ftp.send(&batch)?;
        batch.iter().try_for_each(|_| ftp.reply().map(drop))
    })
}

pub(super) fn create_dir_exclusive(s: &mut Session<'_>, remote: &str) -> Result<bool, FtpError> {
    let mut created_parents = false;
    loop {
        match s.command("MKD", remote, |ftp| ftp.mkdir(remote)) {
            Ok(()) => return Ok(true),
            Err(e) if refused_permanently(&e) => {
                if stat_kind(s, remote)?.is_some() {
                    if s.reply_lost {
                        // The first MKD may have succeeded before the connection broke.
                        return Err(FtpError::Ambiguous {
                            server: Arc::clone(s.server()),
                            op: "MKD",
                            path: remote.to_string(),
                        });
                    }
                    return Ok(false);
                }
                if created_parents {
                    return Err(e);
                }
                make_dirs(s, split_parent(remote).0)?;
                created_parents = true;
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn remove_dir(s: &mut Session<'_>, remote: &str) -> Result<(), FtpError> {
    let removed = s.command("RMD", remote, |ftp| ftp.rmdir(remote));
    gone_unless_there(s, remote, removed)
}

pub(super) fn delete_file(s: &mut Session<'_>, remote: &str) -> Result<(), FtpError> {
    let removed = s.command("DELE", remote, |ftp| ftp.rm(remote));
    gone_unless_there(s, remote, removed)
}

/// The outcome of a removal (RMD, DELE). 550 also means "permission denied"
/// or "is a directory", so only with nothing at `remote` is it gone: done,
/// if an earlier attempt's reply was lost (that attempt went through before
/// its connection broke), else it never existed, [`FtpError::NotFound`].
fn gone_unless_there(
    s: &mut Session<'_>,
    remote: &str,
    removed: Result<(), FtpError>,
) -> Result<(), FtpError> {
    match removed {
        Err(e) if refused_with(&e, &[550]) && stat_kind(s, remote)?.is_none() => {
            if s.reply_lost {
                Ok(())
            } else {
                Err(not_found(s, remote))
            }
        }
        other => other,
    }
}

/// RNFR + RNTO, sent together (one round trip); an error names the step that failed.
fn rnfr_rnto(s: &mut Session<'_>, from: &str, to: &str) -> Result<(), FtpError> {
    let (rnfr, rnto) = (format!("RNFR {from}"), format!("RNTO {to}"));
    s.command("RNFR", from, |ftp| ftp.send(&[&rnfr, &rnto]))?;
    let renamed = s.command("RNFR", from, |ftp| ftp.expect(&[350]));
    if renamed.is_err() {
        // RNTO without a pending RNFR must be refused too ("bad sequence"); if it is not, the
        // connection is out of step and dropped.
        s.command("RNTO", to, |ftp| {
            ftp.settle(1);
            Ok(())
        })?;
        return renamed.map(drop);
    }
    s.command("RNTO", to, |ftp| ftp.expect(&[250, 200]))?;
    Ok(())
}

/// Renames `from` onto `to`, creating `to`'s directory if needed.
///
/// Servers implement RNTO with rename(2) and replace an existing target atomically. Some (such
/// as a ProFTPD without `AllowOverwrite on`, or Windows servers) refuse to; then, with `replace`,
/// the target is deleted and the rename repeated, leaving a short window without the object,
/// and without `replace` the refusal is reported as [`FtpError::AlreadyExists`].
pub(super) fn move_into_place(
    s: &mut Session<'_>,
    from: &str,
    to: &str,
    replace: bool,
) -> Result<(), FtpError> {
    match rnfr_rnto(s, from, to) {
        Err(e) if refused_permanently(&e) && matches!(&e, FtpError::Command { op: "RNTO", .. }) => {
            if stat_file(s, to)?.is_some() {
                if !replace {
                    return Err(already_exists(s, to));
                }
                delete_file(s, to)?;
            } else {
                make_dirs(s, split_parent(to).0)?;
            }
            rnfr_rnto(s, from, to)
        }
        other => other,
    }
}

pub(super) fn rename_file(
    s: &mut Session<'_>,
    from: &str,
    to: &str,
    create: bool,
) -> Result<(), FtpError> {
    if create {
        refuse_existing(s, to)?;
    }
    match move_into_place(s, from, to, !create) {
        Err(e)
            if matches!(&e, FtpError::Command { op: "RNFR", .. }) && refused_with(&e, &[550]) =>
        {
            if stat_file(s, from)?.is_some() {
                return Err(e);
            }
            // A rename whose reply was lost leaves the source gone and the target present.
            if s.reply_lost && stat_file(s, to)?.is_some() {
                return Ok(());
            }
            Err(not_found(s, from))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert_eq!(normalize_root("/a/b/"), "/a/b");
        assert_eq!(normalize_root("///"), "/");
        assert_eq!(normalize_root(""), "");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("/r", ""), "/r");
        assert_eq!(join("/r", "a/b"), "/r/a/b");
        assert_eq!(split_parent("/r/a/b"), ("/r/a", "b"));
        assert_eq!(split_parent("/b"), ("/", "b"));
        assert_eq!(split_parent("b"), ("", "b"));
        assert_eq!(ancestors_top_down("/r/a/b"), ["/r", "/r/a", "/r/a/b"]);
        assert_eq!(ancestors_top_down("r/a"), ["r", "r/a"]);
        assert!(ancestors_top_down("/").is_empty());
        assert!(ancestors_top_down("").is_empty());
    }
}
