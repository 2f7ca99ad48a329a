//! LZF, the compression Redis applies to RDB strings.
//!
//! Format (liblzf): a control byte `000LLLLL` starts a literal run of `L + 1` bytes; any
//! other control byte `LLLooooo` is a back reference of length `L + 2` (with `L == 7`
//! followed by an extra length byte) at distance `((o << 8) | next byte) + 1`.
//!
//! The compressor keeps its hash table in caller-provided scratch that is reused across
//! calls and never cleared: a stale entry is only used after checking it points before
//! the current position, within reach, and at the same three bytes.

/// log2 of the number of hash-table entries: 8K entries (32 KiB) stay in L1, where 16K
/// do not (docs/PERFORMANCE.md, "A faster LZF match finder", has the measurements).
pub const HASH_LOG: u32 = 13;
/// Entries in the hash table a caller must provide.
pub const HASH_SIZE: usize = 1 << HASH_LOG;

const MAX_LIT: usize = 32;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

#[inline(always)]
fn hash(v3: u32) -> usize {
    (v3.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
}

#[inline(always)]
fn load32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn load64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Misses in a row before the scan starts skipping: after `1 << SKIP_SHIFT` misses it
/// steps 2 bytes, after twice that 3, and so on (LZ4's acceleration), so data with no
/// repeats is crossed quickly while text, where matches come often, is scanned at
/// every byte.
const SKIP_SHIFT: u32 = 5;

/// The first three bytes of a 32-bit little-endian load.
const LOW3: u32 = 0x00ff_ffff;

/// Compresses `input` into `out`. Returns the compressed length, or `None` if the result
/// does not fit in `out` (the caller then stores the string uncompressed).
///
/// Positions are hashed by their first three bytes (one unaligned 32-bit load), matches
/// confirmed by the same load and extended 8 bytes at a time; a run of misses makes the
/// scan skip ahead (see [`SKIP_SHIFT`]). The output is liblzf's format, which every
/// Redis and Valkey decompresses.
pub fn compress(input: &[u8], out: &mut [u8], table: &mut [u32; HASH_SIZE]) -> Option<usize> {
    let n = input.len();
    let mut op = 0usize;
    let mut lit = 0usize; // start of the pending literal run
    let mut ip = 0usize;
    let mut misses = 0u32;
    // A 32-bit load at `ip` needs `ip + 4 <= n`.
    while ip + 4 <= n {
        let v = load32(input, ip);
        let h = hash(v & LOW3);
        let r = table[h] as usize;
        table[h] = ip as u32;
        if r < ip && ip - r <= MAX_OFF && (load32(input, r) ^ v) & LOW3 == 0 {
            let max = (n - ip).min(MAX_REF);
            let mut len = 3;
            while len + 8 <= max {
                let x = load64(input, r + len) ^ load64(input, ip + len);
                if x != 0 {
                    len += (x.trailing_zeros() / 8) as usize;
                    break;
                }
                len += 8;
            }
            if len + 8 > max {
                while len < max && input[r + len] == input[ip + len] {
                    len += 1;
                }
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
            misses = 0;
            // Index the last two positions of the match so the next one can chain.
            if ip + 2 <= n {
                for at in [ip - 2, ip - 1] {
                    let v3 = u32::from(input[at])
                        | u32::from(input[at + 1]) << 8
                        | u32::from(input[at + 2]) << 16;
                    table[hash(v3)] = at as u32;
                }
            }
        } else {
            misses += 1;
            ip += 1 + (misses >> SKIP_SHIFT) as usize;
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
