//! Number text rules shared by the encoder and the reader, with no allocation.

/// Parses `s` as an i64 only if it is the exact canonical decimal form of that integer
/// (what Redis's `string2ll` + `ll2string` round trip accepts): no sign `+`, no leading
/// zeros, no `-0`, no spaces, at most 20 bytes.
#[inline]
pub fn canonical_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    let (&first, _) = digits.split_first()?;
    if digits.len() > 19 || !first.is_ascii_digit() {
        return None;
    }
    if first == b'0' {
        return (digits.len() == 1 && !neg).then_some(0);
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Formats `v` in decimal into `buf`, returning the used tail.
#[inline]
pub fn format_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let start = buf.len() - format_u64(v.unsigned_abs(), buf).len();
    if v >= 0 {
        return &buf[start..];
    }
    buf[start - 1] = b'-';
    &buf[start - 1..]
}

/// Formats `n` in decimal into the end of `buf`, returning the used tail.
#[inline]
pub fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A score as Redis stores it in a listpack: integral values in (-2^52, 2^52) as an
/// integer, `-0`, `inf`/`-inf`, anything else in the shortest text that parses back to
/// the same double.
pub enum ScoreText<'a> {
    Int(i64),
    Text(&'a [u8]),
}

pub fn score_text(score: f64, buf: &mut [u8; 32]) -> ScoreText<'_> {
    const LIMIT: f64 = (1u64 << 52) as f64;
    if score == 0.0 && score.is_sign_negative() {
        buf[..2].copy_from_slice(b"-0");
        return ScoreText::Text(&buf[..2]);
    }
    if score.is_infinite() {
        let t: &[u8] = if score > 0.0 { b"inf" } else { b"-inf" };
        buf[..t.len()].copy_from_slice(t);
        return ScoreText::Text(&buf[..t.len()]);
    }
    if score.fract() == 0.0 && score > -LIMIT && score < LIMIT {
        return ScoreText::Int(score as i64);
    }
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // Debug formatting of f64 is the shortest round-tripping form, with an exponent for
    // very large or small magnitudes (so it never exceeds ~24 bytes).
    use std::io::Write;
    write!(cursor, "{score:?}").expect("a double's text fits in 32 bytes");
    let n = cursor.position() as usize;
    ScoreText::Text(&buf[..n])
}

/// Parses a score written as text by Redis (`%.17g`, `inf`, `-inf`, `nan`, ...).
pub fn parse_score(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    match t {
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => t.trim().parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers_only() {
        for (s, want) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("123", Some(123)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-0", None),
            ("01", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("-", None),
            ("1.0", None),
        ] {
            assert_eq!(canonical_i64(s.as_bytes()), want, "{s:?}");
        }
    }

    #[test]
    fn format_roundtrips() {
        let mut b = [0u8; 20];
        for v in [0, 1, -1, 42, i64::MIN, i64::MAX, -1000] {
            assert_eq!(format_i64(v, &mut b), v.to_string().as_bytes());
        }
    }

    #[test]
    fn score_text_roundtrips() {
        let mut b = [0u8; 32];
        for s in [
            0.1,
            -2.5,
            1e300,
            -1e-300,
            4503599627370496.0,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            match score_text(s, &mut b) {
                ScoreText::Int(_) => panic!("{s} is not a small integer"),
                ScoreText::Text(t) => assert_eq!(parse_score(t), Some(s), "{s}"),
            }
        }
        assert!(matches!(score_text(3.0, &mut b), ScoreText::Int(3)));
        assert!(matches!(score_text(-0.0, &mut b), ScoreText::Text(b"-0")));
        assert!(matches!(
            score_text(f64::NEG_INFINITY, &mut b),
            ScoreText::Text(b"-inf")
        ));
        assert!(parse_score(b"-0").unwrap().is_sign_negative());
    }
}
