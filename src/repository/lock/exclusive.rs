//! The exclusive claim: one conditional create that two exclusive lockers
//! cannot both win.

use super::*;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::objects::ObjectKind;

/// Where exclusive lockers claim the repository with a conditional create
/// (MKD on FTP). Shared lockers never claim: they see exclusive holders
/// through their ordinary lock objects. Where storage has no conditional
/// create (`Storage::can_claim`, false on REST) nobody claims.
pub(crate) const CLAIM_DIR: &str = "locks/exclusive";
pub(crate) const CLAIM_NAME: &str = "holder";

pub(super) fn read_claim(repo: &Repository) -> Result<LockInfo> {
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
pub(super) fn claim_is_stale(repo: &Repository, claim: &LockInfo) -> Result<bool> {
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
pub(super) fn claim(repo: &Repository, info: &LockInfo) -> Result<()> {
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
