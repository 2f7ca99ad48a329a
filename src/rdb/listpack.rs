//! Listpack: the compact encoding Redis ≥ 7 uses for small hashes, sorted sets, sets and
//! quicklist nodes.
//!
//! Layout: `u32` total bytes LE, `u16` element count LE (65535 = too many to count),
//! entries, `0xFF`. Each entry is an encoding byte (+ data) followed by its "back length",
//! the entry's size in 1–5 bytes of 7 bits, most significant first, every byte but the
//! first with the high bit set, so it can be read from its last byte backwards.

use super::num::canonical_i64;

pub const HEADER: usize = 6;
pub const EOF: u8 = 0xFF;

/// Bytes the back length of an entry of `len` bytes takes.
#[inline]
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

#[inline]
fn int_enc_size(v: i64) -> usize {
    match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32768..=32767 => 3,
        -8388608..=8388607 => 4,
        -2147483648..=2147483647 => 5,
        _ => 9,
    }
}

#[inline]
fn str_enc_size(len: usize) -> usize {
    match len {
        0..=63 => 1 + len,
        64..=4095 => 2 + len,
        _ => 5 + len,
    }
}

/// Total bytes (encoding, data, back length) the integer element `v` takes in a listpack.
#[inline]
pub fn int_entry_size(v: i64) -> usize {
    let enc = int_enc_size(v);
    enc + backlen_size(enc)
}

/// Total bytes (encoding, data, back length) the element `s` takes in a listpack.
#[inline]
pub fn entry_size(s: &[u8]) -> usize {
    let enc = match canonical_i64(s) {
        Some(v) => int_enc_size(v),
        None => str_enc_size(s.len()),
    };
    enc + backlen_size(enc)
}

/// Appends listpack entries to a byte vector (any `Extend<u8>`-like buffer).
pub trait LpBuf {
    fn put(&mut self, bytes: &[u8]);
    fn bytes_len(&self) -> usize;
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl LpBuf for bumpalo::collections::Vec<'_, u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes)
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl LpBuf for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes)
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Writes one listpack into a buffer: `begin`, `push`/`push_int` per element, `finish`.
pub struct LpWriter {
    start: usize,
    count: usize,
}

impl LpWriter {
    pub fn begin(buf: &mut impl LpBuf) -> Self {
        let start = buf.bytes_len();
        buf.put(&[0; HEADER]);
        LpWriter { start, count: 0 }
    }

    /// Appends a string element; canonical integers are stored as integers, as Redis does.
    #[inline]
    pub fn push(&mut self, buf: &mut impl LpBuf, s: &[u8]) {
        if s.len() <= 20 {
            if let Some(v) = canonical_i64(s) {
                return self.push_int(buf, v);
            }
        }
        let len = s.len();
        let mut hdr = [0u8; 5];
        let h: &[u8] = if len < 64 {
            hdr[0] = 0x80 | len as u8;
            &hdr[..1]
        } else if len < 4096 {
            hdr[0] = 0xE0 | (len >> 8) as u8;
            hdr[1] = len as u8;
            &hdr[..2]
        } else {
            hdr[0] = 0xF0;
            hdr[1..5].copy_from_slice(&(len as u32).to_le_bytes());
            &hdr[..5]
        };
        buf.put(h);
        buf.put(s);
        put_backlen(buf, h.len() + len);
        self.count += 1;
    }

