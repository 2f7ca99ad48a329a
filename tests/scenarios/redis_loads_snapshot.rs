//! Real servers load what forksnap writes, with the same `DEBUG DIGEST` as the same data
//! entered by commands into a fresh server of the same kind.

use crate::common;

use common::{datasets, fill_by_commands, Kind, Server};
use forksnap::rdb::{encode_to_vec, EncodeOptions};
use forksnap::MemKeyspace;
use std::process::Command;

fn check_server(kind: Kind, ks: &MemKeyspace, label: &str) {
    let Some(mut reference) = Server::start(kind) else {
        return;
    };
    fill_by_commands(reference.conn(), ks);
    let want = reference.digest();
    let keys = reference.dbsize_all();
    assert_eq!(
        keys,
        ks.len() as u64,
        "{kind:?}: commands created a different number of keys"
    );
    drop(reference);

    for &version in kind.versions() {
        for lzf in [true, false] {
            let opts = EncodeOptions {
                version,
                lzf,
                ..EncodeOptions::default()
            };
            let (rdb, summary) = encode_to_vec(ks, &opts).unwrap();
            assert_eq!(summary.keys(), ks.len() as u64);
            let mut loaded = Server::start_with(kind, Some(&rdb)).unwrap();
            let got = loaded.digest();
            assert_eq!(
                got, want,
                "{kind:?} {label}: digest after loading our RDB v{version} (lzf {lzf}) differs; server log:\n{}",
                loaded.log()
            );
            assert_eq!(
                loaded.dbsize_all(),
                keys,
                "{kind:?} {label} v{version}: key count"
            );
            if version <= 10 {
                redis_check_rdb(&rdb, &format!("{label} v{version} lzf {lzf}"));
            }
        }
    }
}

/// Redis 7.0's `redis-check-rdb` accepts the file (it handles versions up to 10).
fn redis_check_rdb(rdb: &[u8], label: &str) {
    let Some(tool) = common::require_tool("redis-check-rdb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_temp(dir.path(), "check.rdb", rdb);
    let out = Command::new(tool).arg(&p).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb rejected {label}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_6_2_loads_edge_cases() {
    check_server(Kind::Redis62, &datasets::edge_cases(true), "edge cases");
}

#[test]
fn redis_7_0_loads_edge_cases() {
    check_server(Kind::Redis70, &datasets::edge_cases(true), "edge cases");
}

#[test]
fn valkey_9_1_loads_edge_cases() {
    check_server(Kind::Valkey91, &datasets::edge_cases(true), "edge cases");
}

/// Our populate-shaped keyspace is exactly what `DEBUG POPULATE` makes: values padded
/// (size 100), cut (size 3, shorter than `value:<i>`) or whole (size 0).
#[test]
fn populate_matches_debug_populate() {
    for (kind, size) in [
        (Kind::Redis70, 100),
        (Kind::Valkey91, 100),
        (Kind::Redis70, 3),
        (Kind::Valkey91, 3),
        (Kind::Valkey91, 0),
    ] {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        let size_arg = size.to_string();
        s.conn()
            .ok(&[b"DEBUG", b"POPULATE", b"20000", b"key", size_arg.as_bytes()]);
        let want = s.digest();
        let ks = datasets::populate(20_000, size);
        for lzf in [true, false] {
            let opts = EncodeOptions {
                version: *kind.versions().last().unwrap(),
                lzf,
                ..Default::default()
            };
            let (rdb, _) = encode_to_vec(&ks, &opts).unwrap();
            let mut l = Server::start_with(kind, Some(&rdb)).unwrap();
            assert_eq!(l.digest(), want, "{kind:?} size {size} lzf {lzf}");
        }
    }
}
