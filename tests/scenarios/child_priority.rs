//! The child runs at the scheduling class it was asked for, so a serving parent's wake-ups
//! are not queued behind the snapshot; a nice value outside 0..=19 is refused before fork.
//!
//! The keyspace itself observes the child: its walk runs in the child, reads the calling
//! process's policy and nice value, and yields them as values, which the test reads back
//! from the snapshot file.

use crate::common;

use forksnap::keyspace::DbInfo;
use forksnap::rdb::{load_file, LoadOptions};
use forksnap::{ChildPriority, Entry, Error, Keyspace, MemValue, SnapshotOptions, Value};
use std::ops::ControlFlow;

/// One database holding `policy` and `nice`, as seen by whoever walks it.
struct SelfObserving;

impl Keyspace for SelfObserving {
    fn databases(&self) -> Vec<DbInfo> {
        vec![DbInfo {
            index: 0,
            keys: 2,
            expires: 0,
        }]
    }

    fn walk(&self, _db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        // SAFETY: plain queries about the calling process.
        let (policy, nice) = unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        };
        for (key, v) in [(&b"policy"[..], policy), (&b"nice"[..], nice)] {
            let e = Entry {
                key,
                expire_ms: None,
                value: Value::Int(i64::from(v)),
            };
            if visit(&e).is_break() {
                return;
            }
        }
    }
}

fn observed(p: ChildPriority) -> (i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.rdb");
    SnapshotOptions::new(&path)
        .child_priority(p)
        .start(&SelfObserving)
        .unwrap()
        .wait()
        .unwrap();
    let (ks, _) = load_file(&path, &LoadOptions::default()).unwrap();
    let db = ks.db(0).unwrap();
    let get = |k: &[u8]| match db.get(k) {
        Some((MemValue::Int(v), _)) => *v,
        // The reader gives integer-encoded strings back as their text.
        Some((MemValue::Str(t), _)) => std::str::from_utf8(t).unwrap().parse().unwrap(),
        other => panic!("{} in the snapshot: {other:?}", String::from_utf8_lossy(k)),
    };
    (get(b"policy"), get(b"nice"))
}

#[test]
fn child_runs_at_the_requested_priority() {
    let _serial = common::fork_lock();
    // SAFETY: plain queries about this process.
    let (policy, nice) = unsafe {
        (
            libc::sched_getscheduler(0),
            libc::getpriority(libc::PRIO_PROCESS, 0),
        )
    };
    let (policy, nice) = (i64::from(policy), i64::from(nice));
    assert_eq!(
        observed(ChildPriority::default()),
        (i64::from(libc::SCHED_BATCH), nice),
        "default is SCHED_BATCH"
    );
    assert_eq!(observed(ChildPriority::Inherit), (policy, nice));
    assert_eq!(observed(ChildPriority::Idle).0, i64::from(libc::SCHED_IDLE));
    assert_eq!(
        observed(ChildPriority::Nice(19)),
        (policy, 19),
        "nice 19 under the parent's policy"
    );
    // The parent itself is untouched.
    // SAFETY: as above.
    assert_eq!(i64::from(unsafe { libc::sched_getscheduler(0) }), policy);
}

#[test]
fn nice_out_of_range_is_refused_before_fork() {
    let dir = tempfile::tempdir().unwrap();
    for n in [-1, 20] {
        match SnapshotOptions::new(dir.path().join("x.rdb"))
            .child_priority(ChildPriority::Nice(n))
            .start(&SelfObserving)
        {
            Err(Error::InvalidOption(msg)) => assert!(msg.contains(&n.to_string()), "{msg}"),
            Err(e) => panic!("nice {n}: expected InvalidOption, got {e}"),
            Ok(r) => panic!("nice {n}: forked child {}", r.pid()),
        }
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
