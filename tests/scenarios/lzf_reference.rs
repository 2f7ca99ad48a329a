//! The reference LZF (liblzf's algorithm, tests/common/lzf_ref.rs) that benches/encode.rs
//! measures forksnap's compressor against: what it writes decompresses to the input (so
//! the comparison is between two valid compressors), and forksnap's output on text is
//! no more than 2% larger than the reference's (issue 14 §3's size bound, here on a
//! fixed corpus).

use crate::common::lzf_ref;
use forksnap::rdb::lzf;
use proptest::prelude::*;

fn round_trip(input: &[u8]) {
    let mut out = vec![0u8; input.len() + input.len() / 16 + 64];
    let mut table = vec![0u32; 1 << 16];
    if let Some(n) = lzf_ref::compress(input, &mut out, &mut table) {
        let mut back = vec![0u8; input.len()];
        lzf::decompress(&out[..n], &mut back).unwrap();
        assert_eq!(back, input);
    }
}

/// Words with numbers and punctuation, as the `mixed` dataset's text.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "alpha",
        "bravo",
        "user",
        "session",
        "token",
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "{\"id\":",
        "\"name\":",
    ];
    let mut x = seed;
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = x >> 33;
        if r.is_multiple_of(7) {
            v.extend_from_slice((r % 100_000).to_string().as_bytes());
        } else {
            v.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
        }
        v.push(if r.is_multiple_of(5) { b',' } else { b' ' });
    }
    v.truncate(len);
    v
}

#[test]
fn reference_output_decompresses_to_its_input() {
    for len in [
        0, 1, 2, 3, 4, 5, 31, 32, 33, 100, 264, 265, 1000, 9000, 70_000,
    ] {
        round_trip(&text(len, len as u64));
        round_trip(&vec![b'a'; len]);
        round_trip(&(0..len).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>());
    }
}

proptest! {
    #[test]
    fn any_input_round_trips_through_the_reference(input in proptest::collection::vec(0u8..4, 0..3000)) {
        round_trip(&input);
    }
}

#[test]
fn forksnap_lzf_is_within_two_percent_of_the_reference_on_text() {
    let mut table = Box::new([0u32; lzf::HASH_SIZE]);
    let mut ref_table = vec![0u32; 1 << 16];
    let (mut ours, mut theirs, mut raw) = (0usize, 0usize, 0usize);
    for i in 0..2000u64 {
        let v = text([25, 100, 400, 1600][(i % 4) as usize], i);
        let mut out = vec![0u8; v.len() - 4];
        ours += lzf::compress(&v, &mut out, &mut table).unwrap_or(v.len());
        theirs += lzf_ref::compress(&v, &mut out, &mut ref_table).unwrap_or(v.len());
        raw += v.len();
    }
    assert!(
        theirs < raw * 3 / 4,
        "the corpus compresses: {theirs} of {raw}"
    );
    assert!(
        ours as f64 <= theirs as f64 * 1.02,
        "forksnap {ours} bytes against the reference's {theirs} (of {raw})"
    );
}
