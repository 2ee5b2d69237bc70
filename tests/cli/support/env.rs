//! The one way tests start a process: with the caller's `REPO_*`, `AWS_*`
//! and `FTP_*` variables removed, so a developer's repository, password,
//! cloud profile or server cannot leak into a test. Only the test servers'
//! settings that `scripts/test` exports on purpose are passed back.

use std::ffi::OsStr;
use std::process::Command;

use super::BIN;

/// Prefixes of the variables the binary (or object_store, or a wrapped
/// helper) reads.
const CLEARED_PREFIXES: [&str; 3] = ["REPO_", "AWS_", "FTP_"];

/// What the S3 test server's env file sets for the binary itself (its URL
/// is `REPO_TEST_S3_URL`, read by the tests, not by the binary).
const S3_SERVER_ENV: [&str; 4] = [
    "REPO_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
];

/// `program` with a clean environment (see the module doc). Also for
/// wrappers (`setpriv`, `unshare`, `strace`, `sh -c`) that run [`BIN`],
/// since they pass their environment on.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let cleared = name
            .to_str()
            .is_some_and(|n| CLEARED_PREFIXES.iter().any(|p| n.starts_with(p)));
        if cleared {
            c.env_remove(&name);
        }
    }
    if std::env::var_os("REPO_TEST_S3_URL").is_some() {
        for var in S3_SERVER_ENV {
            if let Some(v) = std::env::var_os(var) {
                c.env(var, v);
            }
        }
    }
    c
}

/// The binary under test with a clean environment.
pub fn repo_command() -> Command {
    clean_command(BIN)
}

/// Makes `cmd` trust the FTPS test servers' CA (`REPO_TEST_FTP_CA`), if set.
pub fn trust_test_ca(cmd: &mut Command) -> &mut Command {
    if let Some(ca) = std::env::var_os("REPO_TEST_FTP_CA") {
        cmd.env("REPO_CA_CERT", ca);
    }
    cmd
}

/// Makes `cmd` trust the test CA of the server at `url`: the REST servers'
/// (`REPO_TEST_REST_CA`) for `rest:` URLs, else the FTPS servers'.
pub fn trust_test_ca_for<'a>(cmd: &'a mut Command, url: &str) -> &'a mut Command {
    match std::env::var_os("REPO_TEST_REST_CA") {
        Some(ca) if url.starts_with("rest:") => cmd.env("REPO_CA_CERT", ca),
        _ => trust_test_ca(cmd),
    }
}
