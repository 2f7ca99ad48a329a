//! One snapshot at a time: a second `start` while one runs returns `AlreadyRunning`, and
//! the query a server uses to defer CoW-heavy work tells the truth.

use crate::common;

use forksnap::{snapshot_running, BackendKind, Error, MemKeyspace, SnapshotOptions};

#[test]
fn second_start_while_running() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut ks = MemKeyspace::new();
    ks.populate(1_000_000, 100);
    assert!(!snapshot_running());
    let first = SnapshotOptions::new(dir.path().join("a.rdb"))
        .lzf(false)
        .backend(BackendKind::Pwrite)
        .start(&ks)
        .unwrap();
    assert!(snapshot_running());
    match SnapshotOptions::new(dir.path().join("b.rdb")).start(&ks) {
        Err(Error::AlreadyRunning) => {}
        other => panic!("expected AlreadyRunning, got {:?}", other.map(|r| r.pid())),
    }
    let report = first.wait().unwrap();
    assert_eq!(report.keys(), 1_000_000);
    assert!(!snapshot_running());
    assert!(!dir.path().join("b.rdb").exists());
    // Once finished, a new snapshot may start.
    SnapshotOptions::new(dir.path().join("b.rdb"))
        .start(&ks)
        .unwrap()
        .wait()
        .unwrap();
}
