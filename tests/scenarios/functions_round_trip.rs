//! Function libraries (FUNCTION2) survive a trip through forksnap: Redis 7.0 and Valkey
//! 9.1 save a library, forksnap loads the file and writes it again at every version they
//! load that can hold functions, and the server that loads it lists the same library
//! (`FUNCTION LIST WITHCODE`) and runs it. RDB 9 cannot hold them: an error, not a drop.

use crate::common::{rdb_of, Kind, Reply, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};

const LIB: &[u8] = b"#!lua name=forksnaplib\nredis.register_function('echo1', function(keys, args) return args[1] end)";

#[test]
fn function_libraries_survive_a_conversion() {
    for (kind, versions) in [
        (Kind::Redis70, &[10u8][..]),
        (Kind::Valkey91, &[10, 11][..]),
    ] {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        match s.conn().cmd(&[b"FUNCTION", b"LOAD", LIB]) {
            Reply::Bulk(Some(name)) => assert_eq!(name, b"forksnaplib"),
            r => panic!("{kind:?} FUNCTION LOAD: {r:?}"),
        }
        s.conn().ok(&[b"SET", b"k", b"v"]);
        let want = s.conn().cmd(&[b"FUNCTION", b"LIST", b"WITHCODE"]);
        let digest = s.digest();
        let file = s.save_file();
        drop(s);

        let (ks, report) = load(&file, &LoadOptions::default()).unwrap();
        assert_eq!(report.functions, 1);
        assert_eq!(ks.functions().collect::<Vec<_>>(), vec![LIB]);
        for &version in versions {
            for lzf in [true, false] {
                let rdb = rdb_of(&ks, version, lzf);
                let mut back = Server::start_with(kind, Some(&rdb)).unwrap();
                let label = format!("{kind:?} v{version} lzf {lzf}");
                assert_eq!(
                    back.conn().cmd(&[b"FUNCTION", b"LIST", b"WITHCODE"]),
                    want,
                    "{label}; log:\n{}",
                    back.log()
                );
                assert_eq!(
                    back.conn().cmd(&[b"FCALL", b"echo1", b"0", b"hello"]),
                    Reply::Bulk(Some(b"hello".to_vec())),
                    "{label}"
                );
                assert_eq!(back.digest(), digest, "{label}");
            }
        }
        let e = encode_to_vec(
            &ks,
            &EncodeOptions {
                version: 9,
                ..EncodeOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("function libraries") && e.contains("RDB 9"),
            "{e}"
        );
    }
}

/// A RESP base (an AOF without RDB preamble) carries them as Redis's rewrite does.
#[test]
fn a_resp_base_carries_functions_as_function_load() {
    let mut ks = forksnap::MemKeyspace::new();
    ks.add_function(LIB);
    let (resp, _) = encode_to_vec(
        &ks,
        &EncodeOptions {
            resp: true,
            ..EncodeOptions::default()
        },
    )
    .unwrap();
    let want = [
        &b"*3\r\n$8\r\nFUNCTION\r\n$4\r\nLOAD\r\n"[..],
        format!("${}\r\n", LIB.len()).as_bytes(),
        LIB,
        b"\r\n",
    ]
    .concat();
    assert_eq!(resp, want);
}
