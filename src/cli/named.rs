//! `-r NAME`: a repository named in the config file stands for its
//! location and settings; what the command line (or the environment) says
//! wins over the file.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::args::{Cli, Command};
use super::config::{Config, Section, Target, Value, clap_mistake, mistake, section_args};

/// Flags that choose how the repository is unlocked: given any one of them
/// (or `REPO_PASSWORD`), the file's are all left out, so that a password
/// given now never meets the file's key file.
pub(super) const CREDENTIALS: [&str; 3] = ["password-file", "password-command", "key-file"];

/// Parses the command line, putting in the settings of a repository named
/// by `-r` from the config file.
pub(super) fn parse(argv: Vec<OsString>) -> Result<(Cli, ArgMatches)> {
    let matches = Cli::command().get_matches_from(&argv);
    let cli = Cli::from_arg_matches(&matches)?;
    let Some(name) = cli.repo.clone().filter(|r| is_name(r)) else {
        return Ok((cli, matches));
    };
    let Some(config) = config_for_names(cli.config.as_deref())? else {
        return Ok((cli, matches));
    };
    let Some(section) = config.repository(&name) else {
        return Ok((cli, matches));
    };
    let (globals, location) = repository_args(&config.path, section, &|k| given(&matches, k))?;
    let mut full = vec![argv.first().cloned().unwrap_or_else(|| "repo".into())];
    full.extend(globals);
    full.extend(argv.into_iter().skip(1));
    let matches = Cli::command()
        .try_get_matches_from(&full)
        .map_err(|e| clap_mistake(&config.path, section, &e))?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.repo = Some(location);
    Ok((cli, matches))
}

/// The config file in which `-r NAME` and `--to NAME` look names up, if
/// there is one this user may read.
fn config_for_names(flag: Option<&std::path::Path>) -> Result<Option<Config>> {
    // `REPO_CONFIG=` (empty) is not given, as `main` will normalize it.
    let explicit = flag.filter(|p| !p.as_os_str().is_empty());
    let Some(path) = Config::locate(explicit) else {
        return Ok(None);
    };
    // A default file this user may not read (the system's, private to
    // root because it holds a password) is another user's, not a mistake
    // of theirs: NAME is then a folder, as without a config file.
    let denied = |e: std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    if explicit.is_none() && std::fs::File::open(&path).is_err_and(denied) {
        return Ok(None);
    }
    Ok(Some(Config::load(&path)?))
}

/// Whether `-r` names a repository of the config file rather than a
/// location: a bare word (`./NAME` is the folder of that name).
pub(super) fn is_name(r: &str) -> bool {
    !r.is_empty() && r != "." && r != ".." && !r.contains(['/', ':'])
}

/// The global flags of repository section `section` but those `given`
/// says are given already, and its location.
pub(super) fn repository_args(
    file: &Path,
    section: &Section,
    given: &dyn Fn(&str) -> bool,
) -> Result<(Vec<OsString>, String)> {
    let location = match section.get("location").map(|e| &e.value) {
        Some(Value::Str(s)) => s.clone(),
        Some(_) | None => {
            let line = section.get("location").map_or(section.line, |e| e.line);
            anyhow::bail!(mistake(
                file,
                line,
                format!(
                    "{} needs `location = \"...\"`: a folder, or an s3://, ftp:// or ftps:// URL",
                    section.title()
                )
            ));
        }
    };
    let args = section_args(
        &Cli::command(),
        &Target::Globals,
        section,
        file,
        &["location"],
        given,
    )?;
    Ok((args.globals, location))
}

/// Whether the command line or the environment gave the flag `--key`.
pub(super) fn given(matches: &ArgMatches, key: &str) -> bool {
    if CREDENTIALS.contains(&key) {
        return CREDENTIALS.iter().any(|k| source_given(matches, k))
            || std::env::var_os("REPO_PASSWORD").is_some_and(|v| !v.is_empty());
    }
    source_given(matches, key)
}

fn source_given(matches: &ArgMatches, key: &str) -> bool {
    let cmd = Cli::command();
    let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) else {
        return false;
    };
    let id = arg.get_id().as_str();
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => true,
        // `REPO_KEY_FILE=` (set but empty) means "not given", as in `main`.
        Some(ValueSource::EnvVariable) => matches
            .get_raw(id)
            .is_some_and(|mut v| v.any(|v| !v.is_empty())),
        _ => false,
    }
}

/// `repo copy --to NAME` (also a `copy` job's `to = "NAME"`): the location,
/// credentials and endpoint of repository `NAME` of the config file, where
/// the command line (or the environment) does not give them. `loaded`:
/// the config file when the caller has read it already (`repo run`).
pub(super) fn resolve_destination(cli: &mut Cli, loaded: Option<&Config>) -> Result<()> {
    let Command::Copy(a) = &mut cli.command else {
        return Ok(());
    };
    if !is_name(&a.to) {
        return Ok(());
    }
    let read;
    let config = match loaded {
        Some(c) => c,
        None => match config_for_names(cli.config.as_deref())? {
            Some(c) => {
                read = c;
                &read
            }
            None => return Ok(()),
        },
    };
    let Some(section) = config.repository(&a.to) else {
        return Ok(());
    };
    let text = |key: &str| -> Result<Option<String>> {
        match section.get(key) {
            None => Ok(None),
            Some(e) => match &e.value {
                Value::Str(s) => Ok(Some(s.clone())),
                other => Err(mistake(
                    &config.path,
                    e.line,
                    format!(
                        "key `{key}` in {}: give a string, not {}",
                        section.title(),
                        other.type_name()
                    ),
                )
                .into()),
            },
        }
    };
    const KEYS: [&str; 6] = [
        "location",
        "password-file",
        "password-command",
        "key-file",
        "s3-endpoint",
        "ca-cert",
    ];
    if let Some(e) = section
        .entries
        .iter()
        .find(|e| !KEYS.contains(&e.key.as_str()))
    {
        anyhow::bail!(mistake(
            &config.path,
            e.line,
            format!(
                "key `{}` in {} does not apply to a copy's destination, which takes {}",
                e.key,
                section.title(),
                KEYS.join(", ")
            )
        ));
    }
    let Some(location) = text("location")? else {
        anyhow::bail!(mistake(
            &config.path,
            section.line,
            format!("{} needs `location = \"...\"`", section.title())
        ));
    };
    a.to = location;
    let credential_given = a.to_password_file.is_some()
        || a.to_password_command.is_some()
        || a.to_key_file.is_some()
        || std::env::var_os("REPO_TO_PASSWORD").is_some_and(|v| !v.is_empty());
    if !credential_given {
        a.to_password_file = text("password-file")?.map(Into::into);
        a.to_password_command = text("password-command")?;
        a.to_key_file = text("key-file")?.map(Into::into);
    }
    if cli.s3_endpoint.is_none() {
        cli.s3_endpoint = text("s3-endpoint")?;
    }
    if cli.ca_cert.is_none() {
        cli.ca_cert = text("ca-cert")?.map(Into::into);
    }
    Ok(())
}
