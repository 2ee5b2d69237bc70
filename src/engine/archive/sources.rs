//! Arranging the source paths of one backup into a single root tree.
//!
//! Like restic, each absolute source path is kept under its full path
//! (`/home/u/docs` is stored as home -> u -> docs), so a restore recreates
//! it below the target and several sources share their common parents.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A node of the virtual tree spanning all sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VNode {
    /// A source path: archived with everything below it.
    Source(PathBuf),
    /// A parent directory of some sources: only those children are archived.
    Parent {
        path: PathBuf,
        children: BTreeMap<OsString, VNode>,
    },
}

/// Makes `p` absolute and removes `.` and `..` without following symlinks.
pub(crate) fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io("resolve source path", p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Builds the virtual root from normalized absolute source paths.
/// A source inside another source is covered by it and dropped.
pub(crate) fn build(sources: &[PathBuf]) -> VNode {
    let mut root = VNode::Parent {
        path: PathBuf::from("/"),
        children: BTreeMap::new(),
    };
    let mut sorted = sources.to_vec();
    sorted.sort();
    sorted.dedup();
    for src in sorted {
        if src == Path::new("/") {
            return VNode::Source(src);
        }
        insert(&mut root, &src);
    }
    root
}

fn insert(root: &mut VNode, src: &Path) {
    let parts: Vec<OsString> = src.iter().skip(1).map(|s| s.to_os_string()).collect();
    let mut node = root;
    let mut path = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let VNode::Parent { children, .. } = node else {
            return; // an enclosing source already covers this one
        };
        let last = i + 1 == parts.len();
        let child = children.entry(part.clone()).or_insert_with(|| {
            if last {
                VNode::Source(path.clone())
            } else {
                VNode::Parent {
                    path: path.clone(),
                    children: BTreeMap::new(),
                }
            }
        });
        if last {
            *child = VNode::Source(path.clone());
            return;
        }
        node = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_shared_parents() {
        let v = build(&["/a/b/c".into(), "/a/b".into(), "/a/d".into()]);
        let VNode::Parent { children, .. } = v else {
            panic!()
        };
        let VNode::Parent { children: a, .. } = &children[&OsString::from("a")] else {
            panic!()
        };
        assert_eq!(a[&OsString::from("b")], VNode::Source("/a/b".into()));
        assert_eq!(a[&OsString::from("d")], VNode::Source("/a/d".into()));
        assert_eq!(build(&["/".into(), "/x".into()]), VNode::Source("/".into()));
        assert_eq!(
            normalize(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
    }
}
