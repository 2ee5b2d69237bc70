//! Where a repository lives, parsed from `-r/--repo`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local file system.
    Local(PathBuf),
}

impl Location {
    /// Parses a plain path or a `file://` URL.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::Usage(
                "no repository given: pass -r/--repo or set REPO_REPOSITORY".into(),
            ));
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::Usage(format!(
                    "repository URL {s:?}: a file:// URL needs an absolute path, as in file:///backups/repo"
                )));
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::Usage(format!(
                "repository URL {s:?}: scheme {scheme:?} is not supported; use a path or file:///path"
            )));
        }
        let p = PathBuf::from(s);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("read the current directory for", s, e))?
                .join(p)
        };
        Ok(Location::Local(abs))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_file_urls() {
        assert_eq!(
            Location::parse("/a/b").unwrap(),
            Location::Local("/a/b".into())
        );
        assert_eq!(
            Location::parse("file:///a").unwrap(),
            Location::Local("/a".into())
        );
        assert!(Location::parse("file://a").is_err());
        assert!(
            Location::parse("gopher://x")
                .unwrap_err()
                .to_string()
                .contains("gopher")
        );
        assert!(Location::parse("").is_err());
    }
}
