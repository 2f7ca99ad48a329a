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

/// A slot holds a member's hash in its high 48 bits and, in its low 16, the generation
/// (the collection) that wrote it: a slot of another generation is empty, so a new
/// collection starts without clearing the table. Generation 0 is never used, so a fresh
/// (zeroed) slot is empty too.
const GEN_BITS: u32 = 16;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

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
        _ => return long_hash(m),
    };
    let r = u128::from(a ^ K0 ^ n as u64) * u128::from(b ^ K1);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Members over 16 bytes: out of line, so the encoder's loops stay small.
#[inline(never)]
fn long_hash(m: &[u8]) -> u64 {
    xxh3_64(m)
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
    /// The current collection's generation (1..=`GEN_MASK`).
    gen: u64,
    /// Members the table still takes while at most half full (so a probe always ends).
    room: usize,
    suspects: Vec<u64>,
}

impl Uniq {
    /// Starts a collection of `n` members.
    pub fn begin(&mut self, n: usize) {
        let cap = (n.max(4) * 2).next_power_of_two();
        if self.table.len() < cap {
            self.table.resize(cap, 0);
        }
        self.gen += 1;
        if self.gen > GEN_MASK {
            // Every generation used: forget them all once in 65,535 collections.
            self.table.fill(0);
            self.gen = 1;
        }
        self.mask = cap - 1;
        self.room = cap / 2;
        self.suspects.clear();
    }

    /// One member. `begin` must have been told at least as many members as are added
    /// (more are tolerated: once the table is half full every further member is a
    /// suspect, re-checked byte for byte).
    #[inline(always)]
    pub fn add(&mut self, m: &[u8]) {
        let h = hash(m);
        let tagged = (h & !GEN_MASK) | self.gen;
        if self.room == 0 {
            // The view yielded more than it announced (its len() check reports that).
            self.suspects.push(tagged);
            return;
        }
        self.room -= 1;
        // Ends: at most half the slots hold this generation, so an empty one is found.
        let mut i = (h >> GEN_BITS) as usize & self.mask;
        loop {
            let slot = self.table[i];
            if slot & GEN_MASK != self.gen {
                self.table[i] = tagged;
                return;
            }
            if slot == tagged {
                self.suspects.push(tagged);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first member that really appears twice, found by re-walking the view with
    /// `walk` (called only when two hashes collided).
    pub fn duplicate(&mut self, walk: &Rewalk<'_>) -> Option<Vec<u8>> {
        if self.suspects.is_empty() {
            return None;
        }
        let suspects = std::mem::take(&mut self.suspects);
        let gen = self.gen;
        let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut dup = None;
        walk(&mut |m| {
            if dup.is_some() {
                return;
            }
            let h = (hash(m) & !GEN_MASK) | gen;
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
            members.iter().map(|m| (hash(m) >> GEN_BITS) & ((1 << 18) - 1)).collect();
        let full: std::collections::HashSet<u64> =
            members.iter().map(|m| hash(m) >> GEN_BITS).collect();
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

    /// The generation wraps after 65,535 collections: the table is then cleared, so slots
    /// of an old collection never pass for the new one's (a large collection's slots
    /// outlive the small ones', which only reuse the table's first few).
    #[test]
    fn generations_wrap_without_false_or_missed_duplicates() {
        let large: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut u = Uniq::default();
        let mut wrapped = 0;
        for i in 0..140_000u32 {
            // The first collection and the first after the wrap: both generation 1.
            if u.gen == 0 || u.gen == GEN_MASK {
                u.begin(large.len());
                large.iter().for_each(|m| u.add(m));
                let current = u.table.iter().filter(|s| *s & GEN_MASK == u.gen).count();
                assert_eq!(current, large.len(), "collection {i}: old slots look current");
                assert!(u.suspects.is_empty(), "collection {i}");
                wrapped += 1;
                continue;
            }
            let a = i.to_le_bytes();
            let b = (i ^ 0x5555).to_le_bytes();
            u.begin(2);
            u.add(&a);
            u.add(&b);
            assert!(u.suspects.is_empty(), "collection {i}");
            if i % 9_973 == 0 {
                u.begin(2);
                u.add(&a);
                u.add(&a);
                let walk = |f: &mut dyn FnMut(&[u8])| {
                    f(&a);
                    f(&a);
                };
                assert_eq!(u.duplicate(&walk), Some(a.to_vec()), "collection {i}");
            }
        }
        assert_eq!(wrapped, 3, "the large collection at generation 1, three times");
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
