//! The config file: named repositories and named jobs in TOML, every key
//! the long name of the flag it stands for.
//!
//! Why flags and not a schema of its own: whatever a flag can say, the file
//! can say, and a new flag needs no second definition here. A section is
//! turned into command-line arguments ([`flags`]) that clap then parses
//! exactly as if they had been typed, so values are checked once, the same
//! way. Spans are kept from the parser so that every mistake names the file,
//! line and key.

mod flags;
mod parse;

use std::path::{Path, PathBuf};

pub(super) use flags::{Target, section_args};
pub(super) use parse::{Entry, Section, Value};

/// Largest config file read: far beyond any hand-written one.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// A loaded config file.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) path: PathBuf,
    pub(super) repositories: Vec<Section>,
    pub(super) jobs: Vec<Section>,
    /// `stop-on-failure` at the top: no job runs after one failed.
    pub(super) stop_on_failure: bool,
    /// Where `repo run` writes the Prometheus textfile of its jobs.
    pub(super) metrics_file: Option<PathBuf>,
}

/// A mistake in the config file, with where it is.
pub(super) fn mistake(path: &Path, line: usize, what: impl std::fmt::Display) -> repo::Error {
    repo::Error::Usage(format!("{}:{line}: {what}", path.display()))
}

/// What clap refused in the arguments `section` stands for, as a mistake
/// at the line of the key it names (else of the section).
pub(super) fn clap_mistake(path: &Path, section: &Section, e: &clap::Error) -> repo::Error {
    let text = e.to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let entry = section
        .entries
        .iter()
        .find(|en| text.contains(&format!("--{}", en.key)));
    mistake(
        path,
        entry.map_or(section.line, |en| en.line),
        format!("{}: {first}", section.title()),
    )
}

impl Config {
    /// The file to read: `explicit` (`--config`, `REPO_CONFIG`), else the
    /// user's `$XDG_CONFIG_HOME/repo/repo.toml` (`~/.config/...`), else
    /// `/etc/repo/repo.toml`; `None` when no default file exists.
    pub(super) fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return Some(p.to_path_buf());
        }
        let absolute = |v: std::ffi::OsString| {
            let p = PathBuf::from(v);
            p.is_absolute().then_some(p)
        };
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".config"))
            })
            .map(|d| d.join("repo/repo.toml"));
        [user, Some(PathBuf::from("/etc/repo/repo.toml"))]
            .into_iter()
            .flatten()
            .find(|p| p.exists())
    }

    /// Reads and parses the file at `path`.
    pub(super) fn load(path: &Path) -> repo::Result<Config> {
        let text = read(path)?;
        let config = parse::parse(path, &text)?;
        let md = std::fs::metadata(path).map_err(|e| {
            repo::Error::Usage(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        refuse_if_others_may_write(path, &md)?;
        if let Some((section, entry)) = config.secret() {
            refuse_if_readable(path, &md, section, entry)?;
        }
        Ok(config)
    }

    /// The repository section named `name`.
    pub(super) fn repository(&self, name: &str) -> Option<&Section> {
        self.repositories.iter().find(|s| s.name == name)
    }

    /// The job section named `name`.
    pub(super) fn job(&self, name: &str) -> Option<&Section> {
        self.jobs.iter().find(|s| s.name == name)
    }

    /// The first value that is a secret (a password inside a URL), with its
    /// section: then the file must be as private as a key file.
    fn secret(&self) -> Option<(&Section, &Entry)> {
        self.repositories
            .iter()
            .chain(&self.jobs)
            .flat_map(|s| s.entries.iter().map(move |e| (s, e)))
            .find(|(_, e)| e.value.strings().any(url_has_password))
    }
}

/// Whether `s` is a URL carrying a password (`ftp://user:secret@host`).
fn url_has_password(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The file's text, bounded; a missing or unreadable file is a usage error.
fn read(path: &Path) -> repo::Result<String> {
    use std::io::Read;
    let bad = |e: &dyn std::fmt::Display| {
        repo::Error::Usage(format!(
            "cannot read the config file {}: {e}; give an existing file with --config or \
             REPO_CONFIG",
            path.display()
        ))
    };
    let f = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let mut text = String::new();
    f.take(MAX_CONFIG_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(&e))?;
    if text.len() as u64 > MAX_CONFIG_LEN {
        return Err(bad(&format!("it is larger than {MAX_CONFIG_LEN} bytes")));
    }
    Ok(text)
}

/// Refuses a file that group or others may change, or that belongs to
/// another user (root aside), as ssh refuses its config: the file names
/// commands to run (hooks, `password-command`), by root under a system
/// timer.
fn refuse_if_others_may_write(path: &Path, md: &std::fs::Metadata) -> repo::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(repo::Error::Usage(format!(
            "{}: its mode is {mode:04o}, so others may change the commands it runs; run \
             `chmod go-w {}`",
            path.display(),
            path.display()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me && md.uid() != 0 {
        return Err(repo::Error::Usage(format!(
            "{}: it belongs to user {}, who may change the commands it runs as you; use a \
             file of your own (or root's)",
            path.display(),
            md.uid()
        )));
    }
    Ok(())
}

/// Refuses a file holding a secret (`entry` of `section`) that group or
/// others may read, as key files are refused.
fn refuse_if_readable(
    path: &Path,
    md: &std::fs::Metadata,
    section: &Section,
    entry: &Entry,
) -> repo::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(mistake(
            path,
            entry.line,
            format!(
                "key `{}` in {} holds a password (in a URL), and the file's mode is {mode:04o}, \
                 so others may read it; run `chmod 600 {}`, or move the password to a password \
                 file",
                entry.key,
                section.title(),
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
