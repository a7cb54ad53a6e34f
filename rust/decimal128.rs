//! Decimal128 (IEEE 754-2008 decimal128, BID encoding) <-> decimal text, in pure Rust:
//! the BID words of the Decimal whose `str()` is given (or why it cannot be stored
//! exactly), and the text of the exact Decimal of given BID words.

use std::num::IntErrorKind;

pub const MAX_DIGITS: i128 = 34;
pub const EXP_MIN: i128 = -6176;
pub const EXP_MAX: i128 = 6111;
pub const EXP_BIAS: i128 = 6176;
pub const SIGN: u64 = 0x8000_0000_0000_0000;
pub const INF: u64 = 0x7800_0000_0000_0000;
pub const NAN: u64 = 0x7C00_0000_0000_0000;
pub const SNAN: u64 = 0x7E00_0000_0000_0000;
pub const COMBINATION_11: u64 = 0x6000_0000_0000_0000;
pub const MAX_COEFFICIENT: u128 = 10u128.pow(34) - 1;

#[derive(Debug, PartialEq, Eq)]
pub enum BidError {
    Inexact,
    NanPayload,
    /// Not the text `Decimal.__str__` writes (never produced by a real Decimal).
    Malformed,
}

/// BID words of the Decimal whose `str()` is `text`, or why it cannot be stored exactly.
pub fn bid_of_decimal_text(text: &str) -> Result<(u64, u64), BidError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let sign = if negative { SIGN } else { 0 };
    if body == "Infinity" {
        return Ok((sign | INF, 0));
    }
    if let Some(payload) = body.strip_prefix("sNaN") {
        return if payload.is_empty() { Ok((sign | SNAN, 0)) } else { Err(BidError::NanPayload) };
    }
    if let Some(payload) = body.strip_prefix("NaN") {
        return if payload.is_empty() { Ok((sign | NAN, 0)) } else { Err(BidError::NanPayload) };
    }
    let (mantissa, exp_text) = match body.bytes().position(|b| b == b'E' || b == b'e') {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let exponent: i128 = match exp_text {
        Some(t) => t.parse::<i128>().map_err(|e| match e.kind() {
            // a number too large for any Decimal128: not storable, but well formed
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => BidError::Inexact,
            _ => BidError::Malformed,
        })?,
        None => 0,
    };
    let (int_part, frac_part) = match mantissa.bytes().position(|b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, ""),
    };
    if int_part.len() + frac_part.len() == 0 || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(BidError::Malformed);
    }
    // no Decimal has an exponent near i128's range: overflow means "not exact"
    let exponent = exponent.checked_sub(frac_part.len() as i128).ok_or(BidError::Inexact)?;
    // significant digits without leading zeros, over the two parts
    let digits = || int_part.bytes().chain(frac_part.bytes());
    let leading = digits().take_while(|&b| b == b'0').count();
    let total = int_part.len() + frac_part.len();
    let length = (total - leading) as i128;
    let (coefficient, exp) = if length == 0 {
        (0u128, exponent.clamp(EXP_MIN, EXP_MAX))
    } else {
        let trailing = digits().rev().take_while(|&b| b == b'0').count() as i128;
        let exp = exponent.max(exponent.saturating_add(length - MAX_DIGITS)).clamp(EXP_MIN, EXP_MAX);
        let shift = exp.checked_sub(exponent).ok_or(BidError::Inexact)?;
        if shift > trailing || length - shift > MAX_DIGITS {
            return Err(BidError::Inexact);
        }
        let keep = if shift >= 0 { (length - shift) as usize } else { length as usize };
        let mut coefficient: u128 = 0;
        for b in digits().skip(leading).take(keep) {
            coefficient = coefficient * 10 + u128::from(b - b'0');
        }
        if shift < 0 {
            coefficient *= 10u128.pow((-shift) as u32);
        }
        (coefficient, exp)
    };
    let high = sign | (((exp + EXP_BIAS) as u64) << 49) | ((coefficient >> 64) as u64);
    Ok((high, coefficient as u64))
}

/// A finite Decimal as sign, coefficient and exponent (what the C `decimal` module
/// keeps inside each Decimal, read and written directly by `ffi::DecimalLayout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalParts {
    pub negative: bool,
    pub coefficient: u128,
    pub exponent: i64,
}

/// Number of decimal digits of `n` (1 for zero), as libmpdec counts them.
pub fn decimal_digits(n: u128) -> u32 {
    let mut digits = 1;
    let mut bound: u128 = 10;
    while digits < 39 && n >= bound {
        digits += 1;
        bound = bound.saturating_mul(10);
    }
    digits
}

