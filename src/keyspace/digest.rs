//! Redis's `DEBUG DIGEST` and `DEBUG DIGEST-VALUE`, computed over any [`Keyspace`].
//!
//! The same SHA-1 construction as Redis 7.0's `debug.c`, so a server built on forksnap
//! can answer `DEBUG DIGEST` with the value Redis 7.0 gives for the same data, and a test
//! can compare the two servers directly:
//! - `xor(d, s)`: `d ^= sha1(s)` (order-free: set members, zset and hash elements, keys);
//! - `mix(d, s)`: `d = sha1(d ^ sha1(s))` (ordered: list elements, a key then its value);
//! - a value's digest mixes its type (`0` string … `4` hash, big-endian `u32`), then its
//!   content; a zset element is `mix(mix(0, member), "%.17g" of the score)`, a hash
//!   element `mix(mix(0, field), value)`; a stream (type `6`) mixes each entry's
//!   `"<ms>.<seq>"`, then its fields and values in order (not its groups or metadata);
//!   an expiry xors `"!!expire!!"`;
//! - the dataset's digest mixes each non-empty database's index (big-endian `u32`), then
//!   xors (as above: the SHA-1 of) each key's `mix(mix(0, key) …value…)`. No keys at all gives 20 zero bytes.
//!
//! Module values (their digest is the module's) and values the snapshot cannot encode
//! ([`Value::Unsupported`]) contribute their key only.

use super::{Entry, Keyspace, Value};
use std::fmt;
use std::ops::ControlFlow;

/// A 20-byte `DEBUG DIGEST`; `Display` gives Redis's 40 lowercase hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 20]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.digest().bytes()
}

fn xor(d: &mut [u8; 20], s: &[u8]) {
    for (a, b) in d.iter_mut().zip(sha1(&[s])) {
        *a ^= b;
    }
}

fn mix(d: &mut [u8; 20], s: &[u8]) {
    xor(d, s);
    *d = sha1(&[&d[..]]);
}

/// A score as Redis 7.0 prints it, in replies (`ZSCORE`, `ZRANGE … WITHSCORES`) and in
/// `DEBUG DIGEST`: C's `printf("%.17g")`, into `out` (cleared first).
///
/// ```
/// let mut s = String::new();
/// forksnap::format_score(0.1, &mut s);
/// assert_eq!(s, "0.10000000000000001");
/// ```
pub fn format_score(x: f64, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    if x.is_nan() {
        out.push_str(if x.is_sign_negative() { "-nan" } else { "nan" });
        return;
    }
    if x.is_infinite() {
        out.push_str(if x < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // %g's exponent is %e's after rounding to 17 significant digits.
    let e = format!("{x:.16e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{m}e{sign}{:02}", exp.unsigned_abs());
    } else {
        let _ = write!(out, "{x:.*}", (16 - exp) as usize);
        if out.contains('.') {
            let keep = out.trim_end_matches('0').trim_end_matches('.').len();
            out.truncate(keep);
        }
    }
}

fn value_into(d: &mut [u8; 20], value: &Value<'_>, expire_ms: Option<i64>) {
    let code: u32 = match value {
        Value::Str(_) | Value::Int(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 6,
        // Only the module knows its digest (Redis asks its digest callback).
        Value::Module(_) | Value::Unsupported(_) => return,
    };
    mix(d, &code.to_be_bytes());
    match value {
        Value::Str(s) => mix(d, s),
        Value::Int(i) => mix(d, i.to_string().as_bytes()),
        Value::List(l) => l.for_each(&mut |e| mix(d, e)),
        Value::Set(s) => s.for_each(&mut |e| xor(d, e)),
        Value::ZSet(z) => {
            let mut score = String::new();
            z.for_each(&mut |m, s| {
                let mut e = [0u8; 20];
                mix(&mut e, m);
                format_score(s, &mut score);
                mix(&mut e, score.as_bytes());
                xor(d, &e);
            })
        }
        Value::Hash(h) => h.for_each(&mut |f, v| {
            let mut e = [0u8; 20];
            mix(&mut e, f);
            mix(&mut e, v);
            xor(d, &e);
        }),
        Value::Stream(x) => {
            // Each entry's "ms.seq", then its fields and values, all mixed in order
            // (groups and metadata are not part of it).
            let mut text = String::new();
            x.for_each(&mut |id, fields| {
                use std::fmt::Write;
                text.clear();
                let _ = write!(text, "{}.{}", id.ms, id.seq);
                mix(d, text.as_bytes());
                fields.for_each(&mut |e| mix(d, e));
            })
        }
        Value::Module(_) | Value::Unsupported(_) => {}
    }
    if expire_ms.is_some() {
        xor(d, b"!!expire!!");
    }
}

/// `DEBUG DIGEST-VALUE` of one value: its type, content and whether it has an expiry
/// (the key is not part of it). A missing key's is [`Digest::default`] (all zeros).
pub fn value_digest(value: &Value<'_>, expire_ms: Option<i64>) -> Digest {
    let mut d = [0u8; 20];
    value_into(&mut d, value, expire_ms);
    Digest(d)
}

/// `DEBUG DIGEST` of a whole keyspace, walked in place (with a locked server, through
/// the same frozen view a snapshot uses).
///
/// ```
/// use forksnap::{dataset_digest, MemKeyspace, MemValue};
/// let mut ks = MemKeyspace::new();
/// assert_eq!(dataset_digest(&ks).to_string(), "0".repeat(40));
/// ks.insert(0, "k", MemValue::str("v"), None);
/// assert_ne!(dataset_digest(&ks).to_string(), "0".repeat(40));
/// ```
pub fn dataset_digest(ks: &dyn Keyspace) -> Digest {
    let mut fin = [0u8; 20];
    for db in ks.databases() {
        let mut mixed = false;
        ks.walk(db.index, &mut |e: &Entry<'_>| {
            if !mixed {
                mix(&mut fin, &db.index.to_be_bytes());
                mixed = true;
            }
            let mut d = [0u8; 20];
            mix(&mut d, e.key);
            value_into(&mut d, &e.value, e.expire_ms);
            xor(&mut fin, &d);
            ControlFlow::Continue(())
        });
    }
    Digest(fin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_as_printf_17g() {
        let mut s = String::new();
        for (x, want) in [
            (1.0, "1"),
            (0.1, "0.10000000000000001"),
            (-2.5, "-2.5"),
            (1e20, "1e+20"),
            (1.5e-7, "1.4999999999999999e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (12345678901234567.0, "12345678901234568"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-0.0, "-0"),
            (3.0e-300, "3.0000000000000002e-300"),
        ] {
            format_score(x, &mut s);
            assert_eq!(s, want, "{x:e}");
        }
    }
}
