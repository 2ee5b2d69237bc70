//! README's "Code map", checked on the source: each folder imports only
//! what the map allows, engines never import each other, and commands never
//! import each other. A change that breaks the map fails here with the file,
//! the line and the rule, instead of eroding the layers unnoticed.

use std::path::{Path, PathBuf};

/// Each top-level library module and the modules it may import (besides
/// itself). This is the table README's "Code map" prints.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("id", &[]),
    ("error", &[]),
    ("testhooks", &[]),
    ("crypto", &["id", "error"]),
    ("codec", &["crypto", "id", "error"]),
    ("format", &["codec", "crypto", "id", "error"]),
    ("storage", &["id", "error", "testhooks"]),
    ("local", &["format", "id", "error", "testhooks"]),
    (
        "repository",
        &[
            "storage",
            "format",
            "codec",
            "crypto",
            "id",
            "error",
            "testhooks",
        ],
    ),
    (
        "engine",
        &[
            "repository",
            "local",
            "storage",
            "format",
            "codec",
            "crypto",
            "id",
            "error",
            "testhooks",
        ],
    ),
    (
        "commands",
        &[
            "engine",
            "repository",
            "local",
            "storage",
            "format",
            "codec",
            "crypto",
            "id",
            "error",
            "testhooks",
        ],
    ),
];

/// Storage items a layer above the repository may name: the report types and
/// the location a command parses. Only `engine/plain` moves bytes itself (a
/// plain copy has no repository to go through).
const STORAGE_ABOVE_REPOSITORY: &[&str] = &["StatsReport", "Location", "BackendOptions"];

/// What every engine, or every command, may share; the rest of `engine/` is
/// one engine per entry and the rest of `commands/` one command per file.
const SHARED_IN_ENGINE: &[&str] = &["progress", "mod"];
const SHARED_IN_COMMANDS: &[&str] = &["Context", "common", "filter", "entry", "mod"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("read src").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The `crate::a::b` paths a line names, as (a, b).
fn crate_paths(line: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let top = ident(rest);
        let second = rest[top.len()..]
            .strip_prefix("::")
            .map(ident)
            .unwrap_or_default();
        // `crate::Error` and `crate::Result` are the error module's re-exports.
        let top = match top.as_str() {
            "Error" | "Result" => "error".to_string(),
            _ => top,
        };
        found.push((top, second));
    }
    found
}

/// Rule violations on one line of `file` (top-level module `top`, second
/// path component `own`: the engine or command the file belongs to).
fn check_line(top: &str, own: &str, line: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let allowed = MAY_IMPORT
        .iter()
        .find(|(m, _)| *m == top)
        .map(|(_, a)| *a)
        .unwrap_or_default();
    let mut paths = crate_paths(line);
    if top == "commands" && line.trim_start().starts_with("use super::") {
        let name = ident(&line.trim_start()["use super::".len()..]);
        paths.push(("commands".into(), name));
    }
    for (m, item) in paths {
        if m != top && !allowed.contains(&m.as_str()) {
            broken.push(format!("{top} may not import {m}"));
        }
        let above_repository = top == "engine" && own != "plain" || top == "commands";
        if m == "storage" && above_repository && !STORAGE_ABOVE_REPOSITORY.contains(&item.as_str())
        {
            broken.push(format!(
                "storage::{item} above the repository: go through the repository"
            ));
        }
        let shared = match m.as_str() {
            "engine" => SHARED_IN_ENGINE,
            "commands" => SHARED_IN_COMMANDS,
            _ => continue,
        };
        if m == top && item != own && !shared.contains(&item.as_str()) {
            broken.push(format!(
                "{top}/{own} uses {m}::{item}: share it through a lower layer"
            ));
        }
    }
    broken
}

#[test]
fn imports_follow_the_code_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("below src");
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let top = parts[0].as_str();
        // The binary (main.rs, cli/) uses the library from outside; tests may
        // build fixtures from any layer.
        if !MAY_IMPORT.iter().any(|(m, _)| *m == top) || parts.iter().any(|p| p == "tests") {
            continue;
        }
        let own = parts.get(1).map_or("mod", String::as_str);
        let text = std::fs::read_to_string(file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (no, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for why in check_line(top, own, line) {
                broken.push(format!("src/{}:{}: {why}", rel.display(), no + 1));
            }
        }
        checked += 1;
    }
    assert!(
        checked > 50,
        "only {checked} source files found below {}",
        src.display()
    );
    assert!(
        broken.is_empty(),
        "the code map in README is broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_code_map_check_catches_what_it_should() {
    assert!(!check_line("format", "pack", "use crate::storage::Storage;").is_empty());
    assert!(!check_line("engine", "restore", "use crate::engine::plain::MANIFEST;").is_empty());
    assert!(
        check_line(
            "engine",
            "restore",
            "use crate::engine::progress::Progress;"
        )
        .is_empty()
    );
    assert!(
        !check_line(
            "engine",
            "check",
            "let s = repo.x(crate::storage::Storage::open);"
        )
        .is_empty()
    );
    assert!(check_line("engine", "plain", "use crate::storage::Storage;").is_empty());
    assert!(!check_line("commands", "forget", "use super::prune;").is_empty());
    assert!(check_line("commands", "forget", "use super::filter::SnapshotFilter;").is_empty());
    assert!(!check_line("repository", "loader", "use crate::engine::check;").is_empty());
}
