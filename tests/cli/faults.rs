//! Fault-injection suites, end to end through the real binary:
//!
//! 1. `kill9`: `repo create` killed with SIGKILL at random moments;
//! 2. `damage`: bit flips and truncations of every kind of stored object;
//! 3. `disk_full`: `repo create` on a file system that runs out of space;
//! 4. `concurrent`: two `repo create` runs on one repository at once.
//!
//! Each suite prints one line `fault-suite NAME: ...` with its counts on
//! stderr (shown by `scripts/fault-suites`, which runs this file with
//! `--nocapture`) and asserts those counts, so a failure says how many
//! trials went wrong and which. Randomness comes from a seeded RNG: the
//! seed is printed and `FAULT_SEED=N` repeats a run (kill moments still
//! depend on the machine's speed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

/// Seed of every random choice; `FAULT_SEED` overrides it.
fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x5eed_2025)
}

/// Small chunks and 1 MiB packs (the smallest allowed): a few MiB of data
/// then make many blobs and several packs, so faults land in every stage
/// and every kind of object without slow, large test data.
fn small_init() -> Vec<&'static str> {
    [&["init"][..], &SMALL_CHUNKS, &["--pack-size", "1048576"]].concat()
}

fn report(line: String) {
    // Shown with --nocapture; captured (and printed on failure) otherwise.
    eprintln!("{line}");
}

fn id_of(v: &Value) -> String {
    v.as_str().expect("string").to_string()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    walk_files(dir)
        .into_iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .filter(|n| is_hex_id(n))
        .collect()
}

/// Every regular file below `root`, relative.
fn manifest(root: &Path) -> BTreeSet<PathBuf> {
    walk_files(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// Checks that `restored` holds exactly the files of `expected` (relative
/// to `src`) with the same content.
fn same_files(src: &Path, restored: &Path, expected: &BTreeSet<PathBuf>) -> Result<(), String> {
    let got = manifest(restored);
    if &got != expected {
        let missing: Vec<_> = expected.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(expected).take(5).collect();
        return Err(format!(
            "restored files differ: missing {missing:?}, extra {extra:?}"
        ));
    }
    for rel in expected {
        if fs::read(src.join(rel)).ok() != fs::read(restored.join(rel)).ok() {
            return Err(format!("{} restored with other content", rel.display()));
        }
    }
    Ok(())
}

/// Adds a directory of `small` small files and a few larger ones.
fn add_batch(dir: &Path, rng: &mut Rng, small: usize, big: usize, big_max: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..small {
        let len = (rng.next_u64() % 4000) as usize + 1;
        write_random(&dir.join(format!("s{i:03}.txt")), len, rng.next_u64());
    }
    for i in 0..big {
        let len = (rng.next_u64() as usize % big_max) + big_max / 4;
        write_random(&dir.join(format!("b{i}.bin")), len, rng.next_u64());
    }
}

// ---------------------------------------------------------------------------
// 1. kill -9 during create
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. Concurrent backups
// ---------------------------------------------------------------------------

const CONCURRENT_ROUNDS: usize = 5;

/// Two backups into one repository at once: both succeed, `check
/// --read-data` passes and both snapshots restore identical.
fn concurrent_round(round: usize) -> Result<(), String> {
    let t = TestRepo::new();
    let seed = 150 + 10 * round as u64;
    let shared = random_bytes(3_000_000, seed);
    let (a, b) = (t.join("a"), t.join("b"));
    for (d, seed) in [(&a, seed + 1), (&b, seed + 2)] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("shared.bin"), &shared).unwrap();
        write_random(&d.join("own.bin"), 1_000_000, seed);
    }
    t.init();
    let mut ja = t.spawn(["create".as_ref(), a.as_os_str()], "a");
    let mut jb = t.spawn(["create".as_ref(), b.as_os_str()], "b");
    for j in [&mut ja, &mut jb] {
        let st = j.wait(Duration::from_secs(400));
        if !st.success() {
            return Err(format!("a backup failed: {st:?}\n{}", j.output()));
        }
    }
    if !t.objects("locks").is_empty() {
        return Err("a lock was left behind".into());
    }
    let check = t.run(["check", "--read-data"]);
    if check.code != 0 || !check.stdout.contains("no errors were found") {
        return Err(format!("check failed\n{check}"));
    }
    let snaps = t.snapshots();
    if snaps.len() != 2 {
        return Err(format!("{} snapshots, expected 2", snaps.len()));
    }
    for (i, snap) in snaps.iter().enumerate() {
        let target = t.join(format!("restore{i}"));
        t.restore(snap["id"].as_str().unwrap(), &target, &[]);
        let d = [&a, &b]
            .into_iter()
            .find(|d| restored(&target, d).exists())
            .ok_or("a snapshot restored neither source")?;
        compare_trees(d, &restored(&target, d), Cmp::full()).map_err(|e| e.join("\n"))?;
    }
    Ok(())
}

