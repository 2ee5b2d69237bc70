//! Holes at file-system block granularity.

use super::*;

// Item 19: holes at file-system block granularity.

#[test]
fn zero_blocks_inside_a_chunk_are_restored_as_holes() {
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    // Smaller than the minimum chunk size: one chunk, mostly zeros, not all.
    let mut data = random_bytes(8192, 19);
    data.extend(std::iter::repeat_n(0u8, 256 * 1024));
    data.extend(random_bytes(8192 + 100, 20));
    fs::write(src.join("mostly-zeros.bin"), &data).unwrap();
    t.create([&src]);
    let target = t.join("target");
    t.restore(&spec_of(&src), &target, &[]);
    let out = target.join("mostly-zeros.bin");
    assert_eq!(fs::read(&out).unwrap(), data);
    let allocated = fs::metadata(&out).unwrap().blocks() * 512;
    report("holes", 1, 0);
    assert!(
        allocated <= 64 * 1024,
        "{allocated} bytes allocated for {} bytes with 256 KiB of zero blocks",
        data.len()
    );
}

#[test]
fn an_existing_directory_the_user_cannot_read_is_still_restored_into() {
    // Mode 0300: the owner may create entries in it but not list it.
    let mut t = TestRepo::new();
    if is_root() {
        let Some(sp) = setpriv() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "setpriv is needed under CI"
            );
            eprintln!("skipping: running as root and setpriv is not installed");
            return;
        };
        t.prefix = nobody_prefix(sp);
    }
    let src = t.join("src");
    put(&src, "d/f.txt", "inside");
    if is_root() {
        chown_tree(t.path(), NOBODY, NOBODY);
    }
    t.init();
    t.create([&src]);
    let target = t.join("target");
    put(&target, "d/old.txt", "already there");
    if is_root() {
        chown_tree(&target, NOBODY, NOBODY);
    }
    fs::set_permissions(target.join("d"), fs::Permissions::from_mode(0o300)).unwrap();
    let r = t.run([
        OsStr::new("restore"),
        OsStr::new(&spec_of(&src)),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let mode = fs::metadata(target.join("d")).unwrap().mode() & 0o7777;
    fs::set_permissions(target.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
    r.success();
    assert_eq!(fs::read(target.join("d/f.txt")).unwrap(), b"inside", "{r}");
    assert_eq!(
        mode, 0o755,
        "the directory did not get its recorded mode: {r}"
    );
    report("unreadable existing directory", 1, 0);
}
