//! The file holds the keyspace exactly as it was at fork, whatever the parent does next:
//! the parent overwrites, deletes and adds keys while the child writes, and real Redis
//! loads the file with the pre-fork digest.

use crate::common;

use common::{assert_same_data, datasets, Kind, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{MemValue, SnapshotOptions};

#[test]
fn parent_mutations_do_not_leak_into_the_snapshot() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    let mut ks = datasets::edge_cases(false);
    ks.populate(400_000, 100);
    let before = ks.clone();

    let mut running = SnapshotOptions::new(&path)
        .rdb_version(10)
        .start(&ks)
        .unwrap();
    let mut done = None;
    for i in 0..400_000u64 {
        let key = format!("key:{i}");
        match i % 4 {
            0 => {
                ks.insert(0, key, MemValue::str("overwritten"), None);
            }
            1 => {
                ks.db_mut(0).remove(key.as_bytes());
            }
            2 => {
                ks.insert(
                    5,
                    format!("new:{i}"),
                    MemValue::list(["x", "y"]),
                    Some(4_000_000_000_000),
                );
            }
            _ => {
                if let Some(MemValue::Str(v)) = ks.db_mut(0).get_mut(key.as_bytes()) {
                    v[0] = b'V';
                }
            }
        }
        if i % 50_000 == 0 && done.is_none() {
            done = running.poll().unwrap();
        }
    }
    let report = match done {
        Some(r) => r,
        None => running.wait().unwrap(),
    };
    assert_eq!(report.keys(), before.len() as u64);

    let file = std::fs::read(&path).unwrap();
    let (loaded, _) = load(&file, &LoadOptions::default()).unwrap();
    assert_same_data(&before, &loaded);

    let Some(mut from_snapshot) = Server::start_with(Kind::Redis70, Some(&file)) else {
        return;
    };
    let (pre_fork, _) = encode_to_vec(
        &before,
        &EncodeOptions {
            version: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let mut pre = Server::start_with(Kind::Redis70, Some(&pre_fork)).unwrap();
    assert_eq!(from_snapshot.digest(), pre.digest());
    let (after, _) = encode_to_vec(
        &ks,
        &EncodeOptions {
            version: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let mut post = Server::start_with(Kind::Redis70, Some(&after)).unwrap();
    assert_ne!(
        post.digest(),
        pre.digest(),
        "the parent's mutations must have changed the data"
    );
}
