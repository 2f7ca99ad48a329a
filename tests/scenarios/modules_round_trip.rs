//! Module values and module data outside the keyspace (MODULE_AUX) survive a trip
//! through forksnap without the modules: Redis 8.2 with FalkorDB (the graph module its
//! wheel ships) and its built-in vector sets saves graphs, a vector set and FalkorDB's
//! MODULE_AUX record; forksnap loads the file and writes it again; Redis 8.2 with the same
//! modules loads it with the same query results, vectors and `DEBUG DIGEST`. Our writer
//! and reader agree on any module value and record; a RESP base refuses them (commands
//! cannot rebuild a module's value without the module).

use crate::common::{rdb_of, Kind, Reply, Server};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::{MemKeyspace, MemValue, ModuleAux, ModuleItem, ModuleValue};
use proptest::prelude::*;

/// FalkorDB's module, beside the Redis 8.2 binary in its wheel: a Redis 8.2 without it
/// is a broken set-up, a failure (not a skip).
fn falkordb() -> Option<String> {
    let bin = crate::common::require(Kind::Redis82)?;
    let so = bin.parent().expect("a directory").join("falkordb.so");
    assert!(
        so.exists(),
        "{} is missing: run tools/setup.sh",
        so.display()
    );
    Some(so.display().to_string())
}

const QUERY: &[u8] = b"MATCH (p:Person)-[k:KNOWS]->(q) RETURN p.name, p.age, k.since, q.name ORDER BY p.name, q.name";

fn graph_state(s: &mut Server) -> (Reply, Reply, Reply) {
    // Header and rows; the third part is statistics (execution time).
    let q = match s.conn().cmd(&[b"GRAPH.QUERY", b"social", QUERY]) {
        Reply::Array(Some(mut a)) if a.len() == 3 => {
            a.truncate(2);
            Reply::Array(Some(a))
        }
        q => panic!("GRAPH.QUERY: {q:?}"),
    };
    let vemb = s.conn().cmd(&[b"VEMB", b"vectors", b"item:7"]);
    assert!(
        matches!(&vemb, Reply::Array(Some(a)) if a.len() == 4),
        "VEMB: {vemb:?}"
    );
    let card = s.conn().cmd(&[b"VCARD", b"vectors"]);
    (q, vemb, card)
}

#[test]
fn graphs_vector_sets_and_module_aux_survive_a_conversion() {
    let Some(so) = falkordb() else {
        return;
    };
    let args = ["--loadmodule", so.as_str()];
    let Some(mut s) = Server::start_args(Kind::Redis82, None, &args) else {
        return;
    };
    let mut create = String::from("CREATE ");
    for i in 0..40 {
        if i > 0 {
            create.push(',');
        }
        create.push_str(&format!(
            "(p{i}:Person {{name:'person-{i:02}', age:{}, tags:['a', 'b{i}']}})",
            20 + i
        ));
    }
    for i in 0..40 {
        create.push_str(&format!(
            ",(p{i})-[:KNOWS {{since:{}}}]->(p{})",
            2000 + i,
            (i * 7 + 3) % 40
        ));
    }
    match s
        .conn()
        .cmd(&[b"GRAPH.QUERY", b"social", create.as_bytes()])
    {
        Reply::Array(Some(_)) => {}
        r => panic!("GRAPH.QUERY CREATE: {r:?}"),
    }
    for i in 0..50 {
        let (a, b, c) = (
            format!("{}", i as f32 / 10.0),
            format!("{}", 1.0 - i as f32 / 50.0),
            "0.5",
        );
        let el = format!("item:{i}");
        let r = s.conn().cmd(&[
            b"VADD",
            b"vectors",
            b"VALUES",
            b"4",
            a.as_bytes(),
            b.as_bytes(),
            c.as_bytes(),
            b"1",
            el.as_bytes(),
        ]);
        assert_eq!(r, Reply::Int(1), "VADD");
    }
    s.conn().ok(&[b"SET", b"plain", b"string"]);
    let want = graph_state(&mut s);
    let digest = s.digest();
    let file = s.save_file();
    drop(s);

    let (ks, report) = load(&file, &LoadOptions::default()).unwrap();
    assert!(
        report.module_aux >= 1,
        "FalkorDB writes MODULE_AUX: {report:?}"
    );
    assert_eq!(ks.module_aux_records().len() as u64, report.module_aux);
    let types: Vec<String> = ks
        .db(0)
        .unwrap()
        .iter()
        .filter_map(|(_, v, _)| match v {
            MemValue::Module(m) => Some(m.type_name()),
            _ => None,
        })
        .collect();
    assert!(types.iter().any(|t| t == "vectorset"), "{types:?}");
    assert!(
        types.iter().any(|t| t != "vectorset"),
        "a graph value: {types:?}"
    );
    for (version, lzf) in [(12u8, true), (12, false), (11, true)] {
        let rdb = rdb_of(&ks, version, lzf);
        let label = format!("v{version} lzf {lzf}");
        let mut back = Server::start_args(Kind::Redis82, Some(&rdb), &args)
            .unwrap_or_else(|| panic!("{label}: no server"));
        assert_eq!(
            graph_state(&mut back),
            want,
            "{label}; log:\n{}",
            back.log()
        );
        assert_eq!(back.digest(), digest, "{label}");
    }
    let e = encode_to_vec(
        &ks,
        &EncodeOptions {
            resp: true,
            ..EncodeOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("write an RDB"), "{e}");
}

fn item() -> impl Strategy<Value = ModuleItem> {
    prop_oneof![
        any::<i64>().prop_map(ModuleItem::Signed),
        any::<u64>().prop_map(ModuleItem::Unsigned),
        any::<u32>().prop_map(ModuleItem::Float),
        any::<u64>().prop_map(ModuleItem::Double),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|s| ModuleItem::String(s.into())),
        (1usize..2000).prop_map(|n| ModuleItem::String(b"ab".repeat(n).into())),
    ]
}

