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

mod exclusive;
mod held;
mod info;

pub(crate) use exclusive::{CLAIM_DIR, CLAIM_NAME};
use exclusive::{claim, claim_is_stale, read_claim};
pub(crate) use held::{Held, Moment, verify};
use held::{lapsed, too_old};
pub use info::*;

use std::sync::{Arc, Condvar, Mutex};

use chrono::Utc;

use super::Repository;
use super::objects::ObjectKind;
use crate::error::{Error, Result};

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
pub(crate) fn list_locks(repo: &Repository) -> Result<Locks> {
    list_locks_except(repo, None)
}

/// A lock object's id, and the lock or why it cannot be opened.
pub(crate) type LockEntry = (String, std::result::Result<LockInfo, String>);

/// Lock objects as listed.
pub(crate) type Locks = Vec<LockEntry>;

/// [`list_locks`] without the lock `mine`, which this process wrote and so
/// need not read back (its name is the hash of what it holds). The others
/// are read in parallel: over a wide-area link each read is a round trip.
fn list_locks_except(repo: &Repository, mine: Option<&str>) -> Result<Locks> {
    use rayon::prelude::*;
    let ids: Vec<String> = repo
        .list_ids(ObjectKind::Lock)?
        .into_iter()
        .filter(|h| Some(h.as_str()) != mine)
        .collect();
    let read = |hex: &String| read_lock(repo, hex).map(|info| info.map(|i| (hex.clone(), i)));
    let loaded: Vec<Result<Option<LockEntry>>> = if ids.len() > 1 {
        repo.transfer_pool()?
            .install(|| ids.par_iter().map(read).collect())
    } else {
        ids.iter().map(read).collect()
    };
    loaded.into_iter().filter_map(Result::transpose).collect()
}

/// One lock object; `None` if it was removed while we listed.
fn read_lock(
    repo: &Repository,
    hex: &str,
) -> Result<Option<std::result::Result<LockInfo, String>>> {
    Ok(Some(
        match super::objects::load(repo, ObjectKind::Lock, hex) {
            Ok(b) => serde_json::from_slice::<LockInfo>(&b).map_err(|e| e.to_string()),
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e @ Error::Corrupt { .. }) => Err(e.to_string()),
            Err(e) => {
                return Err(Error::Locked {
                    detail: format!(
                        "lock {} cannot be read ({e}), so it may be the live lock of a running \
                     process. Fix the access to the repository and retry; if you are sure no \
                     other repo process is using it, remove the locks with `repo unlock \
                     --remove-all`",
                        ObjectKind::Lock.key(hex)
                    ),
                });
            }
        },
    ))
}

/// The first live lock in `locks` that conflicts with taking one (exclusive or not).
fn conflicts(locks: &Locks, exclusive: bool) -> Option<String> {
    for (hex, info) in locks {
        let Ok(info) = info else { continue };
        if info.is_stale() {
            continue;
        }
        if exclusive || info.exclusive {
            return Some(format!(
                "{} (locks/{hex}). {}",
                info.describe(),
                info.advice()
            ));
        }
    }
    None
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
    remove_listed(repo, all, list_locks_except(repo, mine.as_deref())?)
}

