//! The parallel child (`SnapshotOptions::threads`): a forked snapshot encoded by several
//! threads loads back to the same data in forksnap, Redis 7.0 and Valkey 9.1 (the same
//! `DEBUG DIGEST` as the one-thread file), and a server's own partitioning (the public
//! `Partitioned` trait) of any keyspace encodes to the same data.

use crate::common::{self, datasets, Kind, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{DbInfo, Entry, Keyspace, MemKeyspace, Partitioned, SnapshotOptions};
use proptest::prelude::*;
use std::ops::ControlFlow;

/// Edge cases in three databases and enough populate keys that database 0 has several
/// parts.
fn sample() -> MemKeyspace {
    let mut ks = datasets::edge_cases(false);
    ks.populate_prefix(0, 60_000, "pop:", 120);
    ks.populate_prefix(1, 20_000, "one:", 40);
    ks
}

#[test]
fn a_forked_parallel_snapshot_loads_with_the_same_digest() {
    let _serial = common::fork_lock();
    let ks = sample();
    assert!(ks.partitioned().unwrap().partitions(0) > 2);
    let dir = tempfile::tempdir().unwrap();
    for (kind, version) in [(Kind::Valkey91, 11), (Kind::Redis70, 10)] {
        let one = dir.path().join(format!("one-{version}.rdb"));
        let two = dir.path().join(format!("two-{version}.rdb"));
        let r1 = SnapshotOptions::new(&one)
            .rdb_version(version)
            .start(&ks)
            .unwrap()
            .wait()
            .unwrap();
        let r2 = SnapshotOptions::new(&two)
            .rdb_version(version)
            .threads(2)
            .start(&ks)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(r2.keys(), r1.keys());
        let (back, report) = forksnap::load_file(&two, &LoadOptions::default()).unwrap();
        assert!(report.crc_checked);
        common::assert_same_data(&ks, &back);

        let Some(mut a) = Server::start_with(kind, Some(&std::fs::read(&one).unwrap())) else {
            continue;
        };
        let want = a.digest();
        drop(a);
        let mut b = Server::start_with(kind, Some(&std::fs::read(&two).unwrap())).unwrap();
        assert_eq!(b.digest(), want, "{kind:?}: log:\n{}", b.log());
        assert_eq!(b.dbsize_all(), ks.len() as u64);
    }
}

/// Any `MemKeyspace`, walked in parts of `part` keys by the server's own partitioning
/// (every database walked whole, each part keeping its own keys).
struct Split<'a> {
    ks: &'a MemKeyspace,
    part: usize,
}

impl Keyspace for Split<'_> {
    fn databases(&self) -> Vec<DbInfo> {
        self.ks.databases()
    }
    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        self.ks.walk(db, visit)
    }
    fn partitioned(&self) -> Option<&dyn Partitioned> {
        Some(self)
    }
}

impl Partitioned for Split<'_> {
    fn partitions(&self, db: u32) -> usize {
        self.ks.db(db).map_or(0, |d| d.len().div_ceil(self.part))
    }
    fn walk_partition(
        &self,
        db: u32,
        p: usize,
        visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
    ) {
        let mut i = 0;
        self.ks.walk(db, &mut |e| {
            let mine = i / self.part == p;
            i += 1;
            if mine {
                visit(e)
            } else {
                ControlFlow::Continue(())
            }
        });
    }
}

fn keyspace() -> impl Strategy<Value = MemKeyspace> {
    proptest::collection::vec(
        (
            0u32..3,
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::collection::vec(any::<u8>(), 0..400),
            proptest::option::of(any::<i64>()),
        ),
        0..200,
    )
    .prop_map(|items| {
        let mut ks = MemKeyspace::new();
        for (db, k, v, e) in items {
            ks.insert(db, k, forksnap::MemValue::str(v), e);
        }
        ks
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn a_server_partitioning_encodes_the_same_data(
        ks in keyspace(),
        threads in 2usize..5,
        part in 1usize..20,
        lzf in any::<bool>(),
    ) {
        let split = Split { ks: &ks, part };
        let opts = EncodeOptions { threads, lzf, ..Default::default() };
        let (rdb, summary) = encode_to_vec(&split, &opts).unwrap();
        prop_assert_eq!(summary.keys(), ks.len() as u64);
        let (back, report) = load(&rdb, &LoadOptions::default()).unwrap();
        prop_assert!(report.crc_checked);
        common::assert_same_data(&ks, &back);
    }
}
