//! Times as auditors write them: epoch milliseconds or RFC 3339 in UTC.
//!
//! [`parse_time`] reads what a person (or a query string) gives and
//! [`format_time`] writes what tables and JSON show; they round-trip.
//! Both work on the proleptic Gregorian calendar without a time-zone
//! database: only UTC (`Z`) is accepted.

/// A time that is neither epoch milliseconds nor RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected epoch ms or YYYY-MM-DDTHH:MM:SS[.mmm]Z")]
pub struct TimeError(pub String);

/// Parses a time: epoch milliseconds (`1795680000000`), or RFC 3339 in UTC
/// (`2026-11-26T08:00:00Z`, `2026-11-26T08:00:00.250Z`; fractional seconds
/// beyond milliseconds are truncated). Years 1970 to 9999.
///
/// # Errors
/// [`TimeError`] for anything else (out-of-range fields included).
pub fn parse_time(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError(text.chars().take(64).collect());
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| bad());
    }
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let number = |part: &str, digits: usize, lo: i64, hi: i64| -> Result<i64, TimeError> {
        if part.len() != digits || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = part.parse().map_err(|_| bad())?;
        if n < lo || n > hi {
            return Err(bad());
        }
        Ok(n)
    };
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = hms.split(':').collect();
    let ([y, mo, da], [hh, mi, ss]) = (d.as_slice(), h.as_slice()) else {
        return Err(bad());
    };
    let (y, mo) = (number(y, 4, 1970, 9999)?, number(mo, 2, 1, 12)?);
    let da = number(da, 2, 1, days_in_month(y, mo))?;
    let (hh, mi, ss) = (
        number(hh, 2, 0, 23)?,
        number(mi, 2, 0, 59)?,
        number(ss, 2, 0, 59)?,
    );
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (time.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    // Only ASCII digits from here, so byte slicing is safe.
    let milli = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
    let days = days_from_civil(y, mo, da);
    let ms = ((days * 24 + hh) * 60 + mi) * 60_000 + ss * 1000 + milli;
    u64::try_from(ms).map_err(|_| bad())
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds:
/// `2025-11-26T08:00:00.000Z`.
pub fn format_time(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(i64::MAX / 2);
    let rem = ms % 86_400_000;
    let (h, m, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    // Civil date from days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for ms in [0u64, 1_764_144_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(
                parse_time(&format_time(ms)).unwrap(),
                ms,
                "{}",
                format_time(ms)
            );
        }
        assert_eq!(format_time(1_764_144_000_000), "2025-11-26T08:00:00.000Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_time("2026-11-26T08:00:00Z").unwrap(),
            1_795_680_000_000
        );
        assert_eq!(
            parse_time("2026-11-26T08:00:00.25Z").unwrap(),
            1_795_680_000_250
        );
        assert_eq!(
            parse_time("2026-11-26T08:00:00.1239Z").unwrap(),
            1_795_680_000_123
        );
        assert_eq!(parse_time("1795680000000").unwrap(), 1_795_680_000_000);
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "-5",
            "+5",
            "2026-11-26T08:00:00",
            "2026-11-26 08:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T08:00:00.Z",
            "2026-11-26T08:00:00.ééZ",
            "99999999-01-01T00:00:00Z",
            "2026-1-01T00:00:00Z",
            "99999999999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
