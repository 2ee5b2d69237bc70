//! forget --prune and prune: space reclaimed, restores identical, safe
//! when killed at each crash point.

use super::*;

#[test]
fn forget_prune_keeps_every_kept_snapshot_intact() {
    let e = Env::init_small_chunks();
    let src = e.join("src");
    let mut expected: Vec<(String, PathBuf)> = Vec::new();
    for round in 0..4u64 {
        // Each round replaces some files, keeps others, and adds new ones.
        write_file(
            &src.join(format!("round{round}.bin")),
            &random_bytes(300_000, 100 + round),
        );
        write_file(&src.join("shared.bin"), &random_bytes(200_000, 1));
        write_file(
            &src.join("changing.txt"),
            format!("round {round}\n").as_bytes(),
        );
        if round >= 1 {
            let _ = fs::remove_file(src.join(format!("round{}.bin", round - 1)));
        }
        fs::create_dir_all(src.join(format!("dir{round}"))).unwrap();
        write_file(
            &src.join(format!("dir{round}/inner")),
            &random_bytes(50_000, round),
        );
        let _ = std::os::unix::fs::symlink("shared.bin", src.join("link"));
        let id = e.create(
            &src,
            &["--time", &format!("2024-01-0{}T12:00:00Z", round + 1)],
        );
        let copy = e.join(format!("expected{round}"));
        copy_tree(&src, &copy);
        expected.push((id, copy));
    }
    let before = e.size();
    let r = e.json(["forget", "--keep-last", "2", "--prune"]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 2);
    let p = &r["prune"];
    assert!(
        p["packs_removed"].as_u64().unwrap() + p["packs_repacked"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(e.size() < before, "prune freed nothing: {r}");
    assert_eq!(
        e.snapshot_ids(),
        vec![expected[2].0.clone(), expected[3].0.clone()]
    );

    e.check_read_data();
    for (i, (id, copy)) in expected.iter().enumerate().skip(2) {
        let got = e.restore(&id[..8], &src, &format!("restored{i}"));
        assert_same_tree(copy, &got);
    }
    // A second prune finds nothing more to do.
    let again = e.json(["prune"]);
    assert_eq!(again["packs_removed"], 0);
    assert_eq!(again["packs_repacked"], 0);
    assert_eq!(again["index_written"], 0);
}

#[test]
fn prune_dry_run_changes_nothing() {
    let e = Env::init();
    let src = e.join("src");
    write_file(&src.join("a"), &random_bytes(100_000, 1));
    let s1 = e.create(&src, &[]);
    write_file(&src.join("a"), &random_bytes(100_000, 2));
    e.create(&src, &[]);
    e.ok(["forget", &s1[..8]]);
    let files = |e: &Env| -> BTreeSet<PathBuf> { walk_all(&e.repo).into_iter().collect() };
    let before = files(&e);
    let r = e.json(["prune", "--dry-run"]);
    assert_eq!(r["dry_run"], true);
    assert!(r["packs_removed"].as_u64().unwrap() + r["packs_repacked"].as_u64().unwrap() >= 1);
    assert!(
        r["bytes_after"].as_u64() < r["bytes_before"].as_u64(),
        "{r}"
    );
    assert_eq!(files(&e), before);
    let text = e.ok(["prune", "-n"]).stdout;
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    e.run(["prune", "--max-unused", "150"]).code(2);
}

/// A repository where prune has packs to delete (only used by forgotten
/// snapshots), packs to repack (partly used) and packs to keep, with the
/// kept snapshots' expected contents.
fn prune_fixture() -> (Env, PathBuf, Vec<(String, PathBuf)>) {
    let e = Env::init_small_chunks();
    let src = e.join("src");
    // s0: only Z (forgotten: its data pack becomes unused).
    write_file(&src.join("z.bin"), &random_bytes(400_000, 10));
    let s0 = e.create(&src, &[]);
    // s1: A and B in one pack (forgotten: the pack becomes partly used by s2).
    fs::remove_file(src.join("z.bin")).unwrap();
    write_file(&src.join("a.bin"), &random_bytes(400_000, 11));
    write_file(&src.join("b.bin"), &random_bytes(300_000, 12));
    let s1 = e.create(&src, &[]);
    // s2: B and C (kept), s3: B, C and D (kept).
    fs::remove_file(src.join("a.bin")).unwrap();
    write_file(&src.join("c.bin"), &random_bytes(300_000, 13));
    let s2 = e.create(&src, &[]);
    let c2 = e.join("expected2");
    copy_tree(&src, &c2);
    write_file(&src.join("sub/d.txt"), b"d");
    let s3 = e.create(&src, &[]);
    let c3 = e.join("expected3");
    copy_tree(&src, &c3);
    e.ok(["forget", &s0[..8], &s1[..8]]);
    (e, src, vec![(s2, c2), (s3, c3)])
}

#[track_caller]
fn assert_all_restorable(e: &Env, src: &Path, kept: &[(String, PathBuf)], tag: &str) {
    assert_eq!(
        e.snapshot_ids().into_iter().collect::<BTreeSet<_>>(),
        kept.iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
    );
    for (i, (id, copy)) in kept.iter().enumerate() {
        let got = e.restore(&id[..8], src, &format!("{tag}-restored{i}"));
        assert_same_tree(copy, &got);
    }
}

fn crash_at(point: &str) {
    let (e, src, kept) = prune_fixture();
    let index_before = e.object_ids("index");
    let packs_before = e.object_ids("data");

    let mut c = e.cmd();
    c.args(["prune", "--max-unused", "0"])
        .env("REPO_TEST_PRUNE_CRASH_AT", point);
    let o = run(c);
    o.code(1);
    let index_now = e.object_ids("index");
    let packs_now = e.object_ids("data");
    match point {
        "after-repack" => {
            // New packs and their index written; nothing deleted yet.
            assert!(index_before.is_subset(&index_now));
            assert!(
                index_now.len() > index_before.len(),
                "repack wrote an index"
            );
            assert!(packs_before.is_subset(&packs_now));
            assert!(packs_now.len() > packs_before.len(), "repack wrote packs");
        }
        "after-index" => {
            // The new index supersedes the old ones, which are still there.
            assert!(index_before.is_subset(&index_now));
            assert!(packs_before.is_subset(&packs_now));
        }
        "before-delete" => {
            // Old index objects gone, unneeded packs not yet.
            assert!(index_before.is_disjoint(&index_now));
            assert_eq!(index_now.len(), 1);
            assert!(packs_before.is_subset(&packs_now));
        }
        other => panic!("unknown crash point {other}"),
    }
    // The crashed prune left its lock behind; nobody waits for a dead process.
    assert_eq!(e.object_ids("locks").len(), 1);
    e.check_read_data();
    assert_all_restorable(&e, &src, &kept, "crashed");

    // Running prune again completes the job.
    let r = e.json(["prune", "--max-unused", "0"]);
    assert_eq!(r["packs_repacked"], 0, "{r}");
    let v = e.check_read_data();
    assert_eq!(
        v["notices"],
        Value::Array(vec![]),
        "no unused packs remain: {v}"
    );
    assert_eq!(e.object_ids("index").len(), 1);
    assert_all_restorable(&e, &src, &kept, "finished");
}

#[test]
fn prune_crash_after_repack_is_safe() {
    crash_at("after-repack");
}

#[test]
fn prune_crash_after_index_is_safe() {
    crash_at("after-index");
}

#[test]
fn prune_crash_before_delete_is_safe() {
    crash_at("before-delete");
}

#[test]
fn prune_without_crash_deletes_repacks_and_keeps() {
    let (e, src, kept) = prune_fixture();
    let r = e.json(["prune", "--max-unused", "0"]);
    assert!(r["packs_removed"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["packs_kept"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["blobs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["index_written"], 1);
    let index = e.object_ids("index");
    assert_eq!(index.len(), 1);
    let idx: Value = serde_json::from_slice(
        &e.ok(["cat", "index", index.iter().next().unwrap()])
            .stdout_bytes,
    )
    .unwrap();
    assert!(idx["supersedes"].as_array().unwrap().len() >= 4, "{idx}");
    let v = e.check_read_data();
    assert_eq!(v["notices"], Value::Array(vec![]));
    assert_all_restorable(&e, &src, &kept, "pruned");
}

#[test]
fn prune_reclaims_space_like_a_fresh_backup() {
    let e = Env::init();
    let src = e.join("src");
    // s1: A (4 MiB) and B (2 MiB); s2: B and C (2 MiB). Forgetting s1 leaves
    // A unreferenced: half of the 8 MiB stored, in a pack shared with B.
    write_file(&src.join("a.bin"), &random_bytes(4 << 20, 21));
    write_file(&src.join("b.bin"), &random_bytes(2 << 20, 22));
    let s1 = e.create(&src, &[]);
    fs::remove_file(src.join("a.bin")).unwrap();
    write_file(&src.join("c.bin"), &random_bytes(2 << 20, 23));
    let s2 = e.create(&src, &[]);
    let total = e.size();

    let r = e.json(["forget", &s1[..8], "--prune"]);
    let p = &r["prune"];
    assert!(
        p["packs_repacked"].as_u64().unwrap() >= 1,
        "the shared pack is repacked: {r}"
    );
    let pruned = e.size();

    let fresh = Env::init();
    fresh.create(&src, &[]);
    let reference = fresh.size();
    assert!(
        pruned as f64 <= reference as f64 * 1.10 && pruned as f64 >= reference as f64 * 0.90,
        "pruned repository has {pruned} bytes, a fresh backup {reference} (before prune: {total})"
    );
    assert!(pruned < total * 6 / 10, "{pruned} of {total}");
    e.check_read_data();
    let got = e.restore(&s2[..8], &src, "out");
    assert_same_tree(&src, &got);
}

#[test]
fn prune_refuses_when_a_snapshot_is_damaged() {
    let (e, _src, _kept) = prune_fixture();
    let snap = e.object_ids("snapshots").into_iter().next().unwrap();
    let path = e.repo.join("snapshots").join(&snap);
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let files_before: BTreeSet<PathBuf> = walk_all(&e.repo).into_iter().collect();
    let o = e.run(["prune", "--max-unused", "0"]);
    o.code(1);
    assert!(o.stderr.contains(&snap), "{o}");
    assert!(o.stderr.contains("deleted nothing"), "{o}");
    let files_after: BTreeSet<PathBuf> = walk_all(&e.repo)
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .collect();
    let files_before: BTreeSet<PathBuf> = files_before
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .collect();
    assert_eq!(files_after, files_before, "prune changed the repository");
}
