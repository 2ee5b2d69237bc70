//! Repository locks under `locks/`.
//!
//! Commands that add or read data take a shared lock; maintenance takes an
//! exclusive one. A lock is an encrypted object refreshed by a background
//! thread; one not refreshed for the stale period, or whose process is
//! provably gone (see [`super::holder`]), is stale and ignored. After
//! writing its own lock a command lists again, so two racing writers both
//! see each other.
//!
//! Others judge a lock by its age, so a holder that was suspended (laptop
//! lid, SIGSTOP, paused VM) or cut off from storage may have been judged
//! stale, and data it relies on pruned, without noticing. So a holder keeps
//! in memory when it last refreshed and whether its lock object was still
//! there, and [`Repository::ensure_lock`] (called before every index and
//! snapshot write, and by prune before it deletes) refuses once the lock is
//! no longer provably continuous and fresh. SPEC.md §10.1 states the protocol.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::objects::ObjectKind;
use super::{Repository, holder, host_and_user};
use crate::error::{Error, Result};

/// A lock older than this without a refresh is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// The stale period in force: [`STALE_AFTER`], or a test's shorter one.
pub(crate) fn stale_after() -> Duration {
    crate::testhooks::stale_after_override()
        .filter(|d| !d.is_zero())
        .unwrap_or(STALE_AFTER)
}

/// How often a held lock is rewritten: a sixth of the stale period.
pub(crate) fn refresh_every() -> Duration {
    stale_after() / 6
}