fn module_value() -> impl Strategy<Value = ModuleValue> {
    (any::<u64>(), proptest::collection::vec(item(), 0..20))
        .prop_map(|(type_id, items)| ModuleValue { type_id, items })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_module_value_and_record_round_trips(
        values in proptest::collection::vec(module_value(), 1..5),
        before in module_value(),
        after in module_value(),
        lzf: bool,
    ) {
        let mut ks = MemKeyspace::new();
        for (i, v) in values.iter().enumerate() {
            ks.insert(0, format!("m{i}"), MemValue::Module(Box::new(v.clone())), None);
        }
        ks.add_module_aux(ModuleAux { when: 2, data: after });
        ks.add_module_aux(ModuleAux { when: 1, data: before });
        let (rdb, _) = encode_to_vec(&ks, &EncodeOptions { lzf, ..EncodeOptions::default() }).unwrap();
        let (back, report) = load(&rdb, &LoadOptions::default()).unwrap();
        prop_assert_eq!(report.module_aux, 2);
        // Written before the databases and after them: read back in that order.
        let mut want = ks.module_aux_records().to_vec();
        want.sort_by_key(|a| a.when);
        prop_assert_eq!(back.module_aux_records(), &want[..]);
        for (i, v) in values.iter().enumerate() {
            let got = back.db(0).unwrap().get(format!("m{i}").as_bytes()).unwrap().0;
            prop_assert_eq!(got, &MemValue::Module(Box::new(v.clone())));
        }
    }
}

