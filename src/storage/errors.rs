//! How storage failures become [`crate::Error`]s that say what to do next.

use crate::error::Error;

/// Maps an `object_store` failure of `op` on `key` in `location`.
pub(super) fn from_store(
    location: &dyn std::fmt::Display,
    op: &'static str,
    key: &str,
    e: object_store::Error,
) -> Error {
    match e {
        object_store::Error::NotFound { .. } => not_found(location, key),
        other => {
            let mut message = other.to_string();
            if is_out_of_space(&other) {
                message.push_str(
                    ". The storage is full: free space there (or raise the quota) and run the \
                     command again. Objects are written atomically, so what was stored before \
                     is intact; `repo check` reports leftovers of the interrupted run as notices",
                );
            } else if message.contains("169.254.169.254") {
                // No credentials anywhere, so the AWS client fell back to the
                // cloud instance metadata service, which is not there.
                message.push_str(
                    ". No S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (or ~/.aws/credentials), and --s3-endpoint / REPO_S3_ENDPOINT for a \
                     self-hosted server",
                );
            }
            Error::Storage {
                op,
                key: format!("{location}/{key}"),
                message,
            }
        }
    }
}

/// A missing object.
pub(super) fn not_found(location: &dyn std::fmt::Display, key: &str) -> Error {
    Error::NotFound {
        what: format!("object {key} in {location}"),
        hint: String::new(),
    }
}

/// An object larger than any of its kind may be: refused unread.
pub(super) fn too_large(key: &str, size: u64, limit: u64) -> Error {
    Error::corrupt(
        key,
        format!(
            "it has {size} bytes, more than the {limit} bytes an object of its kind may have, \
             so it was not read (planted or damaged); move it out of the repository"
        ),
    )
}

/// An object longer than its reader knows it to be (a pack: the size its
/// index gives it): refused, read no further than one byte past `size`.
pub(super) fn longer_than_known(key: &str, size: u64, known: u64) -> Error {
    Error::corrupt(
        key,
        format!(
            "the storage answered {size} bytes or more for it, more than the {known} bytes \
             it has (its size in the index or listing), so it was not read: the object or \
             the server is damaged"
        ),
    )
}

/// An object shorter than a reader knows it to be: damage, not a storage failure.
pub(super) fn truncated(key: &str, size: u64, offset: u64, len: u64) -> Error {
    Error::corrupt(
        key,
        format!(
            "it has {size} bytes, but {len} bytes at offset {offset} were expected (truncated?)"
        ),
    )
}

/// Whether an error (or any error it wraps) is "no space left on device" or
/// "disk quota exceeded".
fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        {
            return true;
        }
        cur = err.source();
    }
    // Some layers keep only the message of the I/O error.
    let text = e.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}
