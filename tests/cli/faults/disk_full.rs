//! 3. Disk full during create (a small tmpfs; needs root).

use super::*;

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
