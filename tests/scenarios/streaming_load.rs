//! The streaming load: any `Read`, any piece size, LZ4 frames block by block, a
//! server's own visitor that reads some values and not others, errors that name the key,
//! and memory bounded by the largest item rather than by what the file claims.

use crate::common::datasets::edge_cases;
use crate::common::{assert_same_data, helper, helper_mode, say};
use forksnap::rdb::reader::Validator;
use forksnap::rdb::{encode_to_vec, load, EncodeOptions};
use forksnap::{
    load_into, DbInfo, Error, LoadOptions, LoadValue, LoadVisitor, MemKeyspace, VisitResult,
};
use std::io::Read;

/// Hands out one byte per `read`: every boundary inside the reader is crossed.
struct Trickle<R>(R);
impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(1);
        self.0.read(&mut out[..n])
    }
}

fn framed(rdb: &[u8]) -> Vec<u8> {
    let mut f = forksnap::frame::Framer::new(forksnap::frame::BlockMax::K64);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = rdb.chunks(100_000).collect();
    for c in &chunks[..chunks.len() - 1] {
        out.extend_from_slice(f.chunk(c));
    }
    out.extend_from_slice(f.finish(chunks[chunks.len() - 1]));
    out
}

#[test]
fn byte_by_byte_plain_and_lz4_load_what_memory_loads() {
    let ks = edge_cases(false);
    for lzf in [false, true] {
        let (rdb, _) = encode_to_vec(
            &ks,
            &EncodeOptions {
                lzf,
                ..Default::default()
            },
        )
        .unwrap();
        let (want, _) = load(&rdb, &LoadOptions::default()).unwrap();
        assert_same_data(&ks, &want);
        for input in [rdb.clone(), framed(&rdb)] {
            let mut got = MemKeyspace::new();
            let report = load_into(Trickle(&input[..]), &LoadOptions::default(), &mut got).unwrap();
            assert_same_data(&want, &got);
            assert_eq!(report.keys, want.len() as u64);
            assert_eq!(report.rdb_bytes, rdb.len() as u64);
            assert_eq!(report.lz4_framed, input != rdb);
            assert!(report.crc_checked);
        }
    }
}

/// A server that keeps strings and sets only; the lists, hashes and sorted sets it does
/// not read are skipped, and the keys after them still load.
#[derive(Default)]
struct Picky {
    strings: u64,
    sets: MemKeyspace,
    others: u64,
    dbs: Vec<DbInfo>,
}

impl LoadVisitor for Picky {
    fn begin_db(&mut self, db: DbInfo) -> VisitResult {
        self.dbs.push(db);
        Ok(())
    }
    fn key(&mut self, db: u32, key: &[u8], exp: Option<i64>, value: LoadValue<'_>) -> VisitResult {
        match value {
            LoadValue::Str(_) => self.strings += 1,
            v @ LoadValue::Set(_) => self.sets.key(db, key, exp, v)?,
            _ => self.others += 1,
        }
        Ok(())
    }
}

#[test]
fn a_visitor_reads_what_it_wants_and_the_rest_is_skipped() {
    let ks = edge_cases(false);
    let (rdb, _) = encode_to_vec(&ks, &Default::default()).unwrap();
    let mut p = Picky::default();
    let report = load_into(&rdb[..], &LoadOptions::default(), &mut p).unwrap();
    let (all, _) = load(&rdb, &LoadOptions::default()).unwrap();
    let mut sets = 0;
    for (db, d) in all.dbs() {
        for (k, v, _) in d.iter() {
            if matches!(v, forksnap::MemValue::Set(_)) {
                sets += 1;
                assert_eq!(p.sets.db(db).unwrap().get(k).unwrap().0, v);
            }
        }
    }
    assert!(sets > 0 && p.others > 0 && p.strings > 0);
    assert_eq!(p.strings + sets + p.others, all.len() as u64);
    assert_eq!(report.keys, all.len() as u64);
    let dbs: Vec<u32> = p.dbs.iter().map(|d| d.index).collect();
    let want: Vec<u32> = all.dbs().map(|(i, _)| i).collect();
    assert_eq!(dbs, want);
    for d in &p.dbs {
        assert_eq!(
            d.keys,
            all.db(d.index).unwrap().len() as u64,
            "RESIZEDB hint"
        );
    }
}

