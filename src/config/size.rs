//! Sizes as written in the config: a whole number of bytes with an optional
//! binary suffix, "512", "4K", "1M", "1G" (K = KiB, M = MiB, G = GiB).
//!
//! No decimals: "1.5M" is not a whole number of anything a user can check
//! at a glance, and a rate or buffer size never needs one ("1536K" says it
//! exactly).

/// What would be valid, for the hint of any size error.
pub const SIZE_HINT: &str =
    "a whole number of bytes, optionally with the suffix K, M or G (KiB, MiB, GiB), e.g. \"4M\"";

/// The suffixes, in bytes; matched without regard to case, so "4k" is "4K".
const SUFFIXES: [(char, u64); 3] = [('K', 1 << 10), ('M', 1 << 20), ('G', 1 << 30)];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error("sizes cannot be negative")]
    Negative,
    #[error("\"{0}\" has an unknown suffix")]
    UnknownSuffix(String),
    #[error("\"{0}\" is not a whole number with an optional suffix")]
    BadNumber(String),
    #[error("\"{0}\" is too large")]
    TooLarge(String),
}

pub fn parse(text: &str) -> Result<u64, SizeError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    if s.starts_with('-') {
        return Err(SizeError::Negative);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let suffix = suffix.trim();
    // "1.5M" and "M" are bad numbers, not bad suffixes: the suffix may be
    // fine, the number in front of it is not.
    if number.is_empty() || suffix.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
        return Err(SizeError::BadNumber(s.to_string()));
    }
    let multiplier = match suffix {
        "" => 1,
        _ => {
            let mut chars = suffix.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(SizeError::UnknownSuffix(s.to_string()));
            };
            let Some(&(_, bytes)) = SUFFIXES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&c))
            else {
                return Err(SizeError::UnknownSuffix(s.to_string()));
            };
            bytes
        }
    };
    let too_large = || SizeError::TooLarge(s.to_string());
    number
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(multiplier)
        .ok_or_else(too_large)
}

/// The shortest exact spelling, for messages: 1048576 reads as "1M".
pub fn format(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    for (name, unit) in SUFFIXES.iter().rev() {
        if bytes.is_multiple_of(*unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_bytes_and_each_suffix() {
        assert_eq!(parse("512"), Ok(512));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("4K"), Ok(4 << 10));
        assert_eq!(parse("1M"), Ok(1 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1536K"), Ok(1536 << 10));
        assert_eq!(parse("4k"), Ok(4 << 10));
        assert_eq!(parse(" 8 M "), Ok(8 << 20));
        assert_eq!(parse("17179869183G"), Ok(u64::MAX - (1 << 30) + 1));
    }

    #[test]
    fn rejects_what_is_not_a_whole_size() {
        assert_eq!(parse(""), Err(SizeError::Empty));
        assert_eq!(parse("  "), Err(SizeError::Empty));
        assert_eq!(parse("-1M"), Err(SizeError::Negative));
        assert_eq!(parse("1.5M"), Err(SizeError::BadNumber("1.5M".into())));
        assert_eq!(parse("M"), Err(SizeError::BadNumber("M".into())));
        assert_eq!(parse("1 2"), Err(SizeError::BadNumber("1 2".into())));
        assert_eq!(parse("1T"), Err(SizeError::UnknownSuffix("1T".into())));
        assert_eq!(parse("1MB"), Err(SizeError::UnknownSuffix("1MB".into())));
        assert_eq!(parse("1MiB"), Err(SizeError::UnknownSuffix("1MiB".into())));
        assert_eq!(
            parse("18446744073709551616"),
            Err(SizeError::TooLarge("18446744073709551616".into()))
        );
        assert_eq!(
            parse("17179869184G"),
            Err(SizeError::TooLarge("17179869184G".into()))
        );
    }

    #[test]
    fn formats_in_the_largest_exact_suffix() {
        assert_eq!(format(0), "0");
        assert_eq!(format(512), "512");
        assert_eq!(format(4 << 10), "4K");
        assert_eq!(format(1536 << 10), "1536K");
        assert_eq!(format(1 << 20), "1M");
        assert_eq!(format(1 << 30), "1G");
        assert_eq!(format(3 << 30), "3G");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for n in [
            1,
            1023,
            1024,
            1025,
            1 << 20,
            (1 << 20) + 1,
            5 << 30,
            u64::MAX,
        ] {
            assert_eq!(parse(&format(n)), Ok(n));
        }
    }
}
