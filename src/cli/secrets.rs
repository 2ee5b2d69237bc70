//! Secrets from the user: the repository password (environment, file,
//! command or prompt), a raw key file, a new password for `key add` /
//! `key passwd`, and the FTP server's password.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use zeroize::Zeroizing;

use repo::commands::key;
use repo::format::rawkey::RawKey;
use repo::repository::Credentials;
use repo::storage::Location;

use super::args::{Cli, Command};
use super::signals_end_at_once;

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

/// The FTP or REST server password when neither the URL nor ~/.netrc has
/// it: from REPO_FTP_PASSWORD / REPO_REST_PASSWORD, else a prompt.
pub(super) fn ftp_password(location: &Location) -> Result<String> {
    let (var, kind) = location.password_env();
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!(repo::Error::Usage(format!(
            "no {kind} password for {location}: put it in ~/.netrc, set {var}, or run on a terminal to be asked"
        )));
    }
    rpassword::prompt_password(format!("{kind} password for {location}: "))
        .with_context(|| format!("cannot read the {kind} password"))
}

/// A key file when one is named (REPO_PASSWORD is then not used), else the password.
pub(super) fn credentials(cli: &Cli) -> Result<Credentials> {
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

/// Where one repository's password may come from.
struct Sources<'a> {
    file: Option<&'a Path>,
    command: Option<&'a str>,
    /// The variable holding the password itself (`REPO_PASSWORD`).
    env: &'a str,
    /// How the flags are called in messages (`--password-file`, ...), by
    /// their variables.
    names: &'a str,
    prompt: &'a str,
}

/// Finds the password: environment, file, command, then a terminal prompt.
fn password(cli: &Cli, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    password_from(
        &Sources {
            file: cli.password_file.as_deref(),
            command: cli.password_command.as_deref(),
            env: "REPO_PASSWORD",
            names: "REPO_PASSWORD, REPO_PASSWORD_FILE or REPO_PASSWORD_COMMAND",
            prompt: "repository password: ",
        },
        confirm,
    )
}

/// The credentials of `repo copy`'s destination: `--to-key-file`, else
/// the password from `--to-password-file`, `--to-password-command`,
/// `REPO_TO_PASSWORD` or a prompt.
pub(super) fn destination_credentials(a: &repo::commands::copy::Args) -> Result<Credentials> {
    if let Some(file) = &a.to_key_file {
        if a.to_password_file.is_some() || a.to_password_command.is_some() {
            bail!(repo::Error::Usage(
                "both --to-key-file and a destination password file or command are given; use \
                 only one"
                    .into()
            ));
        }
        return read_key_file(file);
    }
    let pw = password_from(
        &Sources {
            file: a.to_password_file.as_deref(),
            command: a.to_password_command.as_deref(),
            env: "REPO_TO_PASSWORD",
            names: "REPO_TO_PASSWORD, --to-password-file, --to-password-command or --to-key-file",
            prompt: "destination repository password: ",
        },
        false,
    )?;
    Ok(Credentials::Password(pw))
}

fn password_from(src: &Sources, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    // Explicit sources win over REPO_PASSWORD, as in restic; two explicit ones are ambiguous.
    match (src.file, src.command) {
        (Some(_), Some(_)) => bail!(repo::Error::Usage(
            "both a password file and a password command are given; use only one".into()
        )),
        (Some(f), None) => return read_password_file(f),
        (None, Some(c)) => return run_password_command(c),
        (None, None) => {}
    }
    if let Some(p) = std::env::var_os(src.env) {
        return Ok(Zeroizing::new(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
        ));
    }
    if !std::io::stdin().is_terminal() {
        bail!(repo::Error::NoCredential(format!(
            "no password given: set {}, or run on a terminal to be asked",
            src.names
        )));
    }
    let no_tty = |e: std::io::Error| {
        repo::Error::NoCredential(format!("cannot read the password from the terminal: {e}"))
    };
    let first = Zeroizing::new(rpassword::prompt_password(src.prompt).map_err(no_tty)?);
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

/// The new password `key add` and `key passwd` need, asked before the
/// repository is opened: nothing is held yet, so a signal ends the wait at once.
pub(super) fn key_password(a: &key::Args) -> Result<Option<Zeroizing<Vec<u8>>>> {
    signals_end_at_once(true);
    let pw = match a.action.new_password() {
        Some(n) => Some(new_password(n.new_password_file.as_deref())?),
        None => None,
    };
    signals_end_at_once(false);
    Ok(pw)
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
