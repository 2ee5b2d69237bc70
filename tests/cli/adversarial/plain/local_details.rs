//! Hard links and holes kept, control folders that are not ours and
//! overlapping sides refused, a copy checked with `b3sum --check` whatever
//! its names.

use super::*;

fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// Local to local, links stay links and holes stay holes (`rsync -aHS`).
#[test]
fn mirror_keeps_hard_links_and_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "one/linked.bin", "shared content", T0);
    fs::create_dir_all(a.join("two")).unwrap();
    fs::hard_link(a.join("one/linked.bin"), a.join("two/linked.bin")).unwrap();
    fs::hard_link(a.join("one/linked.bin"), a.join("third.bin")).unwrap();
    // 64 MiB with 4 KiB of data at 1 MiB and at the end.
    let sparse = a.join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 4096], (64 << 20) - 4096).unwrap();
    }
    if allocated(&sparse) > 1 << 20 {
        eprintln!("skipping holes: this file system does not keep the source sparse");
    }
    let r = repo(&["--json", "mirror", s(&a), s(&b), "-y"]);
    r.success();
    assert_eq!(count(&r.json(), "linked"), 2, "{r}");
    let ino = |p: &str| fs::metadata(b.join(p)).unwrap().ino();
    assert_eq!(ino("one/linked.bin"), ino("two/linked.bin"), "{r}");
    assert_eq!(ino("one/linked.bin"), ino("third.bin"), "{r}");
    assert_eq!(fs::metadata(b.join("third.bin")).unwrap().nlink(), 3);
    assert_eq!(
        fs::read(b.join("disk.img")).unwrap(),
        fs::read(&sparse).unwrap()
    );
    let dest_alloc = allocated(&b.join("disk.img"));
    assert!(
        dest_alloc <= allocated(&sparse).max(64 << 10),
        "the copy of a 64 MiB sparse file allocates {dest_alloc} bytes"
    );
    // A new link to a file already mirrored becomes a link there too.
    fs::hard_link(a.join("third.bin"), a.join("fourth.bin")).unwrap();
    let r = repo(&["--json", "mirror", s(&a), s(&b), "-y"]);
    r.success();
    assert_eq!(ino("fourth.bin"), ino("third.bin"), "{r}");
    eprintln!(
        "adversarial plain: links and holes: 3 links kept + 1 added, 64 MiB sparse copy allocates {dest_alloc} bytes, data lost: 0"
    );
}

/// A `.repo` that is not ours (Google's `repo` tool makes one in every
/// checkout) is never skipped silently nor written into: the run is refused.
#[test]
fn foreign_control_folder_is_refused() {
    let mut refused = 0;
    for (where_, args) in [
        ("source", &["mirror"][..]),
        ("dest", &["mirror"][..]),
        ("source", &["sync"][..]),
        ("dest", &["sync"][..]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        put_file(&a, "src.c", "int main;", T0);
        fs::create_dir_all(&b).unwrap();
        let owner = if where_ == "source" { &a } else { &b };
        put_file(owner, ".repo/manifest.xml", "<manifest/>", T0);
        put_file(owner, ".repo/manifests/default.xml", "<manifest/>", T0);
        let before = walk_all(&owner.join(".repo"));
        let mut cmd = args.to_vec();
        cmd.extend([s(&a), s(&b), "-y"]);
        let r = repo(&cmd);
        r.code(2).stderr_has("is not a control folder of repo");
        refused += 1;
        assert_eq!(walk_all(&owner.join(".repo")), before, "{r}");
        assert!(!b.join("src.c").exists(), "{r}");
    }
    // A `.repo` symlink planted on the destination would carry writes
    // elsewhere: refused, and nothing lands where it points.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, elsewhere) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("elsewhere"),
    );
    put_file(&a, "x", "x", T0);
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.join(".repo")).unwrap();
    repo(&["mirror", s(&a), s(&b), "-y"])
        .code(2)
        .stderr_has("is not a control folder of repo");
    refused += 1;
    assert!(
        walk_all(&elsewhere).is_empty(),
        "{:?}",
        walk_all(&elsewhere)
    );
    // A `.repo` of ours from before the marker (a manifest inside) is accepted,
    // and marked.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put_file(&a, "x", "x", T0);
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    fs::remove_file(b.join(".repo/FORMAT")).unwrap();
    repo(&["sync", s(&a), s(&b), "-y"]).success();
    assert!(b.join(".repo/FORMAT").exists());
    eprintln!(
        "adversarial plain: foreign .repo: {refused} runs refused, 0 files written into them, data lost: 0"
    );
}

