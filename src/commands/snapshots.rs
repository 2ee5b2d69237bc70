//! `repo snapshots`: list snapshots.

use serde::Serialize;

use super::Context;
use super::filter::SnapshotFilter;
use crate::error::Result;
use crate::format::retention::{GroupBy, GroupKey};
use crate::format::snapshot::Snapshot;
use crate::repository::ObjectKind;
use crate::storage::StatsReport;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Group the list by these fields: a comma-separated list of host, paths, tags.
    #[arg(long, value_name = "FIELDS", value_parser = GroupBy::parse)]
    pub group_by: Option<GroupBy>,
}

/// Snapshots sharing the grouped fields.
#[derive(Debug, Serialize)]
pub struct Group {
    pub group: GroupKey,
    pub snapshots: Vec<Entry>,
}

/// Splits a listing into groups (ordered by their fields), each oldest first.
pub(crate) fn group(list: Vec<Entry>, by: GroupBy) -> Vec<Group> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<Entry>> = Default::default();
    for e in list {
        let s = &e.snapshot;
        groups
            .entry(by.key(&s.host, &s.paths, &s.tags))
            .or_default()
            .push(e);
    }
    groups
        .into_iter()
        .map(|(group, snapshots)| Group { group, snapshots })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub short_id: String,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// The listing, and what reading it cost. The JSON is the bare listing (as
/// restic's), so the cost is not in it: the CLI shows it with `-v`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Report {
    pub listing: Listing,
    /// Requests and bytes this command moved, and the cache's hits and misses.
    #[serde(skip)]
    pub storage: StatsReport,
}

/// Flat, or with `--group-by` in groups (the JSON is the bare list either way).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Listing {
    List(Vec<Entry>),
    Groups(Vec<Group>),
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let repo = ctx.open()?;
    let (snapshots, damaged) = repo.snapshots_and_damaged()?;
    for (hex, e) in damaged {
        ctx.progress.warn(
            std::path::Path::new(&ObjectKind::Snapshot.key(&hex)),
            &format!("{e}; it is not listed"),
        );
    }
    let list = snapshots
        .into_iter()
        .filter(|(_, s)| args.filter.matches(s))
        .map(|(id, s)| Entry {
            id: id.to_hex(),
            short_id: id.short(),
            snapshot: s,
        })
        .collect();
    Ok(Report {
        listing: match args.group_by {
            Some(by) => Listing::Groups(group(list, by)),
            None => Listing::List(list),
        },
        storage: repo.storage_stats(),
    })
}
