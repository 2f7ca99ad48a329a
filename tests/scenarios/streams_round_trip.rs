//! Streams survive a trip through forksnap: Redis 6.2, Redis 7.0 and Valkey 9.1 build
//! streams by commands (varied fields, deletions, trimming, consumer groups with pending
//! entries and several consumers, an empty stream with a group), `SAVE`; forksnap loads
//! the file and writes it again at every RDB version the server loads; the server loads
//! that with the same `DEBUG DIGEST` and the same `XINFO STREAM key FULL` (the digest
//! covers entries only). Fields an older version cannot hold are compared only where the
//! version holds them (RDB 9: no first/max-deleted IDs, entries added or entries read;
//! RDB 9 and 10: no consumer active time); node counts only for streams never deleted
//! from (forksnap writes live entries only, so nodes with deleted entries come out
//! compacted).
//!
//! Also: streams move between Valkey 9.1 and Redis 7.0 (RDB 10), the writer and reader
//! agree on any stream (property test), RESP bases rebuild streams, and damaged streams
//! are refused with their offset.

use crate::common::{rdb_of, Kind, Reply, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{
    dataset_digest, Error, MemKeyspace, MemStream, MemValue, PendingEntry, StreamConsumer,
    StreamGroup, StreamId, StreamMeta,
};
use proptest::prelude::*;

/// Streams never deleted from: their node layout must be Redis's own.
const UNTOUCHED: &[&str] = &["same", "big", "empty", "long"];
const STREAMS: &[&str] = &["same", "big", "empty", "long", "mixed", "trimmed"];

fn build(s: &mut Server) {
    let c = s.conn();
    let cmds: Vec<Vec<Vec<u8>>> = {
        let mut v: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut cmd = |a: &[&[u8]]| v.push(a.iter().map(|x| x.to_vec()).collect());
        for i in 0..30u64 {
            let id = format!("{}-{}", 1_700_000_000_000 + i / 3, i % 3);
            cmd(&[
                b"XADD",
                b"same",
                id.as_bytes(),
                b"name",
                format!("user{i}").as_bytes(),
                b"age",
                i.to_string().as_bytes(),
            ]);
        }
        // 250 entries: several nodes by the entry limit, fields changing every 7th.
        for i in 0..250u64 {
            let id = format!("{}-0", 1000 + i);
            let v = format!("value-{i}");
            if i % 7 == 3 {
                cmd(&[
                    b"XADD",
                    b"big",
                    id.as_bytes(),
                    b"other",
                    v.as_bytes(),
                    b"n",
                    b"-12",
                ]);
            } else {
                cmd(&[
                    b"XADD",
                    b"big",
                    id.as_bytes(),
                    b"f1",
                    v.as_bytes(),
                    b"f2",
                    i.to_string().as_bytes(),
                ]);
            }
        }
        // Long compressible values: nodes split by the byte limit, listpacks LZF'd.
        for i in 0..40u64 {
            let id = format!("{}-0", 50 + i);
            let v = format!("{i:04}").repeat(60 + i as usize * 10);
            cmd(&[
                b"XADD",
                b"long",
                id.as_bytes(),
                b"payload",
                v.as_bytes(),
                b"\x00bin\xff",
                b"x",
            ]);
        }
        // A negative sequence difference (6-0 after the master 5-1), a deletion.
        cmd(&[b"XADD", b"mixed", b"5-1", b"a", b"1"]);
        cmd(&[b"XADD", b"mixed", b"5-2", b"b", b"2", b"c", b"3"]);
        cmd(&[b"XADD", b"mixed", b"6-0", b"a", b"1"]);
        cmd(&[b"XADD", b"mixed", b"6-7", b"a", b"2", b"a", b"3"]);
        cmd(&[b"XDEL", b"mixed", b"5-2"]);
        for i in 1..=50u64 {
            cmd(&[b"XADD", b"trimmed", format!("{i}-0").as_bytes(), b"k", b"v"]);
        }
        cmd(&[b"XTRIM", b"trimmed", b"MAXLEN", b"10"]);
        // Groups: pending entries over two consumers, one acknowledged, an idle consumer.
        cmd(&[b"XGROUP", b"CREATE", b"big", b"g1", b"0"]);
        cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g1",
            b"alice",
            b"COUNT",
            b"5",
            b"STREAMS",
            b"big",
            b">",
        ]);
        cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g1",
            b"bob",
            b"COUNT",
            b"3",
            b"STREAMS",
            b"big",
            b">",
        ]);
        cmd(&[b"XACK", b"big", b"g1", b"1001-0"]);
        cmd(&[b"XGROUP", b"CREATE", b"big", b"g2", b"$"]);
        cmd(&[b"XGROUP", b"CREATECONSUMER", b"big", b"g2", b"carol"]);
        cmd(&[b"XGROUP", b"CREATE", b"trimmed", b"t", b"0"]);
        cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"t",
            b"dave",
            b"COUNT",
            b"2",
            b"STREAMS",
            b"trimmed",
            b">",
        ]);
        cmd(&[b"XGROUP", b"CREATE", b"empty", b"lonely", b"0", b"MKSTREAM"]);
        cmd(&[b"SET", b"plain", b"string"]);
        v
    };
    c.pipeline(&cmds);
}

