//! Moving object bytes over a data connection: uploads (temporary name,
//! rename into place) and downloads of whole objects or ranges.

use std::io::{Read, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, PutPayload};

use super::FtpError;
use super::commands::{
    join, make_dirs, move_into_place, not_found, refuse_existing, refused_with, split_parent,
    stat_file, temp_name,
};
use super::pool::Session;

/// Uploads of at most this many bytes are written before the server's `150` on plain FTP (see
/// `control/data.rs`): far below the socket buffers, so writing never waits for the server.
const EARLY_WRITE: u64 = 32 * 1024;

/// STOR of the whole payload to `remote`.
fn store(s: &mut Session<'_>, remote: &str, payload: &PutPayload) -> Result<(), FtpError> {
    let early = payload.content_length() as u64 <= EARLY_WRITE;
    let stor = format!("STOR {remote}");
    let mut transfer = s.transfer("STOR", remote, &[&stor], early)?;
    let written = payload
        .iter()
        .try_for_each(|chunk| transfer.write_all(chunk))
        .and_then(|()| transfer.flush());
    // Closing the data connection and reading the 226 that confirms the file is stored: the
    // server saw our end of the data connection after the last byte, and one that cannot store
    // everything says so instead (full disk: pyftpdlib 426, ProFTPD 451). So no SIZE follows, a
    // round trip saved per upload. The server's reply comes first also after a failed write:
    // a refused STOR explains it.
    s.finish("STOR", remote, transfer)?;
    written.map_err(|e| s.error("STOR", remote, suppaftp::FtpError::ConnectionError(e)))
}

/// The object upload: temp file, rename into place.
pub(super) fn upload(
    s: &mut Session<'_>,
    remote: &str,
    payload: &PutPayload,
    create: bool,
) -> Result<(), FtpError> {
    if create {
        refuse_existing(s, remote)?;
    }
    let (dir, _) = split_parent(remote);
    let temp = join(dir, &temp_name());
    match store(s, &temp, payload) {
        // 550/553: usually the directory does not exist yet; create it (and the root).
        Err(e) if refused_with(&e, &[550, 553]) => {
            make_dirs(s, dir)?;
            store(s, &temp, payload)?;
        }
        other => other?,
    }
    let result = move_into_place(s, &temp, remote, !create);
    if result.is_err() {
        // Best effort: a leftover temporary file is hidden from listings anyway.
        let _ = s.command("DELE", &temp, |ftp| ftp.rm(&temp));
    }
    result
}

/// Downloads `range` of `remote`; `to_end` says the range ends at the end of the file.
pub(super) fn retrieve(
    s: &mut Session<'_>,
    remote: &str,
    range: Range<u64>,
    to_end: bool,
) -> Result<Bytes, FtpError> {
    let len = range.end - range.start;
    // To the end: one byte more than the stat said is enough to know the
    // file is not what it claimed, and a lying server cannot fill memory.
    let cap = if to_end { len + 1 } else { len };
    let data = download(s, remote, range.start, cap, len)?;
    let actual = data.len() as u64;
    if actual != len {
        return Err(FtpError::SizeMismatch {
            server: Arc::clone(s.server()),
            path: remote.to_string(),
            expected: len,
            actual,
        });
    }
    Ok(Bytes::from(data))
}

/// Downloads at most `cap` bytes of `remote` from `offset`, reserving `expected` bytes.
///
/// Fewer than `cap` bytes means the server sent the whole rest of the file, which its 226 must
/// confirm (a 426 says the transfer broke). At `cap` bytes the download stops early.
fn download(
    s: &mut Session<'_>,
    remote: &str,
    offset: u64,
    cap: u64,
    expected: u64,
) -> Result<Vec<u8>, FtpError> {
    let too_large = |message: &str| FtpError::Range {
        server: Arc::clone(s.server()),
        path: remote.to_string(),
        message: message.into(),
    };
    let offset =
        usize::try_from(offset).map_err(|_| too_large("offset too large for this platform"))?;
    let capacity =
        usize::try_from(expected).map_err(|_| too_large("range too large for this platform"))?;
    // REST directly precedes RETR; a read from the start needs none.
    let rest = format!("REST {offset}");
    let retr = format!("RETR {remote}");
    let commands: &[&str] = if offset > 0 {
        &[&rest, &retr]
    } else {
        &[&retr]
    };
    let mut transfer = match s.transfer("RETR", remote, commands, false) {
        Ok(transfer) => transfer,
        Err(e) if refused_with(&e, &[550]) => return Err(not_found(s, remote)),
        Err(e) => return Err(e),
    };
    let mut data = Vec::with_capacity(capacity);
    if let Err(e) = (&mut transfer).take(cap).read_to_end(&mut data) {
        s.read_failed(&transfer);
        return Err(s.error("RETR", remote, suppaftp::FtpError::ConnectionError(e)));
    }
    if (data.len() as u64) < cap {
        // The server sent everything it had: its 226 (or 426) tells whether that is the file.
        s.finish("RETR", remote, transfer)?;
    } else {
        // Enough read. Closing the data connection early makes the server answer 426 or 451
        // (or 226 if it had already sent everything). Any reply is fine, so it is read after
        // this operation returns, before the connection's next one. No reply at all means it
        // dropped the control connection too (ProFTPD may, over TLS): the connection goes.
        s.abandon(transfer);
    }
    Ok(data)
}

