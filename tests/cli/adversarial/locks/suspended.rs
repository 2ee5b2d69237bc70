//! Suspended backups and prunes against each other: whatever order they
//! resume in, no snapshot loses data.

use super::*;

/// One suspended-backup trial: `create` stops at `point`, outlives the stale
/// period (`periods` times: after two, prune no longer keeps its young
/// unindexed packs), `forget old --prune` runs (and may judge the backup's lock
/// stale), the backup resumes. It must fail without a snapshot or leave a
/// complete one; every other snapshot must stay restorable.
fn suspended_create_trial(point: &str, periods: u64) -> Outcome {
    let f = fixture();
    let t = &f.t;
    let new = f.new.to_str().unwrap();
    let mut create = paused(t, &["create", "--json", new], point, Some(STALE), "create");
    outlive_stale_periods(periods);
    let mut c = cmd(t, Some(STALE));
    c.args(["forget", &f.old_id, "--prune", "--max-unused", "0"]);
    let p = run(c);
    assert_eq!(
        p.code, 0,
        "prune ignores the stale lock of a suspended backup: {p}"
    );
    if point == "save-index" && periods == 1 {
        // Its packs are stored, not yet indexed, and younger than the grace period.
        assert!(
            p.stdout.contains("unindexed pack(s) younger than"),
            "prune kept no young unindexed pack: {p}"
        );
    }
    create.signal(Signal::SIGCONT);
    let status = create.wait(Duration::from_secs(120));
    let out = create.output();
    let snaps = snapshot_ids(t);
    let mut lost = false;
    let mut outcome = Outcome::FailedSafely;
    if status.success() {
        let report: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&create.stdout).unwrap()).unwrap();
        let id = report["snapshot"]
            .as_str()
            .expect("snapshot id")
            .to_string();
        assert!(
            snaps.contains(&id),
            "{point}: reported snapshot missing\n{out}"
        );
        if restores_identical(t, &id, &f.new, "new") {
            outcome = Outcome::Complete;
        } else {
            eprintln!("{point}: the resumed backup's snapshot {id} lost data\n{out}");
            lost = true;
        }
    } else {
        assert_eq!(
            snaps,
            vec![f.keep_id.clone()],
            "{point}: a failed backup left a snapshot\n{out}"
        );
        assert!(
            out.contains("no longer provably holds its repository lock"),
            "{point}: {out}"
        );
    }
    if !check_clean(t) || !restores_identical(t, &f.keep_id, &f.keep, "keep") {
        lost = true;
    }
    if lost { Outcome::Lost } else { outcome }
}

/// `forget old --prune` stops just before deleting, outlives the stale
/// period; a backup that deduplicates against the packs prune is about to
/// delete runs meanwhile; prune resumes and must not delete them.
fn suspended_prune_trial() -> Outcome {
    let f = fixture();
    let t = &f.t;
    let mut prune = paused(
        t,
        &["forget", &f.old_id, "--prune", "--max-unused", "0"],
        "prune-delete",
        Some(STALE),
        "prune",
    );
    outlive_stale_period();
    let mut c = cmd(t, Some(STALE));
    c.args(["create", "--json"]).arg(&f.new);
    let r = run(c);
    assert_eq!(
        r.code, 0,
        "a backup ignores the stale lock of a suspended prune: {r}"
    );
    let id = r.json()["snapshot"].as_str().unwrap().to_string();
    prune.signal(Signal::SIGCONT);
    let status = prune.wait(Duration::from_secs(120));
    let mut outcome = Outcome::Complete;
    if !status.success() {
        assert!(
            prune
                .output()
                .contains("no longer provably holds its repository lock"),
            "{}",
            prune.output()
        );
        outcome = Outcome::FailedSafely;
    }
    if !check_clean(t)
        || !restores_identical(t, &id, &f.new, "new")
        || !restores_identical(t, &f.keep_id, &f.keep, "keep")
    {
        eprintln!("prune-delete: data lost\n{}", prune.output());
        outcome = Outcome::Lost;
    }
    outcome
}

/// No interleaving of a suspended backup (at each of its pause points) or a
/// suspended prune with the other side loses data. Trials run three at a
/// time: they mostly wait for the stale period to pass.
#[test]
fn suspended_writer_and_prune_never_lose_data() {
    let trials: Vec<(&str, u64)> = vec![
        ("create-locked", 1),
        ("save-index", 1),
        ("save-index-checked", 1),
        ("save-index-checked", 2),
        ("save-index-written", 2),
        ("save-snapshot", 1),
        ("save-snapshot-checked", 2),
        ("save-snapshot-written", 1),
        ("prune-delete", 1),
    ];
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for group in trials.chunks(3) {
        std::thread::scope(|scope| {
            let running: Vec<_> = group
                .iter()
                .map(|&(point, periods)| {
                    let h = scope.spawn(move || match point {
                        "prune-delete" => suspended_prune_trial(),
                        _ => suspended_create_trial(point, periods),
                    });
                    (format!("{point} x{periods}"), h)
                })
                .collect();
            for (name, h) in running {
                let outcome = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                outcomes.push((name, outcome));
            }
        });
    }
    let count = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    eprintln!(
        "adversarial locks: {} suspension trials ({} failed without a snapshot or deletion, {} completed), data lost: {}",
        outcomes.len(),
        count(Outcome::FailedSafely),
        count(Outcome::Complete),
        count(Outcome::Lost)
    );
    let lost: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Lost)
        .map(|(n, _)| n)
        .collect();
    assert!(lost.is_empty(), "data lost in trial(s) {lost:?}");
    assert_eq!(outcomes.len(), 9);
}