/// A visitor that refuses one key, from `key` or from inside a `for_each`.
struct Refuse {
    key: &'static [u8],
    inside: bool,
}
impl LoadVisitor for Refuse {
    fn key(&mut self, _: u32, key: &[u8], _: Option<i64>, value: LoadValue<'_>) -> VisitResult {
        if key != self.key {
            return Ok(());
        }
        if !self.inside {
            return Err("not in this server".into());
        }
        match value {
            LoadValue::List(l) | LoadValue::Set(l) => Ok(l.for_each(|_| Err("no".into()))?),
            _ => panic!("the refused key is a collection"),
        }
    }
}

#[test]
fn a_refusal_names_the_key_and_its_offset() {
    let mut ks = MemKeyspace::new();
    ks.insert(0, "a", forksnap::MemValue::str("1"), None);
    ks.insert(0, "l", forksnap::MemValue::list(["x", "y"]), None);
    let (rdb, _) = encode_to_vec(&ks, &Default::default()).unwrap();
    for inside in [false, true] {
        let e = load_into(
            &rdb[..],
            &LoadOptions::default(),
            &mut Refuse { key: b"l", inside },
        )
        .unwrap_err();
        match &e {
            Error::Rejected { offset, key, .. } => {
                assert_eq!(key, "l");
                assert!(*offset > 9 && (*offset as usize) < rdb.len(), "{offset}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains("\"l\"") && text.contains("refused"), "{text}");
    }
}

/// A visitor that ignores a failed value's error cannot make the load go on past it.
#[test]
fn a_swallowed_error_still_stops_the_load() {
    struct Swallow;
    impl LoadVisitor for Swallow {
        fn key(&mut self, _: u32, _: &[u8], _: Option<i64>, v: LoadValue<'_>) -> VisitResult {
            if let LoadValue::List(l) = v {
                let _ = l.for_each(|_| Ok(()));
            }
            Ok(())
        }
    }
    // A plain list of two elements whose second length byte is invalid (0x90).
    let mut f = b"REDIS0009\xfe\x00\x01\x01l\x02\x01a\x90".to_vec();
    f.extend_from_slice(&[0xFF; 12]);
    let e = load_into(&f[..], &LoadOptions::default(), &mut Swallow).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { what, .. } if what.contains("invalid length byte")),
        "{e}"
    );
}