    #[inline]
    pub fn push_int(&mut self, buf: &mut impl LpBuf, v: i64) {
        let mut e = [0u8; 9];
        let n = match v {
            0..=127 => {
                e[0] = v as u8;
                1
            }
            -4096..=4095 => {
                let u = (v as u16) & 0x1fff;
                e[0] = 0xC0 | (u >> 8) as u8;
                e[1] = u as u8;
                2
            }
            -32768..=32767 => {
                e[0] = 0xF1;
                e[1..3].copy_from_slice(&(v as i16).to_le_bytes());
                3
            }
            -8388608..=8388607 => {
                e[0] = 0xF2;
                e[1..4].copy_from_slice(&(v as i32).to_le_bytes()[..3]);
                4
            }
            -2147483648..=2147483647 => {
                e[0] = 0xF3;
                e[1..5].copy_from_slice(&(v as i32).to_le_bytes());
                5
            }
            _ => {
                e[0] = 0xF4;
                e[1..9].copy_from_slice(&v.to_le_bytes());
                9
            }
        };
        buf.put(&e[..n]);
        put_backlen(buf, n);
        self.count += 1;
    }

    /// Terminates the listpack and fills in its header.
    pub fn finish(self, buf: &mut impl LpBuf) {
        buf.put(&[EOF]);
        let total = (buf.bytes_len() - self.start) as u32;
        let count = self.count.min(65535) as u16;
        let b = &mut buf.bytes_mut()[self.start..self.start + HEADER];
        b[..4].copy_from_slice(&total.to_le_bytes());
        b[4..6].copy_from_slice(&count.to_le_bytes());
    }
}

#[inline]
fn put_backlen(buf: &mut impl LpBuf, l: usize) {
    let mut b = [0u8; 5];
    let n = backlen_size(l);
    // Most significant 7-bit group first; every byte except the first has the high bit.
    for (i, slot) in b[..n].iter_mut().enumerate() {
        let shift = 7 * (n - 1 - i);
        *slot = ((l >> shift) & 127) as u8 | if i == 0 { 0 } else { 128 };
    }
    buf.put(&b[..n]);
}

/// One element read back from a listpack or ziplist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element as Redis would return it: integers in decimal.
    #[cfg(any(test, feature = "internals"))]
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            Elem::Str(s) => s.to_vec(),
            Elem::Int(v) => v.to_string().into_bytes(),
        }
    }
}

/// Reads every element of a listpack blob, validating as it goes. Errors carry the offset
/// within the blob.
pub fn parse<'a>(
    lp: &'a [u8],
    mut f: impl FnMut(Elem<'a>) -> Result<(), (usize, String)>,
) -> Result<usize, (usize, String)> {
    parse_at(lp, |e, _| f(e))
}

