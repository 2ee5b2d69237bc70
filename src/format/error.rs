//! Why bytes are not a valid encoding.
//!
//! One type for every decoder in `format` (and the chunker's bounds), so a
//! caller can tell a version this build does not read (upgrade `repo`) from
//! bytes that break the format (damage), and fuzz targets can hold every
//! rejection to a typed error rather than a panic. Callers add where the
//! bytes came from (object id, path) when they wrap it in `crate::Error`.

/// A decoder's reason for rejecting its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not parse as the encoding at all (wrong syntax, cut off).
    #[error("not {what}: {detail}")]
    Syntax { what: &'static str, detail: String },

    /// The encoding names a version this build does not read.
    #[error("unknown {what} version {found}")]
    UnknownVersion { what: &'static str, found: u64 },

    /// More bytes than the format allows: rejected before parsing, so a
    /// hostile object cannot make the decoder allocate without bound.
    #[error("{what} is {len} bytes, more than {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },

    /// Parsed, but breaks one of SPEC.md's rules (the text names which).
    #[error("{0}")]
    Invalid(String),
}

impl FormatError {
    /// Shorthand for [`FormatError::Syntax`] from a parser's error.
    pub(crate) fn syntax(what: &'static str, detail: impl std::fmt::Display) -> Self {
        FormatError::Syntax {
            what,
            detail: detail.to_string(),
        }
    }
}