/// Passed in a read's `GetOptions::extensions`: the most bytes the caller
/// will take, and a promise that it needs no metadata but the size.
///
/// Such a read of a whole object or of a bounded range (with no HEAD or
/// precondition) skips the stat other reads make first, a round trip saved
/// per object: it downloads at most `limit + 1` bytes (a range: its
/// length), and the server's 226 after the end of the data proves the
/// object complete. Its metadata then has no modification time (the Unix
/// epoch) and the size seen: exact when the read reached the end of the
/// object, else the end of the range. A whole object over the limit is cut
/// off after `limit + 1` bytes and returned with no data and its size (from
/// a stat, made only then), so a planted huge object costs no more than the
/// caller allows.
#[derive(Debug, Clone, Copy)]
pub struct SizeLimit(pub u64);

pub(super) struct Fetched {
    pub(super) meta: ObjectMeta,
    pub(super) range: Range<u64>,
    pub(super) data: Bytes,
}

/// get_opts on a connection. The inner error is final (preconditions, invalid range); the outer
/// one goes through the pool's retry logic.
pub(super) fn fetch(
    s: &mut Session<'_>,
    location: &Path,
    remote: &str,
    options: &GetOptions,
) -> Result<object_store::Result<Fetched>, FtpError> {
    if let Some(read) = unstated_read(options) {
        return fetch_unstated(s, location, remote, read).map(Ok);
    }
    let stat = stat_file(s, remote)?.ok_or_else(|| not_found(s, remote))?;
    let meta = ObjectMeta {
        location: location.clone(),
        last_modified: stat.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        size: stat.size,
        e_tag: None,
        version: None,
    };
    if let Err(e) = options.check_preconditions(&meta) {
        return Ok(Err(e));
    }
    // Over the caller's limit: nothing is read, the size tells it why.
    if let Some(SizeLimit(limit)) = options.extensions.get::<SizeLimit>()
        && stat.size > *limit
    {
        return Ok(Ok(over_limit(meta)));
    }
    let range = match &options.range {
        None => 0..stat.size,
        Some(r) => match r.as_range(stat.size) {
            Ok(range) => range,
            Err(e) => {
                let err = FtpError::Range {
                    server: Arc::clone(s.server()),
                    path: remote.to_string(),
                    message: e.to_string(),
                };
                return Ok(Err(err.into_store_error(location.as_ref())));
            }
        },
    };
    let data = if options.head || range.is_empty() {
        Bytes::new()
    } else {
        retrieve(s, remote, range.clone(), range.end == stat.size)?
    };
    Ok(Ok(Fetched { meta, range, data }))
}

/// A read that may skip the stat (see [`SizeLimit`]): no HEAD, no preconditions, and a whole
/// object or a non-empty bounded range no longer than the limit.
fn unstated_read(options: &GetOptions) -> Option<Unstated> {
    let SizeLimit(limit) = *options.extensions.get::<SizeLimit>()?;
    let plain = !options.head
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none();
    match &options.range {
        _ if !plain => None,
        None => Some(Unstated::Whole { limit }),
        Some(GetRange::Bounded(r)) if r.start < r.end && r.end - r.start <= limit => {
            Some(Unstated::Range(r.clone()))
        }
        Some(_) => None,
    }
}

/// What a read without a stat downloads.
enum Unstated {
    /// The whole object, if it has at most `limit` bytes.
    Whole { limit: u64 },
    /// These bytes, or those up to the end of a shorter object.
    Range(Range<u64>),
}

/// A read with RETR alone (see [`SizeLimit`]).
fn fetch_unstated(
    s: &mut Session<'_>,
    location: &Path,
    remote: &str,
    read: Unstated,
) -> Result<Fetched, FtpError> {
    let (offset, cap) = match &read {
        Unstated::Whole { limit } => (0, limit.saturating_add(1)),
        Unstated::Range(r) => (r.start, r.end - r.start),
    };
    let expected = if matches!(read, Unstated::Range(_)) {
        cap
    } else {
        0
    };
    let data = download(s, remote, offset, cap, expected)?;
    let got = data.len() as u64;
    let mut meta = ObjectMeta {
        location: location.clone(),
        last_modified: DateTime::<Utc>::UNIX_EPOCH,
        // Exact when the read reached the end, else all that is known.
        size: offset + got,
        e_tag: None,
        version: None,
    };
    if matches!(read, Unstated::Range(_)) || got < cap {
        return Ok(Fetched {
            meta,
            range: offset..offset + got,
            data: Bytes::from(data),
        });
    }
    // Too large: its real size for the caller's message, if the server still says it. The
    // connection may be gone after the early stop, so a failed stat is no error here.
    let stat = stat_file(s, remote).ok().flatten();
    meta.size = stat.map_or(cap, |stat| stat.size.max(cap));
    Ok(over_limit(meta))
}

/// The answer to a read of an object over the caller's limit: its metadata, no data.
fn over_limit(meta: ObjectMeta) -> Fetched {
    Fetched {
        meta,
        range: 0..0,
        data: Bytes::new(),
    }
}
