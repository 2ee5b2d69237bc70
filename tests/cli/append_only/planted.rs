//! What a compromised client can add, it must not be able to turn into a
//! loss at the next maintenance on the server. With the key, it uploads
//! packs of junk (of the right sizes) and a well-formed index naming them
//! as holders of the repository's blobs, all plain POSTs the append-only
//! server accepts. The operator's prune then must keep the real data: it
//! chose copies by index entries alone, kept the junk (its packs are fully
//! used, the real ones partly) and deleted the real packs.

use std::path::Path;

use super::attack::{rest_name, status};
use super::{AppendServer, PASSWORD};
use crate::support::{random_bytes, repo_command, run, walk_files};

/// The attacker's junk, built with the repository's own key: a local
/// repository sharing config and key files backs up the same files, and
/// its data packs (the large ones; tree packs stay sound so the trees
/// still read) are overwritten with random bytes of the same length.
fn junk_objects(s: &AppendServer, path: &str, src: &Path, work: &Path) -> Vec<(String, Vec<u8>)> {
    let clone = work.join("clone");
    for dir in ["keys", "data", "index", "snapshots", "locks"] {
        std::fs::create_dir_all(clone.join(dir)).unwrap();
    }
    let server = s.folder(path);
    std::fs::copy(server.join("config"), clone.join("config")).unwrap();
    for key in std::fs::read_dir(server.join("keys")).unwrap() {
        let key = key.unwrap();
        std::fs::copy(key.path(), clone.join("keys").join(key.file_name())).unwrap();
    }
    let mut c = repo_command();
    c.args(["create", "-q", "-r"])
        .arg(&clone)
        .arg(src)
        .env("REPO_PASSWORD", PASSWORD);
    run(c).success();
    let mut planted = Vec::new();
    for f in walk_files(&clone) {
        let rel = f.strip_prefix(&clone).unwrap().display().to_string();
        let bytes = std::fs::read(&f).unwrap();
        if rel.starts_with("data/") && bytes.len() > 64 << 10 {
            planted.push((rest_name(&rel), random_bytes(bytes.len(), 99)));
        } else if rel.starts_with("data/") || rel.starts_with("index/") {
            planted.push((rest_name(&rel), bytes));
        }
    }
    planted
}

#[test]
fn planted_junk_copies_cannot_make_the_servers_prune_delete_real_data() {
    let Some(s) = AppendServer::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = s.new_path("host03", "planted");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(3 << 20, 1)).unwrap();
    std::fs::write(src.join("old.bin"), random_bytes(1 << 20, 2)).unwrap();
    s.run(&path, &["init"]).success();
    s.run(&path, &["create", "-q", src.to_str().unwrap()])
        .success();
    std::fs::remove_file(src.join("old.bin")).unwrap();
    s.run(&path, &["create", "-q", src.to_str().unwrap()])
        .success();
    // The operator's retention: the real data pack is now partly unused.
    s.operator(&path, &["forget", "--keep-last", "1"]).success();

    let planted = junk_objects(&s, &path, &src, tmp.path());
    assert!(planted.iter().any(|(n, _)| n.starts_with("index/")));
    for (name, bytes) in &planted {
        let code = status(&s, "host03", "POST", &format!("{path}/{name}"), Some(bytes));
        assert_eq!(code, 200, "POST {name}");
    }

    let out = s.operator(&path, &["prune"]);
    out.success();
    s.operator(&path, &["check", "--read-data"]).success();
    let target = tmp.path().join("out");
    s.operator(
        &path,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    )
    .success();
    let restored = target.join(src.strip_prefix("/").unwrap()).join("a.bin");
    assert!(
        std::fs::read(&restored).unwrap() == random_bytes(3 << 20, 1),
        "a.bin restored wrong"
    );
    // Said, with what to do.
    assert!(out.stdout.contains("set aside"), "{out}");
}
