//! The `forksnap` command line: exit codes and one-line outputs scripts rely on.

use crate::common;

use common::datasets;
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use std::path::Path;
use std::process::{Command, Output};

fn forksnap(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forksnap"));
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn sample(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let ks = datasets::edge_cases(false);
    let (rdb, _) = encode_to_vec(&ks, &EncodeOptions::default()).unwrap();
    (common::write_temp(dir, "in.rdb", &rdb), rdb)
}

#[test]
fn verify_accepts_valid_and_names_the_offset_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (p, rdb) = sample(dir.path());
    let o = forksnap(&[&"verify", &p]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}{se}");
    assert_eq!(so.lines().count(), 1, "{so}");
    assert!(
        so.starts_with("ok: ") && so.contains("REDIS0011") && so.contains("checksum ok"),
        "{so}"
    );
    assert!(
        so.contains("db0=") && so.contains("db1=2") && so.contains("db9=1"),
        "{so}"
    );
    assert!(
        so.trim_end().ends_with("; loads in Redis >= 7.2, Valkey"),
        "{so}"
    );
    assert!(se.is_empty(), "{se}");

    let truncated = common::write_temp(dir.path(), "cut.rdb", &rdb[..rdb.len() / 2]);
    let o = forksnap(&[&"verify", &truncated]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(so.is_empty());
    assert_eq!(se.lines().count(), 1, "{se}");
    assert!(se.contains("at byte"), "{se}");

    let mut flipped = rdb.clone();
    let n = flipped.len();
    flipped[n - 20] ^= 0x10;
    let f = common::write_temp(dir.path(), "flip.rdb", &flipped);
    let o = forksnap(&[&"verify", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("byte"), "{}", text(&o).1);

    let o = forksnap(&[&"verify", &dir.path().join("missing.rdb")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("missing.rdb"));
}

#[test]
fn inspect_reports_types_encodings_and_largest_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = sample(dir.path());
    let o = forksnap(&[&"inspect", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ks = datasets::edge_cases(false);
    assert_eq!(v["keys"].as_u64().unwrap(), ks.len() as u64);
    assert_eq!(v["keys_per_db"]["9"], 1);
    let encs: Vec<String> = v["encodings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["type"].as_str().unwrap(),
                e["encoding"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "set/intset",
        "set/listpack",
        "set/hashtable",
        "hash/listpack",
        "hash/hashtable",
        "zset/listpack",
        "zset/skiplist",
        "list/quicklist2",
        "string/string",
    ] {
        assert!(
            encs.contains(&want.to_string()),
            "missing {want} in {encs:?}"
        );
    }
    let expiring = ks.dbs().map(|(_, d)| d.expires()).sum::<u64>();
    assert_eq!(v["expiring_keys"].as_u64().unwrap(), expiring);
    let largest = v["largest_keys"].as_array().unwrap();
    assert_eq!(largest.len(), 10);
    assert!(largest[0]["bytes"].as_u64() >= largest[1]["bytes"].as_u64());
    let o = forksnap(&[&"inspect", &p]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.contains("largest keys"));
}

#[test]
fn convert_through_fork_backends_and_direct_io() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = sample(dir.path());
    let original = load(&std::fs::read(&p).unwrap(), &LoadOptions::default())
        .unwrap()
        .0;
    for flags in [
        &["--backend", "uring"][..],
        &["--backend", "pwrite"],
        &["--direct"],
        &["--no-fork"],
        &["--no-fork", "--backend", "pwrite", "--direct"],
    ] {
        let out = dir.path().join("out.rdb");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"convert", &p, &out];
        for f in flags {
            args.push(f);
        }
        let o = forksnap(&args);
        let (so, se) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{flags:?}: {so}{se}");
        // One line, the path the user typed and what loads it; no temp file, no
        // backend internals.
        assert_eq!(so.lines().count(), 1, "{so}");
        assert!(
            so.starts_with(&format!("wrote {}: ", out.display())),
            "{so}"
        );
        assert!(so.contains("loads in Redis >= 7.2, Valkey"), "{so}");
        assert!(!so.contains("temp-") && !so.contains("forced"), "{so}");
        let (ks, _) = load(&std::fs::read(&out).unwrap(), &LoadOptions::default()).unwrap();
        common::assert_same_data(&original, &ks);
    }
}

#[test]
fn convert_writes_each_version_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = sample(dir.path());
    let original = load(&std::fs::read(&p).unwrap(), &LoadOptions::default())
        .unwrap()
        .0;
    for v in ["9", "10", "11"] {
        for c in ["none", "lzf", "lz4"] {
            let out = dir.path().join(format!("out-{v}-{c}.rdb"));
            let o = forksnap(&[
                &"convert",
                &p,
                &out,
                &"--rdb-version",
                &v,
                &"--compression",
                &c,
            ]);
            assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
            let data = std::fs::read(&out).unwrap();
            assert_eq!(data.starts_with(b"REDIS"), c != "lz4");
            let (ks, report) = load(&data, &LoadOptions::default()).unwrap();
            assert_eq!(report.version.to_string(), v);
            common::assert_same_data(&original, &ks);
        }
    }
}

#[test]
fn convert_never_replaces_the_target_with_a_bad_result() {
    let dir = tempfile::tempdir().unwrap();
    let (p, rdb) = sample(dir.path());
    let target = common::write_temp(dir.path(), "target.rdb", b"precious");
    let bad = common::write_temp(dir.path(), "bad.rdb", &rdb[..rdb.len() - 30]);
    let o = forksnap(&[&"convert", &bad, &target]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let o = forksnap(&[&"convert", &p, &target, &"--rdb-version", &"13"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let leftovers = common::temp_files(dir.path());
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // A good conversion does replace it.
    let o = forksnap(&[&"convert", &p, &target]);
    assert_eq!(o.status.code(), Some(0));
    assert!(std::fs::read(&target).unwrap().starts_with(b"REDIS0011"));
}

/// `--compression lz4` is the plain RDB (no LZF) in a standard LZ4 frame: `lz4 -d`
/// restores it byte for byte.
#[test]
fn lz4_cli_restores_the_plain_rdb() {
    let Some(lz4) = common::require_tool("lz4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ks = datasets::edge_cases(true);
    let (plain, _) = encode_to_vec(
        &ks,
        &EncodeOptions {
            lzf: false,
            ..Default::default()
        },
    )
    .unwrap();
    let p = common::write_temp(dir.path(), "plain.rdb", &plain);
    let framed = dir.path().join("framed.rdb.lz4");
    let o = forksnap(&[&"convert", &p, &framed, &"--compression", &"lz4"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let restored = dir.path().join("restored.rdb");
    let o = Command::new(lz4)
        .arg("-d")
        .arg("-f")
        .arg(&framed)
        .arg(&restored)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = std::fs::read(&restored).unwrap();
    // The header's ctime differs between the two encodes; everything else must match.
    let (a, _) = load(&back, &LoadOptions::default()).unwrap();
    common::assert_same_data(&ks, &a);
    assert_eq!(back.len(), plain.len());
    let strip = |b: &[u8]| {
        let (_, r) = load(b, &LoadOptions::default()).unwrap();
        r.aux
            .into_iter()
            .filter(|(k, _)| k != b"ctime")
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&back), strip(&plain));

    // Byte for byte: the library's LZ4 save with a fixed ctime, decoded by lz4 -d, is
    // exactly the plain RDB.
    let opts = EncodeOptions {
        lzf: false,
        ctime: Some(1_700_000_000),
        ..Default::default()
    };
    let (plain, _) = encode_to_vec(&ks, &opts).unwrap();
    let lz = dir.path().join("lib.rdb.lz4");
    forksnap::SnapshotOptions::new(&lz)
        .format(forksnap::Format::Lz4)
        .chunk_size(256 << 10)
        .ctime(opts.ctime)
        .save(&ks)
        .unwrap();
    let restored = dir.path().join("lib-restored.rdb");
    let o = Command::new("lz4")
        .arg("-d")
        .arg("-f")
        .arg(&lz)
        .arg(&restored)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&restored).unwrap() == plain,
        "lz4 -d output differs from the plain RDB"
    );
}

/// verify names the servers that load the file, and warns about an LZ4 frame.
#[test]
fn verify_says_which_servers_load_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ks = datasets::edge_cases(false);
    for (version, want) in [(9u8, "Redis >= 5.0, Valkey"), (10, "Redis >= 7.0, Valkey")] {
        let opts = EncodeOptions {
            version,
            ..Default::default()
        };
        let (rdb, _) = encode_to_vec(&ks, &opts).unwrap();
        let p = common::write_temp(dir.path(), &format!("v{version}.rdb"), &rdb);
        let (so, se) = text(&forksnap(&[&"verify", &p]));
        assert!(so.contains(&format!("loads in {want}")), "{so}");
        assert!(se.is_empty(), "{se}");
    }
    let framed = dir.path().join("framed.rdb.lz4");
    let (p, _) = sample(dir.path());
    let o = forksnap(&[&"convert", &p, &framed, &"--compression", &"lz4"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = forksnap(&[&"verify", &framed]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        so.contains("(LZ4 frame)") && so.contains("no server loads an LZ4 frame"),
        "{so}"
    );
    assert!(se.starts_with("warning: ") && se.contains("lz4 -d"), "{se}");
}

/// An empty file is called empty, by every command.
#[test]
fn empty_file_is_named_empty() {
    let dir = tempfile::tempdir().unwrap();
    let empty = common::write_temp(dir.path(), "empty.rdb", b"");
    let out = dir.path().join("out.rdb");
    for args in [
        vec![&"verify" as &dyn AsRef<std::ffi::OsStr>, &empty],
        vec![&"inspect", &empty],
        vec![&"convert", &empty, &out],
    ] {
        let o = forksnap(&args);
        let (so, se) = text(&o);
        assert_eq!(o.status.code(), Some(1));
        assert!(so.is_empty(), "{so}");
        assert_eq!(
            se.trim_end(),
            format!("error: {}: file is empty (0 bytes)", empty.display())
        );
    }
    assert!(!out.exists());
}

/// convert refuses an OUT that is a directory before reading anything, and names the path
/// the user typed (not the temp file) when writing fails.
#[test]
fn convert_names_what_the_user_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = sample(dir.path());
    let outdir = dir.path().join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    // IN does not even exist: the directory is refused first, before any work.
    let o = forksnap(&[&"convert", &dir.path().join("missing.rdb"), &outdir]);
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        se.contains(&format!("{} is a directory", outdir.display())),
        "{se}"
    );
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);

    let nowhere = dir.path().join("no-such-dir").join("out.rdb");
    let o = forksnap(&[&"convert", &p, &nowhere]);
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        se.starts_with(&format!(
            "error: cannot write {}: create failed",
            nowhere.display()
        )),
        "{se}"
    );
    assert!(!se.contains("temp-"), "{se}");
}

/// A module value (Redis 8.2's vector set) is carried: the converted file loads in Redis
/// 8.2 with the same vector; `--skip-unsupported` drops it (for a server without the
/// module) and says so.
#[test]
fn convert_carries_module_values_or_drops_them_on_request() {
    let Some(mut s) = common::Server::start(common::Kind::Redis82) else {
        return;
    };
    s.conn().ok(&[b"SET", b"plain", b"1"]);
    assert_eq!(
        s.conn()
            .cmd(&[b"VADD", b"vs", b"VALUES", b"3", b"0.1", b"0.2", b"0.3", b"a"]),
        common::Reply::Int(1)
    );
    let vemb = s.conn().cmd(&[b"VEMB", b"vs", b"a"]);
    let digest = s.digest();
    let rdb = s.save_file();
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_temp(dir.path(), "module.rdb", &rdb);
    let out = dir.path().join("out.rdb");
    let o = forksnap(&[&"convert", &p, &out, &"--rdb-version", &"12"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(so.contains("2 keys") && !so.contains("dropped"), "{so}");
    let mut back =
        common::Server::start_with(common::Kind::Redis82, Some(&std::fs::read(&out).unwrap()))
            .unwrap();
    assert_eq!(back.conn().cmd(&[b"VEMB", b"vs", b"a"]), vemb);
    assert_eq!(back.digest(), digest);
    let o = forksnap(&[&"convert", &p, &out, &"--skip-unsupported"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(
        so.contains("1 keys") && so.contains("dropped 1 module values"),
        "{so}"
    );
}

/// A hash whose fields carry TTLs (Valkey 9.1): convert keeps them at `--rdb-version 80`,
/// refuses a version that cannot hold them (naming the ways out, replacing nothing), and
/// drops them only when asked, saying so.
#[test]
fn convert_keeps_field_ttls_or_says_how() {
    let Some(mut s) = common::Server::start(common::Kind::Valkey91) else {
        return;
    };
    s.conn().cmd(&[b"HSET", b"h", b"f", b"v", b"g", b"w"]);
    assert_eq!(
        s.conn()
            .cmd(&[b"HPEXPIREAT", b"h", b"4000000000000", b"FIELDS", b"1", b"f"]),
        common::Reply::Array(Some(vec![common::Reply::Int(1)]))
    );
    let rdb = s.save_file();
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_temp(dir.path(), "ttl.rdb", &rdb);
    let out = dir.path().join("out.rdb");
    let o = forksnap(&[&"convert", &p, &out]);
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        se.contains("RDB 11 cannot hold")
            && se.contains("--rdb-version 12")
            && se.contains("--drop-field-ttls"),
        "{se}"
    );
    assert!(!out.exists());
    let o = forksnap(&[&"convert", &p, &out, &"--rdb-version", &"80"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(so.contains("1 keys") && !so.contains("dropped"), "{so}");
    let mut back =
        common::Server::start_with(common::Kind::Valkey91, Some(&std::fs::read(&out).unwrap()))
            .unwrap();
    assert_eq!(
        back.conn()
            .cmd(&[b"HPEXPIRETIME", b"h", b"FIELDS", b"2", b"f", b"g"]),
        common::Reply::Array(Some(vec![
            common::Reply::Int(4_000_000_000_000),
            common::Reply::Int(-1)
        ]))
    );
    let o = forksnap(&[&"convert", &p, &out, &"--drop-field-ttls"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(so.contains("dropped the field TTLs of 1 hashes"), "{so}");
}

/// convert carries a stream with its consumer group (it used to need --skip-unsupported).
#[test]
fn convert_carries_streams() {
    let Some(mut s) = common::Server::start(common::Kind::Redis70) else {
        return;
    };
    s.conn().cmd(&[b"XADD", b"events", b"1-1", b"f", b"v"]);
    s.conn().ok(&[b"XGROUP", b"CREATE", b"events", b"g", b"0"]);
    let digest = s.digest();
    let rdb = s.save_file();
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_temp(dir.path(), "stream.rdb", &rdb);
    let out = dir.path().join("out.rdb");
    let o = forksnap(&[&"convert", &p, &out, &"--rdb-version", &"10"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(so.contains("1 keys") && !so.contains("dropped"), "{so}");
    let mut back =
        common::Server::start_with(common::Kind::Redis70, Some(&std::fs::read(&out).unwrap()))
            .unwrap();
    assert_eq!(back.digest(), digest);
    assert_eq!(
        back.conn().cmd(&[b"XINFO", b"GROUPS", b"events"]),
        common::Reply::Array(Some(vec![common::Reply::Array(Some(vec![
            common::Reply::Bulk(Some(b"name".to_vec())),
            common::Reply::Bulk(Some(b"g".to_vec())),
            common::Reply::Bulk(Some(b"consumers".to_vec())),
            common::Reply::Int(0),
            common::Reply::Bulk(Some(b"pending".to_vec())),
            common::Reply::Int(0),
            common::Reply::Bulk(Some(b"last-delivered-id".to_vec())),
            common::Reply::Bulk(Some(b"0-0".to_vec())),
            common::Reply::Bulk(Some(b"entries-read".to_vec())),
            common::Reply::Bulk(None),
            common::Reply::Bulk(Some(b"lag".to_vec())),
            common::Reply::Int(1),
        ]))]))
    );
}

/// inspect's table puts keys, elements and bytes of a type and encoding on one row, and
/// counts a collection's elements (a hash's fields, not its fields and values).
#[test]
fn inspect_counts_elements_and_bytes_per_encoding() {
    use forksnap::{MemKeyspace, MemValue};
    let mut ks = MemKeyspace::new();
    ks.insert(
        0,
        "h",
        MemValue::hash([("a", "1"), ("b", "2"), ("c", "3")]).unwrap(),
        None,
    );
    ks.insert(
        0,
        "s",
        MemValue::set(["x", "y", "z", "w", "v"]).unwrap(),
        None,
    );
    ks.insert(
        0,
        "z",
        MemValue::zset([("m", 1.0), ("n", 2.0)]).unwrap(),
        None,
    );
    ks.insert(0, "l", MemValue::list(["1", "2", "3", "4"]), None);
    ks.insert(0, "str", MemValue::str("hello"), None);
    let dir = tempfile::tempdir().unwrap();
    let (rdb, _) = encode_to_vec(&ks, &EncodeOptions::default()).unwrap();
    let p = common::write_temp(dir.path(), "small.rdb", &rdb);
    let o = forksnap(&[&"inspect", &p, &"--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let by_type = |t: &str| {
        v["encodings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {v}"))
            .clone()
    };
    for (t, elements) in [
        ("hash", 3),
        ("set", 5),
        ("zset", 2),
        ("list", 4),
        ("string", 1),
    ] {
        let e = by_type(t);
        assert_eq!(e["keys"], 1, "{e}");
        assert_eq!(e["elements"], elements, "{t}: {e}");
        assert!(e["bytes"].as_u64().unwrap() > 0, "{e}");
    }
    let o = forksnap(&[&"inspect", &p]);
    let (so, _) = text(&o);
    let row = so
        .lines()
        .find(|l| l.trim_start().starts_with("hash"))
        .unwrap_or_else(|| panic!("no hash row in\n{so}"));
    let numbers: Vec<&str> = row.split_whitespace().skip(2).collect();
    assert_eq!(numbers.len(), 3, "keys, elements, bytes on one row: {row}");
    assert_eq!(&numbers[..2], ["1", "3"], "{row}");
}

/// convert says what it dropped: an empty collection no server keeps.
#[test]
fn convert_reports_the_empty_collections_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_temp(dir.path(), "edge.rdb", &datasets::crafted_edge_rdb());
    let out = dir.path().join("out.rdb");
    let o = forksnap(&[&"convert", &p, &out]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(
        so.contains("2 keys") && so.contains("dropped 1 empty collections"),
        "{so}"
    );
}