/// Redis Stack 7.4.1's modules, as the issue names them: RedisJSON, RedisBloom (Bloom
/// and cuckoo filters), RedisTimeSeries and RediSearch (whose index definitions live in
/// MODULE_AUX records). After `forksnap convert`'s path (load, write RDB 12), the same
/// server with the same modules answers every query alike and digests alike.
#[test]
fn redis_stack_modules_survive_a_conversion() {
    let Some(bin) = crate::common::require(Kind::RedisStack74) else {
        return;
    };
    let lib = bin.parent().and_then(|b| b.parent()).unwrap().join("lib");
    let modules: Vec<String> = [
        "rediscompat",
        "redisearch",
        "redistimeseries",
        "rejson",
        "redisbloom",
    ]
    .iter()
    .flat_map(|m| {
        [
            "--loadmodule".to_string(),
            lib.join(format!("{m}.so")).display().to_string(),
        ]
    })
    .collect();
    let args: Vec<&str> = modules.iter().map(|s| s.as_str()).collect();
    let mut s = Server::start_args(Kind::RedisStack74, None, &args).unwrap();
    let c = s.conn();
    let doc = br#"{"name":"alice","age":30,"tags":["a","b"],"nested":{"x":1.5}}"#;
    c.ok(&[b"JSON.SET", b"doc:1", b"$", doc]);
    c.ok(&[
        b"JSON.SET",
        b"doc:2",
        b"$",
        br#"{"items":[{"name":"i0"},{"name":"i1"}],"n":null}"#,
    ]);
    c.ok(&[b"BF.RESERVE", b"bf", b"0.01", b"1000"]);
    for w in ["hello", "world", "forksnap", "redis", "valkey"] {
        assert_eq!(c.cmd(&[b"BF.ADD", b"bf", w.as_bytes()]), Reply::Int(1));
    }
    c.ok(&[b"CF.RESERVE", b"cf", b"1000"]);
    assert_eq!(c.cmd(&[b"CF.ADD", b"cf", b"x1"]), Reply::Int(1));
    c.ok(&[b"TS.CREATE", b"ts", b"LABELS", b"sensor", b"temp"]);
    for i in 1..=50i64 {
        let (t, v) = ((1_700_000_000_000 + i * 1000).to_string(), format!("{i}.5"));
        assert!(matches!(
            c.cmd(&[b"TS.ADD", b"ts", t.as_bytes(), v.as_bytes()]),
            Reply::Int(_)
        ));
    }
    c.ok(&[
        b"FT.CREATE",
        b"idx",
        b"ON",
        b"HASH",
        b"PREFIX",
        b"1",
        b"item:",
        b"SCHEMA",
        b"title",
        b"TEXT",
        b"price",
        b"NUMERIC",
        b"SORTABLE",
    ]);
    for i in 1..=20 {
        let (k, t, p) = (
            format!("item:{i}"),
            format!("hello item {i}"),
            i.to_string(),
        );
        c.cmd(&[
            b"HSET",
            k.as_bytes(),
            b"title",
            t.as_bytes(),
            b"price",
            p.as_bytes(),
        ]);
    }
    let queries: Vec<Vec<&[u8]>> = vec![
        vec![b"JSON.GET", b"doc:1", b"$"],
        vec![b"JSON.GET", b"doc:2", b"$.items[1].name"],
        vec![b"BF.EXISTS", b"bf", b"hello"],
        vec![b"BF.EXISTS", b"bf", b"nope"],
        vec![b"BF.INFO", b"bf", b"ITEMS"],
        vec![b"CF.EXISTS", b"cf", b"x1"],
        vec![b"TS.RANGE", b"ts", b"-", b"+"],
        vec![b"TS.QUERYINDEX", b"sensor=temp"],
        vec![b"FT._LIST"],
        vec![
            b"FT.SEARCH",
            b"idx",
            b"@title:hello",
            b"SORTBY",
            b"price",
            b"LIMIT",
            b"0",
            b"100",
        ],
        vec![b"DBSIZE"],
        vec![b"DEBUG", b"DIGEST"],
    ];
    // RediSearch indexes in the background: wait until every document is in.
    let indexed = |s: &mut Server| {
        for _ in 0..100 {
            match s
                .conn()
                .cmd(&[b"FT.SEARCH", b"idx", b"@title:hello", b"LIMIT", b"0", b"0"])
            {
                Reply::Array(Some(a)) if a.first() == Some(&Reply::Int(20)) => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        panic!("the index never held the 20 documents")
    };
    indexed(&mut s);
    let want: Vec<Reply> = queries.iter().map(|q| s.conn().cmd(q)).collect();
    for (q, r) in queries.iter().zip(&want) {
        assert!(
            !matches!(r, Reply::Error(_)),
            "{:?}: {r:?}",
            String::from_utf8_lossy(q[0])
        );
    }
    let file = s.save_file();
    drop(s);

    let (ks, report) = load(&file, &LoadOptions::default()).unwrap();
    assert!(
        report.module_aux >= 1,
        "RediSearch's index lives in MODULE_AUX: {report:?}"
    );
    let rdb = rdb_of(&ks, 12, true);
    let mut back = Server::start_args(Kind::RedisStack74, Some(&rdb), &args).unwrap();
    indexed(&mut back);
    for (q, w) in queries.iter().zip(&want) {
        assert_eq!(
            &back.conn().cmd(q),
            w,
            "{:?}",
            String::from_utf8_lossy(q[0])
        );
    }
}
