//! Files written by real servers load into forksnap, and writing them again gives the
//! same digest in the same kind of server.

use crate::common;

use common::{assert_same_data, datasets, fill_by_commands, Kind, Reply, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{MemValue, StreamId};

fn roundtrip(kind: Kind) {
    let ks = datasets::edge_cases(true);
    let Some(mut s) = Server::start(kind) else {
        return;
    };
    fill_by_commands(s.conn(), &ks);
    let want = s.digest();
    let file = s.save_file();
    drop(s);

    let (loaded, report) = load(&file, &LoadOptions::default()).unwrap();
    assert!(report.crc_checked, "{kind:?} files carry a CRC");
    assert_same_data(&ks, &loaded);

    for &version in kind.versions() {
        let (rdb, _) = encode_to_vec(
            &loaded,
            &EncodeOptions {
                version,
                ..Default::default()
            },
        )
        .unwrap();
        let mut again = Server::start_with(kind, Some(&rdb)).unwrap();
        assert_eq!(again.digest(), want, "{kind:?}: re-written at v{version}");
    }
}

#[test]
fn redis_6_2_files_load() {
    roundtrip(Kind::Redis62);
}

#[test]
fn redis_7_0_files_load() {
    roundtrip(Kind::Redis70);
}

#[test]
fn valkey_9_1_files_load() {
    roundtrip(Kind::Valkey91);
}

/// Small encodings written without LZF (rdbcompression no) load too.
#[test]
fn uncompressed_server_files_load() {
    for kind in Kind::ALL {
        let ks = datasets::edge_cases(false);
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        fill_by_commands(s.conn(), &ks);
        s.conn().ok(&[b"CONFIG", b"SET", b"rdbcompression", b"no"]);
        let file = s.save_file();
        let (loaded, _) = load(&file, &LoadOptions::default()).unwrap();
        assert_same_data(&ks, &loaded);
    }
}

/// Streams and functions: a clear error by default; skipped and counted on request.
#[test]
fn streams_and_functions_are_loaded() {
    for kind in [Kind::Redis70, Kind::Valkey91] {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        let c = s.conn();
        c.ok(&[b"SET", b"plain", b"v"]);
        for i in 0..300 {
            let id = format!("{}-1", i + 1);
            match c.cmd(&[b"XADD", b"stream", id.as_bytes(), b"f", b"v"]) {
                Reply::Bulk(Some(_)) => {}
                r => panic!("XADD: {r:?}"),
            }
        }
        match c.cmd(&[b"XGROUP", b"CREATE", b"stream", b"g", b"0"]) {
            Reply::Status(_) => {}
            r => panic!("XGROUP: {r:?}"),
        }
        c.cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"alice",
            b"COUNT",
            b"5",
            b"STREAMS",
            b"stream",
            b">",
        ]);
        let lib = b"#!lua name=forksnaplib\nredis.register_function('f1', function() return 1 end)";
        match c.cmd(&[b"FUNCTION", b"LOAD", lib]) {
            Reply::Bulk(Some(_)) => {}
            r => panic!("FUNCTION LOAD: {r:?}"),
        }
        let file = s.save_file();
        let (ks, report) = load(&file, &LoadOptions::default()).unwrap();
        assert_eq!(
            (report.keys, report.values_skipped, report.functions),
            (2, 0, 1)
        );
        let Some((MemValue::Stream(x), None)) = ks.db(0).unwrap().get(b"stream") else {
            panic!("{kind:?}: the stream is not loaded as one")
        };
        assert_eq!(x.entries().len(), 300);
        assert_eq!(x.entries()[299].0, StreamId::new(300, 1));
        assert_eq!(x.groups().len(), 1);
        assert_eq!(x.groups()[0].pending.len(), 5);
        assert_eq!(x.groups()[0].consumers[0].pending.len(), 5);
        assert!(ks.db(0).unwrap().get(b"plain").is_some());
    }
}
