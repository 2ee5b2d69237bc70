//! forget: every retention rule, per group, with reasons.

use super::*;

/// Snapshot times of the retention fixture (host `alpha`), oldest first.
const TIMES: [&str; 10] = [
    "2022-03-10T10:00:00Z", // 0
    "2023-12-31T23:00:00Z", // 1
    "2024-01-15T08:00:00Z", // 2
    "2024-01-31T09:00:00Z", // 3
    "2024-02-05T10:00:00Z", // 4  Monday, ISO week 6
    "2024-02-06T10:00:00Z", // 5  week 6
    "2024-02-12T10:00:00Z", // 6  Monday, week 7
    "2024-02-12T15:00:00Z", // 7  same day
    "2024-02-12T15:30:00Z", // 8  same hour
    "2024-02-13T09:00:00Z", // 9  newest
];

struct Fixture {
    env: Env,
    src: PathBuf,
    /// Snapshot ids by index into TIMES.
    ids: Vec<String>,
    /// The snapshot of host `beta`.
    beta: String,
}

fn retention_fixture() -> Fixture {
    let env = Env::init();
    let src = env.join("src");
    write_file(&src.join("f"), b"retention");
    let mut ids = Vec::new();
    for (i, t) in TIMES.iter().enumerate() {
        let mut extra = vec!["--host", "alpha", "--time", t];
        if i == 0 || i == 4 {
            extra.extend(["--tag", "keep"]);
        }
        if i == 4 {
            extra.extend(["--tag", "monthly-report"]);
        }
        ids.push(env.create(&src, &extra));
    }
    let beta = env.create(&src, &["--host", "beta", "--time", "2024-02-01T00:00:00Z"]);
    Fixture {
        env,
        src,
        ids,
        beta,
    }
}

impl Fixture {
    /// Runs `forget --dry-run --host alpha POLICY`; returns kept indices and their reasons.
    #[track_caller]
    fn kept(&self, policy: &[&str]) -> BTreeMap<usize, Vec<String>> {
        let mut args = vec!["forget", "--dry-run", "--host", "alpha"];
        args.extend_from_slice(policy);
        let r = self.env.json(args);
        assert_eq!(r["dry_run"], true);
        let groups = r["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{r}");
        let mut out = BTreeMap::new();
        for k in groups[0]["keep"].as_array().unwrap() {
            let id = k["id"].as_str().unwrap();
            let i = self.ids.iter().position(|x| x == id).expect("known id");
            let reasons = k["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            out.insert(i, reasons);
        }
        let removed = groups[0]["remove"].as_array().unwrap().len();
        assert_eq!(out.len() + removed, TIMES.len(), "{r}");
        out
    }

    #[track_caller]
    fn kept_set(&self, policy: &[&str]) -> Vec<usize> {
        self.kept(policy).into_keys().collect()
    }
}

#[test]
fn forget_keep_last_hourly_daily_weekly() {
    let f = retention_fixture();
    assert_eq!(f.kept_set(&["--keep-last", "3"]), vec![7, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-hourly", "3"]), vec![6, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-daily", "3"]), vec![5, 8, 9]);
    assert_eq!(f.kept_set(&["--keep-weekly", "2"]), vec![5, 9]);
    // More periods than snapshots: the newest of each period.
    assert_eq!(
        f.kept_set(&["--keep-daily", "100"]),
        vec![0, 1, 2, 3, 4, 5, 8, 9]
    );
    let k = f.kept(&[
        "--keep-last",
        "1",
        "--keep-daily",
        "2",
        "--keep-weekly",
        "2",
    ]);
    assert_eq!(
        k[&9],
        vec!["last snapshot", "daily snapshot", "weekly snapshot"]
    );
    assert_eq!(k[&8], vec!["daily snapshot"]);
    assert_eq!(k[&5], vec!["weekly snapshot"]);
    assert_eq!(k.len(), 3);
    // Dry runs changed nothing.
    assert_eq!(f.env.snapshot_ids().len(), TIMES.len() + 1);
}

