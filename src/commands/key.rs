//! `repo key`: list, add, change and remove the passwords (key objects)
//! that open the repository. Every key object wraps the same master key,
//! so no data is re-encrypted.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroize;

use super::Context;
use crate::crypto::MasterKey;
use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::format::keyfile::KeyFile;
use crate::format::rawkey::RawKey;
use crate::id::KeyId;
use crate::repository::ObjectKind;
use crate::repository::{Credentials, Repository, host_and_user, lock};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// List the key objects; the one that opened the repository is marked.
    List,
    /// Add a key: another password for the same repository.
    Add(NewPassword),
    /// Change the password: add a key with the new one, then remove the current key.
    Passwd(NewPassword),
    /// Write the master key to a new FILE (0600) for --key-file: no password, no KDF.
    ///
    /// Commands given --key-file FILE or REPO_KEY_FILE then open the
    /// repository without a password or the argon2id unlock, as scheduled
    /// backups want. Anyone holding FILE can read and change the
    /// repository, and removing or changing passwords does not revoke it.
    Export {
        /// The file to create; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Remove a key object (never the key in use, never the last one).
    Remove {
        /// Id (or unique prefix) of the key object, as `repo key list` shows it.
        id: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct NewPassword {
    /// Read the new password from the first line of FILE (default: ask twice on the terminal).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

impl Action {
    /// Where the new password comes from, for actions that need one.
    pub fn new_password(&self) -> Option<&NewPassword> {
        match self {
            Action::Add(n) | Action::Passwd(n) => Some(n),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KeyEntry {
    pub id: String,
    /// Whether this key opened the repository in this run.
    pub current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub host: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<KdfParams>,
    /// Why the key object cannot be read, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<PathBuf>,
}

fn list(repo: &Repository) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for hex in repo.list_ids(ObjectKind::Key)? {
        let id = KeyId::from_hex(&hex).unwrap_or_default();
        let current = id == repo.key_id();
        out.push(match repo.load_key(id) {
            Ok(k) => KeyEntry {
                id: hex,
                current,
                created: Some(k.created.to_rfc3339()),
                host: k.host,
                user: k.user,
                params: Some(k.params),
                error: None,
            },
            Err(e) => KeyEntry {
                id: hex,
                current,
                created: None,
                host: String::new(),
                user: String::new(),
                params: None,
                error: Some(e.to_string()),
            },
        });
    }
    Ok(out)
}

/// The master key, which is not kept in memory after opening: unwrapped
/// again from the key object in use, or taken from the raw key file.
fn master(ctx: &Context, repo: &Repository) -> Result<MasterKey> {
    match &ctx.credentials {
        Credentials::Password(password) => {
            let current = repo.load_key(repo.key_id())?;
            current.open(password).map_err(|_| Error::WrongPassword {
                location: repo.location().to_string(),
            })
        }
        Credentials::RawKey { master, .. } => Ok(master.clone()),
    }
}

/// Writes a key object wrapping this repository's master key under `password`.
fn add(repo: &Repository, master: &MasterKey, password: &[u8]) -> Result<KeyId> {
    if password.is_empty() {
        return Err(Error::Usage("an empty password is not allowed".into()));
    }
    let (host, user) = host_and_user();
    let key = KeyFile::create(master, password, KdfParams::default(), &host, &user)
        .map_err(|e| Error::Usage(e.to_string()))?;
    repo.save_key(&key)
}

/// Writes the master key to a new file only the owner can read.
fn export(ctx: &Context, repo: &Repository, file: &Path) -> Result<()> {
    let raw = RawKey::new(&master(ctx, repo)?, repo.config().id, repo.key_id());
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} already exists; key export never overwrites a file: remove it or name another",
                    file.display()
                ))
            } else {
                Error::io("create key file", file, e)
            }
        })?;
    let mut bytes = raw.encode();
    let written = out
        .write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| Error::io("write key file", file, e));
    bytes.zeroize();
    if written.is_err() {
        let _ = std::fs::remove_file(file);
    }
    written
}

fn remove(repo: &Repository, spec: &str) -> Result<String> {
    let ids = repo.list_ids(ObjectKind::Key)?;
    let spec_l = spec.to_ascii_lowercase();
    let matching: Vec<&String> = ids.iter().filter(|h| h.starts_with(&spec_l)).collect();
    let hex = match matching.as_slice() {
        [one] if !spec.is_empty() => (*one).clone(),
        [] => {
            return Err(Error::NotFound {
                what: format!("key {spec:?}"),
                hint: "; list the keys with `repo key list`".into(),
            });
        }
        _ => {
            return Err(Error::Usage(format!(
                "key prefix {spec:?} matches more than one key; give more characters of the id"
            )));
        }
    };
    if hex == repo.key_id().to_hex() {
        return Err(Error::Usage(format!(
            "key {} is the one that opened the repository and cannot be removed; use `repo key passwd` to replace it, or open the repository with another key's password",
            &hex[..8]
        )));
    }
    if ids.len() < 2 {
        return Err(Error::Usage(
            "the repository has only this key; removing it would make the data unreadable".into(),
        ));
    }
    repo.delete_key(KeyId::from_hex(&hex).unwrap_or_default())?;
    Ok(hex)
}

/// Runs the action; `new_password` is required by `add` and `passwd`.
pub fn run(ctx: &Context, args: &Args, new_password: Option<&[u8]>) -> Result<Report> {
    let repo = ctx.open()?;
    let need = || {
        new_password.ok_or_else(|| {
            Error::Usage(
                "no new password given: use --new-password-file F or run on a terminal".into(),
            )
        })
    };
    match &args.action {
        Action::List => Ok(Report {
            keys: list(&repo)?,
            ..Default::default()
        }),
        Action::Add(_) => {
            let _lock = lock::lock(&repo, false, "key add")?;
            let id = add(&repo, &master(ctx, &repo)?, need()?)?;
            Ok(Report {
                added: Some(id.to_hex()),
                ..Default::default()
            })
        }
        Action::Passwd(_) => {
            let _lock = lock::lock_to_change(&repo, true, "key passwd")?;
            let id = add(&repo, &master(ctx, &repo)?, need()?)?;
            let old = repo.key_id().to_hex();
            if let Err(e) = repo.delete_key(repo.key_id()) {
                return Err(Error::HalfDone {
                    command: "key passwd".into(),
                    done: format!("added key {} for the new password", id.short()),
                    old: format!("the old key {}", &old[..8]),
                    cause: e.to_string(),
                    advice: format!(
                        "Both passwords open the repository now; remove the old key with `repo key remove {}` where the storage allows deletes (on the server of an append-only repository)",
                        &old[..8]
                    ),
                });
            }
            Ok(Report {
                added: Some(id.to_hex()),
                removed: Some(old),
                ..Default::default()
            })
        }
        Action::Export { file } => {
            export(ctx, &repo, file)?;
            Ok(Report {
                exported: Some(file.clone()),
                ..Default::default()
            })
        }
        Action::Remove { id } => {
            let _lock = lock::lock_to_change(&repo, true, "key remove")?;
            Ok(Report {
                removed: Some(remove(&repo, id)?),
                ..Default::default()
            })
        }
    }
}
