//! Retention policies: which snapshots `forget` keeps, and why.
//!
//! Pure functions, no I/O. The semantics are restic's: snapshots are
//! considered newest first; `last N` keeps the newest N; each periodic rule
//! (`hourly`, `daily`, `weekly`, `monthly`, `yearly`) splits time into
//! buckets by the local-time period and keeps the newest snapshot of each of
//! the newest N buckets that hold a snapshot; `within D` keeps every
//! snapshot newer than the newest snapshot's time minus D; `tag T` keeps
//! every snapshot carrying the tags. A snapshot is kept if any rule keeps
//! it, and every rule that does is recorded as a reason.

use chrono::{DateTime, Datelike, Days, Months, TimeZone, Timelike, Utc};
use serde::Serialize;

/// A calendar span such as `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    /// Parses `1y2m3d4h`; every part is optional but at least one must be
    /// given, each at most once, in any order. `m` is months.
    pub(crate) fn parse(s: &str) -> Result<Span, String> {
        let bad = |why: &str| {
            format!(
                "duration {s:?} is invalid ({why}); write it like 1y2m3d4h (years, months, days, hours), e.g. 7d or 2m"
            )
        };
        let mut span = Span::default();
        let mut seen = [false; 4];
        let mut num = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let slot = match c {
                'y' => 0,
                'm' => 1,
                'd' => 2,
                'h' => 3,
                _ => return Err(bad(&format!("unknown unit {c:?}"))),
            };
            if num.is_empty() {
                return Err(bad(&format!("no number before {c:?}")));
            }
            if seen[slot] {
                return Err(bad(&format!("{c:?} given twice")));
            }
            seen[slot] = true;
            let v: u32 = num.parse().map_err(|_| bad("number too large"))?;
            num.clear();
            match slot {
                0 => span.years = v,
                1 => span.months = v,
                2 => span.days = v,
                _ => span.hours = v,
            }
        }
        if !num.is_empty() {
            return Err(bad("a number lacks its unit"));
        }
        if !seen.iter().any(|&x| x) {
            return Err(bad("it is empty"));
        }
        Ok(span)
    }

    /// `t` minus this span (calendar months and years; a day that does not
    /// exist in the target month becomes that month's last day).
    pub(crate) fn before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        let t = t
            .checked_sub_months(Months::new(months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let t = t
            .checked_sub_days(Days::new(self.days as u64))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        t.checked_sub_signed(chrono::TimeDelta::hours(self.hours as i64))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut any = false;
        for (v, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if v > 0 {
                write!(f, "{v}{u}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

/// What to keep. Counts of 0 disable a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Span>,
    /// Each entry is a set of tags a snapshot must all carry to be kept.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// Whether no rule is set (such a policy would forget everything).
    pub(crate) fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub time: DateTime<Utc>,
    pub tags: &'a [String],
}

/// The verdict for one snapshot; `reasons` is empty when it is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Decision {
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn reason(self) -> &'static str {
        match self {
            Period::Last => "last snapshot",
            Period::Hourly => "hourly snapshot",
            Period::Daily => "daily snapshot",
            Period::Weekly => "weekly snapshot",
            Period::Monthly => "monthly snapshot",
            Period::Yearly => "yearly snapshot",
        }
    }

    /// The bucket a time falls in; equal values mean the same period.
    /// `nr` (position, newest first) makes every snapshot its own bucket for `Last`.
    fn bucket<Tz: TimeZone>(self, t: &DateTime<Utc>, tz: &Tz, nr: usize) -> i64 {
        let l = t.with_timezone(tz);
        let (y, m, d, h) = (
            l.year() as i64,
            l.month() as i64,
            l.day() as i64,
            l.hour() as i64,
        );
        match self {
            Period::Last => nr as i64,
            Period::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Period::Daily => (y * 100 + m) * 100 + d,
            Period::Weekly => {
                let w = l.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            }
            Period::Monthly => y * 100 + m,
            Period::Yearly => y,
        }
    }
}

/// Applies `policy` to one group of snapshots, periods in time zone `tz`.
/// Returns one decision per item, in the order given.
pub(crate) fn apply<Tz: TimeZone>(items: &[Item], policy: &Policy, tz: &Tz) -> Vec<Decision> {
    let mut out = vec![Decision::default(); items.len()];
    // Newest first; among equal times the later item counts as newer.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[b].time.cmp(&items[a].time).then(b.cmp(&a)));

    let mut rules: Vec<(Period, u32, Option<i64>)> = [
        (Period::Last, policy.last),
        (Period::Hourly, policy.hourly),
        (Period::Daily, policy.daily),
        (Period::Weekly, policy.weekly),
        (Period::Monthly, policy.monthly),
        (Period::Yearly, policy.yearly),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(p, n)| (p, n, None))
    .collect();
    let cutoff = match (policy.within, order.first()) {
        (Some(span), Some(&newest)) => Some((span, span.before(items[newest].time))),
        _ => None,
    };

    for (nr, &i) in order.iter().enumerate() {
        let item = &items[i];
        let d = &mut out[i];
        for (period, left, last) in rules.iter_mut() {
            if *left == 0 {
                continue;
            }
            let b = period.bucket(&item.time, tz, nr);
            if *last != Some(b) {
                *last = Some(b);
                *left -= 1;
                d.reasons.push(period.reason().to_string());
            }
        }
        if let Some((span, cut)) = cutoff
            && item.time > cut
        {
            d.reasons.push(format!("within {span}"));
        }
        for want in &policy.tags {
            if !want.is_empty() && want.iter().all(|t| item.tags.contains(t)) {
                d.reasons.push(format!("tag {}", want.join(",")));
            }
        }
        d.keep = !d.reasons.is_empty();
    }
    out
}

/// Which snapshot fields form a group (`--group-by host,paths,tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// Parses a comma-separated list of `host`, `paths`, `tags`; empty means one group.
    pub(crate) fn parse(s: &str) -> Result<GroupBy, String> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                other => {
                    return Err(format!(
                        "cannot group by {other:?}: use a comma-separated list of host, paths, tags (or \"\" for one group)"
                    ));
                }
            }
        }
        Ok(g)
    }

    /// The group of a snapshot with these fields (paths and tags compared as sets).
    pub(crate) fn key(&self, host: &str, paths: &[String], tags: &[String]) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            host: self.host.then(|| host.to_string()),
            paths: self.paths.then(|| sorted(paths)),
            tags: self.tags.then(|| sorted(tags)),
        }
    }
}

