//! Is every member of a collection distinct? Redis and Valkey refuse a file with a
//! duplicate set member, hash field or sorted-set member. The one place that answers it:
//! [`first_duplicate`] for members already in memory (the reader, `MemValue`'s
//! constructors), [`Uniq`] for the encoder, which checks what a server's views yield
//! before it reports success without allocating per key.
//!
//! `Uniq`: one pass hashes each member (64 bits) into an open-addressing table of hashes
//! that the encoder reuses from key to key (cleared, never shrunk: no allocation per key
//! in steady state). Equal hashes are only *suspects*: a second pass over the view
//! compares the suspects' bytes, so a hash collision is never reported as a duplicate.
//! Members are never copied in the common case.

use xxhash_rust::xxh3::xxh3_64;

/// Walks a collection's members again (for the suspects' second pass).
pub type Rewalk<'a> = dyn Fn(&mut dyn FnMut(&[u8])) + 'a;

/// The table's empty slot. A member whose hash is 0 is stored as 1 (a suspect at worst).
const EMPTY: u64 = 0;

/// A 64-bit hash of a member. Most members are short: up to 16 bytes take two
/// (overlapping) word loads and one folded 128-bit multiply; longer ones, xxh3. Any
/// collision is only a suspect (re-checked byte for byte), so the hash needs speed and a
/// good spread, not strength.
#[inline(always)]
fn hash(m: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    let n = m.len();
    let (a, b) = match n {
        0 => (0, 0),
        1..=3 => (
            u64::from(m[0]) << 16 | u64::from(m[n / 2]) << 8 | u64::from(m[n - 1]),
            0,
        ),
        4..=7 => (
            u64::from(u32::from_le_bytes(m[..4].try_into().expect("4 bytes"))),
            u64::from(u32::from_le_bytes(m[n - 4..].try_into().expect("4 bytes"))),
        ),
        8..=16 => (
            u64::from_le_bytes(m[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(m[n - 8..].try_into().expect("8 bytes")),
        ),
        _ => return xxh3_64(m),
    };
    let r = u128::from(a ^ K0 ^ n as u64) * u128::from(b ^ K1);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The first member that appears twice among `items` (in memory, so a plain hash set).
pub fn first_duplicate<'a>(items: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().find(|m| !seen.insert(*m))
}

/// The encoder's check, reused from collection to collection; see the module doc.
#[derive(Default)]
pub struct Uniq {
    table: Vec<u64>,
    mask: usize,
    suspects: Vec<u64>,
}

impl Uniq {
    /// Starts a collection of `n` members.
    pub fn begin(&mut self, n: usize) {
        let cap = (n.max(4) * 2).next_power_of_two();
        if self.table.len() < cap {
            self.table.resize(cap, EMPTY);
        }
        self.table[..cap].fill(EMPTY);
        self.mask = cap - 1;
        self.suspects.clear();
    }

    /// One member. `begin` must have been told at least as many members as are added
    /// (more are tolerated: the table then fills and every further member is a suspect).
    #[inline(always)]
    pub fn add(&mut self, m: &[u8]) {
        let h = hash(m).max(1);
        let mut i = h as usize & self.mask;
        for _ in 0..=self.mask {
            let slot = &mut self.table[i];
            if *slot == EMPTY {
                *slot = h;
                return;
            }
            if *slot == h {
                self.suspects.push(h);
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Full: the view yielded more than it announced (its len() check reports that).
        self.suspects.push(h);
    }

    /// The first member that really appears twice, found by re-walking the view with
    /// `walk` (called only when two hashes collided).
    pub fn duplicate(&mut self, walk: &Rewalk<'_>) -> Option<Vec<u8>> {
        if self.suspects.is_empty() {
            return None;
        }
        let suspects = std::mem::take(&mut self.suspects);
        let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut dup = None;
        walk(&mut |m| {
            if dup.is_some() {
                return;
            }
            let h = hash(m).max(1);
            if !suspects.contains(&h) {
                return;
            }
            if seen.iter().any(|(sh, sm)| *sh == h && sm == m) {
                dup = Some(m.to_vec());
            } else {
                seen.push((h, m.to_vec()));
            }
        });
        self.suspects = suspects;
        self.suspects.clear();
        dup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(items: &[&[u8]]) -> Option<Vec<u8>> {
        let mut u = Uniq::default();
        u.begin(items.len());
        for m in items {
            u.add(m);
        }
        u.duplicate(&|f| items.iter().for_each(|m| f(m)))
    }

    #[test]
    fn finds_duplicates_and_only_them() {
        assert_eq!(check(&[b"a", b"b", b"c"]), None);
        assert_eq!(check(&[b"a", b"b", b"a"]), Some(b"a".to_vec()));
        assert_eq!(check(&[b"", b""]), Some(Vec::new()));
        let many: Vec<Vec<u8>> = (0..10_000).map(|i| format!("m{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = many.iter().map(|m| m.as_slice()).collect();
        assert_eq!(check(&refs), None);
        let mut with_dup = refs.clone();
        with_dup.push(b"m9999");
        assert_eq!(check(&with_dup), Some(b"m9999".to_vec()));
    }

    /// Short members of every length spread over the table's low bits (the index) about
    /// as well as random numbers would, and their full hashes hardly ever collide.
    #[test]
    fn short_members_spread() {
        let mut members = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let s = format!("{i}");
            let m = &s.as_bytes()[..s.len().min(1 + i as usize % 16)];
            members.insert([m, &b"abcdefghijklmnop"[..(i as usize % 17)]].concat());
        }
        let n = members.len() as f64;
        let slots = (1u64 << 18) as f64;
        let low: std::collections::HashSet<u64> =
            members.iter().map(|m| hash(m) & ((1 << 18) - 1)).collect();
        let full: std::collections::HashSet<u64> = members.iter().map(|m| hash(m)).collect();
        // Random indexes would fill slots * (1 - e^(-n / slots)) of them.
        let random = slots * (1.0 - (-n / slots).exp());
        assert!(low.len() as f64 > 0.97 * random, "{} indexes, random {random:.0}", low.len());
        assert!(full.len() as f64 > 0.999 * n, "{} hashes of {n} members", full.len());
    }

    #[test]
    fn a_reused_table_forgets_the_previous_collection() {
        let mut u = Uniq::default();
        u.begin(3);
        for m in [&b"x"[..], b"y", b"z"] {
            u.add(m);
        }
        assert!(u.duplicate(&|_| {}).is_none());
        u.begin(2);
        u.add(b"x");
        u.add(b"y");
        assert!(u.duplicate(&|_| {}).is_none());
    }

    #[test]
    fn more_members_than_announced_are_suspects_not_errors() {
        let distinct: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i]).collect();
        let mut u = Uniq::default();
        u.begin(1);
        for m in &distinct {
            u.add(m);
        }
        assert_eq!(u.duplicate(&|f| distinct.iter().for_each(|m| f(m))), None);
    }
}