/// `XINFO STREAM key FULL COUNT 0`, with what `version` cannot hold taken out.
fn xinfo(s: &mut Server, key: &str, version: u8) -> Reply {
    // COUNT 0: every entry and pending entry (FULL shows 10 by default).
    let r = s
        .conn()
        .cmd(&[b"XINFO", b"STREAM", key.as_bytes(), b"FULL", b"COUNT", b"0"]);
    assert!(
        matches!(&r, Reply::Array(Some(a)) if a.len() >= 12),
        "XINFO STREAM {key} FULL answered {r:?}"
    );
    let mut drop: Vec<&[u8]> = Vec::new();
    if version < 10 {
        drop.extend([
            &b"max-deleted-entry-id"[..],
            b"entries-added",
            b"recorded-first-entry-id",
            b"entries-read",
            b"lag",
        ]);
    }
    if version < 11 {
        drop.extend([&b"active-time"[..], b"inactive"]);
    }
    if !UNTOUCHED.contains(&key) {
        drop.extend([&b"radix-tree-keys"[..], b"radix-tree-nodes"]);
    }
    strip(r, &drop)
}

/// Removes `name, value` pairs named in `drop` from every flat name/value array.
fn strip(r: Reply, drop: &[&[u8]]) -> Reply {
    match r {
        Reply::Array(Some(items)) => {
            let named = items.len() % 2 == 0
                && items
                    .iter()
                    .step_by(2)
                    .all(|i| matches!(i, Reply::Bulk(Some(b)) if b.iter().all(|c| c.is_ascii_lowercase() || *c == b'-')));
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let Some(x) = it.next() {
                if named {
                    let v = it.next().expect("pairs");
                    if matches!(&x, Reply::Bulk(Some(b)) if drop.contains(&&b[..])) {
                        continue;
                    }
                    out.push(x);
                    out.push(strip(v, drop));
                } else {
                    out.push(strip(x, drop));
                }
            }
            Reply::Array(Some(out))
        }
        other => other,
    }
}

