//! 1. kill -9 during create.

use super::*;

/// 17 x 3 = 51 kills. Several small repositories instead of one large one
/// keep `check --read-data` and the restores of every earlier snapshot
/// (both grow with the repository) cheap.
const KILL_REPOS: usize = 17;
const KILL_TRIALS_PER_REPO: usize = 3;

/// When a trial sends SIGKILL.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A random moment between the lock appearing and a little past the
    /// expected end of the run.
    Random,
    /// As soon as a new pack is seen.
    FirstPack,
    /// As soon as a new index object is seen (between index and snapshot,
    /// if the kill is fast enough).
    Index,
}

/// Where a killed `create` was, judged from what it left on storage.
fn stage(new_lock: bool, new_packs: bool, new_index: bool, new_snapshot: bool) -> &'static str {
    match (new_lock, new_packs, new_index, new_snapshot) {
        (_, _, _, true) => "finished (snapshot written)",
        (_, _, true, false) => "index written, no snapshot",
        (_, true, false, false) => "packs stored, no index",
        (true, false, false, false) => "walking/chunking (lock only)",
        (false, false, false, false) => "starting (before the lock)",
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one crash-and-recover story at every kill point
fn kill9_during_create() {
    let seed = seed();
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut trials = 0usize;
    let mut recovered = 0usize;
    let mut data_lost = 0usize;
    let mut stages: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut snapshots_restored = 0usize;

    for r in 0..KILL_REPOS {
        let t = TestRepo::new();
        t.ok(small_init());
        let corpus = t.join("corpus");
        add_batch(&corpus.join("base"), &mut rng, 80, 1, 400_000);
        let began = Instant::now();
        let first = t.create([&corpus]);
        let mut estimate = began.elapsed();
        // Every snapshot with the files it must restore, oldest first.
        let mut snaps: Vec<(String, BTreeSet<PathBuf>)> =
            vec![(id_of(&first["snapshot"]), manifest(&corpus))];
        let mut stale_locks = 0usize;

        for k in 0..KILL_TRIALS_PER_REPO {
            trials += 1;
            let label = format!("repo {r} trial {k}");
            // New data for this run: a walk over ~100 new small files and
            // about 1.5 MB in three larger ones (at least one full 1 MiB pack).
            let small = 60 + (rng.next_u64() % 100) as usize;
            add_batch(&corpus.join(format!("t{k}")), &mut rng, small, 3, 500_000);
            let at_spawn = manifest(&corpus);
            let before = |d: &str| file_names(&t.repo.join(d));
            let (locks0, packs0, index0, snaps0) = (
                before("locks"),
                before("data"),
                before("index"),
                before("snapshots"),
            );
            let strategy = match rng.next_u64() % 4 {
                0 => KillAt::FirstPack,
                1 => KillAt::Index,
                _ => KillAt::Random,
            };
            let mut bg = t.spawn([OsStr::new("create"), corpus.as_os_str()], &label);
            let spawned = Instant::now();
            let appeared =
                |d: &str, old: &BTreeSet<String>| before(d).difference(old).next().is_some();
            let limit = Duration::from_secs(300);
            match strategy {
                KillAt::Random => {
                    wait_until(limit, || {
                        appeared("locks", &locks0) || bg.exited().is_some()
                    });
                    let rest = estimate.saturating_sub(spawned.elapsed());
                    std::thread::sleep(rest.mul_f64((rng.next_u64() % 1100) as f64 / 1000.0));
                }
                KillAt::FirstPack => {
                    wait_until(limit, || appeared("data", &packs0) || bg.exited().is_some());
                }
                KillAt::Index => {
                    wait_until(limit, || {
                        appeared("index", &index0) || bg.exited().is_some()
                    });
                }
            }
            let was_running = bg.exited().is_none();
            let status = bg.kill_and_reap();
            let new = |d: &str, old: &BTreeSet<String>| -> BTreeSet<String> {
                before(d).difference(old).cloned().collect()
            };
            let (locks, packs, index, snapshots) = (
                new("locks", &locks0),
                new("data", &packs0),
                new("index", &index0),
                new("snapshots", &snaps0),
            );
            let where_ = if was_running {
                stage(
                    !locks.is_empty(),
                    !packs.is_empty(),
                    !index.is_empty(),
                    !snapshots.is_empty(),
                )
            } else {
                "exited before the kill"
            };
            *stages.entry(where_).or_default() += 1;
            let where_ = format!("{strategy:?}: {where_}");
            stale_locks += locks.len();
            if !snapshots.is_empty() {
                // The killed run finished: its snapshot is one more to keep intact.
                assert!(status.success() || was_running, "{label}: {status:?}");
                for s in snapshots {
                    snaps.push((s, at_spawn.clone()));
                }
            }

            let mut ok = true;
            // (a) The repository is whole: no `unlock` needed, the stale
            // lock of the killed process is ignored.
            let check = t.run(["check", "--read-data"]);
            if check.code != 0 || !check.stdout.contains("no errors were found") {
                ok = false;
                failures.push(format!("{label} ({where_}): check failed\n{check}"));
            }
            // (b) Every earlier snapshot restores identical. They are
            // restored oldest first into one directory: each holds the
            // files of the one before plus new ones, and restore leaves
            // files that already match (size, mtime and every chunk's MAC)
            // untouched, so each run fetches only what is new.
            let target = t.join(format!("restore-{k}"));
            for (id, files) in &snaps {
                let mut c = t.cmd();
                c.args(["restore", id.as_str(), "--target"]).arg(&target);
                let res = run(c);
                let verdict = if res.code != 0 {
                    Err(format!("restore failed\n{res}"))
                } else {
                    same_files(&corpus, &restored(&target, &corpus), files)
                };
                snapshots_restored += 1;
                if let Err(e) = verdict {
                    ok = false;
                    data_lost += 1;
                    failures.push(format!("{label} ({where_}): snapshot {id}: {e}"));
                    break;
                }
            }
            let _ = fs::remove_dir_all(&target);
            // (c) The next backup succeeds and sees every file.
            let began = Instant::now();
            let mut c = t.cmd();
            c.args(["create", "--json"]).arg(&corpus);
            let next = run(c);
            if next.code == 0 {
                estimate = began.elapsed();
                snaps.push((id_of(&next.json()["snapshot"]), manifest(&corpus)));
            } else {
                ok = false;
                failures.push(format!("{label} ({where_}): next create failed\n{next}"));
            }
            if ok {
                recovered += 1;
            }
        }
        // The killed processes' locks were never in the way; `unlock`
        // removes exactly those, and the repository is still whole.
        let un = t.ok(["unlock", "--json"]).json();
        let removed = un["removed"].as_array().map_or(0, Vec::len);
        if removed != stale_locks || !t.objects("locks").is_empty() {
            failures.push(format!(
                "repo {r}: unlock removed {removed} lock(s), {stale_locks} were left by killed runs"
            ));
        }
        let check = t.run(["check", "--read-data"]);
        if check.code != 0 {
            failures.push(format!("repo {r}: final check failed\n{check}"));
        }
    }

    report(format!(
        "fault-suite kill9: seed {seed}, {trials} trials, {recovered} recovered, {data_lost} data lost; \
         {snapshots_restored} snapshot restores compared; kill landed: {}; {:.0}s",
        stages
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    ));
    assert!(trials >= 50);
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!((recovered, data_lost), (trials, 0));
}
