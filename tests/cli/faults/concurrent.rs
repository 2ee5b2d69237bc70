//! 4. Concurrent backups into one repository.

use super::*;

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
