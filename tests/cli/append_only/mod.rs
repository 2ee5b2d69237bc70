//! Append-only servers (issue 16): a client of `rclone serve restic
//! --append-only --private-repos` with an htpasswd file and TLS may add
//! backups and read them, never delete or rewrite what is stored.
//! `scripts/rest-servers.sh` starts the server (users `host01`..`host40`,
//! password `pw-` + user, each confined to `/<user>/`); the operator side,
//! maintenance on the server's own folder, runs `repo` on that folder.

mod attack;
mod load;
mod planted;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Run, repo_command, run, server, unique_url, walk_files};

const PASSWORD: &str = "append-only-password";

/// The append-only server of `scripts/rest-servers.sh`, if it runs.
pub struct AppendServer {
    /// `https://127.0.0.1:PORT`
    base: String,
    /// Its data folder on this machine: what the operator sees.
    dir: PathBuf,
    /// The test CA its certificate is signed by.
    ca: String,
}

impl AppendServer {
    pub fn get() -> Option<Self> {
        let base = server("REPO_TEST_REST_APPEND_BASE")?;
        Some(AppendServer {
            base: base.trim_end_matches('/').to_string(),
            dir: PathBuf::from(std::env::var("REPO_TEST_REST_APPEND_DIR").expect("data dir")),
            ca: std::env::var("REPO_TEST_REST_CA").expect("CA of the REST test servers"),
        })
    }

    fn host_port(&self) -> &str {
        self.base.trim_start_matches("https://")
    }

    /// A new repository path below `user`'s private area: `user/tag-…`.
    pub fn new_path(&self, user: &str, tag: &str) -> String {
        unique_url(user, tag)
    }

    /// The client's URL of `path` (which starts with the user's name).
    pub fn url(&self, path: &str) -> String {
        let user = path.split('/').next().unwrap_or_default();
        format!("rest:https://{user}:pw-{user}@{}/{path}/", self.host_port())
    }

