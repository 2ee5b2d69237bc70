//! A test repository in its own temporary directory, and the commands that
//! run the binary against it.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{
    BIN, Background, PASSWORD, Run, clean_command, is_hex_id, repo_command, run, walk_files,
};

pub struct TestRepo {
    pub dir: TempDir,
    /// The repository location (`<dir>/repo`).
    pub repo: PathBuf,
    /// Runs every command through this prefix (e.g. setpriv as nobody).
    pub prefix: Vec<OsString>,
    /// Set for every command (e.g. `TZ=UTC` where local times are compared).
    pub env: Vec<(OsString, OsString)>,
}

impl TestRepo {
    pub fn new() -> Self {
        Self::from_dir(
            tempfile::Builder::new()
                .prefix("repo-cli-")
                .tempdir()
                .expect("tempdir"),
        )
    }

    pub fn from_dir(dir: TempDir) -> Self {
        let repo = dir.path().join("repo");
        TestRepo {
            dir,
            repo,
            prefix: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The temporary directory holding everything of this test.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The binary (through the prefix) with a clean environment and no
    /// password and no repository.
    pub fn bare(&self) -> Command {
        let mut c = match self.prefix.split_first() {
            Some((p, rest)) => {
                let mut c = clean_command(p);
                c.args(rest).arg(BIN);
                c
            }
            None => repo_command(),
        };
        c.envs(self.env.iter().cloned()).current_dir(self.path());
        c
    }

    /// The binary with the repository and no password.
    pub fn cmd_no_pw(&self) -> Command {
        let mut c = self.bare();
        c.arg("-r").arg(&self.repo);
        c
    }

    /// The binary with the repository and the password.
    pub fn cmd(&self) -> Command {
        let mut c = self.cmd_no_pw();
        c.env("REPO_PASSWORD", PASSWORD);
        c
    }

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.args(args);
        run(c)
    }

    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let r = self.run(args);
        r.success();
        r
    }

    #[track_caller]
    pub fn init(&self) {
        self.ok(["init"]);
        assert!(self.repo.join("config").is_file(), "init wrote no config");
    }

    /// `create --json` that must succeed; returns the report.
    #[track_caller]
    pub fn create<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.arg("create").arg("--json").args(args);
        let r = run(c);
        r.success();
        r.json()
    }

    /// `snapshots --json`.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let v = self.ok(["snapshots", "--json"]).json();
        v.as_array().expect("snapshots --json is an array").clone()
    }

    /// `restore SPEC --target TARGET [extra]` that must succeed.
    #[track_caller]
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("restore")
            .arg(spec)
            .arg("--target")
            .arg(target)
            .args(extra);
        let r = run(c);
        r.success();
        r
    }

    /// Starts a command in the background, output to files in the test dir.
    pub fn spawn<I, S>(&self, args: I, name: &str) -> Background
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout = self.join(format!("{name}.stdout"));
        let stderr = self.join(format!("{name}.stderr"));
        let mut c = self.cmd();
        c.args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        let child = c.spawn().expect("spawn background command");
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    // --- storage inspection ---

    /// Every object file below `<repo>/<dir>` named by 64 hex digits
    /// (staging files of interrupted writes are not objects).
    pub fn objects(&self, dir: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.repo.join(dir);
        for f in walk_files(&root) {
            if f.file_name().and_then(OsStr::to_str).is_some_and(is_hex_id) {
                out.push(f);
            }
        }
        out.sort();
        out
    }

    /// Total bytes of every file in the repository.
    pub fn size(&self) -> u64 {
        walk_files(&self.repo)
            .iter()
            .map(|p| fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}
