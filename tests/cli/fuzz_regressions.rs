//! Reruns the fuzz harness on stable Rust: every committed seed in
//! `fuzz/seeds/<target>/` and every input a fuzzer crashed on in
//! `fuzz/regressions/<target>/` goes through the same decoder checks
//! (no panic, round trips, the allocation bound) as under cargo-fuzz.
//!
//! Regenerate the seeds after a format change with
//! `cargo test --test cli fuzz_regressions::write_seeds -- --ignored`.

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: harness::CountingAlloc = harness::CountingAlloc;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files directly inside `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

#[test]
fn seeds_and_regressions_pass_every_target() {
    for (target, run) in harness::TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds").join(target));
        assert!(!seeds.is_empty(), "no seeds for {target}");
        let regressions = inputs(&fuzz_dir().join("regressions").join(target));
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            // A panic names the target's check; say which file caused it.
            eprintln!("{target}: {}", path.display());
            run(&data);
        }
    }
}

#[test]
fn committed_seeds_match_the_generator() {
    for (target, name, bytes) in harness::seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(name);
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale; run `cargo test --test cli fuzz_regressions::write_seeds -- --ignored`",
            path.display()
        );
    }
}

/// Every target has a cargo-fuzz binary and a `[[bin]]` entry, so one
/// added to the harness cannot be forgotten by `scripts/fuzz`.
#[test]
fn every_target_is_a_cargo_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (target, _) in harness::TARGETS {
        assert!(
            manifest.contains(&format!(
                "name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file()
        );
    }
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand after a format change"]
fn write_seeds() {
    for (target, name, bytes) in harness::seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
