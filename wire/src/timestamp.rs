//! RFC 3339 timestamps, as the wire carries them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats Unix milliseconds as RFC 3339 UTC, e.g. `2026-11-22T10:00:00.123Z`.
pub fn format_rfc3339(unix_ms: i64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let when = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    when.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp with any offset into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let when = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(when.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_offsets() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        // What chrono's to_rfc3339() sends: nanoseconds and a numeric offset.
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789+00:00"), Some(1_700_000_000_123));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        for bad in ["", "yesterday", "2023-11-14", "2023-11-14 22:13:20", "2023-13-14T22:13:20Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
