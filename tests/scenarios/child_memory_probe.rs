//! The child's own-memory probe is taken while its buffers are in use, also for a
//! keyspace of a few huge keys (no mid-walk progress call by key count), so it never
//! understates what the child needs.

use crate::common;

use forksnap::{BackendKind, MemKeyspace, MemValue, SnapshotOptions};

#[test]
fn probe_counts_the_buffers_of_a_few_huge_keys() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut ks = MemKeyspace::new();
    for k in 0..2u32 {
        let items = (0..300_000u32).map(|i| format!("element-{k}-{i:012}"));
        ks.insert(0, format!("list:{k}"), MemValue::list(items), None);
    }
    let chunk = 1 << 20;
    let report = SnapshotOptions::new(dir.path().join("huge.rdb"))
        .lzf(false)
        .chunk_size(chunk)
        .backend(BackendKind::Pwrite)
        .probe_child_memory(true)
        .start(&ks)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.keys(), 2);
    assert!(
        report.summary.bytes > 4 * chunk as u64,
        "{}",
        report.summary.bytes
    );
    // The encoder's chunk and the writer's spare are both filled (the file spans several
    // chunks), so the child has written at least those two chunks of its own.
    let own = report.child_private_bytes.expect("probe taken");
    assert!(
        own >= 2 * chunk as u64,
        "child's own memory {own} B is less than its two {chunk} B chunk buffers"
    );
}
