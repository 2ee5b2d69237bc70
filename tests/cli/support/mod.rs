//! Every helper the integration tests share, once: running the real binary
//! with a clean environment and a bounded wait, a test repository in its own
//! temporary directory, generating and comparing trees, inspecting storage,
//! the test servers' settings and pause points.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod compare;
mod data;
mod env;
mod files;
pub mod pause;
mod run;
mod test_repo;

pub use compare::*;
pub use data::*;
pub use env::*;
pub use files::*;
pub use run::*;
pub use test_repo::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_repo");
/// Password used by every test repository.
pub const PASSWORD: &str = "correct horse battery staple";
/// Upper bound for one command (debug builds are slow, but not this slow).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(600);

/// `init` flags for small chunks (16, 64, 256 KiB), so that a few MiB of
/// test data make many blobs.
pub const SMALL_CHUNKS: [&str; 6] = [
    "--chunk-min",
    "16384",
    "--chunk-avg",
    "65536",
    "--chunk-max",
    "262144",
];

/// A fresh place below the server URL `base` (`base/<tag>-<pid>-<nanos>`),
/// so runs against a long-lived test server never see each other's objects.
pub fn unique_url(base: &str, tag: &str) -> String {
    format!(
        "{}/{tag}-{}-{}",
        base.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// A test server's URL from the environment, or `None` (skip) outside CI;
/// under CI a missing server fails the test instead of skipping it.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: under CI every backend must be tested (run scripts/test)")
        }
        _ => {
            eprintln!("skipping: {var} is not set (scripts/test starts the servers)");
            None
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user and group tests drop to when running as root.
pub const NOBODY: u32 = 65534;

/// setpriv's arguments that drop to nobody (user, group, no other groups).
pub const AS_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// A [`TestRepo::prefix`] that runs every command as nobody through `setpriv`.
pub fn nobody_prefix(setpriv: PathBuf) -> Vec<OsString> {
    let mut p = vec![setpriv.into_os_string()];
    p.extend(AS_NOBODY.iter().map(OsString::from));
    p
}

/// `setpriv` to run as nobody, if we are root and it exists.
pub fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}
