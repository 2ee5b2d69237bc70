//! The prune engine: delete what no snapshot needs, safe to interrupt.
//!
//! 1. Load every index object and list the packs on storage.
//! 2. Mark every blob reachable from every snapshot. A tree that cannot be
//!    read stops prune before anything is written or deleted.
//! 3. Choose one copy of each used blob (preferring the packs that are the
//!    most used; where a blob has several copies, the chosen one is read
//!    and verified first, see [`verify`]) and classify the indexed packs:
//!    no chosen copy -> delete;
//!    a share of unused bytes above the threshold -> repack; else keep.
//! 4. Repack: read the chosen copies from those packs, verify them, and
//!    save them into new packs with the ordinary
//!    [`BlobSaver`](crate::repository::saver::BlobSaver), which writes
//!    the new packs and then an index object for them.
//! 5. Write one new index object listing every remaining pack, with
//!    `supersedes` naming every index object it replaces.
//! 6. Delete the superseded index objects.
//! 7. Delete the packs no longer needed (and packs in no index, except young
//!    ones while a lock stale only by age exists: a suspended backup may
//!    still index them).
//! 8. With S3 object lock: extend the lock of every object still there
//!    that was written more than half a period ago (but packs nothing
//!    needs), so that what today's snapshots use stays protected however
//!    old it is. In step 3 packs that may still be locked are kept as they
//!    are (see [`locked`]).
//!
//! Prune may itself be suspended past the stale period while a backup
//! starts and relies on what prune planned to delete, so it proves its lock
//! still held before steps 6 and 7 (SPEC.md §10.1).
//!
//! Until step 5 only new objects appear; after it, the new index alone
//! describes every pack still needed; so a crash at any point leaves every
//! snapshot complete, at worst with duplicate index entries or unindexed
//! packs that `check` reports as notices and the next prune removes.
//! `REPO_TEST_PRUNE_CRASH_AT` (a test hook, see [`crash_point`]) stops the
//! process abruptly between steps so tests can prove it.

mod apply;
mod locked;
mod mark;
mod plan;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repository::Repository;

use mark::Gathered;
pub use mark::reachable;
use plan::Plan;

/// Environment variable of the crash test hook: `after-repack`,
/// `after-index` or `before-delete` makes prune exit(1) at once at that
/// point, without cleaning up (its lock stays behind, as after a crash).
/// For tests only.
pub(crate) const CRASH_ENV: &str = "REPO_TEST_PRUNE_CRASH_AT";

/// Default for `--max-unused`: repack a pack when more than this percentage
/// of its bytes is unused.
pub(crate) const DEFAULT_MAX_UNUSED: f64 = 5.0;

/// How prune runs.
pub(crate) struct PruneOptions<'a> {
    /// Repack partly used packs whose unused share exceeds this percentage.
    pub max_unused_percent: f64,
    /// Plan only: report what would happen, write and delete nothing.
    pub dry_run: bool,
    pub cancel: &'a AtomicBool,
}

/// What prune found and did (or would do, for a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    /// Packs on storage and their bytes before prune.
    pub packs_before: usize,
    pub bytes_before: u64,
    /// Distinct blobs the snapshots reference.
    pub blobs_used: usize,
    /// Indexed blob entries no snapshot needs (duplicates included).
    pub blobs_unused: usize,
    pub bytes_unused: u64,
    /// Packs whose blobs are all unused: deleted.
    pub packs_removed: usize,
    /// Partly used packs rewritten and deleted.
    pub packs_repacked: usize,
    /// Packs on storage in no index (left by interrupted runs): deleted.
    pub packs_unindexed: usize,
    /// Packs in no index kept because they are younger than
    /// [`unindexed_grace`] while a lock stale only by its age exists: a
    /// suspended backup may still index them.
    pub packs_unindexed_kept: usize,
    /// That grace period, in seconds.
    pub unindexed_grace_secs: u64,
    /// Packs left as they are (those kept for their lock included).
    pub packs_kept: usize,
    /// Packs S3 object lock may still protect, kept rather than deleted or
    /// repacked (a delete would only hide them; see [`locked`]), and their bytes.
    pub locked_kept: usize,
    pub locked_kept_bytes: u64,
    /// When the last of them is free to go (RFC 3339, UTC): a prune after
    /// then removes them.
    pub locked_until: Option<String>,
    /// Objects (but locks) written more than half the lock period ago whose
    /// S3 object lock was extended to a full period from now (step 8).
    pub locks_extended: usize,
    /// Chosen copies of blobs indexed more than once, read and verified
    /// before the other copies may go (see [`verify`]).
    pub copies_verified: usize,
    /// Such copies that failed and were set aside for another copy: a
    /// damaged pack, or junk indexed by a client with the key.
    pub copies_damaged: usize,
    /// Blobs copied into new packs and their stored bytes.
    pub blobs_repacked: u64,
    pub bytes_repacked: u64,
    pub packs_written: u64,
    pub index_written: usize,
    pub index_removed: usize,
    /// Packs on storage and their bytes afterwards (for a dry run: the estimate).
    pub packs_after: usize,
    pub bytes_after: u64,
}

/// Ends the process at once if the crash test hook names `point`.
pub(crate) fn crash_point(point: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        std::process::exit(1);
    }
}

/// How young an unindexed pack must be to be kept while a lock stale only
/// by its age exists: twice the stale period.
pub(crate) fn unindexed_grace() -> std::time::Duration {
    crate::repository::lock::stale_after() * 2
}

/// Whether some lock was ignored only for its age: its holder may be a
/// suspended process (or an older version of this program that does not
/// check its own lock) that will resume and index the packs it wrote.
fn suspended_holder_possible(repo: &Repository) -> Result<bool> {
    Ok(crate::repository::lock::list_locks(repo)?
        .into_iter()
        .any(|(_, info)| info.is_ok_and(|i| i.is_stale_by_age() && !i.holder_is_dead())))
}

/// Runs prune. The caller must hold an exclusive lock.
pub(crate) fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let cancel = opts.cancel;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        unindexed_grace_secs: unindexed_grace().as_secs(),
        ..Default::default()
    };
    let grace = suspended_holder_possible(repo)?;
    if !opts.dry_run {
        // Before anything is listed: a holder of a lock ignored here finds
        // it gone at its next check, even if its clock says it is fresh
        // (suspended VM, clock behind), and writes nothing relying on what
        // this prune deletes (SPEC.md §10.1).
        crate::repository::lock::remove_ignored(repo, true)?;
    }
    let g = Gathered::load(repo)?;
    report.packs_before = g.stored.len();
    report.bytes_before = g.stored.values().sum();
    let used = mark::mark(repo, &g.index, cancel, &mut report)?;
    let options = (opts.max_unused_percent, grace, cancel);
    let plan = Plan::decide(repo, &g, &used, options, &mut report)?;
    if opts.dry_run {
        plan.estimate(repo, &g, &mut report);
        return Ok(report);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    if !plan.repack.is_empty() {
        apply::repack(repo, &g, &plan, cancel, &mut report)?;
    }
    crash_point("after-repack");
    if plan.rewrite_index() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let superseded = apply::write_index(repo, &g, &plan, &mut report)?;
        crash_point("after-index");
        apply::delete_indexes(repo, &superseded, &mut report)?;
    }
    crash_point("before-delete");
    let expiring = plan.expiring.clone();
    apply::delete_packs(repo, &g, plan, &mut report)?;
    // Last: what stays is what today's snapshots need, however old.
    report.locks_extended = repo.extend_object_locks(&expiring)?;
    Ok(report)
}
