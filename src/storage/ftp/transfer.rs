//! Moving object bytes over a data connection: uploads (temporary name,
//! size check, rename into place) and downloads of whole objects or ranges.

use std::io::{Read, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{GetOptions, ObjectMeta, PutPayload};

use super::FtpError;
use super::commands::{
    join, make_dirs, move_into_place, not_found, refuse_existing, refused_with, split_parent,
    stat_file, temp_name,
};
use super::pool::Session;

/// STOR of the whole payload to `remote`.
fn store(s: &mut Session<'_>, remote: &str, payload: &PutPayload) -> Result<(), FtpError> {
    let mut transfer = s.data_command("STOR", remote, |ftp| ftp.put_with_stream(remote))?;
    for chunk in payload {
        if let Err(e) = transfer.write_all(chunk) {
            return Err(s.error("STOR", remote, suppaftp::FtpError::ConnectionError(e)));
        }
    }
    if let Err(e) = transfer.flush() {
        return Err(s.error("STOR", remote, suppaftp::FtpError::ConnectionError(e)));
    }
    // finish() closes the data connection and reads the 226 that confirms the file is stored.
    transfer.finish().map_err(|e| s.error("STOR", remote, e))
}

/// The object upload: temp file, optional size check, rename into place.
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
    let result = verify_size(s, &temp, payload.content_length() as u64)
        .and_then(|()| move_into_place(s, &temp, remote, !create));
    if result.is_err() {
        // Best effort: a leftover temporary file is hidden from listings anyway.
        let _ = s.command("DELE", &temp, |ftp| ftp.rm(&temp));
    }
    result
}

/// Checks the stored size when the server supports SIZE, catching truncated uploads.
fn verify_size(s: &mut Session<'_>, remote: &str, expected: u64) -> Result<(), FtpError> {
    if !s.features().size {
        return Ok(());
    }
    let actual = s.command("SIZE", remote, |ftp| ftp.size(remote))? as u64;
    if actual == expected {
        Ok(())
    } else {
        Err(FtpError::SizeMismatch {
            server: Arc::clone(s.server()),
            path: remote.to_string(),
            expected,
            actual,
        })
    }
}

/// Downloads `range` of `remote`; `to_end` says the range ends at the end of the file.
pub(super) fn retrieve(
    s: &mut Session<'_>,
    remote: &str,
    range: Range<u64>,
    to_end: bool,
) -> Result<Bytes, FtpError> {
    let len = range.end - range.start;
    let offset = usize::try_from(range.start).map_err(|_| FtpError::Range {
        server: Arc::clone(s.server()),
        path: remote.to_string(),
        message: "offset too large for this platform".into(),
    })?;
    let capacity = usize::try_from(len).map_err(|_| FtpError::Range {
        server: Arc::clone(s.server()),
        path: remote.to_string(),
        message: "range too large for this platform".into(),
    })?;
    let mut transfer = match s.data_command("RETR", remote, |ftp| {
        // REST must directly precede RETR; suppaftp sends it then, and again on an EPSV retry.
        // A read from the start needs none (a round trip saved per object).
        if offset > 0 {
            ftp.resume_transfer(offset)?;
        }
        ftp.retr_as_stream(remote)
    }) {
        Ok(transfer) => transfer,
        Err(e) if refused_with(&e, &[550]) => return Err(not_found(s, remote)),
        Err(e) => return Err(e),
    };
    let mut data = Vec::with_capacity(capacity);
    // To the end: one byte more than the stat said is enough to know the
    // file is not what it claimed, and a lying server cannot fill memory.
    let read = if to_end {
        (&mut transfer).take(len + 1).read_to_end(&mut data)
    } else {
        (&mut transfer).take(len).read_to_end(&mut data)
    };
    if let Err(e) = read {
        return Err(s.error("RETR", remote, suppaftp::FtpError::ConnectionError(e)));
    }
    let actual = data.len() as u64;
    if actual < len || (to_end && actual == len) {
        // The server sent everything it had: its 226 (or 426) tells whether that is the file.
        transfer.finish().map_err(|e| s.error("RETR", remote, e))?;
    } else {
        // Enough read. Closing the data connection early makes the server answer 426 or 451
        // (or 226 if it had already sent everything). Any reply is fine. No reply at all means
        // it dropped the control connection too (ProFTPD may, over TLS): keep the data, drop
        // the connection.
        match transfer.finish() {
            Ok(()) | Err(suppaftp::FtpError::UnexpectedResponse(_)) => {}
            Err(_) => s.discard_connection(),
        }
    }
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

/// Passed in a read's `GetOptions::extensions`: the most bytes the caller
/// will take. A larger object is not read at all (its size, from the stat
/// every read makes first, is returned with no data), so a planted huge
/// object costs no transfer and no extra round trip.
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
        return Ok(Ok(Fetched {
            meta,
            range: 0..0,
            data: Bytes::new(),
        }));
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
