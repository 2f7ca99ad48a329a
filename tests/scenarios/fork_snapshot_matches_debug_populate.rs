//! A forked snapshot of `DEBUG POPULATE 1000000 key 100`-shaped data, in each format and
//! backend (after `lz4 -d` where framed), loads into Redis 7.0 (RDB 10) and Valkey 9.1
//! (RDB 11) with the digest `DEBUG POPULATE` itself gives; io_uring and pwrite write
//! identical bytes. One test per server and format, so no single test dominates the run.

use crate::common::{self, datasets, Kind, Server};
use forksnap::{BackendKind, Format, SnapshotOptions};
use std::process::Command;

const KEYS: u64 = 1_000_000;

fn every_backend(kind: Kind, version: u8, fname: &str, format: Format, lzf: bool) {
    let Some(mut s) = Server::start(kind) else {
        return;
    };
    s.conn().ok(&[
        b"DEBUG",
        b"POPULATE",
        KEYS.to_string().as_bytes(),
        b"key",
        b"100",
    ]);
    let want = s.digest();
    drop(s);
    let ks = datasets::populate(KEYS, 100);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes_by_backend = Vec::new();
    for (bname, backend, direct) in [
        ("uring", BackendKind::Uring, false),
        ("pwrite", BackendKind::Pwrite, false),
        ("uring-direct", BackendKind::Uring, true),
    ] {
        let path = dir.path().join(format!("{fname}-{bname}.rdb"));
        let opts = SnapshotOptions::new(&path)
            .format(format)
            .lzf(lzf)
            .rdb_version(version)
            .backend(backend)
            .direct(direct)
            .ctime(Some(1_700_000_000));
        let report = {
            let _serial = common::fork_lock();
            opts.start(&ks).unwrap().wait().unwrap()
        };
        assert_eq!(report.keys(), KEYS);
        assert_eq!(report.backend, Some(backend), "{}", report.backend_reason);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, report.bytes_written);
        let rdb = if format == Format::Lz4 {
            let out = dir.path().join("restored.rdb");
            let o = Command::new(common::require_tool("lz4").unwrap())
                .arg("-d")
                .arg("-f")
                .arg(&path)
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            std::fs::read(&out).unwrap()
        } else {
            data
        };
        let mut l = Server::start_with(kind, Some(&rdb)).unwrap();
        assert_eq!(
            l.digest(),
            want,
            "{kind:?} {fname} {bname}: digest differs from DEBUG POPULATE"
        );
        bytes_by_backend.push((bname, rdb));
    }
    for (name, b) in &bytes_by_backend[1..] {
        assert!(
            *b == bytes_by_backend[0].1,
            "{fname}: {name} wrote different bytes than uring"
        );
    }
}

#[test]
fn redis_7_0_plain_rdb() {
    every_backend(Kind::Redis70, 10, "rdb", Format::Rdb, false);
}

#[test]
fn redis_7_0_rdb_lzf() {
    every_backend(Kind::Redis70, 10, "rdb-lzf", Format::Rdb, true);
}

#[test]
fn redis_7_0_lz4_frame() {
    every_backend(Kind::Redis70, 10, "lz4", Format::Lz4, false);
}

#[test]
fn valkey_9_1_plain_rdb() {
    every_backend(Kind::Valkey91, 11, "rdb", Format::Rdb, false);
}

#[test]
fn valkey_9_1_rdb_lzf() {
    every_backend(Kind::Valkey91, 11, "rdb-lzf", Format::Rdb, true);
}

#[test]
fn valkey_9_1_lz4_frame() {
    every_backend(Kind::Valkey91, 11, "lz4", Format::Lz4, false);
}