#[test]
fn concurrent_backups_into_one_repository() {
    let started = Instant::now();
    let results: Vec<Result<(), String>> = (0..CONCURRENT_ROUNDS).map(concurrent_round).collect();
    let passed = results.iter().filter(|r| r.is_ok()).count();
    report(format!(
        "fault-suite concurrent: {CONCURRENT_ROUNDS} rounds of 2 simultaneous creates, {passed} passed \
         (both succeed, check --read-data clean, both restore identical); {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

// ---------------------------------------------------------------------------
// 2. Bit flips and truncations of every kind of object
// ---------------------------------------------------------------------------

const DAMAGE_TRIALS: usize = 120;
/// Extra trials on the stale lock object, which are not damage (see below).
const LOCK_TRIALS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Config,
    Key,
    Index,
    Snapshot,
    DataPack,
    TreePack,
}

const KINDS: [Kind; 6] = [
    Kind::Config,
    Kind::Key,
    Kind::Index,
    Kind::Snapshot,
    Kind::DataPack,
    Kind::TreePack,
];

/// A repository prepared once; every trial damages a copy of it.
struct Pristine {
    t: TestRepo,
    src: PathBuf,
    /// Snapshot ids, oldest first, with the files (relative to `src`) each holds.
    snaps: Vec<(String, BTreeSet<PathBuf>)>,
    objects: BTreeMap<Kind, Vec<String>>,
    lock: String,
}

fn prepare_pristine(rng: &mut Rng) -> Pristine {
    let t = TestRepo::new();
    t.ok(small_init());
    let src = t.join("src");
    simple_tree(&src, rng.next_u64());
    add_batch(&src.join("batch"), rng, 40, 3, 500_000);
    let first = t.create([&src]);
    let mut snaps = vec![(id_of(&first["snapshot"]), manifest(&src))];
    write_random(&src.join("sub/later.bin"), 300_000, rng.next_u64());
    let second = t.create([&src]);
    snaps.push((id_of(&second["snapshot"]), manifest(&src)));
    // A second key with the same password: damage to one key must not
    // lock the repository.
    let pw = t.join("pw");
    fs::write(&pw, PASSWORD).unwrap();
    t.ok([
        OsStr::new("key"),
        "add".as_ref(),
        "--new-password-file".as_ref(),
        pw.as_os_str(),
    ]);
    // A stale shared lock, as a killed process leaves it.
    let mut bg = t.spawn(["lock", "--shared"], "lock");
    assert!(
        wait_until(Duration::from_secs(120), || !t.objects("locks").is_empty()),
        "no lock appeared\n{}",
        bg.output()
    );
    bg.kill_and_reap();
    let rel = |p: &PathBuf| object_name(&t.repo, p);
    let mut objects: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    objects.insert(Kind::Config, vec!["config".into()]);
    objects.insert(Kind::Key, t.objects("keys").iter().map(rel).collect());
    objects.insert(Kind::Index, t.objects("index").iter().map(rel).collect());
    objects.insert(
        Kind::Snapshot,
        t.objects("snapshots").iter().map(rel).collect(),
    );
    // Which packs hold tree blobs and which data blobs, from the index.
    let mut tree_packs = BTreeSet::new();
    for idx in t.objects("index") {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let v = t.ok(["cat", "index", &id]).json();
        for p in v["packs"].as_array().unwrap() {
            if p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["kind"] == "Tree")
            {
                tree_packs.insert(p["id"].as_str().unwrap().to_string());
            }
        }
    }
    let (trees, datas): (Vec<String>, Vec<String>) = t
        .objects("data")
        .iter()
        .map(rel)
        .partition(|k| tree_packs.iter().any(|id| k.ends_with(id.as_str())));
    assert!(!trees.is_empty() && datas.len() >= 2, "{trees:?} {datas:?}");
    objects.insert(Kind::TreePack, trees);
    objects.insert(Kind::DataPack, datas);
    let locks = t.objects("locks");
    assert_eq!(locks.len(), 1);
    let lock = rel(&locks[0]);
    t.ok(["check", "--read-data"])
        .stdout_has("no errors were found");
    Pristine {
        t,
        src,
        snaps,
        objects,
        lock,
    }
}

/// A copy of the pristine repository in its own directory.
fn copy_of(p: &Pristine, name: &str) -> TestRepo {
    let dir = tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(p.t.path())
        .unwrap();
    let copy = TestRepo::from_dir(dir);
    copy_tree(&p.t.repo, &copy.repo);
    copy
}

/// Flips one random bit, or truncates to a random shorter length.
/// Returns a description.
fn damage(path: &Path, truncate: bool, rng: &mut Rng) -> String {
    let bytes = fs::read(path).unwrap();
    assert!(!bytes.is_empty());
    if truncate {
        let len = (rng.next_u64() % bytes.len() as u64) as usize;
        write_over(path, &bytes[..len]);
        format!("truncated {} -> {len} bytes", bytes.len())
    } else {
        let at = (rng.next_u64() % bytes.len() as u64) as usize;
        let bit = (rng.next_u64() % 8) as u8;
        let mut bad = bytes;
        bad[at] ^= 1 << bit;
        write_over(path, &bad);
        format!("bit {bit} of byte {at} flipped")
    }
}

/// After a restore that may have met damage: every file of the snapshot
/// is either restored identical or named (itself or a directory above it)
/// in the restore's error output; none is silently different. Returns
/// (identical, reported).
fn restored_or_reported(
    src: &Path,
    target: &Path,
    files: &BTreeSet<PathBuf>,
    res: &Run,
) -> Result<(usize, usize), String> {
    let base = restored(target, src);
    let (mut same, mut reported) = (0, 0);
    for rel in files {
        let out = base.join(rel);
        if fs::read(src.join(rel)).ok() == fs::read(&out).ok() {
            same += 1;
            continue;
        }
        let named = out
            .ancestors()
            .take_while(|a| a.starts_with(target))
            .any(|a| res.stderr.contains(&format!("{}:", a.display())));
        if named {
            reported += 1;
        } else if res.code != 0 && same == 0 && res.stderr.contains("damaged") {
            // The restore stopped as a whole (e.g. the root tree is gone), saying why.
            reported += 1;
        } else {
            return Err(format!(
                "{} is wrong or missing and the restore did not report it\n{res}",
                rel.display()
            ));
        }
    }
    if reported > 0 && res.code == 0 {
        return Err(format!("damaged files reported, yet exit code 0\n{res}"));
    }
    Ok((same, reported))
}

#[derive(Default)]
struct DamageCounts {
    trials: usize,
    detected: usize,
    restore_ok: usize,
    unaffected_files: usize,
    reported_files: usize,
}

fn damage_trial(
    p: &Pristine,
    kind: Kind,
    truncate: bool,
    rng: &mut Rng,
    i: usize,
) -> Result<(bool, usize, usize), String> {
    let list = &p.objects[&kind];
    let object = list[(rng.next_u64() % list.len() as u64) as usize].clone();
    let t = copy_of(p, &format!("trial{i}-"));
    let what = damage(&t.repo.join(&object), truncate, rng);
    let ctx = format!("trial {i}: {kind:?} {object}: {what}");
    // check --read-data reports it, naming the object.
    let check = t.run(["check", "--read-data"]);
    let name = object.rsplit('/').next().unwrap();
    if check.code == 0 || !(check.stderr.contains(name) || check.stdout.contains(name)) {
        return Err(format!(
            "{ctx}: check did not report the damaged object\n{check}"
        ));
    }
    let (latest, latest_files) = p.snaps.last().unwrap();
    let target = t.join("out");
    let restore = |id: &str| {
        let mut c = t.cmd();
        c.args(["restore", id, "--target"]).arg(&target);
        run(c)
    };
    // Restore what the damage did not touch.
    let (ok, same, reported) = match kind {
        // Nothing opens without the config (it holds the chunker and pack
        // parameters and is authenticated); the error must say so.
        Kind::Config => {
            let r = restore(latest);
            (r.code != 0 && r.stderr.contains("config"), 0, 0)
        }
        // The other key still opens the repository.
        Kind::Key => {
            let r = restore(latest);
            let v =
                r.code == 0 && same_files(&p.src, &restored(&target, &p.src), latest_files).is_ok();
            (v, latest_files.len(), 0)
        }
        // Restore goes on without the damaged index, warning with its name
        // and `repair index`; every file is restored identical or reported
        // (its blobs may be in the skipped index). After `repair index`
        // everything restores.
        Kind::Index => {
            let r = restore(latest);
            if !r.stderr.contains(name) || !r.stderr.contains("repair index") {
                return Err(format!("{ctx}: restore with a damaged index\n{r}"));
            }
            if let Err(e) = restored_or_reported(&p.src, &target, latest_files, &r) {
                return Err(format!("{ctx}: restore with a damaged index: {e}"));
            }
            t.ok(["repair", "index"]);
            let r = restore(latest);
            let v =
                r.code == 0 && same_files(&p.src, &restored(&target, &p.src), latest_files).is_ok();
            (v, latest_files.len(), 0)
        }
        // The other snapshot is untouched.
        Kind::Snapshot => {
            let (other, files) = p
                .snaps
                .iter()
                .find(|(id, _)| !object.ends_with(id.as_str()))
                .unwrap();
            let r = restore(other);
            let v = r.code == 0 && same_files(&p.src, &restored(&target, &p.src), files).is_ok();
            (v, files.len(), 0)
        }
        // Every file is restored identical or reported.
        Kind::DataPack | Kind::TreePack => {
            let r = restore(latest);
            match restored_or_reported(&p.src, &target, latest_files, &r) {
                Ok((same, reported)) => (true, same, reported),
                Err(e) => return Err(format!("{ctx}: {e}")),
            }
        }
    };
    if !ok {
        return Err(format!("{ctx}: restoring the undamaged part failed"));
    }
    Ok((true, same, reported))
}

#[test]
fn damaged_objects_are_detected_and_named() {
    let seed = seed();
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0xda3a);
    let p = prepare_pristine(&mut rng);
    let mut counts: BTreeMap<(Kind, bool), DamageCounts> = BTreeMap::new();
    let mut failures = Vec::new();
    for i in 0..DAMAGE_TRIALS {
        let kind = KINDS[i % KINDS.len()];
        let truncate = (i / KINDS.len()) % 3 == 2;
        let c = counts.entry((kind, truncate)).or_default();
        c.trials += 1;
        match damage_trial(&p, kind, truncate, &mut rng, i) {
            Ok((detected, same, reported)) => {
                c.detected += detected as usize;
                c.restore_ok += 1;
                c.unaffected_files += same;
                c.reported_files += reported;
            }
            Err(e) => failures.push(e),
        }
    }
    // Lock objects are not damage: a lock only keeps other processes out
    // while its holder lives, lockers treat a damaged lock as held by
    // nobody, `check` does not read locks, and `unlock` removes them.
    let mut lock_ok = 0;
    for i in 0..LOCK_TRIALS {
        let t = copy_of(&p, &format!("lock{i}-"));
        let what = damage(&t.repo.join(&p.lock), i % 2 == 1, &mut rng);
        let check = t.run(["check", "--read-data"]);
        let un = t.run(["unlock", "--json"]);
        if check.code == 0 && un.code == 0 && t.objects("locks").is_empty() {
            lock_ok += 1;
        } else {
            failures.push(format!("lock trial {i} ({what}):\n{check}\n{un}"));
        }
    }
    let total = |f: fn(&DamageCounts) -> usize| counts.values().map(f).sum::<usize>();
    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| {
            let of = |tr: bool| {
                counts
                    .get(&(*k, tr))
                    .map_or((0, 0), |c| (c.trials, c.detected))
            };
            let (f, fd) = of(false);
            let (tt, td) = of(true);
            format!("{k:?} {}/{} flips {}/{} truncations", fd, f, td, tt)
        })
        .collect();
    report(format!(
        "fault-suite damage: seed {seed}, {} trials, {} detected and named by check --read-data, \
         {} with the undamaged part restored ({} files identical, {} damaged files reported, 0 silently wrong); \
         per kind: {}; stale-lock damage (not an error): {lock_ok}/{LOCK_TRIALS} ignored by check and removed by unlock; {:.0}s",
        total(|c| c.trials),
        total(|c| c.detected),
        total(|c| c.restore_ok),
        total(|c| c.unaffected_files),
        total(|c| c.reported_files),
        per_kind.join(", "),
        started.elapsed().as_secs_f64()
    ));
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(total(|c| c.detected), DAMAGE_TRIALS);
    assert_eq!(lock_ok, LOCK_TRIALS);
}

