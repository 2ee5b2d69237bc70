//! `repo forget`: remove snapshots, by id or by a retention policy, and
//! optionally prune the data they alone used.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Context;
use super::common::check_max_unused;
use super::filter::SnapshotFilter;
use crate::engine::prune::{self, DEFAULT_MAX_UNUSED, PruneOptions, PruneReport};
use crate::error::{Error, Result};
use crate::format::retention::{self, GroupBy, GroupKey, Item, Policy, Span};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::repository::{Repository, lock};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshots to forget (`latest` or id prefixes), instead of a policy.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the newest N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the newest N days that have one.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the newest N (ISO) weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the newest N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_monthly: u32,
    /// Keep the newest snapshot of each of the newest N years that have one.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub keep_yearly: u32,
    /// Keep every snapshot younger than DURATION before the group's newest (like 1y2m3d4h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep snapshots carrying these tags (comma-separated: all of them; repeatable: any).
    #[arg(long = "keep-tag", value_name = "TAG[,TAG...]")]
    pub keep_tags: Vec<String>,
    /// Apply the policy separately to each group of snapshots sharing these fields.
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Show what would be kept and removed, and why; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards to delete the data no snapshot needs any more
    /// (not with --dry-run).
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack packs with more than PERCENT unused bytes.
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_MAX_UNUSED)]
    pub max_unused: f64,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub id: String,
    pub short_id: String,
    pub time: DateTime<Utc>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Removed {
    pub id: String,
    pub short_id: String,
    pub time: DateTime<Utc>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub group: GroupKey,
    pub keep: Vec<Kept>,
    pub remove: Vec<Removed>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Per group, with a policy; empty when snapshots were named.
    pub groups: Vec<Group>,
    /// Every snapshot removed (or, for a dry run, that would be).
    pub removed: Vec<String>,
    /// The prune report, with --prune (not run for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneReport>,
}

impl Args {
    /// The retention policy given on the command line.
    pub(crate) fn policy(&self) -> Result<Policy> {
        Ok(Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(|s| Span::parse(s).map_err(|e| Error::Usage(format!("--keep-within: {e}"))))
                .transpose()?,
            tags: self
                .keep_tags
                .iter()
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .filter(|v| !v.is_empty())
                .collect(),
        })
    }
}

fn removed(id: &SnapshotId, s: &Snapshot) -> Removed {
    Removed {
        id: id.to_hex(),
        short_id: id.short(),
        time: s.time,
        tags: s.tags.clone(),
        paths: s.paths.clone(),
    }
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let policy = args.policy()?;
    let group_by = GroupBy::parse(&args.group_by).map_err(Error::Usage)?;
    if args.prune {
        check_max_unused(args.max_unused)?;
    }
    match (args.snapshots.is_empty(), policy.is_empty()) {
        (true, true) => {
            return Err(Error::Usage(
                "no snapshots and no policy given, so nothing would be kept: name snapshots to forget, or give --keep-last, --keep-daily, --keep-within, --keep-tag, ...".into(),
            ));
        }
        (false, false) => {
            return Err(Error::Usage(
                "give either snapshots to forget or a --keep-* policy, not both".into(),
            ));
        }
        _ => {}
    }
    let repo = ctx.open()?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(lock::lock_to_change(&repo, true, "forget")?)
    };

    let mut groups = Vec::new();
    let mut doomed: Vec<SnapshotId> = Vec::new();
    if !args.snapshots.is_empty() {
        for s in &args.snapshots {
            let (id, _) = repo.find_snapshot(s)?;
            if !doomed.contains(&id) {
                doomed.push(id);
            }
        }
    } else {
        groups = apply_policy(&repo, args, &policy, group_by, &mut doomed)?;
    }

    if !args.dry_run {
        for id in &doomed {
            if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            repo.delete_snapshot(id)?;
        }
    }
    let prune = if args.prune && !args.dry_run {
        Some(prune::prune(
            &repo,
            &PruneOptions {
                max_unused_percent: args.max_unused,
                dry_run: false,
                cancel: ctx.cancel,
            },
        )?)
    } else {
        None
    };
    Ok(Report {
        dry_run: args.dry_run,
        groups,
        removed: doomed.iter().map(|id| id.to_hex()).collect(),
        prune,
    })
}

/// Decides each filtered snapshot's fate by the policy, group by group:
/// returns the groups (newest first, with the reasons for each kept one)
/// and adds the snapshots to remove to `doomed`.
fn apply_policy(
    repo: &Repository,
    args: &Args,
    policy: &Policy,
    group_by: GroupBy,
    doomed: &mut Vec<SnapshotId>,
) -> Result<Vec<Group>> {
    let mut groups = Vec::new();
    let mut by_group: BTreeMap<GroupKey, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, s) in repo.snapshots()? {
        if args.filter.matches(&s) {
            by_group
                .entry(group_by.key(&s.host, &s.paths, &s.tags))
                .or_default()
                .push((id, s));
        }
    }
    for (key, list) in by_group {
        let items: Vec<Item> = list
            .iter()
            .map(|(_, s)| Item {
                time: s.time,
                tags: &s.tags,
            })
            .collect();
        let decisions = retention::apply(&items, policy, &chrono::Local);
        let mut g = Group {
            group: key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        // Newest first, as people read retention lists.
        for ((id, s), d) in list.iter().zip(decisions).rev() {
            if d.keep {
                g.keep.push(Kept {
                    id: id.to_hex(),
                    short_id: id.short(),
                    time: s.time,
                    tags: s.tags.clone(),
                    paths: s.paths.clone(),
                    reasons: d.reasons,
                });
            } else {
                g.remove.push(removed(id, s));
                doomed.push(*id);
            }
        }
        groups.push(g);
    }
    Ok(groups)
}
