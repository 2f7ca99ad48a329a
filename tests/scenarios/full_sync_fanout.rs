//! A full sync from one child to several replicas: one walk feeds every socket; a replica
//! that hangs up or stalls is dropped at its own deadline and reported, and the others
//! get the whole RDB in Redis's EOF-marked framing; when none is left the sync fails.

use crate::common::{self, datasets};
use forksnap::{Master, MemKeyspace, SnapshotOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Splits what a replica received into the first line, the mark and the RDB.
fn unframe(got: &[u8]) -> (String, Vec<u8>) {
    let first_end = got.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let first = String::from_utf8(got[..first_end].to_vec()).unwrap();
    let rest = &got[first_end..];
    assert!(
        rest.starts_with(b"$EOF:"),
        "{:?}",
        &rest[..50.min(rest.len())]
    );
    let mark = &rest[5..45];
    assert_eq!(&rest[45..47], b"\r\n");
    let body = &rest[47..];
    assert_eq!(&body[body.len() - 40..], mark, "the RDB ends with the mark");
    (first, body[..body.len() - 40].to_vec())
}

#[test]
fn one_walk_feeds_every_replica_and_drops_the_dead_and_the_stalled() {
    let _serial = common::fork_lock();
    let mut ks = datasets::edge_cases(false);
    ks.populate(300_000, 64);
    let mut master = Master::new(1 << 20);
    let line = master.full_resync();

    let (good, mut good_peer) = UnixStream::pair().unwrap();
    let (gone, mut gone_peer) = UnixStream::pair().unwrap();
    let (stalled, _stalled_peer) = UnixStream::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        good_peer.read_to_end(&mut got).unwrap();
        got
    });
    let hang_up = std::thread::spawn(move || {
        let mut some = vec![0u8; 256 << 10];
        gone_peer.read_exact(&mut some).unwrap();
    });
    let fds = [good.as_raw_fd(), gone.as_raw_fd(), stalled.as_raw_fd()];
    let running = SnapshotOptions::for_replicas(&fds, line.as_bytes())
        .rdb_version(10)
        .replica_timeout(Duration::from_secs(1))
        .start(&ks)
        .unwrap();
    let report = running.wait().unwrap();
    hang_up.join().unwrap();
    drop(good); // the child's copy is closed: the reader sees the end
    let got = reader.join().unwrap();

    assert_eq!(report.replicas.len(), 3);
    assert_eq!(report.replicas[0].fd, fds[0]);
    assert_eq!(report.replicas[0].error, None, "{:?}", report.replicas);
    assert_eq!(report.replicas[0].bytes, got.len() as u64);
    let gone_err = report.replicas[1]
        .error
        .clone()
        .expect("the hung-up replica failed");
    assert!(
        gone_err.contains("Broken pipe") || gone_err.contains("reset"),
        "{gone_err}"
    );
    let stall_err = report.replicas[2]
        .error
        .clone()
        .expect("the stalled replica failed");
    assert!(stall_err.contains("timed out"), "{stall_err}");
    assert!(report.replicas[2].bytes < report.replicas[0].bytes);

    let (first, rdb) = unframe(&got);
    assert_eq!(first, line);
    assert!(rdb.starts_with(b"REDIS0010"));
    let (loaded, _) = forksnap::rdb::load(&rdb, &Default::default()).unwrap();
    common::assert_same_data(&ks, &loaded);
    assert_eq!(report.keys(), ks.len() as u64);
}

#[test]
fn a_sync_with_no_replica_left_fails_and_says_why() {
    let _serial = common::fork_lock();
    let mut ks = MemKeyspace::new();
    ks.populate(200_000, 64);
    let (a, a_peer) = UnixStream::pair().unwrap();
    drop(a_peer);
    let err = SnapshotOptions::for_replicas(&[a.as_raw_fd()], b"+FULLRESYNC x 0\r\n")
        .start(&ks)
        .unwrap()
        .wait()
        .unwrap_err()
        .to_string();
    assert!(err.contains("send to replicas"), "{err}");
    // A file option the sockets cannot take is refused before the fork.
    let lz4 = SnapshotOptions::for_replicas(&[a.as_raw_fd()], b"")
        .format(forksnap::Format::Lz4)
        .start(&ks);
    assert!(lz4.is_err());
    assert!(SnapshotOptions::for_replicas(&[], b"").start(&ks).is_err());
}
