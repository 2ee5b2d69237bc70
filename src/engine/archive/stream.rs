//! Backing up a stream, standard input or a command's output, as one
//! regular file `NAME` at the root of the snapshot, whose paths are then
//! `["/NAME"]`: restore puts it at `TARGET/NAME`, `dump SNAP /NAME` writes
//! it out, and the next run of the same job (same host, same name) finds
//! this snapshot as its parent and `forget` groups them together.
//!
//! The stream is chunked, deduplicated, compressed and encrypted like any
//! file, with memory bounded by the chunker's buffer however long it is.
//! A command that fails leaves no snapshot: its output may be cut short.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::command::Running;
use super::file::{ReadFailure, read_chunks};
use super::{
    BackupOptions, BackupReport, Tally, Walk, find_parent, saving, summarize, write_snapshot,
};
use crate::codec::chunker::StreamChunker;
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::format::tree::{ChunkRef, Node, NodeKind, Timestamp, Tree};
use crate::local::meta;
use crate::repository::{Repository, host_and_user};

/// Where the stream comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSource {
    /// This process's standard input.
    Stdin,
    /// The standard output of a command line run by `sh -c`.
    Command(String),
}

/// A stream to back up and the file name it gets in the snapshot.
#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    pub source: StreamSource,
}

impl Stream {
    /// Refuses what cannot work: a command line that is empty, and a file
    /// name that is not exactly one path component (it must name a single
    /// entry of the snapshot's root, which restore creates below its
    /// target and nowhere else).
    pub fn check(&self) -> Result<()> {
        if matches!(&self.source, StreamSource::Command(c) if c.trim().is_empty()) {
            return Err(Error::Usage(
                "--stdin-from-command is empty; give the command whose output to back up".into(),
            ));
        }
        let name = &self.name;
        let why = if name.is_empty() {
            "is empty"
        } else if name == "." || name == ".." {
            "names a directory, not a file"
        } else if name.contains('/') {
            "contains `/`"
        } else if name.contains('\0') {
            "contains a NUL byte"
        } else {
            return Ok(());
        };
        Err(Error::Usage(format!(
            "--stdin-filename {name:?} {why}; give one file name such as `app.sql`"
        )))
    }
}

/// Backs up `stream` as the one file of a new snapshot.
pub fn backup_stream(
    repo: &Repository,
    opts: &BackupOptions,
    stream: &Stream,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    stream.check()?;
    let paths = vec![format!("/{}", stream.name)];
    let (default_host, user) = host_and_user();
    let host = opts.host.clone().unwrap_or(default_host);
    let (parent, index) =
        repo.with_index(|| find_parent(repo, opts.parent.as_deref(), &host, &paths))?;
    let parent = parent.map(|(id, s)| (id, s.tree));
    let tally = Tally::new();
    let (tree, save) = saving(repo, &index, opts, progress, &tally, |walk| {
        let node = archive(walk, stream, parent.map(|(_, t)| t))?;
        walk.save_tree(Path::new("/"), vec![node])
    })?;
    let summary = summarize(&tally, &save, 0, started);
    let snapshot = write_snapshot(repo, opts, host, user, paths, tree, parent, &summary)?;
    Ok(BackupReport {
        snapshot,
        parent: parent.map(|(id, _)| id),
        summary,
        errors: Vec::new(),
        warnings: Vec::new(),
        storage: repo.storage_stats(),
    })
}

/// Reads the stream to its end, saving its chunks, and returns its node.
/// A command is waited for before the node exists: one that failed leaves
/// only unreferenced data behind.
fn archive(w: &Walk, stream: &Stream, parent_tree: Option<crate::id::BlobId>) -> Result<Node> {
    let (content, read) = match &stream.source {
        StreamSource::Stdin => read_all(w, std::io::stdin().lock(), "standard input")?,
        StreamSource::Command(cmd) => {
            let mut running = Running::start(cmd)?;
            // On an error the command is killed as `running` is dropped.
            let read = read_all(w, &mut running, "the command's output")?;
            let finished = running.finish();
            // Ctrl-C reaches the command too: that is an interruption.
            w.check_cancel()?;
            finished?;
            read
        }
    };
    let counts = w.count();
    counts.total_bytes.fetch_add(read, Ordering::Relaxed);
    counts.bytes_read.fetch_add(read, Ordering::Relaxed);
    let previous = Tree::new(w.parent_nodes(parent_tree));
    let counter = match previous.find(stream.name.as_bytes()) {
        Some(p) if p.kind == NodeKind::File && p.content == content => &counts.files_unchanged,
        Some(p) if p.kind == NodeKind::File => &counts.files_changed,
        _ => &counts.files_new,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    w.progress.add_done(1, 0);
    Ok(stream_node(&stream.name, read, content))
}

/// Chunks and saves everything `from` yields.
fn read_all(w: &Walk, from: impl Read, what: &'static str) -> Result<(Vec<ChunkRef>, u64)> {
    let mut chunks = StreamChunker::with_buffer(w.repo.chunker(), from, Vec::new(), u64::MAX);
    match read_chunks(w, &mut chunks) {
        Ok(done) => Ok(done),
        Err(ReadFailure::Fatal(e)) => Err(e),
        Err(ReadFailure::Io(_, e)) => Err(Error::io("cannot read", what, e)),
    }
}

/// The node of a file read from a stream: a regular file of the running
/// user, mode 0644, modified now (a stream has no metadata of its own).
fn stream_node(name: &str, size: u64, content: Vec<ChunkRef>) -> Node {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = Timestamp {
        secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        nanos: now.subsec_nanos(),
    };
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o644;
    node.uid = uid;
    node.gid = gid;
    node.user = meta::with_user(uid, str::to_owned);
    node.group = meta::with_group(gid, str::to_owned);
    node.mtime = now;
    node.ctime = now;
    node.links = 1;
    node.size = size;
    node.content = content;
    node
}

#[cfg(test)]
mod tests {
    use super::{Stream, StreamSource};

    fn check(name: &str, source: StreamSource) -> bool {
        Stream {
            name: name.into(),
            source,
        }
        .check()
        .is_ok()
    }

    #[test]
    fn names_are_one_component_and_commands_not_empty() {
        for bad in ["", ".", "..", "a/b", "/x", "x/", "a\0b"] {
            assert!(!check(bad, StreamSource::Stdin), "{bad:?} accepted");
        }
        for good in ["stdin", "app.sql", "..x", ".hidden", "with space"] {
            assert!(check(good, StreamSource::Stdin), "{good:?} refused");
        }
        assert!(!check("x", StreamSource::Command(" ".into())));
        assert!(check("x", StreamSource::Command("true".into())));
    }
}