/// BID words of a finite Decimal that Decimal128 holds as it is (at most 34 digits, an
/// exponent in range); None for anything that needs the text route's trailing-zero
/// folding, clamping or errors. Agrees with [`bid_of_decimal_text`] wherever it answers.
pub fn bid_of_parts(parts: DecimalParts) -> Option<(u64, u64)> {
    let exponent = i128::from(parts.exponent);
    if parts.coefficient > MAX_COEFFICIENT || !(EXP_MIN..=EXP_MAX).contains(&exponent) {
        return None;
    }
    let sign = if parts.negative { SIGN } else { 0 };
    let high = sign | (((exponent + EXP_BIAS) as u64) << 49) | ((parts.coefficient >> 64) as u64);
    Some((high, parts.coefficient as u64))
}

/// The exact finite Decimal of BID words (non-canonical coefficients read as 0), or None
/// for Infinity and NaNs. Agrees with [`decimal_text_of_bid`].
pub fn parts_of_bid(high: u64, low: u64) -> Option<DecimalParts> {
    if high & INF == INF {
        return None;
    }
    let (coefficient, exponent) = if high & COMBINATION_11 == COMBINATION_11 {
        (0u128, ((high >> 47) & 0x3FFF) as i128 - EXP_BIAS)
    } else {
        let c = (u128::from(high & 0x1_FFFF_FFFF_FFFF) << 64) | u128::from(low);
        (if c > MAX_COEFFICIENT { 0 } else { c }, ((high >> 49) & 0x3FFF) as i128 - EXP_BIAS)
    };
    Some(DecimalParts { negative: high & SIGN != 0, coefficient, exponent: exponent as i64 })
}

/// A small stack buffer for number text (no allocation per value).
pub struct TextBuf {
    bytes: [u8; 96],
    len: usize,
}

impl TextBuf {
    pub fn new() -> Self {
        TextBuf { bytes: [0; 96], len: 0 }
    }

