//! Any input: the reader never panics, never allocates past what the input can justify
//! (a 1 MiB per-value limit here), and what it loads round-trips: encoded again by
//! forksnap and loaded back, it is the same data (the oracle). Read in small pieces
//! (sizes taken from the input) the stream loads the same as in one piece, and the
//! validating visitor (`verify`'s) agrees on whether the file is good.

#![no_main]

use forksnap::rdb::load;
use forksnap::rdb::reader::{repeated_key, Validator};
use forksnap::{load_into, LoadOptions, MemKeyspace, MemValue};
use std::io::Read;

/// Hands out the input in pieces of 1 to 4096 bytes (powers of two), sizes cycling from a
/// seed.
struct Pieces<'a> {
    data: &'a [u8],
    seed: u8,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.seed = self.seed.wrapping_mul(31).wrapping_add(7);
        let n = out.len().min(self.data.len()).min(1 << (self.seed % 13));
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
use libfuzzer_sys::fuzz_target;

/// A value with its unordered collections sorted, so that encodings that reorder
/// (intsets sort, listpack sorted sets order by score) compare equal.
fn normal(v: &MemValue) -> MemValue {
    let mut v = v.clone();
    match &mut v {
        MemValue::Set(m) => m.sort(),
        MemValue::Hash(h) => h.sort(),
        MemValue::HashTtl(h) => h.sort(),
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
    let whole = load(data, &opts);
    let mut pieces = MemKeyspace::new();
    let seed = data.first().copied().unwrap_or(0);
    let streamed = load_into(Pieces { data, seed }, &opts, &mut pieces);
    assert_eq!(
        whole.as_ref().map(|(_, r)| r.keys).map_err(|e| e.to_string()),
        streamed.as_ref().map(|r| r.keys).map_err(|e| e.to_string()),
        "in pieces and whole disagree"
    );
    let mut v = Validator::default();
    let checked = load_into(data, &opts, &mut v).map_err(|e| e.to_string()).and_then(|_| {
        let suspects = v.finish();
        match repeated_key(data, &opts, &suspects).map_err(|e| e.to_string())? {
            Some((db, key)) => Err(format!("key {key:?} twice in db {db}")),
            None => Ok(()),
        }
    });
    assert_eq!(whole.is_ok(), checked.is_ok(), "Validator and MemKeyspace disagree: {checked:?}");
    if let Ok((ks, _)) = whole {
        same(&ks, &pieces);
        // RDB 12 holds everything the reader hands over (streams, field TTLs, functions).
        let opts = forksnap::rdb::EncodeOptions { version: 12, ..Default::default() };
        let (bytes, _) = forksnap::rdb::encode_to_vec(&ks, &opts).expect("a loaded keyspace encodes");
        let (back, _) = load(&bytes, &LoadOptions::default()).expect("our own file loads");
        same(&ks, &back);
    }
});
