//! Copy-on-write tracking: the parent rewriting values during a snapshot shows up in the
//! CoW figures, and crossing a budget aborts the snapshot cleanly.

use crate::common;

use forksnap::pressure::CowSampling;
use forksnap::{
    BackendKind, Error, MemKeyspace, MemValue, RunningSnapshot, SnapshotOptions, SnapshotReport,
};

const KEYS: u64 = 2_000_000;

/// Overwrites every value in place (the CoW worst case), polling as a server would.
fn rewrite_all(
    ks: &mut MemKeyspace,
    running: &mut RunningSnapshot,
) -> Option<forksnap::Result<Option<SnapshotReport>>> {
    let db = ks.db_mut(0);
    for i in 0..KEYS {
        let key = format!("key:{i}");
        if let Some(MemValue::Str(v)) = db.get_mut(key.as_bytes()) {
            v[99] ^= 1;
        }
        if i % 20_000 == 0 {
            match running.poll() {
                Ok(None) => {}
                other => return Some(other),
            }
        }
    }
    None
}

#[test]
fn budget_crossed_aborts_and_cleans_up() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    let mut ks = MemKeyspace::new();
    ks.populate(KEYS, 100);
    let budget = 32 << 20;
    let mut running = SnapshotOptions::new(&target)
        .lzf(false)
        .backend(BackendKind::Pwrite)
        .cow_budget(Some(budget))
        .start(&ks)
        .unwrap();
    let tmp = running.temp_path().to_path_buf();
    let outcome = rewrite_all(&mut ks, &mut running).unwrap_or_else(|| running.poll());
    match outcome {
        Err(Error::CowLimitExceeded {
            budget: b,
            observed,
        }) => {
            assert_eq!(b, budget);
            assert!(observed > budget);
        }
        other => panic!("expected CowLimitExceeded, got {other:?}"),
    }
    drop(running);
    assert!(
        !target.exists(),
        "an aborted snapshot must not create the target"
    );
    assert!(!tmp.exists(), "temp file left behind");
    assert!(!forksnap::snapshot_running());
}

#[test]
fn cow_is_measured_while_the_parent_writes() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut ks = MemKeyspace::new();
    ks.populate(KEYS, 100);
    // A generous duty cycle so that real smaps samples happen in this short run too.
    let sampling = CowSampling {
        duty: 0.5,
        min_interval: std::time::Duration::from_millis(5),
    };
    let mut running = SnapshotOptions::new(dir.path().join("dump.rdb"))
        .lzf(false)
        .backend(BackendKind::Pwrite)
        .cow_sampling(sampling)
        .start(&ks)
        .unwrap();
    // The child is stopped while the parent rewrites, so every rewrite lands while the
    // snapshot runs (how fast the child is does not matter), then resumed.
    // SAFETY: signalling the child we just forked.
    unsafe { libc::kill(running.pid(), libc::SIGSTOP) };
    let early = rewrite_all(&mut ks, &mut running);
    // SAFETY: as above.
    unsafe { libc::kill(running.pid(), libc::SIGCONT) };
    assert!(early.is_none(), "a stopped child cannot finish: {early:?}");
    let report = running.wait().unwrap();
    // Every value (~230 MB of pages) was rewritten while the child held the old pages.
    assert!(
        report.cow.peak_bytes > 32 << 20,
        "CoW peak {} too small: {:?}",
        report.cow.peak_bytes,
        report.cow
    );
    assert!(
        report.cow.samples >= 1,
        "{:?} wall {:?}",
        report.cow,
        report.wall
    );
    assert!(report.cow.sampled_bytes > 0);
}
