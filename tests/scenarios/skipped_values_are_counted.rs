//! Values RDB cannot hold are skipped and counted per database, in the forked and the
//! in-process pipeline alike.

use crate::common;

use forksnap::keyspace::{DbInfo, Entry, Keyspace, Value};
use forksnap::rdb::{load, LoadOptions};
use forksnap::SnapshotOptions;
use std::ops::ControlFlow;

/// A server-side keyspace with a stream (unsupported) in db 0 and an empty list in db 3.
struct WithStream;

impl Keyspace for WithStream {
    fn databases(&self) -> Vec<DbInfo> {
        vec![
            DbInfo {
                index: 0,
                keys: 3,
                expires: 0,
            },
            DbInfo {
                index: 3,
                keys: 2,
                expires: 0,
            },
        ]
    }

    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        let empty: Vec<Box<[u8]>> = Vec::new();
        let entries: Vec<Entry<'_>> = match db {
            0 => vec![
                Entry {
                    key: b"a",
                    expire_ms: None,
                    value: Value::Str(b"1"),
                },
                Entry {
                    key: b"events",
                    expire_ms: None,
                    value: Value::Unsupported("stream"),
                },
                Entry {
                    key: b"b",
                    expire_ms: None,
                    value: Value::Int(7),
                },
            ],
            _ => vec![
                Entry {
                    key: b"gone",
                    expire_ms: None,
                    value: Value::List(&empty),
                },
                Entry {
                    key: b"c",
                    expire_ms: None,
                    value: Value::Str(b"x"),
                },
            ],
        };
        for e in &entries {
            if visit(e).is_break() {
                return;
            }
        }
    }
}

#[test]
fn skipped_per_database() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    let opts = SnapshotOptions::new(&path);
    for report in [
        opts.start(&WithStream).unwrap().wait().unwrap(),
        opts.save(&WithStream).unwrap(),
    ] {
        assert_eq!(report.summary.keys_per_db, vec![(0, 2), (3, 1)]);
        assert_eq!(report.summary.skipped_per_db, vec![(0, 1), (3, 1)]);
        assert_eq!(
            (
                report.summary.skipped_unsupported,
                report.summary.skipped_empty
            ),
            (1, 1)
        );
        let (ks, _) = load(&std::fs::read(&path).unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(ks.len(), 3);
    }
}
