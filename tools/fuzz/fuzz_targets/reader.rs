//! Any input: the reader never panics, never allocates past what the input can justify
//! (a 1 MiB per-value limit here), and what it loads round-trips: encoded again by
//! forksnap and loaded back, it is the same data (the oracle).

#![no_main]

use forksnap::{load, LoadOptions, MemKeyspace, MemValue};
use libfuzzer_sys::fuzz_target;

/// A value with its unordered collections sorted, so that encodings that reorder
/// (intsets sort, listpack sorted sets order by score) compare equal.
fn normal(v: &MemValue) -> MemValue {
    let mut v = v.clone();
    match &mut v {
        MemValue::Set(m) => m.sort(),
        MemValue::Hash(h) => h.sort(),
        MemValue::ZSet(z) => z.sort_by(|a, b| a.0.cmp(&b.0)),
        MemValue::Int(i) => return MemValue::str(i.to_string()),
        _ => {}
    }
    v
}

fn same(a: &MemKeyspace, b: &MemKeyspace) {
    assert_eq!(a.len(), b.len(), "key count");
    for (i, da) in a.dbs() {
        let db = b.db(i).expect("database kept");
        assert_eq!(da.len(), db.len(), "db{i} key count");
        for (key, value, expiry) in da.iter() {
            let (v2, e2) = db.get(key).expect("key kept");
            assert_eq!(expiry, e2, "expiry of {key:?}");
            assert_eq!(normal(value), normal(v2), "value of {key:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions {
        skip_unsupported: true,
        max_value_bytes: 1 << 20,
    };
    if let Ok((ks, _)) = load(data, &opts) {
        let (bytes, _) = forksnap::rdb::encode_to_vec(&ks, &Default::default())
            .expect("a loaded keyspace encodes");
        let (back, _) = load(&bytes, &LoadOptions::default()).expect("our own file loads");
        same(&ks, &back);
    }
});
