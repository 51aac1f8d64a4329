//! Durations as written in the config: a number and a unit, "200ms", "1.5s".
//!
//! Parsed with integer arithmetic only, so "0.1s" is exactly 100ms and a
//! value that does not land on a whole millisecond is refused rather than
//! silently rounded (timers run at millisecond resolution).

use std::time::Duration;

/// What a bare number is missing; shown as the hint of the error.
pub const UNIT_HINT: &str = "durations need a unit, e.g. \"200ms\" or \"2s\"";

/// The units, longest suffix first so "ms" is not read as "m" + "s".
const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("durations cannot be negative")]
    Negative,
    #[error("\"{0}\" has no unit")]
    MissingUnit(String),
    #[error("\"{0}\" has an unknown unit")]
    UnknownUnit(String),
    #[error("\"{0}\" is not a number followed by a unit")]
    BadNumber(String),
    #[error("\"{0}\" is finer than a millisecond")]
    SubMillisecond(String),
    #[error("\"{0}\" is too long")]
    TooLong(String),
}

impl DurationError {
    /// What would be valid, for the error's hint.
    pub fn hint(&self) -> &'static str {
        match self {
            DurationError::SubMillisecond(_) => "a whole number of milliseconds, e.g. \"1500ms\"",
            DurationError::UnknownUnit(_) => "a number with the unit ms, s, m or h, e.g. \"200ms\"",
            _ => UNIT_HINT,
        }
    }
}

pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if unit.is_empty() {
        return Err(DurationError::MissingUnit(s.to_string()));
    }
    let Some(&(_, unit_ms)) = UNITS.iter().find(|(name, _)| *name == unit.trim()) else {
        return Err(DurationError::UnknownUnit(s.to_string()));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || number.ends_with('.') {
        return Err(DurationError::BadNumber(s.to_string()));
    }
    let too_long = || DurationError::TooLong(s.to_string());
    let whole_ms = whole
        .parse::<u64>()
        .map_err(|_| too_long())?
        .checked_mul(unit_ms)
        .ok_or_else(too_long)?;
    // The fraction in milliseconds must come out whole: fraction * unit_ms
    // divisible by 10^digits. Trailing zeros carry no precision, so drop them
    // first to keep the power of ten small.
    let fraction = fraction.trim_end_matches('0');
    let fraction_ms = if fraction.is_empty() {
        0
    } else {
        let scale = u32::try_from(fraction.len())
            .ok()
            .and_then(|n| 10u64.checked_pow(n))
            .ok_or_else(|| DurationError::SubMillisecond(s.to_string()))?;
        let numerator = fraction
            .parse::<u64>()
            .ok()
            .and_then(|f| f.checked_mul(unit_ms))
            .ok_or_else(|| DurationError::SubMillisecond(s.to_string()))?;
        if !numerator.is_multiple_of(scale) {
            return Err(DurationError::SubMillisecond(s.to_string()));
        }
        numerator / scale
    };
    let total = whole_ms.checked_add(fraction_ms).ok_or_else(too_long)?;
    Ok(Duration::from_millis(total))
}

/// The shortest exact spelling, for messages: 1000ms reads as "1s".
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0ms".to_string();
    }
    for (name, unit_ms) in UNITS.iter().rev() {
        let unit_ms = u128::from(*unit_ms);
        if ms.is_multiple_of(unit_ms) {
            return format!("{}{name}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_every_unit_and_fractions() {
        assert_eq!(parse("200ms"), Ok(ms(200)));
        assert_eq!(parse("1s"), Ok(ms(1_000)));
        assert_eq!(parse("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse("0.001s"), Ok(ms(1)));
        assert_eq!(parse("1.250s"), Ok(ms(1_250)));
        assert_eq!(parse("2m"), Ok(ms(120_000)));
        assert_eq!(parse("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse("0.5m"), Ok(ms(30_000)));
        assert_eq!(parse(" 10ms "), Ok(ms(10)));
        assert_eq!(parse("0s"), Ok(ms(0)));
    }

    #[test]
    fn rejects_what_timers_cannot_honour() {
        assert_eq!(
            parse("1.5ms"),
            Err(DurationError::SubMillisecond("1.5ms".into()))
        );
        assert_eq!(
            parse("0.0001s"),
            Err(DurationError::SubMillisecond("0.0001s".into()))
        );
        assert_eq!(parse("-1s"), Err(DurationError::Negative));
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("1d"), Err(DurationError::UnknownUnit("1d".into())));
        assert_eq!(parse("1us"), Err(DurationError::UnknownUnit("1us".into())));
        assert_eq!(parse("s"), Err(DurationError::BadNumber("s".into())));
        assert_eq!(parse(".5s"), Err(DurationError::BadNumber(".5s".into())));
        assert_eq!(parse("1.s"), Err(DurationError::BadNumber("1.s".into())));
        assert_eq!(
            parse("1.2.3s"),
            Err(DurationError::BadNumber("1.2.3s".into()))
        );
        assert_eq!(
            parse("99999999999999999999h"),
            Err(DurationError::TooLong("99999999999999999999h".into()))
        );
    }

    #[test]
    fn a_bare_number_is_told_to_add_a_unit() {
        let err = parse("200").unwrap_err();
        assert_eq!(err, DurationError::MissingUnit("200".into()));
        assert_eq!(
            err.hint(),
            "durations need a unit, e.g. \"200ms\" or \"2s\""
        );
        assert_eq!(err.to_string(), "\"200\" has no unit");
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format(ms(200)), "200ms");
        assert_eq!(format(ms(1_000)), "1s");
        assert_eq!(format(ms(1_500)), "1500ms");
        assert_eq!(format(ms(120_000)), "2m");
        assert_eq!(format(ms(90_000)), "90s");
        assert_eq!(format(ms(3_600_000)), "1h");
        assert_eq!(format(ms(0)), "0ms");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for n in [1, 10, 999, 1_000, 1_001, 60_000, 61_000, 7_200_000] {
            assert_eq!(parse(&format(ms(n))), Ok(ms(n)));
        }
    }
}