/// How long after its last refresh a holder still trusts its lock: two
/// thirds of the stale period. The last third absorbs clock differences
/// between hosts and the time a write takes.
pub(crate) fn safe_window() -> Duration {
    stale_after() * 2 / 3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    pub host: String,
    pub user: String,
    pub pid: u32,
    pub command: String,
    /// The holder's machine id; absent in locks written by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// The holder's boot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Inode of the holder's pid namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// The holder's start time in clock ticks since boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Random, the same in every refresh of one holding: names the holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl LockInfo {
    /// A lock record for this process, stamped now, with a new nonce.
    pub(crate) fn new(exclusive: bool, command: &str) -> LockInfo {
        let (host, user) = host_and_user();
        let me = holder::me();
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        LockInfo {
            time: Utc::now(),
            exclusive,
            host,
            user,
            pid: std::process::id(),
            command: command.to_string(),
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            start_time: me.start_time,
            nonce: Some(hex::encode(nonce)),
        }
    }

    /// Whether the holder is certainly gone or has stopped refreshing.
    pub(crate) fn is_stale(&self) -> bool {
        self.is_stale_by_age() || self.holder_is_dead()
    }

    /// Not refreshed for the stale period. Its holder may still be alive,
    /// only suspended.
    pub(crate) fn is_stale_by_age(&self) -> bool {
        let age = Utc::now().signed_duration_since(self.time);
        age.to_std().is_ok_and(|a| a > stale_after())
    }

    /// The holder ran on this very boot of this machine, in our pid
    /// namespace, and that process is gone.
    pub(crate) fn holder_is_dead(&self) -> bool {
        holder::certainly_dead(
            self.machine_id.as_deref(),
            self.boot_id.as_deref(),
            self.pid_ns,
            self.pid,
            self.start_time,
        )
    }

    /// What to do about this live lock if its holder is believed gone.
    pub(crate) fn advice(&self) -> String {
        let expires = self.time
            + chrono::Duration::from_std(stale_after())
                .unwrap_or_else(|_| chrono::Duration::zero());
        if holder::same_space(
            self.machine_id.as_deref(),
            self.boot_id.as_deref(),
            self.pid_ns,
        ) {
            format!(
                "That process is still running on this machine; wait for it to finish (its lock \
                 expires at {} if it stops refreshing it)",
                expires.format("%Y-%m-%d %H:%M:%S UTC")
            )
        } else {
            format!(
                "It was taken on another machine, boot or pid namespace, so this process cannot \
                 tell whether its holder still runs; it becomes stale at {} unless refreshed. If \
                 you are sure that process is gone, remove the lock with `repo unlock --remove-all`",
                expires.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
    }

    pub(crate) fn describe(&self) -> String {
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

/// What a holder knows about its own lock; shared by the guard, its
/// refresher and the [`Repository`] that checks it before writing.
pub(crate) struct Held {
    command: String,
    state: Mutex<HeldState>,
}

struct HeldState {
    /// Hex id of the newest lock object written.
    current: String,
    /// The `time` of the newest lock object for which the lock was
    /// provably continuous (the object before it was still there).
    refreshed: DateTime<Utc>,
    /// Why the lock can no longer be trusted; once set, for good: data may
    /// have been pruned while it lapsed, even if later refreshes succeed.
    broken: Option<String>,
    /// The last failed refresh, for the message once the window runs out.
    last_error: Option<String>,
}

impl Held {
    fn new(command: &str, current: String, refreshed: DateTime<Utc>) -> Held {
        Held {
            command: command.to_string(),
            state: Mutex::new(HeldState {
                current,
                refreshed,
                broken: None,
                last_error: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn too_old(since: DateTime<Utc>) -> Option<Duration> {
    let age = Utc::now().signed_duration_since(since).to_std().ok()?;
    (age >= safe_window()).then_some(age)
}

fn lapsed(state: &HeldState, age: Duration) -> String {
    format!(
        "it was last refreshed {}s ago, beyond the {}s this holder may trust of the {}s stale \
         period (was the process suspended, or storage unreachable?){}, so another process may \
         have judged it stale and changed the repository meanwhile",
        age.as_secs(),
        safe_window().as_secs(),
        stale_after().as_secs(),
        state
            .last_error
            .as_deref()
            .map(|e| format!("; last refresh failed: {e}"))
            .unwrap_or_default()
    )
}

impl Held {
    /// Hex id of the newest lock object written.
    pub(crate) fn current(&self) -> String {
        self.state().current.clone()
    }
}

/// Proves that `held` is still this process's lock and fresh: never lapsed
/// since taken, its newest object still in storage, and refreshed less than
/// [`safe_window`] ago. Otherwise the lock is broken for good.
pub(crate) fn verify(repo: &Repository, held: &Held, purpose: &str) -> Result<()> {
    let mut st = held.state();
    let lost = |reason: &str| Error::LockLost {
        command: held.command.clone(),
        reason: reason.to_string(),
        purpose: purpose.to_string(),
        advice: "No snapshot refers to anything it wrote; run it again".into(),
    };
    if let Some(b) = &st.broken {
        return Err(lost(b));
    }
    if let Some(age) = too_old(st.refreshed) {
        st.broken = Some(lapsed(&st, age));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    let key = ObjectKind::Lock.key(&st.current);
    if repo.storage().size(&key)?.is_none() {
        st.broken = Some(format!(
            "its lock object {key} was removed by another process (`repo unlock --remove-all`?)"
        ));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    // The look-up itself may have been slow.
    if let Some(age) = too_old(st.refreshed) {
        st.broken = Some(lapsed(&st, age));
        return Err(lost(st.broken.as_deref().unwrap_or_default()));
    }
    Ok(())
}

/// A held lock; dropping it removes the lock object.
pub(crate) struct LockGuard {
    repo: Repository,
    /// Whether this guard holds the exclusive claim (`locks/exclusive/holder`).
    claimed: bool,
    /// The nonce of this holding, to tell our claim from a successor's.
    nonce: Option<String>,
    held: Arc<Held>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

/// Every lock in the repository with its id; damaged ones (that do not
/// decrypt or parse, or are too large to be a lock) are reported as `Err`.
///
/// A lock that cannot be *read* (a failed request, no permission to read
/// another user's lock file) fails the listing instead: it may be the live
/// lock of a running backup, and ignoring it would let prune delete what
/// that backup wrote.
pub(crate) fn list_locks(
    repo: &Repository,
) -> Result<Vec<(String, std::result::Result<LockInfo, String>)>> {
    let mut out = Vec::new();
    for hex in repo.list_ids(ObjectKind::Lock)? {
        let info = match super::objects::load(repo, ObjectKind::Lock, &hex) {
            Ok(b) => serde_json::from_slice::<LockInfo>(&b).map_err(|e| e.to_string()),
            Err(Error::NotFound { .. }) => continue, // removed while we listed
            Err(e @ Error::Corrupt { .. }) => Err(e.to_string()),
            Err(e) => {
                return Err(Error::Locked {
                    detail: format!(
                        "lock {} cannot be read ({e}), so it may be the live lock of a running                          process. Fix the access to the repository and retry; if you are sure no                          other repo process is using it, remove the locks with `repo unlock                          --remove-all`",
                        ObjectKind::Lock.key(&hex)
                    ),
                });
            }
        };
        out.push((hex, info));
    }
    Ok(out)
}

fn conflicts(repo: &Repository, exclusive: bool, mine: Option<&str>) -> Result<Option<String>> {
    for (hex, info) in list_locks(repo)? {
        if Some(hex.as_str()) == mine {
            continue;
        }
        let Ok(info) = info else { continue };
        if info.is_stale() {
            continue;
        }
        if exclusive || info.exclusive {
            return Ok(Some(format!(
                "{} (locks/{hex}). {}",
                info.describe(),
                info.advice()
            )));
        }
    }
    Ok(None)
}

/// Deletes the lock objects that are stale (by age, or their holder dead)
/// and, unless `all`, exclusive: the locks this process is about to ignore.
/// Their holder may only be suspended, or its clock behind: by its own
/// clock its lock may still look fresh, so it would go on writing (a
/// backup) or deleting (a prune) on data the remover is about to change.
/// Once its lock object is gone its next check fails whatever its clock
/// says (SPEC.md §10.1). Returns the ids removed.
pub(crate) fn remove_ignored(repo: &Repository, all: bool) -> Result<Vec<String>> {
    let mine = repo.held_lock_id();
    let mut removed = Vec::new();
    for (hex, info) in list_locks(repo)? {
        let Ok(info) = info else { continue };
        if Some(&hex) == mine.as_ref() || !info.is_stale() || !(all || info.exclusive) {
            continue;
        }
        match repo.storage().delete(&ObjectKind::Lock.key(&hex)) {
            Ok(()) | Err(Error::NotFound { .. }) => removed.push(hex),
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Takes a lock, failing with [`Error::Locked`] if a conflicting live lock
/// exists. Until the guard is dropped, `repo` (and its clones) check the
/// lock before writing index and snapshot objects.
pub(crate) fn lock(repo: &Repository, exclusive: bool, command: &str) -> Result<LockGuard> {
    if let Some(detail) = conflicts(repo, exclusive, None)? {
        return Err(Error::Locked { detail });
    }
    let info = LockInfo::new(exclusive, command);
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
    let held = Arc::new(Held::new(command, hex, info.time));
    repo.set_held(Some(held.clone()));
    if !exclusive {
        // A suspended prune whose lock we ignore must not resume deleting.
        // (Exclusive lockers: prune removes the locks it ignores itself,
        // once it has noted them for its grace period.)
        if let Err(e) = remove_ignored(repo, false) {
            repo.set_held(None);
            let _ = repo
                .storage()
                .delete(&ObjectKind::Lock.key(&held.current()));
            return Err(e);
        }
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    Ok(LockGuard {
        repo: repo.clone(),
        claimed: exclusive,
        nonce: info.nonce.clone(),
        held,
        stop,
        refresher: None,
    }
    .with_refresher(info))
}

/// Where exclusive lockers claim the repository with a conditional create
/// (MKD on FTP). Shared lockers never claim: they see exclusive holders
/// through their ordinary lock objects.
pub(crate) const CLAIM_DIR: &str = "locks/exclusive";
pub(crate) const CLAIM_NAME: &str = "holder";

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

/// The claim record is written once and never refreshed; its holder's
/// refreshed lock objects carry the same nonce. So a claim is stale when
/// its record is, unless a live lock object of the same holding exists.
fn claim_is_stale(repo: &Repository, claim: &LockInfo) -> Result<bool> {
    if claim.holder_is_dead() {
        return Ok(true);
    }
    if !claim.is_stale_by_age() {
        return Ok(false);
    }
    let Some(nonce) = &claim.nonce else {
        return Ok(true);
    };
    Ok(!list_locks(repo)?
        .into_iter()
        .any(|(_, info)| info.is_ok_and(|i| i.nonce.as_ref() == Some(nonce) && !i.is_stale())))
}

/// Takes the exclusive claim; a stale claim (its holder gone) is replaced once.
fn claim(repo: &Repository, info: &LockInfo) -> Result<()> {
    let payload = serde_json::to_vec(info).unwrap_or_default();
    for _ in 0..2 {
        let sealed =
            crate::codec::encode(&repo.keys().encryption, ObjectKind::Lock.ad(), &payload, 3);
        if repo.storage().claim(CLAIM_DIR, CLAIM_NAME, sealed)? {
            return Ok(());
        }
        match read_claim(repo) {
            Ok(other) if claim_is_stale(repo, &other)? => {
                repo.storage().release(CLAIM_DIR, CLAIM_NAME)?
            }
            Ok(other) => {
                return Err(Error::Locked {
                    detail: format!("{} ({CLAIM_DIR}). {}", other.describe(), other.advice()),
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
            Err(Error::Corrupt { reason, .. }) => {
                return Err(Error::Locked {
                    detail: format!(
                        "the exclusive claim {CLAIM_DIR}/{CLAIM_NAME} cannot be read ({reason}), so \
                         nobody can prove to hold it; remove it with `repo unlock`"
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

/// Writes a new lock object and removes the previous one. The lock counts
/// as refreshed only if the previous object was still there and the new
/// one became durable within [`safe_window`] of the previous refresh: so
/// the lock was continuously visible and fresh to every other process.
fn refresh(repo: &Repository, held: &Held, info: &LockInfo) {
    let mut st = held.state();
    let stamp = Utc::now();
    let fresh = LockInfo {
        time: stamp,
        ..info.clone()
    };
    let new_hex = match write(repo, &fresh) {
        Ok(h) => h,
        Err(e) => {
            // The old object stays; if this persists the window runs out.
            st.last_error = Some(e.to_string());
            return;
        }
    };
    let gap = too_old(st.refreshed);
    let old_key = ObjectKind::Lock.key(&st.current);
    let present = match repo.storage().size(&old_key) {
        Ok(p) => p.is_some(),
        Err(e) => {
            // Cannot tell whether the lock stayed: keep the old one, retry later.
            st.last_error = Some(e.to_string());
            let _ = repo.storage().delete(&ObjectKind::Lock.key(&new_hex));
            return;
        }
    };
    st.current = new_hex;
    if present {
        let _ = repo.storage().delete(&old_key);
    }
    if st.broken.is_some() {
        return;
    }
    if !present {
        st.broken = Some(format!(
            "its lock object {old_key} was removed by another process (`repo unlock --remove-all`?)"
        ));
    } else if let Some(age) = gap {
        st.broken = Some(lapsed(&st, age));
    } else {
        st.refreshed = stamp;
        st.last_error = None;
    }
}

impl LockGuard {
    /// Why this lock can no longer be trusted, judged from memory alone (no
    /// storage request): broken by a refresh, or not refreshed for the safe
    /// window. For holders that write nothing but must know when their
    /// exclusivity ended (`repo lock`).
    pub(crate) fn lapsed(&self) -> Option<Error> {
        let st = self.held.state();
        let reason = match (&st.broken, too_old(st.refreshed)) {
            (Some(b), _) => b.clone(),
            (None, Some(age)) => lapsed(&st, age),
            (None, None) => return None,
        };
        Some(Error::LockLost {
            command: self.held.command.clone(),
            reason,
            purpose: "the end of the requested time".into(),
            advice: "Other processes may have used the repository meanwhile; take the lock again"
                .into(),
        })
    }

    fn with_refresher(mut self, info: LockInfo) -> Self {
        let stop = self.stop.clone();
        let held = self.held.clone();
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
                    .wait_timeout(stopped, refresh_every())
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                if timeout.timed_out() {
                    refresh(&repo, &held, &info);
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
        self.repo.set_held(None);
        let current = self.held.state().current.clone();
        let _ = self.repo.storage().delete(&ObjectKind::Lock.key(&current));
        // After a lapse another process may have taken over the claim:
        // release it only while it is still ours.
        if self.claimed
            && read_claim(&self.repo).is_ok_and(|c| c.nonce.is_some() && c.nonce == self.nonce)
        {
            let _ = self.repo.storage().release(CLAIM_DIR, CLAIM_NAME);
        }
    }
}

/// Removes stale locks (or all with `all`); returns the ids removed.
pub(crate) fn unlock(repo: &Repository, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    if all {
        // Unread: an unreadable or oversized lock goes too.
        for hex in repo.list_ids(ObjectKind::Lock)? {
            repo.storage().delete(&ObjectKind::Lock.key(&hex))?;
            removed.push(hex);
        }
    }
    for (hex, info) in if all { Vec::new() } else { list_locks(repo)? } {
        let stale = match &info {
            Ok(i) => i.is_stale(),
            Err(_) => true,
        };
        if all || stale {
            repo.storage().delete(&ObjectKind::Lock.key(&hex))?;
            removed.push(hex);
        }
    }
    let key = format!("{CLAIM_DIR}/{CLAIM_NAME}");
    let claim_stale = match read_claim(repo) {
        Ok(i) => all || claim_is_stale(repo, &i)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::tests::repo;

    fn state(g: &LockGuard) -> (String, DateTime<Utc>, Option<String>) {
        let st = g.held.state();
        (st.current.clone(), st.refreshed, st.broken.clone())
    }

    #[test]
    fn refresh_notices_a_removed_lock() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        repo.ensure_lock("writing").unwrap();
        let (hex, _, _) = state(&g);
        repo.storage().delete(&ObjectKind::Lock.key(&hex)).unwrap();
        // The refresh writes a new object, so afterwards one exists again:
        // only the refresher can tell that the lock was gone meanwhile.
        refresh(&repo, &g.held, &LockInfo::new(false, "create"));
        let (new_hex, _, broken) = state(&g);
        assert_ne!(new_hex, hex);
        assert!(
            repo.storage()
                .size(&ObjectKind::Lock.key(&new_hex))
                .unwrap()
                .is_some()
        );
        assert!(broken.is_some_and(|b| b.contains("was removed")));
        let e = repo.ensure_lock("writing the snapshot").unwrap_err();
        assert!(matches!(e, Error::LockLost { .. }), "{e}");
    }

    #[test]
    fn a_late_refresh_breaks_the_lock_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        // As if the process had slept through the safe window.
        g.held.state().refreshed = Utc::now()
            - chrono::Duration::from_std(safe_window()).unwrap()
            - chrono::Duration::seconds(1);
        refresh(&repo, &g.held, &LockInfo::new(false, "create"));
        let (_, refreshed, broken) = state(&g);
        assert!(broken.is_some_and(|b| b.contains("last refreshed")));
        assert!(
            too_old(refreshed).is_some(),
            "a late refresh does not count"
        );
        // Later refreshes succeed, but the lapse stays.
        refresh(&repo, &g.held, &LockInfo::new(false, "create"));
        assert!(repo.ensure_lock("writing").is_err());
    }

    #[test]
    fn failed_refreshes_let_the_lock_lapse() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        // Storage refuses lock writes (a partition, as far as locks go):
        // `locks` becomes a file, so nothing can be stored below it.
        let locks = dir.path().join("repo/locks");
        std::fs::rename(&locks, dir.path().join("repo/locks.away")).unwrap();
        std::fs::write(&locks, b"").unwrap();
        let before = state(&g).1;
        refresh(&repo, &g.held, &LockInfo::new(false, "create"));
        let (_, refreshed, broken) = state(&g);
        assert_eq!(refreshed, before, "a failed write is not a refresh");
        assert!(broken.is_none());
        // Once the window has passed without a refresh, nothing is written.
        g.held.state().refreshed = Utc::now()
            - chrono::Duration::from_std(safe_window()).unwrap()
            - chrono::Duration::seconds(1);
        let e = repo.ensure_lock("writing").unwrap_err().to_string();
        assert!(e.contains("last refresh failed"), "{e}");
        std::fs::remove_file(&locks).unwrap();
        std::fs::rename(dir.path().join("repo/locks.away"), &locks).unwrap();
    }

    #[test]
    fn verify_refuses_once_the_window_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        repo.ensure_lock("writing").unwrap();
        g.held.state().refreshed = Utc::now()
            - chrono::Duration::from_std(safe_window()).unwrap()
            - chrono::Duration::seconds(1);
        assert!(repo.ensure_lock("writing").is_err());
        drop(g);
        // Without a lock there is nothing to prove.
        repo.ensure_lock("writing").unwrap();
        assert!(repo.list_ids(ObjectKind::Lock).unwrap().is_empty());
    }
}
