//! A section's keys as command-line arguments, checked against clap's own
//! description of the command: every key must be the long name of one of
//! its flags (or name one of its positional arguments), with a value of the
//! type that flag takes.

use std::ffi::OsString;
use std::path::Path;

use clap::ArgAction;

use super::{Entry, Section, Value, mistake};

/// What a section's keys may name.
pub(in crate::cli) enum Target<'a> {
    /// A repository section: the global flags.
    Globals,
    /// A job: the flags of subcommand `name` and the global ones; keys in
    /// `positionals` give its positional arguments `(key, argument id)`.
    Command {
        name: &'a str,
        positionals: &'a [(&'a str, &'a str)],
    },
}

/// A section's arguments, by where they go on the command line.
#[derive(Debug, Default)]
pub(in crate::cli) struct Args {
    /// Global flags: before the subcommand.
    pub(in crate::cli) globals: Vec<OsString>,
    /// The subcommand's flags.
    pub(in crate::cli) command: Vec<OsString>,
    /// Positional arguments, last, after `--`.
    pub(in crate::cli) positionals: Vec<OsString>,
}

/// The arguments `section` stands for. Keys in `reserved` are the caller's
/// own (not flags); keys for which `given` says yes are left out, the
/// command line having said them already.
pub(in crate::cli) fn section_args(
    root: &clap::Command,
    target: &Target,
    section: &Section,
    file: &Path,
    reserved: &[&str],
    given: &dyn Fn(&str) -> bool,
) -> repo::Result<Args> {
    let mut out = Args::default();
    let sub = match target {
        Target::Globals => None,
        Target::Command { name, .. } => root.find_subcommand(name),
    };
    let mut positional: Vec<(usize, Vec<OsString>)> = Vec::new();
    for entry in &section.entries {
        let key = entry.key.as_str();
        if reserved.contains(&key) || given(key) {
            continue;
        }
        let where_ = || format!("key `{key}` in {}", section.title());
        if let Target::Command { positionals, .. } = target
            && let Some(i) = positionals.iter().position(|(k, _)| *k == key)
        {
            let values = entry.value.strings().map(OsString::from).collect();
            match &entry.value {
                Value::Str(_) | Value::List(_) => positional.push((i, values)),
                other => {
                    return Err(mistake(
                        file,
                        entry.line,
                        format!(
                            "{}: give a string or a list of strings, not {}",
                            where_(),
                            other.type_name()
                        ),
                    ));
                }
            }
            continue;
        }
        // Aliases too: `tags = [...]` reads better than `tag = [...]`.
        let long = |c: &clap::Command| {
            c.get_arguments()
                .find(|a| {
                    a.get_long() == Some(key)
                        || a.get_all_aliases().is_some_and(|al| al.contains(&key))
                })
                .cloned()
        };
        let (arg, global) = match sub.and_then(long) {
            Some(a) => (a, false),
            None => match long(root).filter(|a| a.is_global_set()) {
                Some(a) => (a, true),
                None => return Err(unknown(file, entry, section, target, reserved)),
            },
        };
        let args = emit(&arg, entry)
            .map_err(|why| mistake(file, entry.line, format!("{}: {why}", where_())))?;
        if global {
            out.globals.extend(args);
        } else {
            out.command.extend(args);
        }
    }
    positional.sort_by_key(|(i, _)| *i);
    let values: Vec<OsString> = positional.into_iter().flat_map(|(_, v)| v).collect();
    if !values.is_empty() {
        out.positionals.push("--".into());
        out.positionals.extend(values);
    }
    Ok(out)
}

/// The message for a key that names no flag.
fn unknown(
    file: &Path,
    entry: &Entry,
    section: &Section,
    target: &Target,
    reserved: &[&str],
) -> repo::Error {
    let (help, positionals) = match target {
        Target::Globals => ("repo --help".to_string(), Vec::new()),
        Target::Command { name, positionals } => (
            format!("repo {name} --help"),
            positionals.iter().map(|(k, _)| *k).collect(),
        ),
    };
    let mut own: Vec<&str> = reserved.to_vec();
    own.extend(positionals);
    mistake(
        file,
        entry.line,
        format!(
            "unknown key `{}` in {}: keys are the long names of the flags `{help}` lists{}",
            entry.key,
            section.title(),
            if own.is_empty() {
                String::new()
            } else {
                format!(", and {}", own.join(", "))
            }
        ),
    )
}

/// `--key=value` arguments for one entry, by what the flag takes.
fn emit(arg: &clap::Arg, entry: &Entry) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", entry.key);
    let with = |v: &str| OsString::from(format!("{flag}={v}"));
    let value = &entry.value;
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, Value::Bool(b)) => Ok(if *b { vec![flag.into()] } else { vec![] }),
        (ArgAction::SetTrue, other) => {
            Err(format!("give true or false, not {}", other.type_name()))
        }
        (ArgAction::Count, Value::Bool(b)) => Ok(if *b { vec![flag.into()] } else { vec![] }),
        (ArgAction::Count, Value::Int(n)) if (0..=9).contains(n) => {
            Ok(vec![OsString::from(&flag); *n as usize])
        }
        (ArgAction::Count, other) => Err(format!(
            "give true, false or a count from 0 to 9, not {}",
            other.type_name()
        )),
        (ArgAction::Set, Value::List(_)) => {
            Err("give one value, not a list: the flag takes one".into())
        }
        (ArgAction::Set, Value::Bool(_)) => {
            Err("give a value (the flag takes one), not true or false".into())
        }
        (ArgAction::Set, v) => Ok(v.scalar().iter().map(|s| with(s)).collect()),
        (ArgAction::Append, Value::List(items)) => Ok(items
            .iter()
            .filter_map(Value::scalar)
            .map(|s| with(&s))
            .collect()),
        (ArgAction::Append, v) => Ok(v.scalar().iter().map(|s| with(s)).collect()),
        _ => Err("this flag cannot be set from the config file".into()),
    }
}
