//! LZF, the compression Redis applies to RDB strings.
//!
//! Format (liblzf): a control byte `000LLLLL` starts a literal run of `L + 1` bytes; any
//! other control byte `LLLooooo` is a back reference of length `L + 2` (with `L == 7`
//! followed by an extra length byte) at distance `((o << 8) | next byte) + 1`.
//!
//! The compressor keeps its hash table in caller-provided scratch that is reused across
//! calls and never cleared: a stale entry is only used after checking it points before
//! the current position, within reach, and at the same three bytes.

/// log2 of the number of hash-table entries.
pub const HASH_LOG: u32 = 14;
/// Entries in the hash table a caller must provide.
pub const HASH_SIZE: usize = 1 << HASH_LOG;

const MAX_LIT: usize = 32;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

#[inline]
fn hash3(b: &[u8]) -> usize {
    let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    (v.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
}

/// Compresses `input` into `out`. Returns the compressed length, or `None` if the result
/// does not fit in `out` (the caller then stores the string uncompressed).
pub fn compress(input: &[u8], out: &mut [u8], table: &mut [u32; HASH_SIZE]) -> Option<usize> {
    let n = input.len();
    let mut op = 0usize;
    let mut lit = 0usize; // start of the pending literal run
    let mut ip = 0usize;
    while ip + 2 < n {
        let h = hash3(&input[ip..]);
        let r = table[h] as usize;
        table[h] = ip as u32;
        if r < ip
            && ip - r <= MAX_OFF
            && input[r] == input[ip]
            && input[r + 1] == input[ip + 1]
            && input[r + 2] == input[ip + 2]
        {
            let max = (n - ip).min(MAX_REF);
            let mut len = 3;
            while len < max && input[r + len] == input[ip + len] {
                len += 1;
            }
            op = emit_literals(&input[lit..ip], out, op)?;
            let off = ip - r - 1;
            let l = len - 2;
            if l < 7 {
                if op + 2 > out.len() {
                    return None;
                }
                out[op] = ((l << 5) | (off >> 8)) as u8;
                out[op + 1] = off as u8;
                op += 2;
            } else {
                if op + 3 > out.len() {
                    return None;
                }
                out[op] = ((7 << 5) | (off >> 8)) as u8;
                out[op + 1] = (l - 7) as u8;
                out[op + 2] = off as u8;
                op += 3;
            }
            ip += len;
            lit = ip;
            // Index the last two positions of the match so the next one can chain.
            if ip + 2 < n {
                table[hash3(&input[ip - 2..])] = (ip - 2) as u32;
                table[hash3(&input[ip - 1..])] = (ip - 1) as u32;
            }
        } else {
            ip += 1;
        }
    }
    emit_literals(&input[lit..], out, op)
}

#[inline]
fn emit_literals(lits: &[u8], out: &mut [u8], mut op: usize) -> Option<usize> {
    for run in lits.chunks(MAX_LIT) {
        let end = op + 1 + run.len();
        if end > out.len() {
            return None;
        }
        out[op] = (run.len() - 1) as u8;
        out[op + 1..end].copy_from_slice(run);
        op = end;
    }
    Some(op)
}

/// Decompresses `input` into `out`, which must be exactly the original length.
/// Errors name the input offset of the bad control byte.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), (usize, &'static str)> {
    let mut ip = 0usize;
    let mut op = 0usize;
    while ip < input.len() {
        let at = ip;
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            if ip + len > input.len() {
                return Err((at, "LZF literal run past the end of the input"));
            }
            if op + len > out.len() {
                return Err((at, "LZF output longer than the stated length"));
            }
            out[op..op + len].copy_from_slice(&input[ip..ip + len]);
            ip += len;
            op += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                let Some(&x) = input.get(ip) else {
                    return Err((at, "LZF back reference truncated"));
                };
                len += x as usize;
                ip += 1;
            }
            let Some(&lo) = input.get(ip) else {
                return Err((at, "LZF back reference truncated"));
            };
            ip += 1;
            let dist = (((ctrl & 0x1f) << 8) | lo as usize) + 1;
            len += 2;
            if dist > op {
                return Err((at, "LZF back reference before the start of the output"));
            }
            if op + len > out.len() {
                return Err((at, "LZF output longer than the stated length"));
            }
            let from = op - dist;
            if dist >= len {
                out.copy_within(from..from + len, op);
            } else {
                for i in 0..len {
                    out[op + i] = out[from + i];
                }
            }
            op += len;
        }
    }
    if op != out.len() {
        return Err((input.len(), "LZF output shorter than the stated length"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(data: &[u8], table: &mut [u32; HASH_SIZE]) -> Option<usize> {
        let mut out = vec![0u8; data.len() + data.len() / 32 + 8];
        let n = compress(data, &mut out, table)?;
        let mut back = vec![0u8; data.len()];
        decompress(&out[..n], &mut back).expect("our own output must decompress");
        assert_eq!(back, data);
        Some(n)
    }

    #[test]
    fn compresses_populate_values() {
        let mut t = Box::new([0u32; HASH_SIZE]);
        let mut v = b"value:12345".to_vec();
        v.resize(100, 0);
        let n = roundtrip(&v, &mut t).unwrap();
        assert!(n < 20, "zero padding should collapse, got {n} bytes");
    }

    #[test]
    fn stale_table_entries_are_harmless() {
        let mut t = Box::new([u32::MAX / 2; HASH_SIZE]);
        for i in 0..200u32 {
            let data: Vec<u8> = (0..(i * 7 % 300)).map(|j| ((j * i) % 5) as u8).collect();
            roundtrip(&data, &mut t);
        }
    }

    #[test]
    fn respects_output_limit() {
        let mut t = Box::new([0u32; HASH_SIZE]);
        let data: Vec<u8> = (0..100u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut out = vec![0u8; 96];
        assert!(compress(&data, &mut out, &mut t).is_none());
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let mut out = [0u8; 8];
        assert!(decompress(&[0x20, 0x00], &mut out).is_err()); // reference before start
        assert!(decompress(&[0x05, 1, 2], &mut out).is_err()); // literal past end
        assert!(decompress(&[0x00, 1], &mut out).is_err()); // too short
        assert!(decompress(&[0xe0], &mut out).is_err()); // truncated long ref
    }

    proptest! {
        #[test]
        fn random_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut t = Box::new([0u32; HASH_SIZE]);
            roundtrip(&data, &mut t);
        }

        #[test]
        fn structured_roundtrip(seed in proptest::collection::vec(0u8..4, 1..64), reps in 1usize..200) {
            let data: Vec<u8> = seed.iter().cycle().take(seed.len() * reps).copied().collect();
            let mut t = Box::new([0u32; HASH_SIZE]);
            roundtrip(&data, &mut t);
        }

        #[test]
        fn decompress_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..400) {
            let mut out = vec![0u8; n];
            let _ = decompress(&data, &mut out);
        }
    }
}
