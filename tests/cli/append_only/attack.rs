//! A compromised client holds the repository key and the server password:
//! with raw HTTP requests (curl, as an attacker would) it tries to delete,
//! overwrite and truncate every object, to escape its private area, and
//! to wipe the repository. The server refuses all of it; only its own lock
//! may be removed. The stored bytes are compared before and after.

use std::process::Command;

use super::{AppendServer, tree};

/// The HTTP status of one request (`--path-as-is`: `..` is sent unchanged).
pub(super) fn status(
    s: &AppendServer,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--path-as-is",
    ])
    .args(["--cacert", &s.ca, "-u", &format!("{user}:pw-{user}")])
    .args(["-X", method]);
    if let Some(b) = body {
        std::fs::write(&file, b).unwrap();
        c.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    c.arg(format!("{}/{path}", s.base));
    let out = c.output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The REST name of a stored file: `data/xx/ID` is `data/ID` there.
pub(super) fn rest_name(rel: &str) -> String {
    match rel.split('/').collect::<Vec<_>>()[..] {
        ["data", _, id] => format!("data/{id}"),
        _ => rel.to_string(),
    }
}

#[test]
fn a_compromised_client_can_delete_nothing_but_its_own_locks() {
    let Some(s) = AppendServer::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = s.new_path("host01", "attack");
    let victim = s.new_path("host02", "victim");
    tree(tmp.path(), 3);
    for p in [&path, &victim] {
        s.run(p, &["init"]).success();
        s.run(p, &["create", tmp.path().to_str().unwrap()])
            .success();
    }
    let before = s.stored(&path);
    let before_victim = s.stored(&victim);
    let objects: Vec<String> = before.keys().map(|k| rest_name(k)).collect();
    for kind in ["config", "keys/", "data/", "index/", "snapshots/"] {
        assert!(
            objects.iter().any(|o| o.starts_with(kind)),
            "no {kind} in {objects:?}"
        );
    }
    let user = "host01";
    let mut refused = 0;
    for o in &objects {
        let target = format!("{path}/{o}");
        for (method, body) in [
            ("DELETE", None),
            ("POST", Some(&b"overwritten by an attacker"[..])),
            ("POST", Some(&b""[..])),
        ] {
            let code = status(&s, user, method, &target, body);
            assert!(code == 403, "{method} {target} answered {code}, not 403");
            refused += 1;
        }
    }
    // Paths that try to reach an object another way.
    let snapshot = objects
        .iter()
        .find(|o| o.starts_with("snapshots/"))
        .unwrap();
    let pack = objects.iter().find(|o| o.starts_with("data/")).unwrap();
    let id = pack.trim_start_matches("data/");
    for sneaky in [
        format!("{path}/locks/../config"),
        format!("{path}/locks/../{snapshot}"),
        format!("{path}/locks/%2e%2e/config"),
        format!("{path}/data/{}/{id}", &id[..2]),
        format!("{path}/"),
        format!("{path}/snapshots/"),
        format!("{path}/locks/../../{path}/config"),
    ] {
        // Refused, or redirected to the clean path (which is refused).
        let code = status(&s, user, "DELETE", &sneaky, None);
        assert!(
            !(200..300).contains(&code),
            "DELETE {sneaky} answered {code}"
        );
    }
    // Another host's repository is out of reach, even for reading.
    for (method, target) in [
        ("GET", format!("{victim}/config")),
        ("DELETE", format!("{victim}/config")),
        ("POST", format!("{victim}/snapshots/{}", "0".repeat(64))),
    ] {
        let code = status(&s, user, method, &target, Some(b"x"));
        assert!(
            code == 401 || code == 403,
            "{method} {target} answered {code}"
        );
    }
    // Creating the repository again does not reset it.
    let code = status(&s, user, "POST", &format!("{path}/?create=true"), Some(b""));
    assert!(code < 500, "create again answered {code}");
    assert_eq!(
        s.stored(&path),
        before,
        "an attack changed the stored objects"
    );
    assert_eq!(
        s.stored(&victim),
        before_victim,
        "the other host's repository changed"
    );
    assert!(refused >= 15);

    // Its own lock, and only locks, it may remove.
    let lock = format!("{path}/locks/{}", "ab".repeat(32));
    assert_eq!(status(&s, user, "POST", &lock, Some(b"lock")), 200);
    assert!(s.folder(&path).join("locks").join("ab".repeat(32)).exists());
    assert_eq!(status(&s, user, "DELETE", &lock, None), 200);
    s.run(&path, &["check", "--read-data"]).success();
}
