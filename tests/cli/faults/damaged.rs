//! 2. Bit flips and truncations of every kind of stored object.

use super::*;

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
