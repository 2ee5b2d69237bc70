//! One side of a mirror or sync: a local folder or a remote store.

use std::io::Read;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::format::manifest::{Entries, Entry, EntryKind};
use crate::local::fence::{DirId, dir_id};
use crate::local::filter::Excludes;
use crate::local::tree;
use crate::storage::{Location, Storage};

use super::{local, remote};

pub enum Side {
    Local(PathBuf),
    Remote(Box<Storage>),
}

impl Side {
    /// Opens `spec` (a folder or an s3://, ftp:// or ftps:// URL). A missing
    /// local folder is created only when `create` is set (a destination).
    pub(crate) fn open(location: &Location, create: bool) -> Result<Side> {
        match location {
            Location::Local(path) => {
                if create {
                    std::fs::create_dir_all(path).map_err(|e| Error::io("create", path, e))?;
                } else if !path.is_dir() {
                    return Err(Error::NotFound {
                        what: format!("folder {}", path.display()),
                        hint: "; check the path".into(),
                    });
                }
                Ok(Side::Local(path.clone()))
            }
            _ if !location.holds_plain_files() => Err(Error::Usage(format!(
                "{location} is a REST server, which holds repositories only, not plain folders; \
                 mirror and sync work with folders, s3://, ftp:// and ftps:// (back up to the \
                 REST server with `repo create` instead)"
            ))),
            _ => Ok(Side::Remote(Box::new(Storage::open(location, true)?))),
        }
    }

    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Side::Remote(_))
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Side::Local(p) => p.display().to_string(),
            Side::Remote(s) => s.location().to_string(),
        }
    }

    /// A path on this side for messages.
    pub(crate) fn display(&self, rel: &[u8]) -> String {
        format!(
            "{}/{}",
            self.name().trim_end_matches('/'),
            String::from_utf8_lossy(rel)
        )
    }

    /// Threads for transfers: one per connection on remote sides.
    pub(crate) fn pool(&self) -> Result<rayon::ThreadPool> {
        let n = match self {
            Side::Local(_) => rayon::current_num_threads(),
            Side::Remote(s) => s.connections().max(1),
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| {
                Error::io(
                    "start transfer threads for",
                    self.name(),
                    std::io::Error::other(e),
                )
            })
    }

    /// Identity of a local side's folder (following a symlink given as
    /// the side, as the walk does); `None` for remote sides.
    pub(crate) fn dir_id(&self) -> Option<DirId> {
        match self {
            Side::Local(root) => std::fs::metadata(root).ok().map(|md| dir_id(&md)),
            Side::Remote(_) => None,
        }
    }

    /// Lists the side; on a local side, folders in `fence` are left out and
    /// reported in `fenced` (see [`tree::scan_fenced`]).
    pub(crate) fn scan(
        &self,
        base: Option<&Entries>,
        filter: Option<&Excludes>,
        fence: &[DirId],
        warnings: &mut Vec<(String, String)>,
        fenced: &mut tree::Fenced,
    ) -> Result<Entries> {
        match self {
            Side::Local(root) => tree::scan_fenced(root, filter, fence, warnings, fenced),
            Side::Remote(s) => remote::scan(s, base, filter),
        }
    }

    pub(crate) fn hash(&self, rel: &[u8], e: &Entry) -> Result<[u8; 32]> {
        match self {
            Side::Local(root) => tree::hash(root, rel),
            Side::Remote(s) => remote::hash(s, rel, e.size),
        }
    }

    pub(crate) fn reader<'a>(&'a self, rel: &[u8], e: &Entry) -> Result<Box<dyn Read + 'a>> {
        match self {
            Side::Local(root) => Ok(Box::new(tree::open_file(root, rel)?)),
            Side::Remote(s) => Ok(Box::new(remote::reader(s, rel, e.size)?)),
        }
    }

    pub(crate) fn write(&self, rel: &[u8], reader: &mut dyn Read, e: &Entry) -> Result<Entry> {
        match self {
            Side::Local(root) => local::write_file(root, rel, reader, e),
            Side::Remote(s) => remote::write_file(s, rel, reader, e),
        }
    }

    /// Creates a directory or symlink (local sides only: object stores have neither).
    pub(crate) fn make(&self, rel: &[u8], e: &Entry) -> Result<Entry> {
        match self {
            Side::Local(root) => local::make(root, rel, e),
            Side::Remote(_) => Err(Error::Usage(format!(
                "{}: a {} cannot be stored on S3 or FTP",
                self.display(rel),
                if e.kind == EntryKind::Dir {
                    "directory"
                } else {
                    "symlink"
                }
            ))),
        }
    }

    pub(crate) fn remove(&self, rel: &[u8], bin: Option<(&str, &str)>) -> Result<bool> {
        match self {
            Side::Local(root) => local::remove(root, rel, bin),
            Side::Remote(s) => remote::remove(s, rel, bin),
        }
    }

    pub(crate) fn remove_empty_dir(&self, rel: &[u8]) -> Result<bool> {
        match self {
            Side::Local(root) => local::remove_empty_dir(root, rel),
            Side::Remote(_) => Ok(true),
        }
    }

    /// Refuses a side whose `.repo` belongs to somebody else.
    pub(crate) fn check_control(&self) -> Result<()> {
        match self {
            Side::Local(root) => local::check_control(root),
            Side::Remote(s) => remote::check_control(s),
        }
    }

    /// Creates this side's control folder and marker before a run writes to it.
    pub(crate) fn claim_control(&self) -> Result<()> {
        match self {
            Side::Local(root) => local::claim_control(root),
            Side::Remote(s) => remote::claim_control(s),
        }
    }

    /// Moves an empty folder to `.repo/<bin>/<stamp>/`; `false` if it is not empty.
    pub(crate) fn trash_empty_dir(&self, rel: &[u8], bin: &str, stamp: &str) -> Result<bool> {
        match self {
            Side::Local(root) => local::trash_empty_dir(root, rel, bin, stamp),
            Side::Remote(_) => Ok(true),
        }
    }

    pub(crate) fn read_control(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Side::Local(root) => local::read_control(root, name),
            Side::Remote(s) => remote::read_control(s, name),
        }
    }

    pub(crate) fn write_control(&self, name: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Side::Local(root) => local::write_control(root, name, bytes),
            Side::Remote(s) => remote::write_control(s, name, bytes),
        }
    }
}
