//! Exact decimal parsing into integer millionths ("micros").
//!
//! Platforms send money as decimal strings (`"12.34"`), as protobuf int64
//! micros (`"12340000"`), or as JSON numbers (conversions `1.3333333`). All of
//! it becomes `i64` micros here; binary floats never carry money.

/// Why a decimal could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty number")]
    Empty,
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("`{0}` is out of range")]
    OutOfRange(String),
    /// A count with a fraction (`1.5` clicks).
    #[error("`{0}` is not a whole number: a count has no fraction")]
    NotWhole(String),
    /// A count below zero.
    #[error("`{0}` is negative: a count is 0 or more")]
    Negative(String),
}

/// Parse a decimal (`"12.34"`, `"-0.5"`, `"7"`, `"1.5e3"`) into millionths,
/// rounding half away from zero past the sixth decimal.
pub fn parse_micros(text: &str) -> Result<i64, DecimalError> {
    match plain_micros(text.as_bytes()) {
        Some(micros) => Ok(micros),
        None => parse_micros_in_full(text),
    }
}

/// The shape nearly every platform number has, read in one pass: unsigned
/// digits with at most one `.`, at most 12 before it and 6 after it (so
/// the micros fit in an `i64` and nothing needs rounding). `None` for
/// anything else (signs, exponents, whitespace, more digits, errors), which
/// [`parse_micros_in_full`] then reads.
fn plain_micros(bytes: &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    let mut digits = 0usize;
    let mut fraction: Option<usize> = None;
    for &b in bytes {
        match b {
            b'0'..=b'9' if digits < 18 => {
                value = value * 10 + i64::from(b - b'0');
                digits += 1;
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
    }
    let fraction = fraction.unwrap_or(0);
    if digits == 0 || fraction > 6 || digits - fraction > 12 {
        return None;
    }
    Some(value * POWERS_OF_TEN[6 - fraction])
}

const POWERS_OF_TEN: [i64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// [`parse_micros`] for every accepted shape: sign, exponent, surrounding
/// whitespace, digits past the sixth decimal (rounded), and the errors.
fn parse_micros_in_full(text: &str) -> Result<i64, DecimalError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let bad = || DecimalError::NotANumber(text.to_owned());
    let range = || DecimalError::OutOfRange(text.to_owned());
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exp: i32 = unsigned[at + 1..].parse().map_err(|_| bad())?;
            (&unsigned[..at], exp)
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if !(-30..=30).contains(&exponent) {
        return Err(range());
    }
    // All digits as one integer D; value = D * 10^(exponent - frac_len).
    // Micros = D * 10^(exponent - frac_len + 6), rounded. The digits are
    // walked in place (no copy): this runs for every number of every row.
    let int_digits = int_part.trim_start_matches('0').as_bytes();
    let frac_digits = frac_part.as_bytes();
    let total = int_digits.len() + frac_digits.len();
    let shift = exponent - frac_part.len() as i32 + 6;
    let keep = total as i32 + shift.min(0);
    const LIMIT: u64 = i64::MAX as u64;
    let mut value: u64 = 0;
    let mut round_digit = 0u8;
    for (i, b) in int_digits.iter().chain(frac_digits).enumerate() {
        let d = b - b'0';
        if (i as i32) < keep {
            // Compare before multiplying: `checked_mul` on u64 is a 128-bit
            // multiply routine (`__multi3`) on wasm32.
            if value > (LIMIT - u64::from(d)) / 10 {
                return Err(range());
            }
            value = value * 10 + u64::from(d);
        } else {
            if i as i32 == keep {
                round_digit = d;
            }
            break;
        }
    }
    for _ in 0..shift.max(0) {
        if value > LIMIT / 10 {
            return Err(range());
        }
        value *= 10;
    }
    if round_digit >= 5 {
        value += 1;
    }
    let value = i64::try_from(value).map_err(|_| range())?;
    Ok(if negative { -value } else { value })
}

/// Parse an amount the platform already sends in micros (Google Ads
/// `costMicros` `"38250000"`, Pinterest `spend_in_micro_dollar` `38250000.0`):
/// a whole number, with at most a zero fraction. `38250000.5` is refused
/// (half a micro is no amount), as is anything past `i64`.
pub fn parse_whole_micros(text: &str) -> Result<i64, DecimalError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotANumber(text.to_owned()));
    }
    if fraction.bytes().any(|b| b != b'0') {
        return Err(DecimalError::NotWhole(text.to_owned()));
    }
    let digits = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotANumber(text.to_owned()));
    }
    whole
        .parse::<i64>()
        .map_err(|_| DecimalError::OutOfRange(text.to_owned()))
}