/// [`parse`], also telling `f` where each element starts in the blob.
pub fn parse_at<'a>(
    lp: &'a [u8],
    mut f: impl FnMut(Elem<'a>, usize) -> Result<(), (usize, String)>,
) -> Result<usize, (usize, String)> {
    if lp.len() < HEADER + 1 {
        return Err((
            0,
            format!("listpack of {} bytes is shorter than its header", lp.len()),
        ));
    }
    let total = u32::from_le_bytes(lp[..4].try_into().unwrap()) as usize;
    if total != lp.len() {
        return Err((
            0,
            format!("listpack header says {total} bytes, blob has {}", lp.len()),
        ));
    }
    let declared = u16::from_le_bytes([lp[4], lp[5]]);
    let mut p = HEADER;
    let mut count = 0usize;
    let err = |at: usize, m: &str| Err((at, m.to_string()));
    loop {
        let Some(&b) = lp.get(p) else {
            return err(p, "listpack has no terminator");
        };
        if b == EOF {
            if p + 1 != lp.len() {
                return err(p, "listpack terminator before the end of the blob");
            }
            break;
        }
        let at = p;
        let need = |n: usize| -> Result<&'a [u8], (usize, String)> {
            lp.get(at..at + n)
                .ok_or((at, "listpack entry runs past the end".to_string()))
        };
        let (elem, enc_len) = if b & 0x80 == 0 {
            (Elem::Int(i64::from(b)), 1)
        } else if b & 0xC0 == 0x80 {
            let len = (b & 0x3f) as usize;
            (Elem::Str(&need(1 + len)?[1..]), 1 + len)
        } else if b & 0xE0 == 0xC0 {
            let e = need(2)?;
            let u = ((u16::from(b & 0x1f)) << 8) | u16::from(e[1]);
            let v = if u >= 1 << 12 {
                i64::from(u) - (1 << 13)
            } else {
                i64::from(u)
            };
            (Elem::Int(v), 2)
        } else if b & 0xF0 == 0xE0 {
            let e = need(2)?;
            let len = (((b & 0x0f) as usize) << 8) | e[1] as usize;
            (Elem::Str(&need(2 + len)?[2..]), 2 + len)
        } else {
            match b {
                0xF0 => {
                    let e = need(5)?;
                    let len = u32::from_le_bytes(e[1..5].try_into().unwrap()) as usize;
                    if len > lp.len() {
                        return err(at, "listpack string longer than the listpack");
                    }
                    (Elem::Str(&need(5 + len)?[5..]), 5 + len)
                }
                0xF1 => (
                    Elem::Int(i64::from(i16::from_le_bytes(
                        need(3)?[1..3].try_into().unwrap(),
                    ))),
                    3,
                ),
                0xF2 => {
                    let e = need(4)?;
                    let v = i32::from_le_bytes([0, e[1], e[2], e[3]]) >> 8;
                    (Elem::Int(i64::from(v)), 4)
                }
                0xF3 => (
                    Elem::Int(i64::from(i32::from_le_bytes(
                        need(5)?[1..5].try_into().unwrap(),
                    ))),
                    5,
                ),
                0xF4 => (
                    Elem::Int(i64::from_le_bytes(need(9)?[1..9].try_into().unwrap())),
                    9,
                ),
                _ => return err(at, &format!("unknown listpack encoding byte {b:#04x}")),
            }
        };
        let bl = backlen_size(enc_len);
        let back = need(enc_len + bl)?;
        let mut v = 0usize;
        for (i, &x) in back[enc_len..].iter().enumerate() {
            if (i == 0) != (x & 128 == 0) {
                return err(at + enc_len, "listpack back length malformed");
            }
            v = (v << 7) | (x & 127) as usize;
        }
        if v != enc_len {
            return err(
                at + enc_len,
                "listpack back length does not match the entry",
            );
        }
        p = at + enc_len + bl;
        count += 1;
        f(elem, at)?;
    }
    if declared != 65535 && declared as usize != count {
        return err(
            4,
            &format!("listpack header says {declared} elements, found {count}"),
        );
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(items: &[Vec<u8>]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = LpWriter::begin(&mut buf);
        for i in items {
            w.push(&mut buf, i);
        }
        w.finish(&mut buf);
        buf
    }

    #[test]
    fn known_bytes() {
        // antirez's listpack.md: "hello" is 0x85 'hello' with back length 6.
        let lp = build(&[b"hello".to_vec(), b"127".to_vec(), b"-1".to_vec()]);
        assert_eq!(
            lp,
            [
                &[19, 0, 0, 0, 3, 0][..],
                b"\x85hello\x06",
                b"\x7f\x01",
                b"\xdf\xff\x02",
                b"\xff"
            ]
            .concat()
        );
    }

    #[test]
    fn sizes_match_entry_size() {
        for s in [
            &b""[..],
            b"0",
            b"128",
            b"-4097",
            b"70000",
            b"9000000000",
            &[b'x'; 100],
            &[b'y'; 5000],
        ] {
            let lp = build(&[s.to_vec()]);
            assert_eq!(
                lp.len(),
                HEADER + 1 + entry_size(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    proptest! {
        #[test]
        fn roundtrip(items in proptest::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(|v| v.to_string().into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(any::<u8>(), 4090..4100),
            ], 0..40)) {
            let lp = build(&items);
            let mut got = Vec::new();
            parse(&lp, |e| { got.push(e.to_bytes()); Ok(()) }).unwrap();
            prop_assert_eq!(got, items);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse(&data, |_| Ok(()));
        }
    }
}
