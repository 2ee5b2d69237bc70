//! Which paths a backup leaves out.
//!
//! Patterns follow restic's rules so existing exclude files keep working:
//! a pattern without `/` matches a name at any depth; a pattern with `/`
//! matches the whole absolute path; `*` stops at `/`, `**` crosses it.
//! Excluding a directory excludes everything under it.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// The signature that marks a cache directory (bford.info/cachedir).
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

#[derive(Debug, Clone, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
    pub exclude_caches: bool,
    pub patterns: Vec<String>,
}

impl Excludes {
    /// Builds from `--exclude` patterns and the lines of `--exclude-file` files.
    pub fn new(
        patterns: &[String],
        files: &[std::path::PathBuf],
        exclude_caches: bool,
    ) -> Result<Self> {
        let mut all: Vec<String> = patterns.to_vec();
        for f in files {
            let text =
                std::fs::read_to_string(f).map_err(|e| Error::io("read exclude file", f, e))?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n_names, mut n_paths) = (0, 0);
        for p in &all {
            let trimmed = p.trim_end_matches('/');
            let glob = |s: &str| {
                GlobBuilder::new(s)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::Usage(format!("exclude pattern {p:?} is invalid: {e}")))
            };
            if trimmed.contains('/') {
                let anchored = if trimmed.starts_with('/') {
                    trimmed.to_string()
                } else {
                    format!("**/{trimmed}")
                };
                paths.add(glob(&anchored)?);
                n_paths += 1;
            } else {
                names.add(glob(trimmed)?);
                n_names += 1;
            }
        }
        let build = |b: GlobSetBuilder, n: usize| -> Result<Option<GlobSet>> {
            if n == 0 {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::Usage(format!("exclude patterns are invalid: {e}")))
        };
        Ok(Excludes {
            names: build(names, n_names)?,
            paths: build(paths, n_paths)?,
            exclude_caches,
            patterns: all,
        })
    }

    /// Whether `path` (absolute) is excluded by a pattern.
    pub fn is_excluded(&self, path: &Path) -> bool {
        if let (Some(set), Some(name)) = (&self.names, path.file_name())
            && set.is_match(Path::new(name))
        {
            return true;
        }
        matches!(&self.paths, Some(set) if set.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_path_patterns() {
        let e = Excludes::new(
            &[
                "*.tmp".into(),
                "/home/*/cache".into(),
                "node_modules".into(),
            ],
            &[],
            false,
        )
        .unwrap();
        assert!(e.is_excluded(Path::new("/a/b/x.tmp")));
        assert!(!e.is_excluded(Path::new("/a/b/x.tmpl")));
        assert!(e.is_excluded(Path::new("/home/u/cache")));
        assert!(!e.is_excluded(Path::new("/home/u/v/cache")));
        assert!(e.is_excluded(Path::new("/src/node_modules")));
        assert!(Excludes::new(&["a[".into()], &[], false).is_err());
    }
}
