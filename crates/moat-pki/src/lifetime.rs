//! Certificate lifetimes: CockroachDB writes them as Go durations (`87840h`,
//! `87840h0m0s`); we also accept days and years (`90d`, `10y`).

use crate::{PkiError, Result};
use time::Duration;

/// Default lifetime of CA certificates: 10 x 366 days, as CockroachDB.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::hours(87_840);
/// Default lifetime of node, client and UI certificates: 5 x 366 days, as CockroachDB.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::hours(43_920);

/// Parses a lifetime such as `87840h`, `87840h0m0s`, `1h30m`, `90d` or `10y`.
///
/// Units: `y` (365 days), `d` (24 hours), `h`, `m`, `s`. Several may be
/// combined in decreasing order of size. The result must be positive.
pub fn parse_lifetime(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        PkiError::invalid(
            format!("invalid lifetime {text:?}: {why}"),
            "write it as hours (87840h), days (90d) or years (10y)",
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut last_rank = usize::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if number.is_empty() {
            return Err(bad("a unit must follow a number"));
        }
        let value: i64 = number.parse().map_err(|_| bad("number too large"))?;
        number.clear();
        let (rank, unit) = match c {
            'y' => (0, Duration::days(365)),
            'd' => (1, Duration::days(1)),
            'h' => (2, Duration::hours(1)),
            'm' => (3, Duration::minutes(1)),
            's' => (4, Duration::seconds(1)),
            _ => return Err(bad(&format!("unknown unit {c:?}"))),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(bad("units must go from larger to smaller, each once"));
        }
        last_rank = rank;
        let part = unit
            .checked_mul(i32::try_from(value).map_err(|_| bad("number too large"))?)
            .ok_or_else(|| bad("too long"))?;
        total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
    }
    if !number.is_empty() {
        return Err(bad("missing unit after the last number"));
    }
    if total <= Duration::ZERO {
        return Err(bad("must be longer than zero"));
    }
    if total > Duration::days(365 * 100) {
        return Err(bad("longer than 100 years"));
    }
    Ok(total)
}

/// Formats a duration in hours as CockroachDB's error messages do (`87840h`).
pub fn format_hours(d: Duration) -> String {
    let hours = format!("{:.2}", d.whole_seconds() as f64 / 3600.0);
    let hours = hours.trim_end_matches('0').trim_end_matches('.');
    format!("{hours}h")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_friendly_units() {
        assert_eq!(parse_lifetime("87840h").unwrap(), Duration::hours(87_840));
        assert_eq!(parse_lifetime("87840h0m0s").unwrap(), Duration::hours(87_840));
        assert_eq!(parse_lifetime("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_lifetime("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_lifetime("10y").unwrap(), Duration::days(3650));
        assert_eq!(parse_lifetime("1y2d").unwrap(), Duration::days(367));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "0h",
            "1m1h",
            "1h1h",
            "-5h",
            "99999999999999h",
            "200y",
        ] {
            let err = parse_lifetime(bad).unwrap_err().to_string();
            assert!(err.contains("invalid lifetime"), "{bad}: {err}");
        }
    }
}