    pub fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    pub fn extend_from_slice(&mut self, s: &[u8]) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    /// The text written so far (only ASCII is ever written, so it is always valid UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Appends the decimal digits of `n` (u128 division only when needed).
fn push_digits(out: &mut TextBuf, mut n: u128) {
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    while n > u128::from(u64::MAX) {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut small = n as u64;
    loop {
        at -= 1;
        buf[at] = b'0' + (small % 10) as u8;
        small /= 10;
        if small == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// The text of the exact Decimal of BID words (non-canonical coefficients read as 0),
/// written into `out`.
pub fn decimal_text_of_bid(high: u64, low: u64, out: &mut TextBuf) {
    if high & SIGN != 0 {
        out.push(b'-');
    }
    if high & SNAN == SNAN {
        out.extend_from_slice(b"sNaN");
        return;
    }
    if high & NAN == NAN {
        out.extend_from_slice(b"NaN");
        return;
    }
    if high & INF == INF {
        out.extend_from_slice(b"Infinity");
        return;
    }
    let (coefficient, exponent) = if high & COMBINATION_11 == COMBINATION_11 {
        (0u128, ((high >> 47) & 0x3FFF) as i128 - EXP_BIAS)
    } else {
        let c = (u128::from(high & 0x1_FFFF_FFFF_FFFF) << 64) | u128::from(low);
        (if c > MAX_COEFFICIENT { 0 } else { c }, ((high >> 49) & 0x3FFF) as i128 - EXP_BIAS)
    };
    if (-PLAIN_SCALE..=0).contains(&exponent) {
        push_plain(out, coefficient, exponent.unsigned_abs() as usize);
        return;
    }
    push_digits(out, coefficient);
    out.push(b'E');
    if exponent < 0 {
        out.push(b'-');
    }
    push_digits(out, exponent.unsigned_abs());
}

/// Exponents down to this are written as plain decimals ("19.99", "0.005"), which
/// Decimal parses faster than "1999E-2" and reads as the same coefficient and exponent.
pub const PLAIN_SCALE: i128 = 40;

/// `coefficient` scaled down by `scale` digits, written as a plain decimal.
fn push_plain(out: &mut TextBuf, coefficient: u128, scale: usize) {
    let mut digits = TextBuf::new();
    push_digits(&mut digits, coefficient);
    let digits = &digits.bytes[..digits.len];
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let point = digits.len() - scale;
        out.extend_from_slice(&digits[..point]);
        out.push(b'.');
        out.extend_from_slice(&digits[point..]);
    } else {
        out.extend_from_slice(b"0.");
        for _ in digits.len()..scale {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(high: u64, low: u64) -> String {
        let mut out = TextBuf::new();
        decimal_text_of_bid(high, low, &mut out);
        out.as_str().to_owned()
    }

    fn round_trip(text: &str) -> String {
        let (high, low) = bid_of_decimal_text(text).expect("storable");
        text_of(high, low)
    }

    #[test]
    fn plain_values_round_trip() {
        assert_eq!(round_trip("19.99"), "19.99");
        assert_eq!(round_trip("-0.005"), "-0.005");
        assert_eq!(round_trip("0"), "0");
        assert_eq!(round_trip("-0"), "-0");
        assert_eq!(round_trip("1E+3"), "1E3");
    }

    #[test]
    fn known_bid_words() {
        // 1 = coefficient 1, exponent 0 (biased 6176)
        assert_eq!(bid_of_decimal_text("1"), Ok((0x3040_0000_0000_0000, 1)));
        assert_eq!(bid_of_decimal_text("-1"), Ok((0xB040_0000_0000_0000, 1)));
        assert_eq!(bid_of_decimal_text("Infinity"), Ok((INF, 0)));
        assert_eq!(bid_of_decimal_text("-Infinity"), Ok((SIGN | INF, 0)));
        assert_eq!(bid_of_decimal_text("NaN"), Ok((NAN, 0)));
        assert_eq!(bid_of_decimal_text("sNaN"), Ok((SNAN, 0)));
    }

    #[test]
    fn limits_of_precision_and_exponent() {
        let max = "9".repeat(34);
        assert_eq!(round_trip(&max), max);
        assert_eq!(bid_of_decimal_text(&"9".repeat(35)), Err(BidError::Inexact));
        // trailing zeros beyond 34 digits fold into the exponent
        assert!(bid_of_decimal_text(&format!("{}0", "9".repeat(34))).is_ok());
        assert!(bid_of_decimal_text("1E6144").is_ok());
        assert_eq!(bid_of_decimal_text("1E6145"), Err(BidError::Inexact));
        assert!(bid_of_decimal_text("1E-6176").is_ok());
        assert_eq!(bid_of_decimal_text("1E-6177"), Err(BidError::Inexact));
        // zero clamps its exponent instead of failing
        assert!(bid_of_decimal_text("0E-9999").is_ok());
    }

    #[test]
    fn nan_payloads_and_garbage_are_refused_without_panicking() {
        assert_eq!(bid_of_decimal_text("NaN12"), Err(BidError::NanPayload));
        assert_eq!(bid_of_decimal_text("-sNaN3"), Err(BidError::NanPayload));
        assert_eq!(bid_of_decimal_text("1E99999999999999999999999999999999999999999"), Err(BidError::Inexact));
    }

    #[test]
    fn malformed_text_and_extreme_exponents_never_overflow() {
        for text in ["abc", "1.2.3", "--1", "", ".", "E5", "1E", "1Ex", "+-1", "1 2"] {
            assert_eq!(bid_of_decimal_text(text), Err(BidError::Malformed), "{text}");
        }
        let low = format!("1E{}", i128::MIN);
        assert_eq!(bid_of_decimal_text(&low), Err(BidError::Inexact));
        let low_frac = format!("1.5E{}", i128::MIN);
        assert_eq!(bid_of_decimal_text(&low_frac), Err(BidError::Inexact));
        let high = format!("1E{}", i128::MAX);
        assert_eq!(bid_of_decimal_text(&high), Err(BidError::Inexact));
        // zero with any exponent is clamped, as Decimal128 does
        assert!(bid_of_decimal_text(&format!("0E{}", i128::MIN + 1)).is_ok());
    }

    #[test]
    fn non_canonical_coefficients_read_as_zero() {
        // coefficient above 10^34 - 1 with the ordinary combination field
        let high = 0x3041_FFFF_FFFF_FFFF_u64;
        assert_eq!(text_of(high, u64::MAX), "0");
    }

    #[test]
    fn text_buffer_holds_the_longest_text() {
        let text = text_of(SIGN | 0x0001_ED09_BEAD_87C0, 0x378D_8E63_FFFF_FFFF);
        assert!(text.starts_with('-') && text.len() < 96);
    }

    #[test]
    fn parts_agree_with_the_text_route() {
        for text in ["19.99", "-0.005", "0", "-0", "1E3", "1E-6176", "9999999999999999999999999999999999", "1.5E6111"] {
            let (high, low) = bid_of_decimal_text(text).expect("storable");
            let parts = parts_of_bid(high, low).expect("finite");
            assert_eq!(bid_of_parts(parts), Some((high, low)), "{text}");
        }
        assert_eq!(parts_of_bid(INF, 0), None);
        assert_eq!(parts_of_bid(NAN, 0), None);
        // beyond what Decimal128 holds as it is: left to the text route
        let too_long = DecimalParts { negative: false, coefficient: MAX_COEFFICIENT + 1, exponent: 0 };
        assert_eq!(bid_of_parts(too_long), None);
        assert_eq!(bid_of_parts(DecimalParts { negative: true, coefficient: 1, exponent: 6112 }), None);
        assert_eq!(bid_of_parts(DecimalParts { negative: true, coefficient: 1, exponent: -6177 }), None);
    }

    #[test]
    fn digits_are_counted_like_libmpdec() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(MAX_COEFFICIENT), 34);
        assert_eq!(decimal_digits(u128::MAX), 39);
    }
}
