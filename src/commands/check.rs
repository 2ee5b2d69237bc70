//! `repo check`: verify the repository's structure and, optionally, its data.

use super::Context;
use crate::engine::check::{self, CheckReport, ReadData};
use crate::error::{Error, Result};
use crate::repository::lock;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Also read, decrypt and verify every blob of every pack.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only a subset of packs: `n/m` (part n of m) or `P%` (random percentage).
    #[arg(long, value_name = "n/m|P%")]
    pub read_data_subset: Option<String>,
}

/// Parses `n/m` or `P%`.
pub(crate) fn parse_subset(s: &str) -> Result<ReadData> {
    let bad = || {
        Error::Usage(format!(
            "--read-data-subset {s:?}: use n/m with 1 <= n <= m (like 2/10) or a percentage above 0 and at most 100 (like 5%)"
        ))
    };
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| bad())?;
        // 0% would read nothing and then report "no errors were found".
        if !(v > 0.0 && v <= 100.0) {
            return Err(bad());
        }
        return Ok(ReadData::Fraction(v / 100.0));
    }
    let (n, m) = s.split_once('/').ok_or_else(bad)?;
    let (n, m): (u32, u32) = (
        n.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || m == 0 || n > m {
        return Err(bad());
    }
    Ok(ReadData::Part(n, m))
}

pub fn run(ctx: &Context, args: &Args) -> Result<CheckReport> {
    let read = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => parse_subset(s)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = ctx.open_uncached()?;
    let _lock = lock::lock(&repo, false, "check")?;
    check::check(&repo, read, ctx.progress, ctx.cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        assert_eq!(parse_subset("1/10").unwrap(), ReadData::Part(1, 10));
        assert_eq!(parse_subset("5%").unwrap(), ReadData::Fraction(0.05));
        for bad in [
            "0/3", "4/3", "x", "101%", "1/0", "0%", "0.0%", "-1%", "NaN%",
        ] {
            assert!(parse_subset(bad).is_err(), "{bad}");
        }
    }
}