#[test]
fn aux_functions_and_database_hints_reach_the_visitor() {
    #[derive(Default)]
    struct Seen {
        aux: Vec<(Vec<u8>, Vec<u8>)>,
        functions: Vec<Vec<u8>>,
        dbs: Vec<DbInfo>,
        keys: Vec<(u32, Vec<u8>, Option<i64>)>,
    }
    impl LoadVisitor for Seen {
        fn begin_db(&mut self, db: DbInfo) -> VisitResult {
            self.dbs.push(db);
            Ok(())
        }
        fn key(&mut self, db: u32, k: &[u8], e: Option<i64>, _: LoadValue<'_>) -> VisitResult {
            self.keys.push((db, k.to_vec(), e));
            Ok(())
        }
        fn aux(&mut self, f: &[u8], v: &[u8]) -> VisitResult {
            self.aux.push((f.to_vec(), v.to_vec()));
            Ok(())
        }
        fn function(&mut self, lib: &[u8]) -> VisitResult {
            self.functions.push(lib.to_vec());
            Ok(())
        }
    }
    let lib = b"#!lua name=mylib\nredis.register_function('f', function() return 1 end)";
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
    f.push(0xF5);
    f.extend_from_slice(&[0x40, lib.len() as u8]); // a 14-bit length
    f.extend_from_slice(lib);
    f.extend_from_slice(b"\xfe\x03\xfb\x02\x01"); // SELECTDB 3, RESIZEDB 2 keys, 1 expiring
    f.extend_from_slice(b"\xfc");
    f.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
    f.extend_from_slice(b"\x00\x01a\x011");
    f.extend_from_slice(b"\x00\x01b\x012");
    f.push(0xFF);
    let crc = forksnap::rdb::Crc64::checksum(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    let mut s = Seen::default();
    let report = load_into(&f[..], &LoadOptions::default(), &mut s).unwrap();
    assert_eq!(s.aux, vec![(b"redis-ver".to_vec(), b"7.0.15".to_vec())]);
    assert_eq!(s.functions, vec![lib.to_vec()]);
    assert_eq!(report.functions, 1);
    assert_eq!(
        s.dbs,
        vec![DbInfo {
            index: 3,
            keys: 2,
            expires: 1
        }]
    );
    assert_eq!(
        s.keys,
        vec![
            (3, b"a".to_vec(), Some(1_900_000_000_000)),
            (3, b"b".to_vec(), None)
        ]
    );
}

/// REDIS0011: one list, a quicklist of one LZF-compressed listpack of `n` small integers
/// (2 bytes each), inside an LZ4 frame: a few MB on disk, `2n` bytes decoded.
fn huge_listpack_file(n: usize) -> Vec<u8> {
    use forksnap::rdb::listpack::LpWriter;
    let mut lp = Vec::with_capacity(2 * n + 16);
    let mut w = LpWriter::begin(&mut lp);
    for i in 0..n {
        w.push_int(&mut lp, (i % 100) as i64);
    }
    w.finish(&mut lp);
    let mut c = vec![0u8; lp.len() / 20];
    let mut table = vec![0u32; forksnap::rdb::lzf::HASH_SIZE];
    let table: &mut [u32; forksnap::rdb::lzf::HASH_SIZE] = (&mut table[..]).try_into().unwrap();
    let clen = forksnap::rdb::lzf::compress(&lp, &mut c, table).expect("compressible");
    let mut f = b"REDIS0011\xfe\x00\x12\x04huge\x01\x02\xc3".to_vec();
    f.push(0x80);
    f.extend_from_slice(&(clen as u32).to_be_bytes());
    f.push(0x80);
    f.extend_from_slice(&(lp.len() as u32).to_be_bytes());
    f.extend_from_slice(&c[..clen]);
    f.push(0xFF);
    let crc = forksnap::rdb::Crc64::checksum(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    framed(&f)
}

/// The shape: LZ4 around LZF around a 100 MB listpack (2.45 GB of RSS and 32 s
/// to verify when the reader held the decoded file and every element). Validating it now
/// holds the listpack once, beside a small read buffer.
#[test]
fn a_100_mb_listpack_validates_in_bounded_memory() {
    const N: usize = 50_000_000;
    if let Some((_, target)) = helper_mode() {
        let file = std::fs::File::open(&target).unwrap();
        let mut v = Validator::default();
        let r = load_into(file, &LoadOptions::default(), &mut v);
        // SAFETY: getrusage fills the zeroed struct it is given.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        match r {
            Ok(rep) => say(&format!("OK {} {}", rep.keys, ru.ru_maxrss / 1024)),
            Err(e) => say(&format!("ERR {e}")),
        }
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = huge_listpack_file(N);
    assert!(data.len() < 8 << 20, "{} bytes", data.len());
    let path = crate::common::write_temp(dir.path(), "huge.rdb.lz4", &data);
    drop(data);
    let (lines, code) = helper(
        "streaming_load::a_100_mb_listpack_validates_in_bounded_memory",
        "validate",
        &path,
    );
    assert_eq!(code, Some(0), "{lines:?}");
    let parts: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(parts[..3], ["HELPER", "OK", "1"], "{lines:?}");
    let peak_mib: u64 = parts[3].parse().unwrap();
    // The listpack is 100 MB; the test binary itself and the read buffers add a little.
    eprintln!("peak RSS while validating: {peak_mib} MiB");
    assert!(peak_mib < 250, "peak RSS {peak_mib} MiB while validating");
}

/// `lz4 -BD` writes linked blocks (each may refer to the 64 KiB before it): decoded as
/// they stream, with that history kept between blocks.
#[test]
fn linked_lz4_blocks_from_the_lz4_cli_stream() {
    let Some(lz4) = crate::common::require_tool("lz4") else {
        return;
    };
    let ks = crate::common::datasets::populate(200_000, 100);
    let (rdb, _) = encode_to_vec(&ks, &Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain = crate::common::write_temp(dir.path(), "p.rdb", &rdb);
    let out = std::process::Command::new(lz4)
        .args(["-BD", "-B4", "-f", "-q", "-c"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(forksnap::frame::is_lz4_frame(&out.stdout));
    let mut got = MemKeyspace::new();
    let report = load_into(&out.stdout[..], &LoadOptions::default(), &mut got).unwrap();
    assert!(report.lz4_framed);
    assert_same_data(&ks, &got);
}