#[test]
fn forget_keep_monthly_yearly_within_tag() {
    let f = retention_fixture();
    assert_eq!(f.kept_set(&["--keep-monthly", "3"]), vec![1, 3, 9]);
    assert_eq!(f.kept_set(&["--keep-yearly", "2"]), vec![1, 9]);
    assert_eq!(f.kept_set(&["--keep-yearly", "5"]), vec![0, 1, 9]);
    // Within a span of the newest snapshot (2024-02-13T09:00), strictly after.
    assert_eq!(f.kept_set(&["--keep-within", "2d"]), vec![6, 7, 8, 9]);
    assert_eq!(
        f.kept_set(&["--keep-within", "1m"]),
        vec![2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        f.kept_set(&["--keep-within", "1y"]),
        (1..10).collect::<Vec<_>>()
    );
    assert_eq!(f.kept(&["--keep-within", "1d2h"])[&9], vec!["within 1d2h"]);
    assert_eq!(f.kept_set(&["--keep-tag", "keep"]), vec![0, 4]);
    assert_eq!(f.kept(&["--keep-tag", "keep"])[&0], vec!["tag keep"]);
    // A comma-separated list needs every tag.
    assert_eq!(f.kept_set(&["--keep-tag", "keep,monthly-report"]), vec![4]);
    assert_eq!(
        f.kept_set(&["--keep-tag", "nothing", "--keep-tag", "monthly-report"]),
        vec![4]
    );
    f.env.run(["forget", "--keep-within", "3w"]).code(2);
}

#[test]
fn forget_groups_removes_and_explains() {
    let f = retention_fixture();
    let e = &f.env;
    // Without a policy nothing is forgotten.
    e.run(["forget"]).code(2);
    e.run(["forget", "--keep-last", "1", &f.ids[0][..8]])
        .code(2);
    e.run(["forget", "--keep-last", "1", "--group-by", "planet"])
        .code(2);

    // Grouped by host (the default groups by host and paths): each keeps its newest.
    let r = e.json(["forget", "--dry-run", "--keep-last", "1"]);
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let kept: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g["keep"].as_array().unwrap().clone())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, BTreeSet::from([f.ids[9].clone(), f.beta.clone()]));
    assert_eq!(groups[0]["group"]["host"], "alpha");
    assert_eq!(
        groups[0]["group"]["paths"][0],
        f.src.to_string_lossy().as_ref()
    );
    // One group for everything: only the overall newest.
    let r = e.json(["forget", "--dry-run", "--keep-last", "1", "--group-by", ""]);
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r["groups"][0]["keep"][0]["id"], f.ids[9].as_str());
    assert_eq!(r["removed"].as_array().unwrap().len(), TIMES.len());

    // The text of a dry run names what is kept and why.
    let text = e
        .ok([
            "forget",
            "--dry-run",
            "--keep-daily",
            "2",
            "--keep-tag",
            "keep",
        ])
        .stdout;
    assert!(text.contains("snapshots for host alpha, paths ["), "{text}");
    assert!(
        text.contains(&format!(
            "{}  2024-02-13 09:00:00  daily snapshot",
            &f.ids[9][..8]
        )),
        "{text}"
    );
    assert!(text.contains("tag keep"), "{text}");
    assert!(text.contains("would remove"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(e.snapshot_ids().len(), TIMES.len() + 1);

    // For real: alpha keeps its policy, beta (another group) its newest.
    let r = e.json(["forget", "--keep-daily", "2", "--keep-tag", "keep"]);
    assert_eq!(r["dry_run"], false);
    let left: BTreeSet<String> = e.snapshot_ids().into_iter().collect();
    let expect: BTreeSet<String> = [0, 4, 8, 9]
        .iter()
        .map(|&i| f.ids[i].clone())
        .chain([f.beta.clone()])
        .collect();
    assert_eq!(left, expect);

    // Forget by id.
    let r = e.json(["forget", &f.ids[0][..8], &f.beta[..8]]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 2);
    assert_eq!(e.snapshot_ids().len(), 3);
    e.check_read_data();
}
