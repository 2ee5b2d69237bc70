//! Walking, changing and searching files of trees and repositories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every regular file below `root` (not following symlinks).
pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else if md.is_file() {
            out.push(p);
        }
    }
    out
}

/// Every path below `root` (files, dirs, links), relative, sorted.
pub fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p != root {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Where a restore puts the backed-up absolute path `abs`.
pub fn restored(target: &Path, abs: &Path) -> PathBuf {
    target.join(abs.strip_prefix("/").expect("absolute path"))
}

/// Relative path of a storage object inside the repository (e.g. `data/ab/ab12…`).
pub fn object_name(repo: &Path, obj: &Path) -> String {
    obj.strip_prefix(repo)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// XORs one byte of a file; returns the original content.
pub fn flip_byte(path: &Path, offset: usize) -> Vec<u8> {
    let orig = fs::read(path).expect("read object");
    let mut bad = orig.clone();
    bad[offset] ^= 0x5a;
    write_over(path, &bad);
    orig
}

/// Rewrites a (possibly read-only) file in place.
pub fn write_over(path: &Path, bytes: &[u8]) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Sets atime and mtime of `path` itself (symlinks are not followed).
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Changes the owner of every path below and including `root` (no symlink following).
pub fn chown_tree(root: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).unwrap();
    for p in walk_all(root) {
        std::os::unix::fs::lchown(root.join(p), Some(uid), Some(gid)).unwrap();
    }
}

/// Searches every file below `root` for `needle`; returns the files containing it.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walk_files(root)
        .into_iter()
        .filter(|f| {
            let bytes = fs::read(f).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

/// Writes `bytes` to `path`, creating its parent folders.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
}

/// `cp -a` (modes, times, links, xattrs preserved).
pub fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Writes `content` at `root/rel` (creating folders) with mtime `mtime`.
pub fn put_file(root: &Path, rel: &str, content: &str, mtime: i64) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    set_mtime(&p, mtime, 0);
}
