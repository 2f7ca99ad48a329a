//! snapbench's datasets, deterministic from a seed.
//!
//! - `populate`: exactly `DEBUG POPULATE N key SIZE` (`key:<i>` → `value:<i>` padded with
//!   zero bytes), or the same keys with text-like or random values (`--values`), so that
//!   compression figures are not only those of zero padding.
//! - `mixed`: strings of several sizes (text, random bytes, integers), small and large
//!   hashes, integer and string sets, sorted sets, lists; a fifth of the keys expire;
//!   three databases.
//! - `large`: four collections (list, set, sorted set, hash) sharing N elements.
//!
//! The same generator writes the dataset as Redis commands (`--emit-commands`), so that
//! `tools/compare-peers` fills a server with exactly the data snapbench snapshots.

use forksnap::{MemKeyspace, MemValue};
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Dataset {
    Populate,
    Mixed,
    Large,
}

/// Value content of the `populate` dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Values {
    /// `value:<i>` padded with zero bytes: DEBUG POPULATE's own values.
    Zero,
    /// English-like words: compresses about as well as typical cached text or JSON.
    Text,
    /// Uniformly random bytes: incompressible.
    Random,
}

impl Dataset {
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Populate => "populate",
            Dataset::Mixed => "mixed",
            Dataset::Large => "large",
        }
    }
}

impl Values {
    pub fn name(self) -> &'static str {
        match self {
            Values::Zero => "zero",
            Values::Text => "text",
            Values::Random => "random",
        }
    }
}

/// splitmix64: a small, fast, well-distributed generator; the stream depends only on the
/// seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// A generator for item `i`, independent of the order items are made in.
    pub fn for_item(seed: u64, i: u64) -> Rng {
        let mut r = Rng(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
}

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "user", "session", "order",
    "cart", "price", "status", "active", "pending", "shipped", "name", "email", "created",
    "updated", "id", "count", "total", "items", "region", "europe", "america", "asia", "token",
    "cache", "value", "score", "level", "profile", "settings", "theme", "dark", "light",
    "language", "english", "french", "true", "false", "null", "payment", "card", "visa", "address",
    "street", "city", "country", "zip", "phone", "mobile", "desktop", "browser", "chrome",
    "firefox", "safari", "version", "build", "release",
];

/// Appends about `len` bytes of text to `out`: words, spaces, punctuation, numbers.
pub fn text(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    let end = out.len() + len;
    while out.len() < end {
        let r = rng.next();
        match r % 16 {
            0 => out.extend_from_slice(format!("{}", (r >> 8) % 100_000).as_bytes()),
            1 => out.extend_from_slice(b"\":\""),
            2 => out.extend_from_slice(b", "),
            _ => out.extend_from_slice(WORDS[((r >> 8) % WORDS.len() as u64) as usize].as_bytes()),
        }
        out.push(b' ');
    }
    out.truncate(end);
}

fn random_bytes(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    let end = out.len() + len;
    while out.len() + 8 <= end {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    while out.len() < end {
        out.push(rng.next() as u8);
    }
}

/// What the generator makes, one key at a time: the keyspace sink or a command writer.
pub trait Target {
    fn put(&mut self, db: u32, key: Vec<u8>, value: MemValue, expire_ms: Option<i64>);
}

impl Target for MemKeyspace {
    fn put(&mut self, db: u32, key: Vec<u8>, value: MemValue, expire_ms: Option<i64>) {
        self.db_mut(db).insert(key, value, expire_ms);
    }
}

/// 2100-01-01 in Unix ms: expiries are fixed (deterministic) and never in the past.
const EXPIRE_BASE_MS: i64 = 4_102_444_800_000;

pub struct Spec {
    pub dataset: Dataset,
    pub keys: u64,
    pub value_size: usize,
    pub values: Values,
    pub seed: u64,
}

pub fn build(spec: &Spec) -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    if spec.dataset == Dataset::Populate && spec.values == Values::Zero {
        ks.populate(spec.keys, spec.value_size);
        return ks;
    }
    if spec.dataset != Dataset::Large {
        ks.db_mut(0).reserve(spec.keys as usize);
    }
    generate(spec, &mut ks);
    ks
}

pub fn generate(spec: &Spec, t: &mut dyn Target) {
    match spec.dataset {
        Dataset::Populate => populate(spec, t),
        Dataset::Mixed => {
            for i in 0..spec.keys {
                mixed_key(spec, i, t)
            }
        }
        Dataset::Large => large(spec, t),
    }
}