#[test]
fn streams_survive_a_conversion_at_every_version_the_server_loads() {
    for kind in Kind::ALL {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        build(&mut s);
        let digest = s.digest();
        let file = s.save_file();
        let want: Vec<Vec<Reply>> = kind
            .versions()
            .iter()
            .map(|&v| STREAMS.iter().map(|k| xinfo(&mut s, k, v)).collect())
            .collect();
        drop(s);

        let (ks, report) = load(&file, &LoadOptions::default()).unwrap();
        assert_eq!(report.keys, STREAMS.len() as u64 + 1, "{kind:?}");
        assert_eq!(
            dataset_digest(&ks).to_string(),
            digest,
            "{kind:?}: our digest of its file"
        );
        for (&version, want) in kind.versions().iter().zip(&want) {
            for lzf in [true, false] {
                let rdb = rdb_of(&ks, version, lzf);
                let label = format!("{kind:?} v{version} lzf {lzf}");
                let mut back = Server::start_with(kind, Some(&rdb))
                    .unwrap_or_else(|| panic!("{label}: no server"));
                assert_eq!(back.digest(), digest, "{label}; log:\n{}", back.log());
                for (k, w) in STREAMS.iter().zip(want) {
                    assert_eq!(
                        &xinfo(&mut back, k, version),
                        w,
                        "{label}: XINFO STREAM {k} FULL"
                    );
                }
            }
        }
    }
}

/// A migration across servers: Valkey 9.1's streams, converted to RDB 10, load in Redis
/// 7.0 with Valkey's digest and its XINFO (less what RDB 10 cannot hold); Redis 7.0's
/// load in Valkey 9.1 likewise.
#[test]
fn streams_move_between_valkey_and_redis_7_0() {
    for (from, to) in [
        (Kind::Valkey91, Kind::Redis70),
        (Kind::Redis70, Kind::Valkey91),
    ] {
        let Some(mut s) = Server::start(from) else {
            return;
        };
        build(&mut s);
        let digest = s.digest();
        let want: Vec<Reply> = STREAMS.iter().map(|k| xinfo(&mut s, k, 10)).collect();
        let file = s.save_file();
        drop(s);
        let (ks, _) = load(&file, &LoadOptions::default()).unwrap();
        let rdb = rdb_of(&ks, 10, true);
        let mut back = Server::start_with(to, Some(&rdb)).unwrap();
        assert_eq!(back.digest(), digest, "{from:?} to {to:?}");
        for (k, w) in STREAMS.iter().zip(&want) {
            assert_eq!(
                &xinfo(&mut back, k, 10),
                w,
                "{from:?} to {to:?}: XINFO STREAM {k} FULL"
            );
        }
    }
}