/// Parse a non-negative integer count (`"1200"`, or a decimal with a zero
/// fraction such as `"1200.0"`).
pub fn parse_count(text: &str) -> Result<u64, DecimalError> {
    let micros = parse_micros(text)?;
    if micros < 0 {
        return Err(DecimalError::Negative(text.trim().to_owned()));
    }
    if micros % 1_000_000 != 0 {
        return Err(DecimalError::NotWhole(text.trim().to_owned()));
    }
    Ok((micros / 1_000_000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_already_in_micros_stay_whole() {
        assert_eq!(parse_whole_micros("38250000"), Ok(38_250_000));
        assert_eq!(parse_whole_micros("38250000.0"), Ok(38_250_000));
        assert_eq!(parse_whole_micros("-5.000"), Ok(-5));
        assert_eq!(parse_whole_micros("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(
            parse_whole_micros("38250000.5"),
            Err(DecimalError::NotWhole("38250000.5".into()))
        );
        assert_eq!(
            parse_whole_micros("9223372036854775808"),
            Err(DecimalError::OutOfRange("9223372036854775808".into()))
        );
        for bad in ["12,5", ".0", "1e6", "--1", "1.0x"] {
            assert_eq!(
                parse_whole_micros(bad),
                Err(DecimalError::NotANumber(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn decimals_become_exact_micros() {
        assert_eq!(parse_micros("12.34"), Ok(12_340_000));
        assert_eq!(parse_micros("0.000001"), Ok(1));
        assert_eq!(parse_micros("-0.5"), Ok(-500_000));
        assert_eq!(parse_micros("7"), Ok(7_000_000));
        assert_eq!(parse_micros(".5"), Ok(500_000));
        assert_eq!(parse_micros("1.3333333333"), Ok(1_333_333));
        assert_eq!(parse_micros("2.0000005"), Ok(2_000_001));
        assert_eq!(parse_micros("1.5e3"), Ok(1_500_000_000));
        assert_eq!(parse_micros("1e-7"), Ok(0));
        assert_eq!(parse_micros("5e-7"), Ok(1));
        assert_eq!(parse_micros("000123.400"), Ok(123_400_000));
    }

    #[test]
    fn the_range_ends_exactly_at_i64() {
        assert_eq!(parse_micros("9223372036854.775807"), Ok(i64::MAX));
        assert_eq!(parse_micros("-9223372036854.775807"), Ok(-i64::MAX));
        assert_eq!(parse_micros("9223372036854775807e-6"), Ok(i64::MAX));
        assert!(matches!(
            parse_micros("9223372036854.775808"),
            Err(DecimalError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_micros("9223372036854.7758075"),
            Err(DecimalError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_micros("92233720368548"),
            Err(DecimalError::OutOfRange(_))
        ));
    }

    #[test]
    fn the_one_pass_shape_reads_like_the_full_parser() {
        let mut texts: Vec<String> = [
            "",
            ".",
            "0",
            "00",
            "0.",
            ".0",
            "5.",
            ".5",
            "1.2.3",
            "12..3",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1e3",
            "0.000001",
            "0.0000005",
            "999999999999.999999",
            "9999999999999",
            "1234567890123.5",
            "000000000000000000001",
            "0000000000000.1",
            "1.2345678",
            "12a",
            "Ù",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every split of up to 14 digits by one dot, and leading zeros.
        let digits = "98765432109876";
        for len in 1..=digits.len() {
            for dot in 0..=len {
                let (a, b) = digits[..len].split_at(dot);
                texts.push(format!("{a}.{b}"));
                texts.push(format!("0{a}.{b}"));
            }
            texts.push(digits[..len].to_string());
        }
        for text in &texts {
            assert_eq!(parse_micros(text), parse_micros_in_full(text), "{text:?}");
            if let Some(micros) = plain_micros(text.as_bytes()) {
                assert_eq!(Ok(micros), parse_micros_in_full(text), "{text:?}");
            }
        }
        assert_eq!(
            plain_micros(b"999999999999.999999"),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(
            plain_micros(b"1.2345678"),
            None,
            "rounding is the full parser's"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse_micros("").is_err());
        assert!(parse_micros("abc").is_err());
        assert!(parse_micros("1.2.3").is_err());
        assert!(parse_micros("-").is_err());
        assert!(parse_micros(".").is_err());
        assert!(parse_micros("1e").is_err());
        assert!(parse_micros("NaN").is_err());
        assert!(parse_micros("99999999999999999999").is_err());
    }

    #[test]
    fn counts_are_whole() {
        assert_eq!(parse_count("1200"), Ok(1200));
        assert_eq!(parse_count("1200.0"), Ok(1200));
        assert_eq!(
            parse_count("1.5").map_err(|e| e.to_string()),
            Err("`1.5` is not a whole number: a count has no fraction".into())
        );
        assert_eq!(
            parse_count("-1").map_err(|e| e.to_string()),
            Err("`-1` is negative: a count is 0 or more".into())
        );
        assert_eq!(
            parse_count("x1"),
            Err(DecimalError::NotANumber("x1".into()))
        );
    }
}
