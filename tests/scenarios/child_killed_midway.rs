//! SIGKILL the snapshot child at random points, 24 times: the previous target stays
//! untouched and loadable, and no temp file is left after `wait()`.

use crate::common;

use forksnap::rdb::{load, LoadOptions};
use forksnap::{Error, MemKeyspace, SnapshotOptions};
use std::time::Duration;

#[test]
fn killed_child_leaves_target_and_no_temp_file() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    let mut old = MemKeyspace::new();
    old.populate(1000, 10);
    SnapshotOptions::new(&target).save(&old).unwrap();
    let mut before = std::fs::read(&target).unwrap();

    let mut ks = MemKeyspace::new();
    ks.populate(1_500_000, 100);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut killed = 0;
    for round in 0..24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(x % 60_000);
        let running = SnapshotOptions::new(&target)
            .lzf(round % 2 == 0)
            .start(&ks)
            .unwrap();
        let pid = running.pid();
        std::thread::sleep(delay);
        // SAFETY: signalling the child we just forked.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        match running.wait() {
            Err(Error::Child { status }) => {
                assert!(status.contains("signal 9"), "{status}");
                let now = std::fs::read(&target).unwrap();
                if now == before {
                    killed += 1;
                } else {
                    // Killed between its rename and its exit: the target must then be the
                    // complete new snapshot, never anything in between.
                    let (loaded, _) = load(&now, &LoadOptions::default())
                        .unwrap_or_else(|e| panic!("round {round}: target damaged: {e}"));
                    assert_eq!(loaded.len(), 1_500_000, "round {round}");
                    SnapshotOptions::new(&target).save(&old).unwrap();
                    before = std::fs::read(&target).unwrap();
                }
            }
            // The child finished before the signal: the target is then the new snapshot.
            Ok(r) => {
                assert_eq!(r.keys(), 1_500_000);
                let (loaded, _) =
                    load(&std::fs::read(&target).unwrap(), &LoadOptions::default()).unwrap();
                assert_eq!(loaded.len(), 1_500_000);
                SnapshotOptions::new(&target).save(&old).unwrap();
                // The re-saved old data has a new ctime: it is the reference from now on.
                before = std::fs::read(&target).unwrap();
            }
            Err(e) => panic!("round {round}: unexpected {e}"),
        }
        assert!(
            common::temp_files(dir.path()).is_empty(),
            "round {round}: {:?}",
            common::temp_files(dir.path())
        );
        let (loaded, _) = load(&std::fs::read(&target).unwrap(), &LoadOptions::default()).unwrap();
        assert!(loaded.len() == 1000 || loaded.len() == 1_500_000);
    }
    assert!(
        killed >= 20,
        "only {killed} of 24 kills landed mid-snapshot"
    );
}