/// A RESP base rebuilds the streams (entries, metadata, groups, pending entries) as
/// Redis's AOF rewrite does: Valkey 9.1 replays it into the same XINFO.
#[test]
fn a_resp_base_rebuilds_streams() {
    let Some(mut s) = Server::start(Kind::Valkey91) else {
        return;
    };
    build(&mut s);
    let digest = s.digest();
    let file = s.save_file();
    let want: Vec<Reply> = STREAMS.iter().map(|k| xinfo(&mut s, k, 11)).collect();
    drop(s);
    let (ks, _) = load(&file, &LoadOptions::default()).unwrap();
    let (resp, _) = encode_to_vec(
        &ks,
        &EncodeOptions {
            resp: true,
            ..EncodeOptions::default()
        },
    )
    .unwrap();
    let mut back = Server::start(Kind::Valkey91).unwrap();
    back.replay(&resp);
    assert_eq!(back.digest(), digest);
    for (k, w) in STREAMS.iter().zip(&want) {
        // XCLAIM … FORCE re-creates pending entries but not the consumers' seen and
        // active times (as with Redis's own rewrite): compare without them.
        let times: &[&[u8]] = &[
            b"seen-time",
            b"active-time",
            b"inactive",
            b"radix-tree-keys",
            b"radix-tree-nodes",
        ];
        assert_eq!(
            strip(xinfo(&mut back, k, 11), times),
            strip(w.clone(), times),
            "XINFO STREAM {k} FULL"
        );
    }
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

/// A stream value from entries: IDs ascending, elements from the strategy.
fn stream_strategy() -> impl Strategy<Value = MemStream> {
    let elem = prop_oneof![
        3 => "[a-c]{1,3}".prop_map(|s| s.into_bytes()),
        1 => any::<i64>().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..80),
        1 => (1usize..3000).prop_map(|n| b"xyz".repeat(n)),
    ];
    let entry = proptest::collection::vec((elem.clone(), elem), 0..5);
    (
        proptest::collection::vec((0u64..3, 0u64..4, entry, any::<bool>()), 0..260),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(|(raw, template, ngroups)| {
            let mut entries: Vec<(StreamId, Vec<Box<[u8]>>)> = Vec::new();
            let mut cur = id(1_700_000_000_000, 0);
            let mut first_fields: Option<Vec<Vec<u8>>> = None;
            for (dms, seq, pairs, same) in raw {
                // Ascending: a later millisecond with any sequence, or the same one, later.
                cur = if dms == 0 {
                    id(cur.ms, cur.seq + 1 + seq)
                } else {
                    id(cur.ms + dms, seq)
                };
                let mut elems: Vec<Box<[u8]>> = Vec::new();
                match (&first_fields, template && same) {
                    (Some(ff), true) => {
                        for (i, f) in ff.iter().enumerate() {
                            elems.push(f.clone().into());
                            elems.push(format!("{i}").into_bytes().into());
                        }
                    }
                    _ => {
                        for (f, v) in &pairs {
                            elems.push(f.clone().into());
                            elems.push(v.clone().into());
                        }
                        first_fields.get_or_insert(pairs.into_iter().map(|(f, _)| f).collect());
                    }
                }
                entries.push((cur, elems));
            }
            let ids: Vec<StreamId> = entries.iter().map(|e| e.0).collect();
            let groups = (0..ngroups)
                .map(|g| {
                    let pending: Vec<PendingEntry> = ids
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (i + g as usize).is_multiple_of(3))
                        .map(|(i, &id)| PendingEntry {
                            id,
                            delivery_ms: 1_700_000_000_000 + i as i64,
                            delivery_count: i as u64 % 5 + 1,
                        })
                        .collect();
                    let consumers = (0..g)
                        .map(|c| StreamConsumer {
                            name: format!("consumer-{c}").into_bytes(),
                            seen_ms: 1_700_000_000_500 + i64::from(c),
                            active_ms: 1_700_000_000_400 + i64::from(c),
                            pending: pending
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| i % g as usize == c as usize)
                                .map(|(_, p)| p.id)
                                .collect(),
                        })
                        .collect();
                    StreamGroup {
                        name: format!("group{g}").into_bytes(),
                        last_id: ids.last().copied().unwrap_or_default(),
                        entries_read: (g != 1).then_some(u64::from(g) * 7),
                        pending,
                        consumers,
                    }
                })
                .collect();
            let last = ids.last().copied().unwrap_or(id(1, 1));
            let meta = StreamMeta {
                last_id: id(last.ms + 1, 0),
                first_id: ids.first().copied().unwrap_or_default(),
                max_deleted_id: id(3, 4),
                entries_added: ids.len() as u64 + 9,
            };
            MemStream::new(entries, meta, groups).expect("a valid stream")
        })
}

/// What reading back a stream written at `version` gives: the fields the version holds,
/// the rest as a loader fills them in.
fn as_written(x: &MemStream, version: u8) -> MemStream {
    let mut meta = x.meta();
    let mut groups = x.groups().to_vec();
    if version < 10 {
        meta.first_id = x.entries().first().map_or(StreamId::default(), |e| e.0);
        meta.max_deleted_id = StreamId::default();
        meta.entries_added = x.entries().len() as u64;
        for g in &mut groups {
            g.entries_read = None;
        }
    }
    if version < 11 {
        for c in groups.iter_mut().flat_map(|g| g.consumers.iter_mut()) {
            c.active_ms = c.seen_ms;
        }
    }
    MemStream::new(x.entries().to_vec(), meta, groups).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_stream_round_trips_through_our_writer_and_reader(x in stream_strategy(), lzf: bool) {
        let mut ks = MemKeyspace::new();
        ks.insert(0, "s", MemValue::Stream(Box::new(x.clone())), None);
        for version in [9u8, 10, 11] {
            let opts = EncodeOptions { version, lzf, ..EncodeOptions::default() };
            let (rdb, _) = encode_to_vec(&ks, &opts).unwrap();
            let (back, report) = load(&rdb, &LoadOptions::default()).unwrap();
            prop_assert_eq!(report.keys, 1);
            let (v, _) = back.db(0).unwrap().get(b"s").unwrap();
            let want = MemValue::Stream(Box::new(as_written(&x, version)));
            prop_assert_eq!(v, &want, "version {}", version);
            prop_assert_eq!(dataset_digest(&back), dataset_digest(&ks));
        }
    }
}

