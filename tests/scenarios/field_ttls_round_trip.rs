//! Hash field TTLs (`HPEXPIREAT`) survive a trip through forksnap: Valkey 9.1 and Redis
//! 8.2 build small (listpack) and large hashes whose fields partly expire, `SAVE`;
//! forksnap loads each file and writes it again in the server's own format (`VALKEY080`,
//! RDB 12) and in the other's; the server that loads it has the same fields, values and
//! `HPEXPIRETIME`s (and, for its own format, the same `DEBUG DIGEST`). Versions without
//! field expiry refuse such hashes unless asked to drop the TTLs; a RESP base carries
//! them as `HPEXPIREAT`; our writer and reader agree on any such hash.

use crate::common::{rdb_of, Kind, Reply, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{Error, MemKeyspace, MemValue, SnapshotOptions};
use proptest::prelude::*;

/// 2096-10-02: far enough that nothing expires during a test.
const FUTURE: i64 = 4_000_000_000_000;
const KEYS: &[&str] = &["small", "large", "longvalues", "allfields", "plain"];

/// Per key, its (field, value, HPEXPIRETIME) triples.
type State = Vec<Vec<(Vec<u8>, Vec<u8>, i64)>>;

fn build(s: &mut Server) {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut cmd = |a: &[&[u8]]| cmds.push(a.iter().map(|x| x.to_vec()).collect());
    let at = |i: i64| (FUTURE + i).to_string().into_bytes();
    cmd(&[
        b"HSET", b"small", b"a", b"1", b"b", b"two", b"c", b"3", b"d", b"4", b"e", b"5",
    ]);
    cmd(&[b"HPEXPIREAT", b"small", &at(7), b"FIELDS", b"2", b"c", b"a"]);
    cmd(&[b"HPEXPIREAT", b"small", &at(3), b"FIELDS", b"1", b"e"]);
    for i in 0..300i64 {
        let (f, v) = (format!("field:{i}"), format!("value:{i}"));
        cmd(&[b"HSET", b"large", f.as_bytes(), v.as_bytes()]);
        if i % 3 == 0 {
            cmd(&[
                b"HPEXPIREAT",
                b"large",
                &at(1000 - i),
                b"FIELDS",
                b"1",
                f.as_bytes(),
            ]);
        }
    }
    let long = "text ".repeat(30);
    cmd(&[
        b"HSET",
        b"longvalues",
        b"x",
        long.as_bytes(),
        b"y",
        b"short",
    ]);
    cmd(&[b"HPEXPIREAT", b"longvalues", &at(11), b"FIELDS", b"1", b"x"]);
    cmd(&[b"HSET", b"allfields", b"p", b"1", b"q", b"2"]);
    cmd(&[
        b"HPEXPIREAT",
        b"allfields",
        &at(5),
        b"FIELDS",
        b"2",
        b"p",
        b"q",
    ]);
    cmd(&[b"HSET", b"plain", b"k", b"v"]);
    cmd(&[b"SET", b"string", b"v"]);
    s.conn().pipeline(&cmds);
}

/// Each key's (field, value, HPEXPIRETIME) triples, sorted.
fn state(s: &mut Server) -> State {
    KEYS.iter()
        .map(|k| {
            let Reply::Array(Some(flat)) = s.conn().cmd(&[b"HGETALL", k.as_bytes()]) else {
                panic!("HGETALL {k}")
            };
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = flat
                .chunks(2)
                .map(|p| match p {
                    [Reply::Bulk(Some(f)), Reply::Bulk(Some(v))] => (f.clone(), v.clone()),
                    other => panic!("HGETALL {k}: {other:?}"),
                })
                .collect();
            assert!(!pairs.is_empty(), "{k} has fields");
            let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", k.as_bytes(), b"FIELDS"];
            let n = pairs.len().to_string();
            args.push(n.as_bytes());
            args.extend(pairs.iter().map(|(f, _)| &f[..]));
            let Reply::Array(Some(times)) = s.conn().cmd(&args) else {
                panic!("HPEXPIRETIME {k}")
            };
            let mut v: Vec<(Vec<u8>, Vec<u8>, i64)> = pairs
                .into_iter()
                .zip(times)
                .map(|((f, x), t)| match t {
                    Reply::Int(t) => (f, x, t),
                    other => panic!("HPEXPIRETIME {k}: {other:?}"),
                })
                .collect();
            v.sort();
            v
        })
        .collect()
}

/// The server's own file, what it holds, and its digest.
fn saved(kind: Kind) -> Option<(Vec<u8>, State, String)> {
    let mut s = Server::start(kind)?;
    build(&mut s);
    let st = state(&mut s);
    let with_ttl: usize = st.iter().flatten().filter(|(_, _, t)| *t > 0).count();
    assert_eq!(
        with_ttl,
        3 + 100 + 1 + 2,
        "{kind:?}: the fields that expire"
    );
    Some((s.save_file(), st, s.digest()))
}

#[test]
fn field_ttls_survive_a_conversion_in_each_servers_format_and_across() {
    let (Some(valkey), Some(redis)) = (saved(Kind::Valkey91), saved(Kind::Redis82)) else {
        return;
    };
    for (from, (file, want, digest)) in [(Kind::Valkey91, &valkey), (Kind::Redis82, &redis)] {
        let (ks, report) = load(file, &LoadOptions::default()).unwrap();
        assert_eq!(report.keys, KEYS.len() as u64 + 1, "{from:?}");
        assert!(matches!(
            ks.db(0).unwrap().get(b"large"),
            Some((MemValue::HashTtl(_), None))
        ));
        for (to, version) in [(Kind::Valkey91, 80u8), (Kind::Redis82, 12)] {
            for lzf in [true, false] {
                let rdb = rdb_of(&ks, version, lzf);
                let label = format!("{from:?}'s file as v{version} (lzf {lzf}) in {to:?}");
                let mut back = Server::start_with(to, Some(&rdb))
                    .unwrap_or_else(|| panic!("{label}: no server"));
                assert_eq!(&state(&mut back), want, "{label}; log:\n{}", back.log());
                if to == from {
                    assert_eq!(&back.digest(), digest, "{label}");
                }
            }
        }
    }
}

fn with_ttls() -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    let h = MemValue::hash_ttl([("a", "1", Some(FUTURE)), ("b", "2", None)]).unwrap();
    ks.insert(0, "h", h, None);
    ks
}

