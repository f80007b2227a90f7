//! The one duration grammar of modal, shared by the host (deploy options,
//! server flags), the CLI and the guest SDK's macros (`timeout = "2s"`,
//! `schedule = period("1h30m")`), so that a duration means the same thing
//! and fails with the same message everywhere. [`cron::check_ranges`]
//! does the same for the numbers of cron expressions.
//!
//! A duration is one or more `NUMBER UNIT` terms written without spaces,
//! whose values add up: `500ms`, `30s`, `5m`, `2h`, `7d`, `1h30m`. The units
//! are `ms`, `s`, `m` (minutes), `h` and `d` (24 hours); a number is a whole
//! number of at most 4294967295. Space around the whole is ignored.
//!
//! ```
//! use std::time::Duration;
//!
//! assert_eq!(modal_duration::parse("1h30m"), Ok(Duration::from_secs(5400)));
//! assert_eq!(modal_duration::format(Duration::from_secs(90)), "1m30s");
//! assert_eq!(
//!     modal_duration::parse("5 minutes").unwrap_err().to_string(),
//!     "`5 minutes` is not a duration; write e.g. 500ms, 30s, 5m, 2h or 7d"
//! );
//! ```

#![deny(missing_docs)]

pub mod cron;

use std::fmt;
use std::time::Duration;

/// A text that is not a duration in modal's grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    text: String,
}

impl ParseError {
    /// The text that failed to parse, without surrounding space.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration; write e.g. 500ms, 30s, 5m, 2h or 7d",
            self.text
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `7d`, or terms added up
/// such as `1h30m` (see the [crate] documentation for the grammar).
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    let text = text.trim();
    let invalid = || ParseError {
        text: text.to_string(),
    };
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u32 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = unit
            .checked_mul(number)
            .and_then(|term| total.checked_add(term))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Like [`parse`], in whole milliseconds (the unit of modal's wire
/// format); a sum past `u64::MAX` milliseconds is refused the same way.
pub fn parse_millis(text: &str) -> Result<u64, ParseError> {
    let d = parse(text)?;
    u64::try_from(d.as_millis()).map_err(|_| ParseError {
        text: text.trim().to_string(),
    })
}

/// A duration as [`parse`] reads it back, in the largest units that are
/// exact: `500ms`, `2s`, `5m`, `1h`, `1h1m1s`. Below a millisecond is cut.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) if h > 0 => format!("{h}h{m}m{s}s"),
        (_, m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_terms_parse() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse(" 0s\n"), Ok(Duration::ZERO));
    }

    #[test]
    fn terms_add_up() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse("1d2h3m4s5ms"), Ok(Duration::from_millis(93_784_005)));
    }

    #[test]
    fn anything_else_is_refused_with_one_message() {
        for text in [
            "",
            " ",
            "5",
            "s",
            "5 s",
            "5 minutes",
            "1.5s",
            "-1s",
            "1h 30m",
            "5S",
            "1w",
            "1us",
            "99999999999s",
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.text(), text.trim());
            assert_eq!(
                error.to_string(),
                format!(
                    "`{}` is not a duration; write e.g. 500ms, 30s, 5m, 2h or 7d",
                    text.trim()
                )
            );
        }
    }

    #[test]
    fn an_overflowing_sum_is_refused_not_a_panic() {
        let huge = "4294967295d".repeat(60_000);
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn milliseconds_are_whole_and_bounded() {
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("1s500ms"), Ok(1_500));
        let past_u64_millis = "4294967295d".repeat(100);
        assert!(parse(&past_u64_millis).is_ok());
        assert!(parse_millis(&past_u64_millis).is_err());
        assert!(parse_millis("1 s").is_err());
    }

    #[test]
    fn formatting_reads_back() {
        for (ms, text) in [
            (0, "0ms"),
            (500, "500ms"),
            (1_500, "1500ms"),
            (2_000, "2s"),
            (300_000, "5m"),
            (3_600_000, "1h"),
            (3_661_000, "1h1m1s"),
            (5_400_000, "1h30m0s"),
            (90_000, "1m30s"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }
}
