//! Damaged input gives an error naming a byte offset: never a panic, never a huge
//! allocation from a corrupt length.

use crate::common;

use common::datasets;
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{Error, Format, SnapshotOptions};
use proptest::prelude::*;

fn sample(version: u8, lzf: bool) -> Vec<u8> {
    encode_to_vec(
        &datasets::edge_cases(false),
        &EncodeOptions {
            version,
            lzf,
            ..Default::default()
        },
    )
    .unwrap()
    .0
}

fn offset_of(e: &Error) -> Option<u64> {
    match e {
        Error::Corrupt { offset, .. }
        | Error::ChecksumMismatch { offset, .. }
        | Error::Unsupported { offset, .. }
        | Error::Rejected { offset, .. } => Some(*offset),
        _ => None,
    }
}

#[test]
fn every_truncation_is_an_error_with_an_offset() {
    for (v, lzf) in [(9, true), (10, false), (11, true)] {
        let rdb = sample(v, lzf);
        // Every cut near the start and end, and a stride through the middle.
        let cuts = (0..rdb.len().min(2000))
            .chain((2000..rdb.len()).step_by(97))
            .chain(rdb.len() - 9..rdb.len());
        for cut in cuts {
            let e = load(&rdb[..cut], &LoadOptions::default())
                .err()
                .unwrap_or_else(|| panic!("cut at {cut} loaded"));
            let off = offset_of(&e).unwrap_or_else(|| panic!("no offset in {e}"));
            assert!(
                off <= cut as u64,
                "offset {off} beyond the {cut} bytes given: {e}"
            );
            assert!(e.to_string().contains("byte"), "{e}");
        }
    }
}

/// Any flipped bit fails the load: the CRC-64 catches what the parser lets through.
#[test]
fn flipped_bytes_fail_the_checksum() {
    let rdb = sample(11, true);
    for at in (9..rdb.len()).step_by(13) {
        for bit in [0x01u8, 0x80] {
            let mut bad = rdb.clone();
            bad[at] ^= bit;
            let r = load(&bad, &LoadOptions::default());
            assert!(r.is_err(), "flip {bit:#x} at {at} went unnoticed");
        }
    }
}

/// A file whose checksum is off (stored as 0, as Redis writes it with `rdbchecksum no`),
/// so that only the parser stands between damage and a wrong keyspace.
fn unchecked(mut rdb: Vec<u8>) -> Vec<u8> {
    let n = rdb.len();
    rdb[n - 8..].fill(0);
    rdb
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in the file", String::from_utf8_lossy(needle)))
}