// ---------------------------------------------------------------------------
// 3. Disk full during create
// ---------------------------------------------------------------------------

/// A tmpfs of a fixed size, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs at {} failed", at.display());
        SmallFs(at.to_path_buf())
    }

    /// Free bytes, as `df` reports them.
    fn free(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Free-space levels (bytes left when the backup starts) of the trials.
const DISK_FULL_LEVELS: [u64; 5] = [16 << 10, 600 << 10, 1400 << 10, 2300 << 10, 3000 << 10];

#[test]
fn disk_full_during_create() {
    if !is_root() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "the disk-full suite needs root (to mount a small tmpfs) and CI=true says it must run"
        );
        eprintln!(
            "\n*** SKIPPED fault-suite disk_full: not root, so no small tmpfs can be mounted. \
             Run as root (as CI does) to test a full disk. ***\n"
        );
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::new(seed() ^ 0xd15c);
    let mut t = TestRepo::new();
    let small = SmallFs::mount(&t.join("small"), "48m");
    t.repo = small.0.join("repo");
    t.ok(small_init());
    let first = t.join("first");
    add_batch(&first, &mut rng, 30, 2, 800_000);
    let s = t.create([&first]);
    let mut snaps: Vec<(String, PathBuf)> = vec![(id_of(&s["snapshot"]), first)];
    let ballast = small.0.join("ballast");
    let (mut clean, mut consistent, mut next_ok) = (0, 0, 0);
    let mut failures = Vec::new();
    for (k, level) in DISK_FULL_LEVELS.iter().enumerate() {
        // About 5 MB new: more than is left.
        let src = t.join(format!("src{k}"));
        add_batch(&src, &mut rng, 30, 2, 800_000);
        write_random(&src.join("big.bin"), 4_000_000, rng.next_u64());
        let fill = small.free().saturating_sub(*level);
        fs::write(&ballast, vec![0xa5u8; fill as usize]).unwrap();
        let mut c = t.cmd();
        c.arg("create").arg(&src);
        let r = run(c);
        let label = format!("level {level} bytes free");
        // A clear error: non-zero exit, "no space", where, and what to do.
        if r.code != 1
            || !r.stderr.contains("No space left on device")
            || !r.stderr.contains(&t.repo.display().to_string())
            || !r.stderr.contains("free space")
        {
            failures.push(format!("{label}: unclear failure\n{r}"));
        } else {
            clean += 1;
        }
        if !t.objects("locks").is_empty() {
            failures.push(format!("{label}: the lock was left behind"));
        }
        // Free the space; the repository is whole and every earlier snapshot restores.
        fs::remove_file(&ballast).unwrap();
        let check = t.run(["check", "--read-data"]);
        let mut ok = check.code == 0 && check.stdout.contains("no errors were found");
        if !ok {
            failures.push(format!(
                "{label}: check failed after freeing space\n{check}"
            ));
        }
        let target = t.join(format!("restore{k}"));
        for (id, dir) in &snaps {
            let mut c = t.cmd();
            c.args(["restore", id.as_str(), "--target"]).arg(&target);
            let res = run(c);
            if res.code != 0 {
                ok = false;
                failures.push(format!("{label}: restore of {id} failed\n{res}"));
            } else if let Err(e) = compare_trees(dir, &restored(&target, dir), Cmp::full()) {
                ok = false;
                failures.push(format!("{label}: {id} restored differently: {e:?}"));
            }
        }
        let _ = fs::remove_dir_all(&target);
        consistent += ok as usize;
        // The next backup succeeds.
        let mut c = t.cmd();
        c.args(["create", "--json"]).arg(&src);
        let next = run(c);
        if next.code == 0 {
            next_ok += 1;
            snaps.push((id_of(&next.json()["snapshot"]), src));
        } else {
            failures.push(format!("{label}: next create failed\n{next}"));
        }
    }
    let n = DISK_FULL_LEVELS.len();
    report(format!(
        "fault-suite disk_full: {n} trials (tmpfs, {:?} KiB left), {clean} failed cleanly with a no-space message, \
         {consistent} consistent after freeing space (check --read-data, every earlier snapshot restores), \
         {next_ok} next creates succeeded; {:.0}s",
        DISK_FULL_LEVELS.map(|l| l >> 10),
        started.elapsed().as_secs_f64()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!((clean, consistent, next_ok), (n, n, n));
}

// ---------------------------------------------------------------------------
// repair snapshots: after a lost pack and after a corrupt pack
// ---------------------------------------------------------------------------

/// A repository with one snapshot of several data packs; returns the
/// source and a data pack (not a tree pack) to damage.
fn repair_fixture(t: &TestRepo) -> (PathBuf, PathBuf) {
    t.ok(small_init());
    let src = t.join("src");
    let mut rng = Rng::new(seed() ^ 0x4e9a);
    simple_tree(&src, 900);
    add_batch(&src.join("batch"), &mut rng, 20, 3, 600_000);
    t.create([&src]);
    let mut tree_packs = BTreeSet::new();
    for idx in t.objects("index") {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        for p in t.ok(["cat", "index", &id]).json()["packs"]
            .as_array()
            .unwrap()
        {
            if p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["kind"] == "Tree")
            {
                tree_packs.insert(p["id"].as_str().unwrap().to_string());
            }
        }
    }
    let pack = t
        .objects("data")
        .into_iter()
        .find(|p| !tree_packs.contains(p.file_name().unwrap().to_str().unwrap()))
        .expect("a data pack");
    (src, pack)
}

/// After `repair snapshots --forget` and `prune`: check passes, the
/// snapshot is tagged and lists its damage, `ls` marks it, and a restore
/// brings back every other file identical and reports the damaged ones.
fn assert_repaired(t: &TestRepo, src: &Path, damaged: &BTreeSet<String>) {
    t.ok(["prune", "--max-unused", "0"]);
    t.ok(["check", "--read-data"])
        .stdout_has("no errors were found");
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1);
    assert!(
        snaps[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "repaired"),
        "{:?}",
        snaps[0]
    );
    let cat = t.ok(["cat", "snapshot", "latest"]).json();
    assert!(cat["original"].is_string(), "{cat}");
    let listed: BTreeSet<String> = cat["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&listed, damaged);
    let ls = t.ok(["ls", "latest", "--long"]);
    for d in damaged {
        assert!(
            ls.stdout
                .lines()
                .any(|l| l.contains(d.as_str()) && l.contains("[damaged:")),
            "ls does not mark {d}\n{ls}"
        );
    }
    let target = t.join("out");
    let mut c = t.cmd();
    c.args(["restore", "latest", "--target"]).arg(&target);
    let r = run(c);
    assert_eq!(
        r.code, 1,
        "damaged files make the restore report problems\n{r}"
    );
    let mut same = 0;
    for f in walk_files(src) {
        let abs = f.to_string_lossy().into_owned();
        let out = restored(&target, &f);
        if damaged.contains(&abs) {
            assert!(!out.exists(), "{abs} was restored though damaged");
            assert!(
                r.stderr
                    .contains(&format!("{}: the data of this file", out.display())),
                "{abs} not reported\n{r}"
            );
        } else {
            assert_eq!(fs::read(&f).unwrap(), fs::read(&out).unwrap(), "{abs}");
            same += 1;
        }
    }
    assert!(same > 0);
}

fn damaged_paths(v: &Value) -> BTreeSet<String> {
    v["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["damaged"].as_array().unwrap().iter())
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect()
}

fn storage_state(t: &TestRepo) -> BTreeMap<PathBuf, Vec<u8>> {
    walk_files(&t.repo)
        .into_iter()
        .filter(|p| !p.starts_with(t.repo.join("locks")))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn repair_snapshots_after_a_lost_pack() {
    let t = TestRepo::new();
    let (src, pack) = repair_fixture(&t);
    fs::remove_file(&pack).unwrap();
    t.run(["check"]).code(1);
    // A dry run lists what it would do and changes nothing.
    let before = storage_state(&t);
    let dry = t.ok(["repair", "snapshots", "--dry-run", "--json"]).json();
    let damaged = damaged_paths(&dry);
    assert!(!damaged.is_empty(), "{dry}");
    assert!(dry["repaired"][0]["new"].is_null());
    t.ok(["repair", "snapshots", "--dry-run"])
        .stdout_has("would be rewritten")
        .stdout_has("is missing");
    assert!(
        storage_state(&t) == before,
        "the dry run changed the repository"
    );
    // The repair proper.
    let r = t.ok(["repair", "snapshots", "--forget", "--json"]).json();
    assert_eq!(damaged_paths(&r), damaged);
    assert_eq!(r["repaired"][0]["forgotten"], true);
    assert_repaired(&t, &src, &damaged);
    // Nothing is left to repair.
    t.ok(["repair", "snapshots"]).stdout_has("no damage found");
}

#[test]
fn repair_snapshots_after_a_corrupt_pack() {
    let t = TestRepo::new();
    let (src, pack) = repair_fixture(&t);
    let len = fs::metadata(&pack).unwrap().len() as usize;
    flip_byte(&pack, len / 2);
    t.run(["check", "--read-data"]).code(1);
    // Without reading the data the damage is invisible; with it, found.
    t.ok(["repair", "snapshots", "--dry-run"])
        .stdout_has("no damage found");
    let dry = t
        .ok(["repair", "snapshots", "--read-data", "--dry-run", "--json"])
        .json();
    let damaged = damaged_paths(&dry);
    assert_eq!(damaged.len(), 1, "one flipped byte damages one blob\n{dry}");
    let r = t
        .ok(["repair", "snapshots", "--read-data", "--forget", "--json"])
        .json();
    assert_eq!(damaged_paths(&r), damaged);
    assert_repaired(&t, &src, &damaged);
}