    /// The same repository as the operator reaches it: a folder.
    pub fn folder(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// `repo ARGS -r URL` as the client of `path`.
    pub fn client(&self, path: &str, args: &[&str]) -> Command {
        let mut c = repo_command();
        c.args(args)
            .arg("-r")
            .arg(self.url(path))
            .env("REPO_PASSWORD", PASSWORD)
            .env("REPO_CA_CERT", &self.ca)
            .env("REPO_CACHE_DIR", self.dir.join(".client-caches"));
        c
    }

    /// Runs the client to completion.
    pub fn run(&self, path: &str, args: &[&str]) -> Run {
        run(self.client(path, args))
    }

    /// `repo ARGS -r FOLDER` on the server, as its operator.
    pub fn operator(&self, path: &str, args: &[&str]) -> Run {
        let mut c = repo_command();
        c.args(args)
            .arg("-r")
            .arg(self.folder(path))
            .env("REPO_PASSWORD", PASSWORD);
        run(c)
    }

    /// Every file of the repository on the server with its bytes.
    pub fn stored(&self, path: &str) -> BTreeMap<String, Vec<u8>> {
        let root = self.folder(path);
        walk_files(&root)
            .into_iter()
            .map(|f| {
                let rel = f.strip_prefix(&root).unwrap().display().to_string();
                (rel, std::fs::read(&f).unwrap())
            })
            .collect()
    }
}

/// A small tree whose content depends on `seed`.
pub fn tree(root: &Path, seed: u64) {
    crate::support::simple_tree(root, seed);
}

/// Each command that deletes or rewrites, with the words its refusal names.
const DESTRUCTIVE: [(&[&str], &str); 8] = [
    (&["forget", "latest"], "forget"),
    (&["forget", "--keep-last", "1"], "forget"),
    (&["prune"], "prune"),
    (&["tag", "--add", "evil", "latest"], "tag"),
    (
        &["key", "passwd", "--new-password-file", "NEWPW"],
        "key passwd",
    ),
    (&["key", "remove", "KEYID"], "key remove"),
    (&["repair", "index"], "repair index"),
    (&["repair", "snapshots"], "repair snapshots"),
];

#[test]
fn clients_add_and_read_but_maintenance_is_refused_before_it_changes_anything() {
    let Some(s) = AppendServer::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = s.new_path("host03", "refuse");
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    tree(&src, 1);
    s.run(&path, &["init"]).success();
    s.run(&path, &["create", src.to_str().unwrap()]).success();
    std::fs::write(src.join("a.txt"), "changed").unwrap();
    s.run(&path, &["create", src.to_str().unwrap()]).success();

    // What clients do works: read, verify, add a key, copy in and out.
    let newpw = tmp.path().join("newpw");
    std::fs::write(&newpw, "second-password").unwrap();
    let added = s
        .run(
            &path,
            &[
                "--json",
                "key",
                "add",
                "--new-password-file",
                newpw.to_str().unwrap(),
            ],
        )
        .success()
        .json();
    let added = added["added"].as_str().unwrap().to_string();
    s.run(
        &path,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .success();
    crate::support::assert_same_tree(
        &src,
        &crate::support::restored(&out, &src),
        crate::support::Cmp::content_only(),
    );
    for args in [
        &["check", "--read-data"][..],
        &["snapshots"],
        &["ls", "latest"],
        &["find", "c.txt"],
        &["prune", "--dry-run"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["repair", "index", "--dry-run"],
    ] {
        s.run(&path, args).success();
    }
    let snaps = s.run(&path, &["--json", "snapshots"]).success().json();
    let id = |i: usize| snaps[i]["id"].as_str().unwrap().to_string();
    s.run(&path, &["diff", &id(0), &id(1)])
        .success()
        .stdout_has("a.txt");
    let dump = s.run(
        &path,
        &["dump", "latest", &format!("{}/a.txt", src.display())],
    );
    assert_eq!(dump.success().stdout, "changed");
    copies_in_and_out(&s, &path, tmp.path());

    // Every command that deletes or rewrites is refused, and nothing changed.
    let before = s.stored(&path);
    for (args, command) in DESTRUCTIVE {
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "NEWPW" => newpw.to_str().unwrap(),
                "KEYID" => added.as_str(),
                other => other,
            })
            .collect();
        let r = s.run(&path, &args);
        r.code(14)
            .stderr_has("refuses to delete")
            .stderr_has("append-only")
            .stderr_has(&format!("`repo {command} -r /srv/repos/"))
            .stderr_has("on the server");
        assert_eq!(
            s.stored(&path),
            before,
            "`{}` changed the server",
            args.join(" ")
        );
    }

    // The operator prunes on the server, and clients go on.
    s.operator(&path, &["forget", "--keep-last", "1", "--group-by", "host"])
        .success();
    s.operator(&path, &["prune"]).success();
    s.run(&path, &["check", "--read-data"]).success();
    let snaps = s.run(&path, &["--json", "snapshots"]).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    s.run(&path, &["create", src.to_str().unwrap()]).success();
    s.run(&path, &["check"]).success();
}

/// `copy` out of the append-only repository into a local one, and a new
/// snapshot from there back in.
fn copies_in_and_out(s: &AppendServer, path: &str, tmp: &Path) {
    let local = tmp.join("local");
    let local_repo = |args: &[&str]| {
        let mut c = repo_command();
        c.args(args)
            .arg("-r")
            .arg(&local)
            .env("REPO_PASSWORD", PASSWORD)
            .env("REPO_CA_CERT", &s.ca);
        run(c)
    };
    local_repo(&["init"]).success();
    let pw = write_pw(tmp);
    let to = format!("--to={}", local.display());
    s.run(path, &["copy", &to, "--to-password-file", &pw])
        .success();
    let other = tmp.join("other");
    tree(&other, 9);
    local_repo(&["create", other.to_str().unwrap()]).success();
    let to = format!("--to={}", s.url(path));
    local_repo(&["copy", &to, "--to-password-file", &pw]).success();
    let snaps = s.run(path, &["--json", "snapshots"]).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 3, "{snaps}");
}

fn write_pw(dir: &Path) -> String {
    let f = dir.join("pw");
    std::fs::write(&f, PASSWORD).unwrap();
    f.display().to_string()
}