/// One side inside the other is refused before anything is created.
#[test]
fn overlapping_sides_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    put_file(&src, "f.txt", "f", T0);
    fs::create_dir_all(src.join("sub")).unwrap();
    std::os::unix::fs::symlink(&src, tmp.path().join("alias")).unwrap();
    let alias_dest = tmp.path().join("alias/dest2");
    let cases: Vec<(&str, PathBuf, PathBuf)> = vec![
        ("mirror", src.clone(), src.join("dest")),
        ("mirror", src.join("sub"), src.clone()),
        ("sync", src.clone(), src.join("sub")),
        ("mirror", src.clone(), alias_dest.clone()),
        ("mirror", src.clone(), tmp.path().join("src/./x/../dest3")),
    ];
    let n = cases.len();
    for (cmd, a, b) in cases {
        let r = repo(&[cmd, s(&a), s(&b), "-y"]);
        r.code(2).stderr_has("must not overlap");
    }
    assert_eq!(walk_all(&src).len(), 2, "{:?}", walk_all(&src));
    eprintln!(
        "adversarial plain: overlapping sides: {n} runs refused, nothing nested, data lost: 0"
    );
}

/// README's recipe checks a copy with `b3sum --check`, names with newlines
/// and bytes that are not UTF-8 included; the log names them by `path_hex`.
#[test]
fn b3sum_recipe_checks_odd_names() {
    if Command::new("b3sum").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "b3sum is missing (scripts/test installs it)"
        );
        eprintln!("skipping: b3sum is not installed");
        return;
    }
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- b3sum-recipe -->")
        .expect("README has the b3sum recipe");
    let block = &readme[start..];
    let body_start = block.find("```sh\n").unwrap() + 6;
    let body_end = block[body_start..].find("```").unwrap() + body_start;
    let recipe = &block[body_start..body_end];

    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let names: [&[u8]; 5] = [
        b"plain.txt",
        b"new\nline.txt",
        b"bad\xffname",
        b"back\\slash and space",
        b"dir/\xfe\xfd nested",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = a.join(std::ffi::OsStr::from_bytes(n));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content {i}")).unwrap();
    }
    repo(&["mirror", s(&a), s(&b), "-y", "--compare", "attr+"]).success();
    let logs = walk_files(&b.join(".repo/log"));
    let log = fs::read_to_string(&logs[0]).unwrap();
    assert!(
        log.contains(&format!("\"path_hex\":\"{}\"", hex::encode(b"bad\xffname"))),
        "{log}"
    );
    assert!(!log.contains('\u{fffd}'), "{log}");

    let check = |dir: &Path| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(recipe).current_dir(dir);
        run_within(c, Duration::from_secs(60))
    };
    let r = check(&b);
    r.success();
    assert_eq!(r.stdout.matches(": OK").count(), names.len(), "{r}");
    // A damaged copy is caught.
    fs::write(
        b.join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
        "content X",
    )
    .unwrap();
    let r = check(&b);
    r.failure();
    assert_eq!(r.stdout.matches(": FAILED").count(), 1, "{r}");
    eprintln!(
        "adversarial plain: b3sum recipe: {} odd names checked, 1 damage caught, data lost: 0",
        names.len()
    );
}
