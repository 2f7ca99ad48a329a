//! A forked snapshot of `DEBUG POPULATE 1000000 key 100`-shaped data, in each format and
//! backend (after `lz4 -d` where framed), loads into Redis 7.0 (RDB 10) and Valkey 9.1
//! (RDB 11) with the digest `DEBUG POPULATE` itself gives; io_uring and pwrite write
//! identical bytes.

mod common;

use common::{datasets, Kind, Server};
use forksnap::{BackendKind, Format, SnapshotOptions};
use std::process::Command;

#[test]
fn populate_1m_every_format_and_backend() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(1_000_000, 100);
    let dir = tempfile::tempdir().unwrap();
    for (kind, version) in [(Kind::Redis70, 10u8), (Kind::Valkey91, 11)] {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        s.conn()
            .ok(&[b"DEBUG", b"POPULATE", b"1000000", b"key", b"100"]);
        let want = s.digest();
        drop(s);
        for (fname, format, lzf) in [
            ("rdb", Format::Rdb, false),
            ("rdb-lzf", Format::Rdb, true),
            ("lz4", Format::Lz4, false),
        ] {
            let mut bytes_by_backend = Vec::new();
            for (bname, backend, direct) in [
                ("uring", BackendKind::Uring, false),
                ("pwrite", BackendKind::Pwrite, false),
                ("uring-direct", BackendKind::Uring, true),
            ] {
                let path = dir.path().join(format!("{kind:?}-{fname}-{bname}.rdb"));
                let mut opts = SnapshotOptions::new(&path)
                    .format(format)
                    .lzf(lzf)
                    .rdb_version(version)
                    .backend(backend)
                    .direct(direct);
                opts.encode.ctime = 1_700_000_000;
                let report = opts.start(&ks).unwrap().wait().unwrap();
                assert_eq!(report.keys(), 1_000_000);
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
    }
}