fn populate(spec: &Spec, t: &mut dyn Target) {
    for i in 0..spec.keys {
        let mut v = Vec::with_capacity(spec.value_size);
        match spec.values {
            Values::Zero => {
                // DEBUG POPULATE's rule: cut or padded to the size; size 0 keeps the text.
                v.extend_from_slice(format!("value:{i}").as_bytes());
                if spec.value_size > 0 {
                    v.resize(spec.value_size, 0);
                }
            }
            Values::Text => text(&mut Rng::for_item(spec.seed, i), spec.value_size, &mut v),
            Values::Random => {
                random_bytes(&mut Rng::for_item(spec.seed, i), spec.value_size, &mut v)
            }
        }
        if spec.value_size > 0 {
            v.truncate(spec.value_size);
        }
        t.put(
            0,
            format!("key:{i}").into_bytes(),
            MemValue::Str(v.into()),
            None,
        );
    }
}

/// The name of the `i`th key of `mixed` and its database (the mutator uses it too).
pub fn mixed_name(i: u64) -> (u32, Vec<u8>) {
    let db = match i % 20 {
        0..=15 => 0,
        16..=18 => 1,
        _ => 2,
    };
    (db, format!("k:{i}").into_bytes())
}

fn mixed_key(spec: &Spec, i: u64, t: &mut dyn Target) {
    let mut r = Rng::for_item(spec.seed, i);
    let (db, key) = mixed_name(i);
    let vs = spec.value_size.max(4);
    let kind = r.next() % 100;
    let value = match kind {
        // Strings: a quarter of the size, the size, 4x and 16x; text, random or integer.
        0..=54 => {
            let len = match r.next() % 20 {
                0..=5 => vs / 4,
                6..=15 => vs,
                16..=18 => vs * 4,
                _ => vs * 16,
            };
            let mut v = Vec::with_capacity(len);
            match r.next() % 20 {
                0..=13 => text(&mut r, len, &mut v),
                14..=16 => random_bytes(&mut r, len, &mut v),
                _ => v.extend_from_slice(format!("{}", r.next() % 10_000_000_000).as_bytes()),
            }
            MemValue::Str(v.into())
        }
        // Small hashes (listpack in Redis), and a few large ones (hashtable).
        55..=67 => {
            let big = kind == 67 && r.next().is_multiple_of(5);
            hash(&mut r, if big { (200, 1000) } else { (4, 30) })
        }
        // Integer sets (intset up to 512 members, hashtable beyond).
        68..=75 => {
            let n = if r.next().is_multiple_of(33) {
                r.range(513, 2000)
            } else {
                r.range(4, 120)
            };
            let base = r.next() % 1_000_000;
            MemValue::set((0..n).map(|j| format!("{}", base + j * 7).into_bytes()))
                .expect("distinct members")
        }
        // String sets.
        76..=80 => {
            let n = r.range(4, 60);
            MemValue::set((0..n).map(|j| {
                let mut m = format!("m{j}:").into_bytes();
                text(&mut r, 12, &mut m);
                m
            }))
            .expect("distinct members")
        }
        // Sorted sets: mostly small (listpack), some large (skiplist).
        81..=88 => {
            let n = if r.next().is_multiple_of(33) {
                r.range(129, 600)
            } else {
                r.range(4, 60)
            };
            MemValue::zset((0..n).map(|j| {
                let score = match r.next() % 3 {
                    0 => (r.next() % 100_000) as f64,
                    1 => (r.next() % 1_000_000) as f64 / 7.0,
                    // Never -0.0: ZADD turns it into 0 while an RDB keeps it, and the
                    // commands (--emit-commands) must enter exactly this data.
                    _ => -(((r.next() % 1000) + 1) as f64) * 0.5,
                };
                (format!("player:{j}").into_bytes(), score)
            }))
            .expect("distinct members, no NaN")
        }
        // Lists: mostly short, some long (several quicklist nodes).
        _ => {
            let n = if r.next().is_multiple_of(50) {
                r.range(200, 1500)
            } else {
                r.range(3, 20)
            };
            MemValue::list((0..n).map(|_| {
                let mut e = Vec::new();
                let len = r.range(5, 60) as usize;
                text(&mut r, len, &mut e);
                e
            }))
        }
    };
    let expire = r
        .next()
        .is_multiple_of(5)
        .then(|| EXPIRE_BASE_MS + (r.next() % 86_400_000) as i64);
    t.put(db, key, value, expire);
}

fn hash(r: &mut Rng, (lo, hi): (u64, u64)) -> MemValue {
    let n = r.range(lo, hi);
    MemValue::hash((0..n).map(|j| {
        let mut v = Vec::new();
        let len = r.range(4, 40) as usize;
        text(r, len, &mut v);
        (format!("field{j}").into_bytes(), v)
    }))
    .expect("distinct fields")
}

