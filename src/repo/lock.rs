//! Repository locks under `locks/`.
//!
//! Commands that add or read data take a shared lock; maintenance takes an
//! exclusive one. A lock is an encrypted object refreshed every few minutes
//! by a background thread; one not refreshed for `STALE_AFTER`, or whose
//! process is gone on this host, is stale and ignored. After writing its
//! own lock a command lists again, so two racing writers both see each other.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::objects::ObjectKind;
use super::{Repository, host_and_user};
use crate::error::{Error, Result};

/// A lock older than this without a refresh is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    pub host: String,
    pub user: String,
    pub pid: u32,
    pub command: String,
}

impl LockInfo {
    /// Whether the holder is certainly gone or has stopped refreshing.
    pub fn is_stale(&self, my_host: &str) -> bool {
        let age = Utc::now().signed_duration_since(self.time);
        if age.num_seconds() > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        if self.host == my_host {
            // kill(pid, 0) fails with ESRCH when no such process exists.
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            return matches!(
                nix::sys::signal::kill(pid, None),
                Err(nix::errno::Errno::ESRCH)
            );
        }
        false
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock held by {}@{} (pid {}, `{}`) since {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.user,
            self.host,
            self.pid,
            self.command,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held lock; dropping it removes the lock object.
pub struct LockGuard {
    repo: Repository,
    /// Whether this guard holds the exclusive claim (`locks/exclusive/holder`).
    claimed: bool,
    current: Arc<Mutex<String>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

/// Every lock in the repository with its id; unreadable ones are reported as `Err`.
pub fn list_locks(
    repo: &Repository,
) -> Result<Vec<(String, std::result::Result<LockInfo, String>)>> {
    let mut out = Vec::new();
    for hex in repo.list_ids(ObjectKind::Lock)? {
        let info = match super::objects::load(repo, ObjectKind::Lock, &hex) {
            Ok(b) => serde_json::from_slice::<LockInfo>(&b).map_err(|e| e.to_string()),
            Err(Error::NotFound { .. }) => continue, // removed while we listed
            Err(e) => Err(e.to_string()),
        };
        out.push((hex, info));
    }
    Ok(out)
}

fn conflicts(repo: &Repository, exclusive: bool, mine: Option<&str>) -> Result<Option<String>> {
    let (host, _) = host_and_user();
    for (hex, info) in list_locks(repo)? {
        if Some(hex.as_str()) == mine {
            continue;
        }
        let Ok(info) = info else { continue };
        if info.is_stale(&host) {
            continue;
        }
        if exclusive || info.exclusive {
            return Ok(Some(format!(
                "{} (locks/{hex}). If that process is no longer running, remove the lock with `repo unlock`",
                info.describe()
            )));
        }
    }
    Ok(None)
}

/// Takes a lock, failing with [`Error::Locked`] if a conflicting live lock exists.
pub fn lock(repo: &Repository, exclusive: bool, command: &str) -> Result<LockGuard> {
    if let Some(detail) = conflicts(repo, exclusive, None)? {
        return Err(Error::Locked { detail });
    }
    let (host, user) = host_and_user();
    let info = LockInfo {
        time: Utc::now(),
        exclusive,
        host,
        user,
        pid: std::process::id(),
        command: command.to_string(),
    };
    if exclusive {
        claim(repo, &info)?;
    }
    let release_claim = || {
        if exclusive {
            let _ = repo.storage().release(CLAIM_DIR, CLAIM_NAME);
        }
    };
    let hex = match write(repo, &info) {
        Ok(h) => h,
        Err(e) => {
            release_claim();
            return Err(e);
        }
    };
    if let Some(detail) = conflicts(repo, exclusive, Some(&hex))? {
        let _ = repo.storage().delete(&ObjectKind::Lock.key(&hex));
        release_claim();
        return Err(Error::Locked { detail });
    }
    let current = Arc::new(Mutex::new(hex));
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    Ok(LockGuard {
        repo: repo.clone(),
        claimed: exclusive,
        current,
        stop,
        refresher: None,
    }
    .with_refresher(info))
}

/// Where exclusive lockers claim the repository with a conditional create
/// (MKD on FTP). Shared lockers never claim: they see exclusive holders
/// through their ordinary lock objects.
pub const CLAIM_DIR: &str = "locks/exclusive";
pub const CLAIM_NAME: &str = "holder";

fn read_claim(repo: &Repository) -> Result<LockInfo> {
    let key = format!("{CLAIM_DIR}/{CLAIM_NAME}");
    let sealed = repo
        .storage()
        .get_bounded(&key, ObjectKind::Lock.max_size())?;
    let plain = crate::codec::decode(
        &repo.keys().encryption,
        ObjectKind::Lock.ad(),
        &sealed,
        64 * 1024,
    )
    .map_err(|e| Error::corrupt(&key, e))?;
    serde_json::from_slice(&plain).map_err(|e| Error::corrupt(&key, e))
}

/// Takes the exclusive claim; a stale claim (its holder gone) is replaced once.
fn claim(repo: &Repository, info: &LockInfo) -> Result<()> {
    let payload = serde_json::to_vec(info).unwrap_or_default();
    let (host, _) = host_and_user();
    for _ in 0..2 {
        let sealed =
            crate::codec::encode(&repo.keys().encryption, ObjectKind::Lock.ad(), &payload, 3);
        if repo.storage().claim(CLAIM_DIR, CLAIM_NAME, sealed)? {
            return Ok(());
        }
        match read_claim(repo) {
            Ok(other) if other.is_stale(&host) => repo.storage().release(CLAIM_DIR, CLAIM_NAME)?,
            Ok(other) => {
                return Err(Error::Locked {
                    detail: format!(
                        "{} ({CLAIM_DIR}). If that process is no longer running, remove the lock with `repo unlock`",
                        other.describe()
                    ),
                });
            }
            Err(Error::NotFound { .. }) => {
                return Err(Error::Locked {
                    detail: format!(
                        "another process is taking an exclusive lock ({CLAIM_DIR} exists without its holder record); \
                         retry, or if no other repo process is running remove it with `repo unlock --remove-all`"
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Locked {
        detail: format!("could not take the exclusive claim {CLAIM_DIR}; retry"),
    })
}

fn write(repo: &Repository, info: &LockInfo) -> Result<String> {
    let payload = serde_json::to_vec(info).unwrap_or_default();
    repo.save_object(ObjectKind::Lock, &payload)
}

impl LockGuard {
    fn with_refresher(mut self, info: LockInfo) -> Self {
        let stop = self.stop.clone();
        let current = self.current.clone();
        let repo = self.repo.clone();
        self.refresher = Some(std::thread::spawn(move || {
            let (m, cv) = &*stop;
            let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                // The guard may be dropped before this thread first takes the
                // mutex; its notification is then gone, so look before waiting.
                if *stopped {
                    return;
                }
                let (g, timeout) = cv
                    .wait_timeout(stopped, REFRESH_EVERY)
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                if timeout.timed_out() {
                    let fresh = LockInfo {
                        time: Utc::now(),
                        ..info.clone()
                    };
                    if let Ok(new_hex) = write(&repo, &fresh)
                        && let Ok(mut cur) = current.lock()
                    {
                        let old = std::mem::replace(&mut *cur, new_hex);
                        let _ = repo.storage().delete(&ObjectKind::Lock.key(&old));
                    }
                }
            }
        }));
        self
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            if let Ok(mut s) = m.lock() {
                *s = true;
            }
            cv.notify_all();
        }
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Ok(cur) = self.current.lock() {
            let _ = self.repo.storage().delete(&ObjectKind::Lock.key(&cur));
        }
        if self.claimed {
            let _ = self.repo.storage().release(CLAIM_DIR, CLAIM_NAME);
        }
    }
}

/// Removes stale locks (or all with `all`); returns the ids removed.
pub fn unlock(repo: &Repository, all: bool) -> Result<Vec<String>> {
    let (host, _) = host_and_user();
    let mut removed = Vec::new();
    for (hex, info) in list_locks(repo)? {
        let stale = match &info {
            Ok(i) => i.is_stale(&host),
            Err(_) => true,
        };
        if all || stale {
            repo.storage().delete(&ObjectKind::Lock.key(&hex))?;
            removed.push(hex);
        }
    }
    let key = format!("{CLAIM_DIR}/{CLAIM_NAME}");
    let claim_stale = match read_claim(repo) {
        Ok(i) => all || i.is_stale(&host),
        Err(Error::NotFound { .. }) => false,
        Err(_) => true, // unreadable: nobody can prove to hold it
    };
    if claim_stale {
        repo.storage().release(CLAIM_DIR, CLAIM_NAME)?;
        removed.push(key);
    } else if all {
        // An FTP claim directory left without its holder record by a crash.
        repo.storage().release(CLAIM_DIR, CLAIM_NAME)?;
    }
    Ok(removed)
}
