//! `repo tag`: change the tags of snapshots.
//!
//! Objects are never modified in place, so a snapshot is rewritten: the new
//! object is saved first, then the old one deleted (an interruption leaves
//! both, never neither). The new snapshot records the id it was first
//! written under in `original`.

use serde::Serialize;

use super::Context;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::repository::{Repository, lock};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshots: `latest` or id prefixes.
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add this tag (repeatable).
    #[arg(long = "add", value_name = "TAG")]
    pub add: Vec<String>,
    /// Remove this tag (repeatable).
    #[arg(long = "remove", value_name = "TAG")]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable; `--set ''` clears them).
    #[arg(long = "set", value_name = "TAG")]
    pub set: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Changed {
    pub old: String,
    /// The new id; `None` when the tags were already as asked.
    pub new: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub snapshots: Vec<Changed>,
}

/// Saves `snap` as a new snapshot object, then deletes `old`. Returns the new id.
pub(crate) fn replace_snapshot(
    repo: &Repository,
    old: SnapshotId,
    snap: &Snapshot,
) -> Result<SnapshotId> {
    let new = repo.save_snapshot(snap)?;
    if new != old
        && let Err(e) = repo.delete_snapshot(&old)
    {
        return Err(Error::HalfDone {
            command: "tag".into(),
            done: format!("saved snapshot {} with the new tags", new.short()),
            old: format!("snapshot {}", old.short()),
            cause: e.to_string(),
            advice: format!(
                "Both are in the repository now, the old one with the old tags; remove it with `repo forget {}` where the storage allows deletes (on the server of an append-only repository)",
                old.short()
            ),
        });
    }
    Ok(new)
}

/// The tags after applying `--set`, `--add` and `--remove`, in that order.
pub(crate) fn new_tags(
    old: &[String],
    set: &[String],
    add: &[String],
    remove: &[String],
) -> Vec<String> {
    let mut tags: Vec<String> = if set.is_empty() {
        old.to_vec()
    } else {
        set.iter().filter(|t| !t.is_empty()).cloned().collect()
    };
    for t in add {
        if !t.is_empty() && !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags.retain(|t| !remove.contains(t));
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    tags
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    if args.add.is_empty() && args.remove.is_empty() && args.set.is_empty() {
        return Err(Error::Usage(
            "nothing to do: give --add TAG, --remove TAG or --set TAG".into(),
        ));
    }
    let repo = ctx.open()?;
    let _lock = lock::lock_to_change(&repo, true, "tag")?;
    let mut targets: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for s in &args.snapshots {
        let found = repo.find_snapshot(s)?;
        if !targets.iter().any(|(id, _)| *id == found.0) {
            targets.push(found);
        }
    }
    let mut out = Vec::new();
    for (id, snap) in targets {
        let tags = new_tags(&snap.tags, &args.set, &args.add, &args.remove);
        if tags == snap.tags {
            out.push(Changed {
                old: id.to_hex(),
                new: None,
                tags,
            });
            continue;
        }
        let rewritten = Snapshot {
            tags: tags.clone(),
            original: snap.original.or(Some(id)),
            ..snap
        };
        let new = replace_snapshot(&repo, id, &rewritten)?;
        out.push(Changed {
            old: id.to_hex(),
            new: Some(new.to_hex()),
            tags,
        });
    }
    Ok(Report { snapshots: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tag_arithmetic() {
        assert_eq!(
            new_tags(&v(&["a"]), &[], &v(&["b", "a"]), &[]),
            v(&["a", "b"])
        );
        assert_eq!(new_tags(&v(&["a", "b"]), &[], &[], &v(&["a"])), v(&["b"]));
        assert_eq!(
            new_tags(&v(&["a"]), &v(&["x", "y"]), &[], &[]),
            v(&["x", "y"])
        );
        assert_eq!(new_tags(&v(&["a"]), &v(&[""]), &[], &[]), v(&[]));
        assert_eq!(
            new_tags(&v(&["a"]), &v(&["x"]), &v(&["z"]), &v(&["x"])),
            v(&["z"])
        );
    }
}