/// [`remove_ignored`] over a listing already made (without our own lock).
fn remove_listed(repo: &Repository, all: bool, locks: Locks) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (hex, info) in locks {
        let Ok(info) = info else { continue };
        if !info.is_stale() || !(all || info.exclusive) {
            continue;
        }
        match repo.storage().delete(&ObjectKind::Lock.key(&hex)) {
            Ok(()) | Err(Error::NotFound { .. }) => removed.push(hex),
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Takes the lock of a command that may delete or rewrite objects (forget,
/// prune, tag, key passwd, key remove, repair): exclusive unless it is a
/// dry run. Before an exclusive one it asks the storage whether it deletes
/// at all, so that against an append-only server the command is refused
/// before it writes anything, even its lock ([`Error::AppendOnly`]).
pub(crate) fn lock_to_change(
    repo: &Repository,
    exclusive: bool,
    command: &str,
) -> Result<LockGuard> {
    if exclusive && repo.storage().refuses_deletes()? {
        let location = repo.storage().location().to_string();
        let name = location
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .unwrap_or("host1")
            .to_string();
        return Err(Error::AppendOnly {
            command: command.to_string(),
            location,
            name,
        });
    }
    lock(repo, exclusive, command)
}

/// Takes a lock, failing with [`Error::Locked`] if a conflicting live lock
/// exists. Until the guard is dropped, `repo` (and its clones) check the
/// lock before writing index and snapshot objects.
pub(crate) fn lock(repo: &Repository, exclusive: bool, command: &str) -> Result<LockGuard> {
    // Exclusion comes from the listing after the write. An exclusive locker
    // lists first as well, so it neither claims nor writes while anyone
    // holds a lock; a shared locker skips that round trip: against a live
    // exclusive lock it writes, sees it, and deletes its own again.
    if exclusive && let Some(detail) = conflicts(&list_locks(repo)?, exclusive) {
        return Err(Error::Locked { detail });
    }
    let info = LockInfo::new(exclusive, command);
    // Without conditional create (REST) there is no claim: the listing
    // after our write is the whole exclusion (SPEC.md §10).
    let claimed = exclusive && repo.storage().can_claim();
    if claimed {
        claim(repo, &info)?;
    }
    let release_claim = || {
        if claimed {
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
    // One listing after our write serves both the conflict check and the
    // removal of ignored locks below.
    let after = match list_locks_except(repo, Some(&hex)) {
        Ok(l) => l,
        Err(e) => {
            let _ = repo.storage().delete(&ObjectKind::Lock.key(&hex));
            release_claim();
            return Err(e);
        }
    };
    if let Some(detail) = conflicts(&after, exclusive) {
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
        if let Err(e) = remove_listed(repo, false, after) {
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
        claimed,
        nonce: info.nonce.clone(),
        held,
        stop,
        refresher: None,
    }
    .with_refresher(info))
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
    use chrono::DateTime;

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

    /// Storage requests made by `f`.
    fn requests(repo: &Repository, f: impl FnOnce()) -> u64 {
        let before = repo.storage_stats().requests;
        f();
        repo.storage_stats().requests - before
    }

    #[test]
    fn back_to_back_writes_share_one_check_but_never_the_one_after() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        // check, write, check: three requests for the first object.
        let first = requests(&repo, || {
            repo.save_object(ObjectKind::Index, b"first").unwrap();
        });
        assert_eq!(first, 3);
        // The check after it is the check before the next: two.
        let second = requests(&repo, || {
            repo.save_object(ObjectKind::Snapshot, b"second").unwrap();
        });
        assert_eq!(second, 2);
        // A check older than a second (a suspension) does not count.
        repo.save_object(ObjectKind::Index, b"third").unwrap();
        g.held.state().seen_after_write = Some((
            Utc::now() - chrono::Duration::seconds(2),
            std::time::Instant::now(),
        ));
        let late = requests(&repo, || {
            repo.save_object(ObjectKind::Index, b"fourth").unwrap();
        });
        assert_eq!(late, 3);
        // Whatever was proven before a write, the check after it asks: a
        // lock removed while the snapshot was written takes the snapshot
        // away again.
        let snapshots = repo.list_ids(ObjectKind::Snapshot).unwrap();
        repo.save_object(ObjectKind::Index, b"fifth").unwrap();
        repo.storage()
            .delete(&ObjectKind::Lock.key(&g.held.current()))
            .unwrap();
        let e = repo
            .save_object(ObjectKind::Snapshot, b"sixth")
            .unwrap_err();
        assert!(matches!(e, Error::LockLost { .. }), "{e}");
        assert_eq!(repo.list_ids(ObjectKind::Snapshot).unwrap(), snapshots);
    }

    #[test]
    fn a_check_is_not_reused_after_the_wall_clock_jumped_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let g = lock(&repo, false, "create").unwrap();
        repo.save_object(ObjectKind::Index, b"first").unwrap();
        // Two seconds went by while the wall clock was set back by two:
        // by the wall clock the check after the write is fresh, it is not.
        {
            let mut st = g.held.state();
            let (_, at) = st.seen_after_write.unwrap();
            st.seen_after_write = Some((Utc::now(), at - std::time::Duration::from_secs(2)));
        }
        let n = requests(&repo, || {
            repo.save_object(ObjectKind::Index, b"second").unwrap();
        });
        assert_eq!(n, 3, "check, write, check");
    }

    #[test]
    fn a_shared_locker_meeting_an_exclusive_lock_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let other = crate::repository::tests::reopen(dir.path());
        let g = lock(&repo, true, "prune").unwrap();
        let held = repo.list_ids(ObjectKind::Lock).unwrap();
        let e = lock(&other, false, "create").err().unwrap();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        assert_eq!(repo.list_ids(ObjectKind::Lock).unwrap(), held);
        drop(g);
        // One listing fewer than an exclusive locker: write, list.
        let n = requests(&other, || {
            let _g = lock(&other, false, "create").unwrap();
        });
        assert_eq!(n, 3, "write, list, and the delete when dropped");
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
