//! Property test: any keyspace, encoded at any version with or without LZF (or framed in
//! LZ4), loads back to the same data.

use crate::common;

use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{Format, MemKeyspace, MemValue, SnapshotOptions};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..80),
        (0u8..3, 10usize..300).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |s| !s.is_nan()),
        (-1000i64..1000).prop_map(|v| v as f64),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ]
}

fn value() -> impl Strategy<Value = MemValue> {
    prop_oneof![
        bytes().prop_map(MemValue::str),
        any::<i64>().prop_map(MemValue::Int),
        proptest::collection::vec(bytes(), 1..300).prop_map(MemValue::list),
        proptest::collection::hash_set(bytes(), 1..200).prop_map(|s| MemValue::set(s).unwrap()),
        proptest::collection::hash_set(
            any::<i32>().prop_map(|v| v.to_string().into_bytes()),
            1..600
        )
        .prop_map(|s| MemValue::set(s).unwrap()),
        proptest::collection::hash_map(bytes(), score(), 1..200)
            .prop_map(|m| MemValue::zset(m).unwrap()),
        proptest::collection::hash_map(bytes(), bytes(), 1..200)
            .prop_map(|m| MemValue::hash(m).unwrap()),
    ]
}

fn keyspace() -> impl Strategy<Value = MemKeyspace> {
    proptest::collection::vec(
        (
            0u32..4,
            bytes(),
            value(),
            proptest::option::of(any::<i64>()),
        ),
        0..30,
    )
    .prop_map(|items| {
        let mut ks = MemKeyspace::new();
        for (db, k, v, e) in items {
            ks.insert(db, k, v, e);
        }
        ks
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn encode_then_load_is_identity(ks in keyspace(), version in 9u8..=11, lzf in any::<bool>()) {
        let (rdb, summary) = encode_to_vec(&ks, &EncodeOptions { version, lzf, ..Default::default() }).unwrap();
        prop_assert_eq!(summary.keys(), ks.len() as u64);
        let (back, report) = load(&rdb, &LoadOptions::default()).unwrap();
        prop_assert!(report.crc_checked);
        common::assert_same_data(&ks, &back);
    }

    #[test]
    fn lz4_framed_save_loads(ks in keyspace()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.rdb.lz4");
        SnapshotOptions::new(&p).format(Format::Lz4).chunk_size(4096).save(&ks).unwrap();
        let (back, report) = forksnap::rdb::load_file(&p, &LoadOptions::default()).unwrap();
        prop_assert!(report.lz4_framed);
        common::assert_same_data(&ks, &back);
    }
}