#[test]
fn versions_without_field_expiry_refuse_or_drop_on_request() {
    let ks = with_ttls();
    for version in [9u8, 10, 11] {
        let opts = EncodeOptions {
            version,
            ..EncodeOptions::default()
        };
        match encode_to_vec(&ks, &opts) {
            Err(Error::BadValue { key, what }) => {
                assert_eq!(key, "h");
                assert!(
                    what.contains(&format!("TTLs, which RDB {version} cannot hold")),
                    "{what}"
                );
            }
            other => panic!("v{version}: {other:?}"),
        }
        let (rdb, summary) = encode_to_vec(
            &ks,
            &EncodeOptions {
                drop_field_ttls: true,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(summary.field_ttls_dropped, 1);
        let (back, _) = load(&rdb, &LoadOptions::default()).unwrap();
        let plain = MemValue::hash([("a", "1"), ("b", "2")]).unwrap();
        assert_eq!(back.db(0).unwrap().get(b"h").unwrap().0, &plain);
    }
    // The count crosses the fork (the child's report).
    let dir = tempfile::tempdir().unwrap();
    let _fork = crate::common::fork_lock();
    let r = SnapshotOptions::new(dir.path().join("d.rdb"))
        .drop_field_ttls(true)
        .start(&ks)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(r.summary.field_ttls_dropped, 1);
}

/// A RESP base (an AOF without RDB preamble) carries them as `HPEXPIREAT`s.
#[test]
fn a_resp_base_carries_field_ttls() {
    let Some((file, want, _)) = saved(Kind::Valkey91) else {
        return;
    };
    let (ks, _) = load(&file, &LoadOptions::default()).unwrap();
    let resp = encode_to_vec(
        &ks,
        &EncodeOptions {
            resp: true,
            ..EncodeOptions::default()
        },
    )
    .unwrap()
    .0;
    let mut back = Server::start(Kind::Valkey91).unwrap();
    back.replay(&resp);
    assert_eq!(state(&mut back), want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_hash_with_field_ttls_round_trips(
        fields in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..70),
            (proptest::collection::vec(any::<u8>(), 0..90), proptest::option::of(1i64..(1 << 48))),
            1..200,
        ),
        lzf: bool,
    ) {
        let triples: Vec<(Vec<u8>, Vec<u8>, Option<i64>)> =
            fields.into_iter().map(|(f, (v, t))| (f, v, t)).collect();
        let value = MemValue::hash_ttl(triples).unwrap();
        let mut ks = MemKeyspace::new();
        ks.insert(0, "h", value.clone(), None);
        for version in [12u8, 80] {
            let opts = EncodeOptions { version, lzf, ..EncodeOptions::default() };
            let (rdb, _) = encode_to_vec(&ks, &opts).unwrap();
            let (back, _) = load(&rdb, &LoadOptions::default()).unwrap();
            let sorted = |v: &MemValue| match v {
                MemValue::HashTtl(x) => { let mut x = x.clone(); x.sort(); MemValue::HashTtl(x) }
                MemValue::Hash(x) => { let mut x = x.clone(); x.sort(); MemValue::Hash(x) }
                other => other.clone(),
            };
            prop_assert_eq!(sorted(back.db(0).unwrap().get(b"h").unwrap().0), sorted(&value), "v{}", version);
        }
    }
}
