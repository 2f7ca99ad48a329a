//! A reference LZF compressor for the tests and benches: liblzf 3.6's algorithm with the
//! choices Redis builds it with (`HLOG 16`: a 64K-entry table of positions hashed from
//! three bytes; `VERY_FAST`: the two positions after a match hashed in; no skipping;
//! matches extended byte by byte), written here from the algorithm's description. As
//! liblzf, it does not clear its table between calls (a stale entry is used only if it
//! points before the current position, within reach, at the same three bytes, so it
//! can add a match, never a wrong one). forksnap's own compressor is
//! `forksnap::rdb::lzf`; this one exists to measure it against (benches/encode.rs,
//! "lzf-vs-reference") and never ships.
//!
//! Checked by hand on 2026-11-30 against Redis 7.0.15's `DUMP` of 200 text values of
//! 25–1,600 bytes (its LZF blobs), with the table cleared before each value: 154 of the
//! 155 it compressed were byte for byte this compressor's output; the other was 3 bytes
//! shorter in Redis (a stale entry of its uncleared table: an extra match).

const HLOG: u32 = 16;
const HSIZE: usize = 1 << HLOG;
const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

fn idx(h: u32) -> usize {
    ((h >> (3 * 8 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
}

/// Compresses `input` into `out` (its length is the limit, as liblzf's `out_len`):
/// the compressed length, or `None` when it does not fit. `table` must hold `1 << 16`
/// entries, zeroed before the first call and kept across calls.
pub fn compress(input: &[u8], out: &mut [u8], table: &mut [u32]) -> Option<usize> {
    let n = input.len();
    let out_end = out.len();
    if n == 0 || out_end == 0 {
        return None;
    }
    let mut op = 1usize; // after the first literal run's length byte
    let mut lit = 0usize;
    let mut ip = 0usize;
    // Three bytes are hashed at each position; the last two are always literals.
    let mut hval: u32 = if n >= 2 {
        (u32::from(input[0]) << 8) | u32::from(input[1])
    } else {
        0
    };
    while n >= 3 && ip < n - 2 {
        hval = (hval << 8) | u32::from(input[ip + 2]);
        let slot = idx(hval);
        let r = table[slot] as usize;
        table[slot] = ip as u32;
        // A cleared entry (position 0) never matches: liblzf requires `ref > in_data`.
        if r > 0
            && r < ip
            && ip - r - 1 < MAX_OFF
            && input[r + 2] == input[ip + 2]
            && input[r] == input[ip]
            && input[r + 1] == input[ip + 1]
        {
            let off = ip - r - 1;
            let mut len = 2usize;
            let maxlen = (n - ip - len).min(MAX_REF);
            if op + 3 + 1 >= out_end && op - usize::from(lit == 0) + 3 + 1 >= out_end {
                return None;
            }
            out[op - lit - 1] = (lit as u8).wrapping_sub(1); // stop the run
            op -= usize::from(lit == 0); // no run at all: drop its length byte
            loop {
                len += 1;
                if !(len < maxlen && input[r + len] == input[ip + len]) {
                    break;
                }
            }
            len -= 2; // octets - 1
            ip += 1;
            if len < 7 {
                out[op] = ((off >> 8) + (len << 5)) as u8;
                op += 1;
            } else {
                out[op] = ((off >> 8) + (7 << 5)) as u8;
                out[op + 1] = (len - 7) as u8;
                op += 2;
            }
            out[op] = off as u8;
            op += 1;
            lit = 0;
            op += 1; // start a run
            ip += len + 1;
            if ip >= n - 2 {
                break;
            }
            ip -= 2;
            hval = (u32::from(input[ip]) << 8) | u32::from(input[ip + 1]);
            hval = (hval << 8) | u32::from(input[ip + 2]);
            table[idx(hval)] = ip as u32;
            ip += 1;
            hval = (hval << 8) | u32::from(input[ip + 2]);
            table[idx(hval)] = ip as u32;
            ip += 1;
        } else {
            if op >= out_end {
                return None;
            }
            literal(input, out, &mut ip, &mut op, &mut lit);
        }
    }
    if op + 3 > out_end {
        return None;
    }
    while ip < n {
        literal(input, out, &mut ip, &mut op, &mut lit);
    }
    out[op - lit - 1] = (lit as u8).wrapping_sub(1);
    op -= usize::from(lit == 0);
    Some(op)
}

/// Copies one literal byte; a run that reaches 32 bytes is closed and a new one started.
fn literal(input: &[u8], out: &mut [u8], ip: &mut usize, op: &mut usize, lit: &mut usize) {
    *lit += 1;
    out[*op] = input[*ip];
    *op += 1;
    *ip += 1;
    if *lit == MAX_LIT {
        out[*op - *lit - 1] = (*lit - 1) as u8;
        *lit = 0;
        *op += 1;
    }
}