/// The fields shared by one group of snapshots (absent: not grouped by it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Keeps the indices the policy keeps, in time order.
    fn kept(times: &[DateTime<Utc>], tags: &[Vec<String>], p: &Policy) -> Vec<usize> {
        let empty: Vec<String> = Vec::new();
        let items: Vec<Item> = times
            .iter()
            .enumerate()
            .map(|(i, &time)| Item {
                time,
                tags: tags.get(i).map(Vec::as_slice).unwrap_or(&empty),
            })
            .collect();
        apply(&items, p, &Utc)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep)
            .map(|(i, _)| i)
            .collect()
    }

    /// One snapshot at 12:00 every day from 2024-01-01 for `n` days.
    fn daily(n: u64) -> Vec<DateTime<Utc>> {
        (0..n)
            .map(|i| t("2024-01-01T12:00:00Z") + chrono::TimeDelta::days(i as i64))
            .collect()
    }

    #[test]
    fn span_parse_and_display() {
        let s = Span::parse("1y2m3d4h").unwrap();
        assert_eq!(
            s,
            Span {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(s.to_string(), "1y2m3d4h");
        assert_eq!(Span::parse("7d").unwrap().days, 7);
        assert_eq!(Span::parse("4h2d").unwrap().to_string(), "2d4h");
        for bad in ["", "d", "7", "7w", "1d2d", "-1d", "99999999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Span::parse("1m").unwrap().before(t("2024-03-31T00:00:00Z")),
            t("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            s.before(t("2025-06-10T10:00:00Z")),
            t("2024-04-07T06:00:00Z")
        );
    }

    #[test]
    fn empty_policy_keeps_nothing() {
        let times = daily(3);
        assert!(Policy::default().is_empty());
        assert!(kept(&times, &[], &Policy::default()).is_empty());
    }

    #[test]
    fn keep_last_counts_the_newest() {
        let times = daily(10);
        let p = Policy {
            last: 3,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![7, 8, 9]);
        let p = Policy {
            last: 30,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p).len(), 10);
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut times = daily(10);
        times.reverse();
        let p = Policy {
            last: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![0, 1]);
    }

    #[test]
    fn keep_daily_takes_newest_of_each_day() {
        let times = vec![
            t("2024-05-01T08:00:00Z"),
            t("2024-05-01T20:00:00Z"), // newest on the 1st
            t("2024-05-02T09:00:00Z"),
            t("2024-05-02T10:00:00Z"), // newest on the 2nd
            t("2024-05-04T00:00:00Z"), // only one on the 4th
        ];
        let p = Policy {
            daily: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![3, 4]);
        let p = Policy {
            daily: 10,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![1, 3, 4]);
    }

    #[test]
    fn keep_hourly() {
        let times = vec![
            t("2024-05-01T08:05:00Z"),
            t("2024-05-01T08:55:00Z"),
            t("2024-05-01T09:10:00Z"),
            t("2024-05-01T11:00:00Z"),
        ];
        let p = Policy {
            hourly: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![2, 3]);
        let p = Policy {
            hourly: 5,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![1, 2, 3]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2024-01-01 is a Monday: days 0..7 are week 1, 7..14 week 2, ...
        let times = daily(21);
        let p = Policy {
            weekly: 2,
            ..Default::default()
        };
        // Newest of week 3 (Sunday the 21st, index 20) and of week 2 (the 14th, index 13).
        assert_eq!(kept(&times, &[], &p), vec![13, 20]);
    }

    #[test]
    fn keep_monthly_and_yearly() {
        let times = vec![
            t("2022-12-31T23:00:00Z"),
            t("2023-06-15T00:00:00Z"),
            t("2023-12-01T00:00:00Z"),
            t("2023-12-20T00:00:00Z"),
            t("2024-01-05T00:00:00Z"),
            t("2024-02-05T00:00:00Z"),
        ];
        let p = Policy {
            monthly: 3,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![3, 4, 5]);
        let p = Policy {
            yearly: 5,
            ..Default::default()
        };
        assert_eq!(kept(&times, &[], &p), vec![0, 3, 5]);
    }

    #[test]
    fn periods_follow_the_time_zone() {
        // 23:30 UTC on the 1st and 00:30 UTC on the 2nd: two days in UTC,
        // one day (the 2nd) at UTC+02:00.
        let times = [t("2024-05-01T23:30:00Z"), t("2024-05-02T00:30:00Z")];
        let items: Vec<Item> = times.iter().map(|&time| Item { time, tags: &[] }).collect();
        let p = Policy {
            daily: 5,
            ..Default::default()
        };
        let utc = apply(&items, &p, &Utc);
        assert!(utc[0].keep && utc[1].keep);
        let plus2 = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let local = apply(&items, &p, &plus2);
        assert!(!local[0].keep && local[1].keep);
    }

    #[test]
    fn keep_within_is_relative_to_the_newest() {
        let times = daily(30); // newest: 2024-01-30T12:00
        let p = Policy {
            within: Some(Span::parse("3d").unwrap()),
            ..Default::default()
        };
        // Strictly after 2024-01-27T12:00.
        assert_eq!(kept(&times, &[], &p), vec![27, 28, 29]);
        let p = Policy {
            within: Some(Span::parse("1m").unwrap()),
            ..Default::default()
        };
        // After 2023-12-30T12:00: everything.
        assert_eq!(kept(&times, &[], &p).len(), 30);
    }

    #[test]
    fn keep_tag_needs_every_listed_tag() {
        let times = daily(4);
        let tags = vec![
            vec!["a".to_string()],
            vec!["a".to_string(), "b".to_string()],
            vec![],
            vec!["b".to_string()],
        ];
        let p = Policy {
            tags: vec![vec!["a".into(), "b".into()]],
            ..Default::default()
        };
        assert_eq!(kept(&times, &tags, &p), vec![1]);
        let p = Policy {
            tags: vec![vec!["a".into()], vec!["b".into()]],
            ..Default::default()
        };
        assert_eq!(kept(&times, &tags, &p), vec![0, 1, 3]);
    }

    #[test]
    fn rules_combine_with_all_reasons() {
        let times = daily(40);
        let items: Vec<Item> = times.iter().map(|&time| Item { time, tags: &[] }).collect();
        let p = Policy {
            last: 1,
            daily: 2,
            weekly: 1,
            monthly: 2,
            ..Default::default()
        };
        let d = apply(&items, &p, &Utc);
        assert_eq!(
            d[39].reasons,
            vec![
                "last snapshot",
                "daily snapshot",
                "weekly snapshot",
                "monthly snapshot"
            ]
        );
        assert_eq!(d[38].reasons, vec!["daily snapshot"]);
        // January's newest (Jan 31, index 30) is the second monthly.
        assert_eq!(d[30].reasons, vec!["monthly snapshot"]);
        assert_eq!(d.iter().filter(|x| x.keep).count(), 3);
    }

    #[test]
    fn group_by() {
        let g = GroupBy::parse("host,paths").unwrap();
        assert!(g.host && g.paths && !g.tags);
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::default());
        assert!(GroupBy::parse("hostname").is_err());
        let a = g.key("h", &["/b".into(), "/a".into()], &["x".into()]);
        let b = g.key("h", &["/a".into(), "/b".into()], &[]);
        assert_eq!(a, b);
        assert_ne!(a, g.key("h2", &["/a".into(), "/b".into()], &[]));
        assert_eq!(a.to_string(), "host h, paths [/a, /b]");
        assert_eq!(
            GroupBy::default().key("h", &[], &[]).to_string(),
            "all snapshots"
        );
    }
}
