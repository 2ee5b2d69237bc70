//! Metadata goes only to the file the restore created or checked.

use super::*;

// Review: metadata goes only to the file the restore created or checked.

#[test]
fn a_user_swapping_in_their_own_file_gets_no_setuid_root_from_a_root_restore() {
    if !need_root("a_user_swapping_in_their_own_file_gets_no_setuid_root_from_a_root_restore") {
        return;
    }
    let t = TestRepo::new();
    t.init();
    let src = t.join("src");
    // An empty setuid-root file (created by the restore, metadata set later
    // by name) and a non-empty one the target already holds identically
    // (skipped, metadata set later by name).
    put(&src, "empty-suid", "");
    put(&src, "same-suid", "the real tool");
    put(&src, "top.txt", "top");
    set_mtime(&src.join("same-suid"), 1_500_000_000, 0);
    for f in ["empty-suid", "same-suid"] {
        fs::set_permissions(src.join(f), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    t.create([&src]);
    let target = t.join("home-of-nobody");
    put(&target, "same-suid", "the real tool");
    set_mtime(&target.join("same-suid"), 1_500_000_000, 0);
    chown_tree(&target, NOBODY, NOBODY);
    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    let point = "restore-before-metadata";
    let child = restore_paused(&t, &spec_of(&src), &target, &[], point);
    // nobody owns the directory: it may rename what root made and put its own file there.
    let mut script = String::new();
    for f in ["empty-suid", "same-suid"] {
        let p = target.join(f);
        script.push_str(&format!(
            "mv '{0}' '{0}.moved' && printf '#!/bin/sh\\nid\\n' > '{0}' && chmod 755 '{0}' && ",
            p.display()
        ));
    }
    script.push_str("true");
    as_nobody(&script);
    // Without setpriv the swap is made by root emulating nobody: compare
    // with the owner the swapped-in files had.
    let owners: Vec<u32> = ["empty-suid", "same-suid"]
        .iter()
        .map(|f| fs::symlink_metadata(target.join(f)).unwrap().uid())
        .collect();
    let (code, stderr) = resume(&t, child, point);
    assert!(matches!(code, Some(0) | Some(1)), "{code:?}\n{stderr}");
    let mut bad = Vec::new();
    for (f, owner) in ["empty-suid", "same-suid"].iter().zip(owners) {
        let md = fs::symlink_metadata(target.join(f)).unwrap();
        if md.uid() != owner || md.mode() & 0o6000 != 0 {
            bad.push(format!(
                "{f}: nobody's file became {}:{} mode {:o}",
                md.uid(),
                md.gid(),
                md.mode() & 0o7777
            ));
        }
    }
    assert_eq!(
        fs::read(target.join("top.txt")).unwrap(),
        b"top",
        "{stderr}"
    );
    report("metadata of a swapped-in file", 2, bad.len() as u64);
    assert!(bad.is_empty(), "{bad:#?}\n{stderr}");
}
