//! Readers for the encodings only old servers write: ziplist (Redis < 7: small lists,
//! hashes, sorted sets, quicklist 1 nodes) and zipmap (Redis < 2.6 hashes).

use super::listpack::Elem;

type PResult<T> = Result<T, (usize, String)>;

fn err<T>(at: usize, m: impl Into<String>) -> PResult<T> {
    Err((at, m.into()))
}

/// Reads every element of a ziplist blob. Layout: `u32` bytes, `u32` tail offset, `u16`
/// count, entries (`prevlen`, encoding, data), `0xFF`.
pub fn parse_ziplist<'a>(
    z: &'a [u8],
    mut f: impl FnMut(Elem<'a>) -> PResult<()>,
) -> PResult<usize> {
    if z.len() < 11 {
        return err(0, "ziplist shorter than its header");
    }
    let total = u32::from_le_bytes(z[..4].try_into().unwrap()) as usize;
    if total != z.len() {
        return err(
            0,
            format!("ziplist header says {total} bytes, blob has {}", z.len()),
        );
    }
    let declared = u16::from_le_bytes([z[8], z[9]]);
    let mut p = 10usize;
    let mut count = 0usize;
    let mut prev_len = 0usize;
    loop {
        let at = p;
        let Some(&b) = z.get(p) else {
            return err(p, "ziplist has no terminator");
        };
        if b == 0xFF {
            if p + 1 != z.len() {
                return err(p, "ziplist terminator before the end of the blob");
            }
            break;
        }
        let get = |from: usize, n: usize| -> PResult<&'a [u8]> {
            z.get(from..from + n)
                .ok_or((from, "ziplist entry runs past the end".to_string()))
        };
        let (prevlen, mut q) = if b < 254 {
            (b as usize, p + 1)
        } else if b == 254 {
            (
                u32::from_le_bytes(get(p + 1, 4)?.try_into().unwrap()) as usize,
                p + 5,
            )
        } else {
            return err(p, "ziplist prevlen byte 0xFF");
        };
        if prevlen != prev_len {
            return err(p, "ziplist prevlen does not match the previous entry");
        }
        let e = get(q, 1)?[0];
        let elem = match e >> 6 {
            0 => {
                let len = (e & 0x3f) as usize;
                q += 1;
                let s = get(q, len)?;
                q += len;
                Elem::Str(s)
            }
            1 => {
                let len = (((e & 0x3f) as usize) << 8) | get(q + 1, 1)?[0] as usize;
                q += 2;
                let s = get(q, len)?;
                q += len;
                Elem::Str(s)
            }
            2 => {
                if e != 0x80 {
                    return err(q, format!("ziplist string encoding {e:#04x}"));
                }
                let len = u32::from_be_bytes(get(q + 1, 4)?.try_into().unwrap()) as usize;
                q += 5;
                let s = get(q, len)?;
                q += len;
                Elem::Str(s)
            }
            _ => {
                q += 1;
                let (v, n) = match e {
                    0xC0 => (
                        i64::from(i16::from_le_bytes(get(q, 2)?.try_into().unwrap())),
                        2,
                    ),
                    0xD0 => (
                        i64::from(i32::from_le_bytes(get(q, 4)?.try_into().unwrap())),
                        4,
                    ),
                    0xE0 => (i64::from_le_bytes(get(q, 8)?.try_into().unwrap()), 8),
                    0xF0 => {
                        let b3 = get(q, 3)?;
                        (
                            i64::from(i32::from_le_bytes([0, b3[0], b3[1], b3[2]]) >> 8),
                            3,
                        )
                    }
                    0xFE => (i64::from(get(q, 1)?[0] as i8), 1),
                    0xF1..=0xFD => (i64::from(e & 0x0f) - 1, 0),
                    _ => return err(q - 1, format!("unknown ziplist encoding {e:#04x}")),
                };
                q += n;
                Elem::Int(v)
            }
        };
        prev_len = q - at;
        p = q;
        count += 1;
        f(elem)?;
    }
    if declared != u16::MAX && declared as usize != count {
        return err(
            8,
            format!("ziplist header says {declared} entries, found {count}"),
        );
    }
    Ok(count)
}

/// Reads a zipmap blob (field, value pairs).
pub fn parse_zipmap<'a>(
    z: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> PResult<()>,
) -> PResult<()> {
    let mut p = 1usize; // zmlen byte
    if z.is_empty() {
        return err(0, "empty zipmap");
    }
    let len_at = |p: usize| -> PResult<Option<(usize, usize)>> {
        match z.get(p) {
            None => err(p, "zipmap runs past the end"),
            Some(255) => Ok(None),
            Some(254) => {
                let b = z
                    .get(p + 1..p + 5)
                    .ok_or((p, "zipmap length truncated".to_string()))?;
                Ok(Some((
                    u32::from_le_bytes(b.try_into().unwrap()) as usize,
                    p + 5,
                )))
            }
            Some(&b) => Ok(Some((b as usize, p + 1))),
        }
    };
    loop {
        let Some((klen, q)) = len_at(p)? else {
            return if p + 1 == z.len() {
                Ok(())
            } else {
                err(p, "zipmap end before the end of the blob")
            };
        };
        let key = z
            .get(q..q + klen)
            .ok_or((q, "zipmap key past the end".to_string()))?;
        let Some((vlen, q)) = len_at(q + klen)? else {
            return err(q + klen, "zipmap ends after a key");
        };
        let free = *z
            .get(q)
            .ok_or((q, "zipmap free byte missing".to_string()))? as usize;
        let val = z
            .get(q + 1..q + 1 + vlen)
            .ok_or((q, "zipmap value past the end".to_string()))?;
        p = q + 1 + vlen + free;
        f(key, val)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist built by hand from its specification (not by our own writer).
    #[test]
    fn reads_handmade_ziplist() {
        // entries: "ab", 12 (imm), -2 (int8), 300 (int16)
        let mut z = vec![0u8; 10];
        let e1 = [0u8, 0x02, b'a', b'b'];
        let e2 = [4u8, 0xFD]; // 0xF1 + 12 = 0xFD -> 12 - 1? imm value is (e & 0x0f) - 1 = 12
        let e3 = [2u8, 0xFE, 0xFE];
        let e4 = [3u8, 0xC0, 0x2C, 0x01];
        for e in [&e1[..], &e2, &e3, &e4] {
            z.extend_from_slice(e);
        }
        z.push(0xFF);
        let n = z.len() as u32;
        z[..4].copy_from_slice(&n.to_le_bytes());
        z[8..10].copy_from_slice(&4u16.to_le_bytes());
        let mut got = Vec::new();
        parse_ziplist(&z, |e| {
            got.push(e.to_bytes());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                b"ab".to_vec(),
                b"12".to_vec(),
                b"-2".to_vec(),
                b"300".to_vec()
            ]
        );
        // Truncation is an error, not a panic.
        for cut in 0..z.len() {
            assert!(parse_ziplist(&z[..cut], |_| Ok(())).is_err());
        }
    }

    #[test]
    fn reads_handmade_zipmap() {
        let z = b"\x02\x03foo\x03\x01bar\x00\x01k\x00\x00\xff";
        let mut got = Vec::new();
        parse_zipmap(z, |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (b"foo".to_vec(), b"bar".to_vec()),
                (b"k".to_vec(), b"".to_vec())
            ]
        );
    }
}
