use std::path::Path;

use super::parse::parse;
use super::*;

fn parsed(text: &str) -> repo::Result<Config> {
    parse(Path::new("/etc/repo/repo.toml"), text)
}

fn error(text: &str) -> String {
    parsed(text).unwrap_err().to_string()
}

#[test]
fn sections_keep_file_order_lines_and_types() {
    let c = parsed(
        "# jobs\n[repositories.local]\nlocation = \"/r\"\n\n[jobs.zeta]\nkind = \"backup\"\n\
         paths = [\"/a\", \"/b\"]\nkeep-daily = 7\nprune = true\n\n[jobs.alpha]\nkind = \"check\"\n",
    )
    .unwrap();
    let names: Vec<&str> = c.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"], "file order, not sorted");
    let zeta = c.job("zeta").unwrap();
    assert_eq!(zeta.line, 5);
    assert_eq!(zeta.get("paths").unwrap().line, 7);
    assert_eq!(
        zeta.get("paths").unwrap().value,
        Value::List(vec![Value::Str("/a".into()), Value::Str("/b".into())])
    );
    assert_eq!(zeta.get("keep-daily").unwrap().value, Value::Int(7));
    assert_eq!(zeta.get("prune").unwrap().value, Value::Bool(true));
    assert_eq!(
        c.repository("local").unwrap().get("location").unwrap().line,
        3
    );
}

#[test]
fn mistakes_name_the_file_and_line() {
    let e = error("[jobs.a]\nkind = \"backup\"\npaths = [\"/a\", [\"/b\"]]\n");
    assert!(
        e.starts_with("/etc/repo/repo.toml:3: key `paths` in [jobs.a]"),
        "{e}"
    );
    let e = error("[jobs.a]\nkind = \"backup\"\nwhen = 1979-05-27\n");
    assert!(e.starts_with("/etc/repo/repo.toml:3: key `when`"), "{e}");
    let e = error("\n\nverbose = true\n");
    assert!(
        e.starts_with("/etc/repo/repo.toml:3: unknown key `verbose`"),
        "{e}"
    );
    let e = error("[jobs]\na = 1\n");
    assert!(e.contains(":2: `jobs.a` must be a table"), "{e}");
    let e = error("[jobs.a]\nkind = \"backup\n");
    assert!(
        e.starts_with("/etc/repo/repo.toml:2: not valid TOML"),
        "{e}"
    );
    let e = error("stop-on-failure = \"yes\"\n");
    assert!(
        e.contains(":1: `stop-on-failure` takes true or false"),
        "{e}"
    );
}

#[test]
fn passwords_in_urls_are_secrets() {
    assert!(url_has_password("ftp://me:secret@nas/photos"));
    assert!(url_has_password("ftps://me:s%40cret@nas:21/"));
    assert!(!url_has_password("ftp://me@nas/photos"));
    assert!(!url_has_password("s3://bucket/path"));
    assert!(!url_has_password("/home/me:odd@name"));
    let c = parsed("[jobs.p]\nkind = \"mirror\"\ndestination = \"ftp://me:pw@nas/p\"\n").unwrap();
    let (section, entry) = c.secret().unwrap();
    assert_eq!(
        (section.name.as_str(), entry.key.as_str(), entry.line),
        ("p", "destination", 3)
    );
    let c = parsed("[jobs.p]\nkind = \"mirror\"\ndestination = \"ftp://me@nas/p\"\n").unwrap();
    assert!(c.secret().is_none());
}

#[test]
fn relative_paths_are_taken_from_the_config_files_folder() {
    let c = parsed(
        "metrics-file = \"m/repo.prom\"\n[repositories.r]\nlocation = \"./r1\"\n\
         password-file = \"keys/r1.pass\"\n[jobs.a]\nkind = \"backup\"\nrepository = \"r\"\n\
         paths = [\"docs\", \"/abs\", \"s3://b/p\"]\ntags = [\"a/b\"]\n",
    )
    .unwrap();
    let r = c.repository("r").unwrap();
    assert_eq!(
        r.get("location").unwrap().value,
        Value::Str("/etc/repo/./r1".into())
    );
    assert_eq!(
        r.get("password-file").unwrap().value,
        Value::Str("/etc/repo/keys/r1.pass".into())
    );
    let a = c.job("a").unwrap();
    assert_eq!(
        a.get("repository").unwrap().value,
        Value::Str("r".into()),
        "a name"
    );
    assert_eq!(
        a.get("paths").unwrap().value,
        Value::List(vec![
            Value::Str("/etc/repo/docs".into()),
            Value::Str("/abs".into()),
            Value::Str("s3://b/p".into())
        ])
    );
    assert_eq!(
        a.get("tags").unwrap().value,
        Value::List(vec![Value::Str("a/b".into())]),
        "not a path"
    );
    assert_eq!(
        c.metrics_file.unwrap(),
        std::path::PathBuf::from("/etc/repo/m/repo.prom")
    );
}