/// Four collections sharing `keys` elements, plus `value_size`-byte text elements.
fn large(spec: &Spec, t: &mut dyn Target) {
    let per = (spec.keys / 4).max(1);
    let mut r = Rng::for_item(spec.seed, u64::MAX);
    let elem = |r: &mut Rng, j: u64| {
        let mut e = format!("{j}:").into_bytes();
        text(r, spec.value_size.saturating_sub(e.len()).max(1), &mut e);
        e
    };
    t.put(
        0,
        b"large:list".to_vec(),
        MemValue::list((0..per).map(|j| elem(&mut r, j))),
        None,
    );
    t.put(
        0,
        b"large:set".to_vec(),
        MemValue::set((0..per).map(|j| elem(&mut r, j)))
            .expect("members start with a unique number"),
        None,
    );
    t.put(
        0,
        b"large:zset".to_vec(),
        MemValue::zset((0..per).map(|j| {
            (
                format!("member:{j}").into_bytes(),
                (r.next() % 1_000_000) as f64,
            )
        }))
        .expect("distinct members"),
        None,
    );
    t.put(
        0,
        b"large:hash".to_vec(),
        MemValue::hash((0..per).map(|j| (format!("field:{j}").into_bytes(), elem(&mut r, j))))
            .expect("distinct fields"),
        None,
    );
}

/// Writes the dataset as RESP commands (for `redis-cli --pipe`): SELECT, SET, HSET, SADD,
/// ZADD, RPUSH, PEXPIREAT. Long collections are split into commands of at most 1000
/// elements.
pub struct Commands<W: Write> {
    out: W,
    db: Option<u32>,
    pub err: Option<std::io::Error>,
}

impl<W: Write> Commands<W> {
    pub fn new(out: W) -> Self {
        Commands {
            out,
            db: None,
            err: None,
        }
    }

    fn cmd(&mut self, args: &[&[u8]]) {
        if self.err.is_some() {
            return;
        }
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        if let Err(e) = self.out.write_all(&b) {
            self.err = Some(e);
        }
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

const BATCH: usize = 1000;

impl<W: Write> Target for Commands<W> {
    fn put(&mut self, db: u32, key: Vec<u8>, value: MemValue, expire_ms: Option<i64>) {
        if self.db != Some(db) {
            self.cmd(&[b"SELECT", db.to_string().as_bytes()]);
            self.db = Some(db);
        }
        match &value {
            MemValue::Str(s) => self.cmd(&[b"SET", &key, s]),
            MemValue::Int(i) => self.cmd(&[b"SET", &key, i.to_string().as_bytes()]),
            MemValue::List(items) => {
                for part in items.chunks(BATCH) {
                    let mut a: Vec<&[u8]> = vec![b"RPUSH", &key];
                    a.extend(part.iter().map(|e| &e[..]));
                    self.cmd(&a);
                }
            }
            MemValue::Set(items) => {
                for part in items.chunks(BATCH) {
                    let mut a: Vec<&[u8]> = vec![b"SADD", &key];
                    a.extend(part.iter().map(|e| &e[..]));
                    self.cmd(&a);
                }
            }
            MemValue::ZSet(items) => {
                for part in items.chunks(BATCH) {
                    // Shortest round-trip text of the score: the server parses it back to
                    // the same double.
                    let scores: Vec<String> = part.iter().map(|(_, s)| format!("{s:?}")).collect();
                    let mut a: Vec<&[u8]> = vec![b"ZADD", &key];
                    for ((m, _), s) in part.iter().zip(&scores) {
                        a.push(s.as_bytes());
                        a.push(m);
                    }
                    self.cmd(&a);
                }
            }
            MemValue::Hash(items) => {
                for part in items.chunks(BATCH) {
                    let mut a: Vec<&[u8]> = vec![b"HSET", &key];
                    for (f, v) in part {
                        a.push(f);
                        a.push(v);
                    }
                    self.cmd(&a);
                }
            }
            // The datasets make no module values.
            MemValue::Module(_) => {}
            MemValue::HashTtl(items) => {
                for part in items.chunks(BATCH) {
                    let mut a: Vec<&[u8]> = vec![b"HSET", &key];
                    for (f, v, _) in part {
                        a.push(f);
                        a.push(v);
                    }
                    self.cmd(&a);
                }
                for (f, _, ttl) in items {
                    if let Some(at) = ttl {
                        let at = at.to_string();
                        self.cmd(&[b"HPEXPIREAT", &key, at.as_bytes(), b"FIELDS", b"1", f]);
                    }
                }
            }
            MemValue::Stream(x) => {
                // Entries only: the datasets make no consumer groups.
                for (id, elems) in x.entries() {
                    let id = id.to_string();
                    let mut a: Vec<&[u8]> = vec![b"XADD", &key, id.as_bytes()];
                    a.extend(elems.iter().map(|e| &e[..]));
                    self.cmd(&a);
                }
            }
        }
        if let Some(at) = expire_ms {
            self.cmd(&[b"PEXPIREAT", &key, at.to_string().as_bytes()]);
        }
    }
}