/// Structural damage is caught by the parser itself, at the damaged byte or after it,
/// with no checksum to fall back on.
#[test]
fn the_parser_alone_catches_structural_damage() {
    let mut ks = forksnap::MemKeyspace::new();
    ks.insert(0, "the-string-key", forksnap::MemValue::str("v"), None);
    let hash = forksnap::MemValue::hash([("field-one", "1"), ("field-two", "2")]).unwrap();
    ks.insert(0, "the-hash-key", hash, None);
    let opts = EncodeOptions {
        version: 11,
        lzf: false,
        ..Default::default()
    };
    let rdb = unchecked(encode_to_vec(&ks, &opts).unwrap().0);
    let (loaded, report) = load(&rdb, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(!report.crc_checked, "a zero CRC is not checked");

    // Key names are short: [type][1-byte length][key]; the hash's value follows as
    // [1-byte length][listpack: total bytes u32, count u16, entries…, 0xFF].
    let skey = find(&rdb, b"the-string-key");
    let hkey = find(&rdb, b"the-hash-key");
    let lp = hkey + b"the-hash-key".len() + 1;
    let lp_len = rdb[lp - 1] as usize;
    assert_eq!(
        rdb[lp + lp_len - 1],
        0xFF,
        "listpack terminator where expected"
    );
    let eof = rdb.len() - 9;
    // (what, byte offset, the value written there, what the error must say)
    let cases = [
        ("unknown type byte", skey - 2, 0x3F, "unknown value type 63"),
        (
            "unknown hash type byte",
            hkey - 2,
            0x3F,
            "unknown value type 63",
        ),
        (
            "listpack total bytes",
            lp,
            rdb[lp] ^ 0x40,
            "listpack header says",
        ),
        (
            "listpack element count",
            lp + 4,
            1,
            "header says 1 elements, found 4",
        ),
        (
            "listpack terminator",
            lp + lp_len - 1,
            0x00,
            "runs past the end",
        ),
        (
            "listpack entry header",
            lp + 6,
            0xF1,
            "back length does not match",
        ),
        ("end-of-file opcode", eof, 0x3E, "unknown value type 62"),
    ];
    for (what, at, value, _says) in cases {
        let mut bad = rdb.clone();
        bad[at] = value;
        assert_ne!(bad, rdb, "{what}: the damage changed nothing");
        match load(&bad, &LoadOptions::default()) {
            Ok((got, _)) => panic!(
                "{what} at byte {at}: loaded {} keys without a word",
                got.len()
            ),
            Err(e) => {
                let off = offset_of(&e).unwrap_or_else(|| panic!("{what}: no offset in {e}"));
                assert!(
                    !matches!(e, Error::ChecksumMismatch { .. }),
                    "{what}: caught only by a checksum: {e}"
                );
                // The error points into the damaged value (a listpack's errors name the
                // value's start or a byte inside it), never past the file.
                assert!(
                    off <= bad.len() as u64,
                    "{what}: offset {off} past the end: {e}"
                );
                assert!(
                    off + 16 >= at as u64,
                    "{what} at {at}: error at {off}, before the damage: {e}"
                );
            }
        }
    }
}

#[test]
fn lz4_frame_damage_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.rdb.lz4");
    SnapshotOptions::new(&p)
        .format(Format::Lz4)
        .chunk_size(64 << 10)
        .save(&datasets::edge_cases(true))
        .unwrap();
    let data = std::fs::read(&p).unwrap();
    assert!(load(&data, &LoadOptions::default()).is_ok());
    for at in (0..data.len()).step_by(data.len() / 50) {
        let mut bad = data.clone();
        bad[at] ^= 0x20;
        assert!(load(&bad, &LoadOptions::default()).is_err(), "flip at {at}");
    }
    for cut in (0..data.len()).step_by(data.len() / 50) {
        assert!(
            load(&data[..cut], &LoadOptions::default()).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn absurd_lengths_do_not_allocate() {
    // A list claiming 2^60 elements, a string claiming 4 GiB, an LZF string claiming
    // 1 TiB: each must be refused before any allocation of that size.
    let mut base = b"REDIS0011".to_vec();
    base.extend_from_slice(&[0xFE, 0x00]);
    for value in [
        [&[1u8, 1, b'k', 0x81][..], &(1u64 << 60).to_be_bytes()].concat(),
        [&[0u8, 1, b'k', 0x80][..], &u32::MAX.to_be_bytes()].concat(),
        [
            &[0u8, 1, b'k', 0xC3, 0x02, 0x81][..],
            &(1u64 << 40).to_be_bytes(),
            &[0, 0],
        ]
        .concat(),
    ] {
        let mut f = base.clone();
        f.extend_from_slice(&value);
        let e = load(&f, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
}

#[test]
fn wrong_magic_and_versions_are_named() {
    for (input, want) in [
        (&b"RADIS0011"[..], "not an RDB"),
        (b"REDIS0013\xff", "version"),
        (b"REDIS00x1\xff", "version"),
        (b"VALKEY081\xff", "version"),
        (b"", "not an RDB"),
    ] {
        let e = load(input, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{input:?}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = b"REDIS0011".to_vec();
        f.extend_from_slice(&body);
        let _ = load(&f, &LoadOptions::default());
    }

    #[test]
    fn mutated_files_never_panic(at in 9usize..3000, val in any::<u8>(), cut in 0usize..4000) {
        let rdb = sample(10, true);
        let mut bad = rdb.clone();
        let at = at % bad.len();
        bad[at] = val;
        bad.truncate(cut.max(10).min(bad.len()));
        let _ = load(&bad, &LoadOptions::default());
    }
}

/// REDIS0009, db0: a list whose header claims `n` elements, followed by `n` empty ones
/// (one byte each) and EOF: valid, and its element table is 16 bytes per element.
fn list_of_empty_elements(n: u32) -> Vec<u8> {
    let mut f = b"REDIS0009\xfe\x00\x01\x01l\x80".to_vec();
    f.extend_from_slice(&n.to_be_bytes());
    f.resize(f.len() + n as usize, 0);
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

/// An allocation sized by the input is fallible: under an address-space limit the load
/// fails with an error naming the offset, instead of the process aborting (SIGABRT).
#[test]
fn allocations_sized_by_the_input_fail_cleanly() {
    use crate::common::{helper, helper_mode, say};
    if helper_mode().is_some() {
        let data = list_of_empty_elements(40_000_000);
        let lim = libc::rlimit {
            rlim_cur: 512 << 20,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit on this helper process with a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
        match load(&data, &LoadOptions::default()) {
            Err(e) => say(&format!("ERR {} {}", offset_of(&e).is_some(), e)),
            Ok(_) => say("LOADED"),
        }
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let (lines, code) = helper(
        "reader_rejects_damage::allocations_sized_by_the_input_fail_cleanly",
        "rlimit-as",
        &dir.path().join("unused"),
    );
    assert_eq!(code, Some(0), "the helper died: {lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("HELPER ERR true") && lines[0].contains("out of memory"),
        "{lines:?}"
    );
}

/// A value longer than the per-value limit (Redis's 512 MiB bulk limit by default) is
/// refused before anything is allocated for it; a lower limit is honoured.
#[test]
fn values_over_the_limit_are_refused() {
    // An LZF string claiming 600 MB from 7 MB of compressed bytes (plausible by the ratio).
    let mut f = b"REDIS0009\xfe\x00\x00\x01k\xc3".to_vec();
    for n in [7_000_000u32, 600_000_000] {
        f.push(0x80);
        f.extend_from_slice(&n.to_be_bytes());
    }
    f.resize(f.len() + 7_000_000, 0);
    let e = load(&f, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("per-value limit of 536870912"),
        "{e}"
    );
    assert_eq!(offset_of(&e), Some(14));
    let small = list_of_empty_elements(3);
    assert!(load(&small, &LoadOptions::default()).is_ok());
    let mut key = b"REDIS0009\xfe\x00\x00\x05hello\x05world".to_vec();
    key.push(0xFF);
    key.extend_from_slice(&[0; 8]);
    let opts = LoadOptions {
        max_value_bytes: 4,
        ..Default::default()
    };
    let e = load(&key, &opts).unwrap_err();
    assert!(
        e.to_string()
            .contains("5 bytes exceed the per-value limit of 4"),
        "{e}"
    );
}
