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
pub(crate) const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Most bytes read from one `--exclude-file`: far more than any real list,
/// and a bound for `/dev/zero` or a runaway generator.
pub(crate) const MAX_EXCLUDE_FILE: u64 = 16 << 20;

/// Globs compiled into one set: one set of many `**` globs overflows the
/// regex engine's size limit ("error building NFA"), so large lists are
/// matched as several sets.
const GLOBS_PER_SET: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Excludes {
    names: Vec<GlobSet>,
    paths: Vec<GlobSet>,
    pub exclude_caches: bool,
    pub patterns: Vec<String>,
    /// Device and inode of repo's own cache directory, left out of every
    /// backup (it holds the repository's metadata, and changes each run).
    pub own_cache: Option<(u64, u64)>,
}

impl Excludes {
    /// Builds from `--exclude` patterns and the lines of `--exclude-file` files.
    pub(crate) fn new(
        patterns: &[String],
        files: &[std::path::PathBuf],
        exclude_caches: bool,
    ) -> Result<Self> {
        Self::build("exclude", patterns, files, exclude_caches)
    }

    /// Builds from `--include` patterns (same rules, named so in messages).
    pub(crate) fn includes(patterns: &[String]) -> Result<Self> {
        Self::build("include", patterns, &[], false)
    }

    /// Builds from `find` patterns (same rules, named so in messages).
    pub(crate) fn find(patterns: &[String]) -> Result<Self> {
        Self::build("find", patterns, &[], false)
    }

    fn build(
        what: &str,
        patterns: &[String],
        files: &[std::path::PathBuf],
        exclude_caches: bool,
    ) -> Result<Self> {
        let mut all: Vec<String> = patterns.to_vec();
        for f in files {
            let text = read_pattern_file(f)?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let (mut names, mut paths) = (Vec::new(), Vec::new());
        for p in &all {
            let trimmed = p.trim_end_matches('/');
            let glob = |s: &str| {
                GlobBuilder::new(s)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::Usage(format!("{what} pattern {p:?} is invalid: {e}")))
            };
            if trimmed.contains('/') {
                let anchored = if trimmed.starts_with('/') {
                    trimmed.to_string()
                } else {
                    format!("**/{trimmed}")
                };
                paths.push(glob(&anchored)?);
            } else {
                names.push(glob(trimmed)?);
            }
        }
        let sets = |globs: Vec<globset::Glob>| -> Result<Vec<GlobSet>> {
            let mut out = Vec::new();
            for chunk in globs.chunks(GLOBS_PER_SET) {
                compile(chunk, &mut out).map_err(|e| {
                    Error::Usage(format!(
                        "{what} patterns cannot be compiled ({e}); use fewer or simpler patterns"
                    ))
                })?;
            }
            Ok(out)
        };
        Ok(Excludes {
            names: sets(names)?,
            paths: sets(paths)?,
            exclude_caches,
            patterns: all,
            own_cache: None,
        })
    }

    /// Whether `path` (absolute) is excluded by a pattern.
    pub(crate) fn is_excluded(&self, path: &Path) -> bool {
        if let Some(name) = path.file_name()
            && self.names.iter().any(|s| s.is_match(Path::new(name)))
        {
            return true;
        }
        self.paths.iter().any(|s| s.is_match(path))
    }

    /// Whether `path` or a directory above it, strictly below `base`, is
    /// excluded: an excluded directory covers everything below it, also
    /// where a command meets the contents without walking the directory
    /// (the target of `restore --delete`, a flat object listing).
    pub(crate) fn covers(&self, path: &Path, base: &Path) -> bool {
        path.ancestors()
            .take_while(|a| *a != base && a.starts_with(base))
            .any(|a| self.is_excluded(a))
    }
}

/// Compiles `globs` into sets, halving a set the regex engine finds too big.
fn compile(globs: &[globset::Glob], out: &mut Vec<GlobSet>) -> Result<(), globset::Error> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(g.clone());
    }
    match b.build() {
        Ok(set) => {
            out.push(set);
            Ok(())
        }
        Err(_) if globs.len() > 1 => {
            let (a, b) = globs.split_at(globs.len() / 2);
            compile(a, out)?;
            compile(b, out)
        }
        Err(e) => Err(e),
    }
}

/// Reads a pattern file of at most [`MAX_EXCLUDE_FILE`] bytes.
fn read_pattern_file(f: &Path) -> Result<String> {
    let file = std::fs::File::open(f).map_err(|e| Error::io("open exclude file", f, e))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_EXCLUDE_FILE + 1),
        &mut bytes,
    )
    .map_err(|e| Error::io("read exclude file", f, e))?;
    if bytes.len() as u64 > MAX_EXCLUDE_FILE {
        return Err(Error::Usage(format!(
            "exclude file {} is larger than {} MiB; name a file of patterns, one a line",
            f.display(),
            MAX_EXCLUDE_FILE >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::Usage(format!(
            "exclude file {} is not UTF-8 text; name a file of patterns, one a line",
            f.display()
        ))
    })
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

    #[test]
    fn many_double_star_patterns_compile() {
        let many: Vec<String> = (0..12_000).map(|i| format!("**/x{i}/**/y")).collect();
        let e = Excludes::new(&many, &[], false).unwrap();
        assert!(e.is_excluded(Path::new("/a/x11999/b/y")));
        assert!(!e.is_excluded(Path::new("/a/x12000/b/y")));
    }

    #[test]
    fn messages_name_the_kind_of_pattern() {
        let e = Excludes::find(&["a[".into()]).unwrap_err().to_string();
        assert!(e.starts_with("find pattern"), "{e}");
        let e = Excludes::includes(&["a[".into()]).unwrap_err().to_string();
        assert!(e.starts_with("include pattern"), "{e}");
    }

    #[test]
    fn an_excluded_directory_covers_its_contents() {
        let e = Excludes::new(&["b".into()], &[], false).unwrap();
        let base = Path::new("/s");
        assert!(e.covers(Path::new("/s/b/keep.dat"), base));
        assert!(e.covers(Path::new("/s/x/b/deep/f"), base));
        assert!(!e.covers(Path::new("/s/a.txt"), base));
        // Only what lies below the base counts: restoring /b itself with
        // `--exclude b` still restores its contents.
        assert!(!e.covers(Path::new("/b/f"), Path::new("/b")));
    }
}
