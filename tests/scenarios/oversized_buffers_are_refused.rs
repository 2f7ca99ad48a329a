//! A chunk size or queue depth that could not be allocated is refused with a clear error
//! before anything is forked or created, in-process and forked alike.

use forksnap::sink::{MAX_CHUNK_SIZE, MAX_QUEUE_DEPTH};
use forksnap::{Error, MemKeyspace, SnapshotOptions};

fn refused(opts: &SnapshotOptions, ks: &MemKeyspace, what: &str) {
    match opts.save(ks) {
        Err(Error::InvalidOption(msg)) => assert!(msg.contains(what), "save: {msg}"),
        other => panic!(
            "save: expected InvalidOption about {what}, got {:?}",
            other.map(|r| r.bytes_written)
        ),
    }
    match opts.start(ks) {
        Err(Error::InvalidOption(msg)) => assert!(msg.contains(what), "start: {msg}"),
        Err(e) => panic!("start: expected InvalidOption about {what}, got {e}"),
        Ok(r) => panic!("start: forked child {}", r.pid()),
    }
}

#[test]
fn oversized_chunk_or_queue_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut ks = MemKeyspace::new();
    ks.populate(10, 10);
    let base = SnapshotOptions::new(dir.path().join("x.rdb"));
    refused(
        &base.clone().chunk_size(MAX_CHUNK_SIZE + 1),
        &ks,
        "chunk size",
    );
    refused(&base.clone().chunk_size(usize::MAX), &ks, "chunk size");
    refused(
        &base.clone().queue_depth(MAX_QUEUE_DEPTH + 1),
        &ks,
        "queue depth",
    );
    refused(&base.clone().queue_depth(u32::MAX), &ks, "queue depth");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing created"
    );
    // The limits themselves are accepted.
    base.clone()
        .chunk_size(MAX_CHUNK_SIZE)
        .queue_depth(4)
        .save(&ks)
        .unwrap();
}
