//! From TOML text to sections of keyed values, each with its line.

use std::path::Path;

use toml_edit::{Document, Item, Table};

use super::{Config, mistake};

/// One value of a key: what a flag can take.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::cli) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An array of the scalars above.
    List(Vec<Value>),
}

impl Value {
    /// The value as a command-line argument; `None` for a list.
    pub(in crate::cli) fn scalar(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::List(_) => None,
        }
    }

    /// Every string in the value.
    pub(super) fn strings(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Value::Str(s) => Box::new(std::iter::once(s.as_str())),
            Value::List(l) => Box::new(l.iter().flat_map(Value::strings)),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// What a person calls this type, for messages.
    pub(in crate::cli) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "true or false",
            Value::List(_) => "a list",
        }
    }
}

/// A key and its value, at a line of the file.
#[derive(Debug, Clone)]
pub(in crate::cli) struct Entry {
    pub(in crate::cli) key: String,
    pub(in crate::cli) value: Value,
    pub(in crate::cli) line: usize,
}

/// `[repositories.NAME]` or `[jobs.NAME]`, its entries in file order.
#[derive(Debug, Clone)]
pub(in crate::cli) struct Section {
    /// `repositories` or `jobs`.
    pub(in crate::cli) group: &'static str,
    pub(in crate::cli) name: String,
    pub(in crate::cli) line: usize,
    pub(in crate::cli) entries: Vec<Entry>,
}

impl Section {
    /// The entry for `key`.
    pub(in crate::cli) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Where the section is, for messages: `[jobs.home]`.
    pub(in crate::cli) fn title(&self) -> String {
        format!("[{}.{}]", self.group, self.name)
    }
}

/// Parses the whole file.
pub(super) fn parse(path: &Path, text: &str) -> repo::Result<Config> {
    let doc = Document::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        mistake(path, line, format!("not valid TOML: {}", e.message()))
    })?;
    let line = |span: Option<std::ops::Range<usize>>| span.map_or(1, |s| line_of(text, s.start));
    let mut config = Config {
        path: path.to_path_buf(),
        repositories: Vec::new(),
        jobs: Vec::new(),
        stop_on_failure: false,
        metrics_file: None,
    };
    for (key, item) in doc.as_table().iter() {
        let at = line(doc.as_table().key(key).and_then(|k| k.span()));
        match key {
            "repositories" | "jobs" => {
                let group = if key == "jobs" {
                    "jobs"
                } else {
                    "repositories"
                };
                let sections = sections(path, text, group, item, at)?;
                if group == "jobs" {
                    config.jobs = sections;
                } else {
                    config.repositories = sections;
                }
            }
            "metrics-file" => match item.as_str() {
                Some(p) => config.metrics_file = Some(anchor(path, p).into()),
                None => {
                    return Err(mistake(path, at, "`metrics-file` takes a file name"));
                }
            },
            "stop-on-failure" => match item.as_bool() {
                Some(b) => config.stop_on_failure = b,
                None => {
                    return Err(mistake(path, at, "`stop-on-failure` takes true or false"));
                }
            },
            other => {
                return Err(mistake(
                    path,
                    at,
                    format!(
                        "unknown key `{other}`: the file holds [repositories.NAME] and \
                         [jobs.NAME] sections, `metrics-file` and `stop-on-failure`"
                    ),
                ));
            }
        }
    }
    Ok(config)
}

/// The named tables below `[group]`.
fn sections(
    path: &Path,
    text: &str,
    group: &'static str,
    item: &Item,
    at: usize,
) -> repo::Result<Vec<Section>> {
    let Some(table) = item.as_table_like() else {
        return Err(mistake(
            path,
            at,
            format!("`{group}` must hold tables: [{group}.NAME]"),
        ));
    };
    let mut out = Vec::new();
    for (name, item) in table.iter() {
        let key_line = table
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .map_or(at, |s| line_of(text, s.start));
        let Some(t) = item.as_table() else {
            return Err(mistake(
                path,
                key_line,
                format!("`{group}.{name}` must be a table: write [{group}.{name}]"),
            ));
        };
        let line = t.span().map_or(key_line, |s| line_of(text, s.start));
        out.push(Section {
            group,
            name: name.to_string(),
            line,
            entries: entries(path, text, group, name, t)?,
        });
    }
    Ok(out)
}

/// The keys of one section.
fn entries(
    path: &Path,
    text: &str,
    group: &str,
    name: &str,
    t: &Table,
) -> repo::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (key, item) in t.iter() {
        let line = t
            .key(key)
            .and_then(|k| k.span())
            .map_or(1, |s| line_of(text, s.start));
        let wrong = || {
            mistake(
                path,
                line,
                format!(
                    "key `{key}` in [{group}.{name}]: give a string, a number, true or false, \
                     or a list of those"
                ),
            )
        };
        let value = item.as_value().ok_or_else(wrong)?;
        let value = value_of(value).ok_or_else(wrong)?;
        out.push(Entry {
            key: key.to_string(),
            value: if PATH_KEYS.contains(&key) {
                // `repository` and `to` may name a repository instead.
                anchored(path, value, matches!(key, "repository" | "to"))
            } else {
                value
            },
            line,
        });
    }
    Ok(out)
}

fn value_of(v: &toml_edit::Value) -> Option<Value> {
    use toml_edit::Value as V;
    Some(match v {
        V::String(s) => Value::Str(s.value().clone()),
        V::Integer(i) => Value::Int(*i.value()),
        V::Float(f) => Value::Float(*f.value()),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Array(a) => Value::List(
            a.iter()
                .map(|v| match value_of(v)? {
                    Value::List(_) => None,
                    scalar => Some(scalar),
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        V::Datetime(_) | V::InlineTable(_) => return None,
    })
}

/// Keys whose values are files or folders (or locations, which may be).
/// A relative one is taken relative to the config file's folder, not to
/// wherever `repo` runs: under a systemd timer that is `/`, and a file
/// that worked on a terminal would fail at night.
const PATH_KEYS: &[&str] = &[
    "location",
    "repository",
    "to",
    "paths",
    "source",
    "destination",
    "password-file",
    "key-file",
    "exclude-file",
    "cache-dir",
    "ca-cert",
    "to-password-file",
    "to-key-file",
];

/// `v` with relative paths taken from the config file's folder; with
/// `names`, a bare word stays as it is (a repository's name; `./name` is
/// the folder).
fn anchored(file: &Path, v: Value, names: bool) -> Value {
    match v {
        Value::Str(s) if names && !s.contains('/') && !s.starts_with('.') => Value::Str(s),
        Value::Str(s) => Value::Str(anchor(file, &s)),
        Value::List(l) => Value::List(l.into_iter().map(|v| anchored(file, v, names)).collect()),
        other => other,
    }
}

/// `value` relative to the folder of config file `file`, if it is a
/// relative path (not absolute, not a URL, not empty).
fn anchor(file: &Path, value: &str) -> String {
    if value.is_empty() || value.starts_with('/') || value.contains("://") {
        return value.to_string();
    }
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join(value).to_string_lossy().into_owned()
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
