//! repair snapshots: after a lost pack and after a corrupt pack.

use super::*;

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
