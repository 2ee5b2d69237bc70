//! Parsing of directory listings and `MLST` facts.
//!
//! Kept apart from the protocol code because it is pure string handling: every line comes from
//! the server, so nothing here may panic on malformed input; a line that cannot be understood is
//! skipped rather than failing a whole listing.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use suppaftp::list::ListParser;

/// Name prefix of the temporary files `put` uploads before renaming them into place.
///
/// Listings hide these, so readers never see a half-written object, and stale ones left behind
/// by a crashed writer stay invisible too.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// What a directory entry is; only files and directories matter to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    /// Symlinks, `cdir`/`pdir` entries and anything else the store neither reads nor walks.
    Other,
}

/// One entry of a listing, or the answer to `MLST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// Whether a listed name is hidden from callers: `.`/`..` and in-flight temporary uploads.
pub(super) fn is_hidden(name: &str) -> bool {
    name.is_empty() || name == "." || name == ".." || name.starts_with(TEMP_PREFIX)
}

/// Parses one `MLSD` line or the entry line of an `MLST` reply (RFC 3659 §7).
///
/// The syntax is `fact=value;fact=value; name`. Fact values never contain a space, so the first
/// space ends the facts and everything after it is the name, which may contain spaces or `;`.
/// For `MLST` the name is the full path; callers only use the facts then.
pub(super) fn parse_mlsx(line: &str) -> Option<Entry> {
    let line = line.strip_prefix(' ').unwrap_or(line);
    let line = line.trim_end_matches(['\r', '\n']);
    let (facts, name) = line.split_once(' ')?;
    let mut kind = Kind::Other;
    let mut size = 0;
    let mut modified = None;
    for fact in facts.split(';') {
        let Some((key, value)) = fact.split_once('=') else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                kind = match value.to_ascii_lowercase().as_str() {
                    "file" => Kind::File,
                    "dir" => Kind::Dir,
                    _ => Kind::Other,
                }
            }
            "size" => size = value.parse().ok()?,
            "modify" => modified = parse_mlsx_time(value),
            _ => {}
        }
    }
    Some(Entry {
        name: name.to_string(),
        kind,
        size,
        modified,
    })
}

/// Parses an RFC 3659 time-val, `YYYYMMDDHHMMSS[.sss]`, which is always UTC.
///
/// Also the format of an `MDTM` reply.
pub(super) fn parse_mlsx_time(value: &str) -> Option<DateTime<Utc>> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| whole.get(range)?.parse::<u32>().ok();
    let year = i32::try_from(num(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, num(4..6)?, num(6..8)?)?;
    let mut nanos = 0;
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Left-align the fraction to nine digits: ".5" is 500 ms, ".123" is 123 ms.
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = digits.parse().ok()?;
    }
    let time = NaiveTime::from_hms_nano_opt(num(8..10)?, num(10..12)?, num(12..14)?, nanos)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// Parses one line of a `LIST` reply, in Unix `ls -l` or in DOS/IIS style.
///
/// `LIST` output is not standardised; this is the fallback for servers without `MLSD`. Lines that
/// match neither style (such as the `total 12` header) yield `None`. The times are in the
/// server's local zone and sometimes lack the year, so they are only approximate.
pub(super) fn parse_list(line: &str) -> Option<Entry> {
    let file = ListParser::parse_posix(line)
        .or_else(|_| ListParser::parse_dos(line))
        .ok()?;
    let kind = if file.is_symlink() {
        Kind::Other
    } else if file.is_directory() {
        Kind::Dir
    } else {
        Kind::File
    };
    Some(Entry {
        name: file.name().to_string(),
        kind,
        size: u64::try_from(file.size()).ok()?,
        modified: Some(DateTime::<Utc>::from(file.modified())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn mlsd_file_line() {
        let e = parse_mlsx(
            "modify=20261123183558;perm=adfrw;size=256;type=file;unique=FE00U98C51A;UNIX.mode=0644; x.bin",
        )
        .expect("parses");
        assert_eq!(e.name, "x.bin");
        assert_eq!(e.kind, Kind::File);
        assert_eq!(e.size, 256);
        assert_eq!(
            e.modified,
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 18, 35, 58).unwrap())
        );
    }

    #[test]
    fn mlsd_names_with_spaces_and_semicolons() {
        let e = parse_mlsx("type=file;size=1; a b;c").expect("parses");
        assert_eq!(e.name, "a b;c");
    }

    #[test]
    fn mlsd_dirs_and_specials() {
        assert_eq!(
            parse_mlsx("type=dir;modify=20200101000000; sub")
                .unwrap()
                .kind,
            Kind::Dir
        );
        assert_eq!(parse_mlsx("type=cdir; .").unwrap().kind, Kind::Other);
        assert_eq!(parse_mlsx("type=pdir; ..").unwrap().kind, Kind::Other);
        assert_eq!(
            parse_mlsx("type=OS.unix=slink:/etc;size=4; link")
                .unwrap()
                .kind,
            Kind::Other
        );
    }

    #[test]
    fn mlst_reply_line_with_leading_space_and_path() {
        let e = parse_mlsx(" modify=20261123183558;perm=radfwMT;size=256;type=file; /dir/x.bin")
            .expect("parses");
        assert_eq!(e.name, "/dir/x.bin");
        assert_eq!(e.size, 256);
    }

    #[test]
    fn mlsx_garbage_is_rejected_without_panicking() {
        assert_eq!(parse_mlsx("no-space-at-all"), None);
        assert_eq!(parse_mlsx("type=file;size=abc; x"), None);
        let e = parse_mlsx("type=file;modify=2026; x").unwrap();
        assert_eq!(e.modified, None);
        assert_eq!(parse_mlsx("type=file;size=18446744073709551616; x"), None);
    }

    #[test]
    fn mlsx_time_fraction() {
        let t = parse_mlsx_time("20200102030405.5").unwrap();
        assert_eq!(t.timestamp_subsec_millis(), 500);
        assert!(parse_mlsx_time("20200102030405.").is_none());
        assert_eq!(parse_mlsx_time("20201302030405"), None);
        assert_eq!(parse_mlsx_time("2020010203040é"), None);
    }

    #[test]
    fn list_unix_and_dos_lines() {
        let e = parse_list("-rw-r--r--   1 owner    group         256 Nov 23 18:35 x.bin").unwrap();
        assert_eq!(
            (e.name.as_str(), e.kind, e.size),
            ("x.bin", Kind::File, 256)
        );
        let d =
            parse_list("drwxr-xr-x   2 owner    group        4096 Jan 01  2024 sub dir").unwrap();
        assert_eq!((d.name.as_str(), d.kind), ("sub dir", Kind::Dir));
        let l =
            parse_list("lrwxrwxrwx   1 owner    group           4 Jan 01  2024 l -> x").unwrap();
        assert_eq!(l.kind, Kind::Other);
        let w = parse_list("10-19-20  03:19PM                 1234 file.txt").unwrap();
        assert_eq!(
            (w.name.as_str(), w.kind, w.size),
            ("file.txt", Kind::File, 1234)
        );
        assert_eq!(parse_list("total 12"), None);
    }

    #[test]
    fn hidden_names() {
        for name in ["", ".", "..", ".tmp-0123"] {
            assert!(is_hidden(name), "{name}");
        }
        for name in ["a", ".config", "tmp-1"] {
            assert!(!is_hidden(name), "{name}");
        }
    }
}
