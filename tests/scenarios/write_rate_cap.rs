//! `max_write_rate` engages (the writer waits, and says how long), the file stays exact,
//! and a rate of 0 is refused before anything forks. (The rate it holds is a benchmark's
//! business: `snapbench --max-write-rate`, docs/PERFORMANCE.md.)

use crate::common::{self, datasets};
use forksnap::{Error, SnapshotOptions};

#[test]
fn a_capped_snapshot_waits_and_stays_exact() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(20_000, 100); // ~2.4 MB of RDB
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capped.rdb");
    // 64 KiB chunks: the burst is 50 ms of the rate (400 KB), far below the file.
    let opts = SnapshotOptions::new(&path)
        .lzf(false)
        .chunk_size(64 << 10)
        .max_write_rate(Some(8 << 20));
    for r in [
        opts.save(&ks).unwrap(),
        opts.start(&ks).unwrap().wait().unwrap(),
    ] {
        assert!(r.bytes_written > 2 << 20, "{} bytes", r.bytes_written);
        assert!(
            r.stats.throttled_us > 0,
            "the cap never made the writer wait: {:?}",
            r.stats
        );
        let (back, _) = forksnap::load_file(&path, &Default::default()).unwrap();
        common::assert_same_data(&ks, &back);
    }
    // Without a cap the writer never waits.
    let r = SnapshotOptions::new(&path).save(&ks).unwrap();
    assert_eq!(r.stats.throttled_us, 0);
}

#[test]
fn a_rate_of_zero_is_refused() {
    let ks = datasets::populate(10, 10);
    let dir = tempfile::tempdir().unwrap();
    let opts = SnapshotOptions::new(dir.path().join("x.rdb")).max_write_rate(Some(0));
    for r in [opts.save(&ks).map(|_| ()), opts.start(&ks).map(|_| ())] {
        match r {
            Err(Error::InvalidOption(m)) => assert!(m.contains("0 bytes/s"), "{m}"),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a file was left"
    );
}