/// A damaged stream is refused by the parser itself (no checksum to fall back on), with
/// an error at or after the damaged byte; every truncation is an error too.
#[test]
fn damaged_streams_are_refused_with_their_offset() {
    let entries = vec![
        (
            id(7, 1),
            vec![b"fieldA".to_vec().into(), b"valueA1".to_vec().into()],
        ),
        (
            id(7, 2),
            vec![b"fieldA".to_vec().into(), b"valueA2".to_vec().into()],
        ),
    ];
    let group = StreamGroup {
        name: b"groupX".to_vec(),
        last_id: id(7, 2),
        entries_read: Some(2),
        pending: vec![PendingEntry {
            id: id(7, 2),
            delivery_ms: 5,
            delivery_count: 1,
        }],
        consumers: vec![StreamConsumer {
            name: b"consumerX".to_vec(),
            seen_ms: 6,
            active_ms: 6,
            pending: vec![id(7, 2)],
        }],
    };
    let meta = StreamMeta {
        last_id: id(7, 2),
        first_id: id(7, 1),
        ..StreamMeta::default()
    };
    let x = MemStream::new(entries, meta, vec![group]).unwrap();
    let mut ks = MemKeyspace::new();
    ks.insert(0, "s", MemValue::Stream(Box::new(x)), None);
    let opts = EncodeOptions {
        version: 11,
        lzf: false,
        ..EncodeOptions::default()
    };
    let mut rdb = encode_to_vec(&ks, &opts).unwrap().0;
    let n = rdb.len();
    rdb[n - 8..].fill(0); // no checksum: the parser alone must catch it
    load(&rdb, &LoadOptions::default()).unwrap();
    let find = |needle: &[u8]| rdb.windows(needle.len()).position(|w| w == needle).unwrap();
    let raw_id = [7u64.to_be_bytes(), 1u64.to_be_bytes()].concat();
    let key = find(&raw_id);
    let lp = key + 16 + 1;
    let lp_len = rdb[lp - 1] as usize;
    let lp_count = find(b"valueA1") + 7 + 1;
    let owned = find(b"consumerX") + 9 + 8 + 8 + 1 + 15;
    let cases: [(&str, usize, u8, &str); 4] = [
        ("node key length", key - 1, 15, "not a 16-byte entry ID"),
        (
            "entry lp-count",
            lp_count,
            5,
            "lp-count is 5, its elements say 4",
        ),
        (
            "stream length",
            lp + lp_len,
            3,
            "stream length says 3 entries, its nodes hold 2",
        ),
        (
            "consumer's pending ID",
            owned,
            9,
            "pending ID 7-9 is not in its group's pending",
        ),
    ];
    for (what, at, value, says) in cases {
        let mut bad = rdb.clone();
        assert_ne!(bad[at], value, "{what}: the damage changes nothing");
        bad[at] = value;
        match load(&bad, &LoadOptions::default()) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains(says), "{what}: {s}");
                let Error::Corrupt { offset, .. } = e else {
                    panic!("{what}: {s}")
                };
                assert!(
                    offset + 40 >= at as u64 && offset <= bad.len() as u64,
                    "{what} at {at}: {s}"
                );
            }
        }
    }
    for cut in 0..rdb.len() {
        assert!(
            load(&rdb[..cut], &LoadOptions::default()).is_err(),
            "cut at {cut} loaded"
        );
    }
}
