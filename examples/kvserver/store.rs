//! The keyspace: 16 databases, each split into shards behind their own `Mutex`, as a
//! multi-threaded Rust store keeps its data. forksnap sees it through two small pieces:
//! `Frozen` (every shard's guard, a `Keyspace` the snapshot child walks) and `Loader`
//! (a `LoadVisitor` that builds the shards from an RDB stream at start-up).

use forksnap::{DbInfo, Entry, Keyspace, LoadValue, LoadVisitor, Partitioned, Value, VisitResult};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// foldhash: std's SipHash cost a third of the start-up load of short keys.
pub type Hasher = foldhash::fast::RandomState;
pub type Map<K, V> = HashMap<K, V, Hasher>;
pub type Set<K> = HashSet<K, Hasher>;

pub const DATABASES: usize = 16;
pub const SHARDS: usize = 16;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A score ordered as Redis orders them (never NaN: ZADD refuses it).
#[derive(Clone, Copy, PartialEq)]
pub struct Score(pub f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.partial_cmp(&o.0).unwrap_or(Ordering::Equal)
    }
}

#[derive(Default)]
pub struct ZSet {
    pub scores: Map<Vec<u8>, f64>,
    pub order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    /// Sets a member's score; true when it is new.
    pub fn insert(&mut self, m: &[u8], s: f64) -> bool {
        match self.scores.insert(m.to_vec(), s) {
            Some(old) => {
                self.order.remove(&(Score(old), m.to_vec()));
                self.order.insert((Score(s), m.to_vec()));
                false
            }
            None => {
                self.order.insert((Score(s), m.to_vec()));
                true
            }
        }
    }
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.scores.remove(m) {
            Some(s) => self.order.remove(&(Score(s), m.to_vec())),
            None => false,
        }
    }
}

#[allow(clippy::box_collection)] // boxed for the entry's size, not by mistake
pub enum Val {
    Str(Vec<u8>),
    // Collections are boxed so that an entry (key, value, expiry) stays 64 bytes: the
    // table of a 10M-key database is then 640 MB, not 1.2 GB.
    List(Box<VecDeque<Vec<u8>>>),
    Set(Box<Set<Vec<u8>>>),
    ZSet(Box<ZSet>),
    Hash(Box<Map<Vec<u8>, Vec<u8>>>),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::List(_) => "list",
            Val::Set(_) => "set",
            Val::ZSet(_) => "zset",
            Val::Hash(_) => "hash",
        }
    }
    /// Collections emptied by a command are deleted, as in Redis.
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Val::Str(_) => false,
            Val::List(l) => l.is_empty(),
            Val::Set(s) => s.is_empty(),
            Val::ZSet(z) => z.scores.is_empty(),
            Val::Hash(h) => h.is_empty(),
        }
    }
    /// The view forksnap encodes (and digests).
    pub fn view(&self) -> Value<'_> {
        match self {
            Val::Str(s) => Value::Str(s),
            Val::List(l) => Value::List(&**l),
            Val::Set(s) => Value::Set(&**s),
            Val::ZSet(z) => Value::ZSet(&z.scores),
            Val::Hash(h) => Value::Hash(&**h),
        }
    }
}

pub struct Item {
    pub val: Val,
    pub expire: Option<i64>,
}

impl Item {
    pub fn expired(&self, now: i64) -> bool {
        self.expire.is_some_and(|t| t <= now)
    }
}

#[derive(Default)]
pub struct Shard {
    pub map: Map<Box<[u8]>, Item>,
    /// Keys with an expiry (for INFO keyspace and the active expiry's skip test).
    pub volatile: usize,
    /// Its database (an expired key's DEL is logged to the AOF in it).
    pub db: usize,
}

impl Shard {
    /// The live item, deleting it first if it has expired (lazy expiry).
    pub fn live(&mut self, key: &[u8], now: i64) -> Option<&mut Item> {
        if self.map.get(key).is_some_and(|i| i.expired(now)) {
            self.remove(key);
            // As Redis: an expired key's deletion is logged, so that a replay (during
            // which nothing expires) sees what the commands after it saw.
            crate::aof::propagate(self.db, &[b"DEL", key]);
        }
        self.map.get_mut(key)
    }
    /// Empties the shard (FLUSHALL/FLUSHDB, a replica's full sync).
    pub fn clear(&mut self) {
        *self = Shard {
            db: self.db,
            ..Shard::default()
        };
    }

    pub fn insert(&mut self, key: impl Into<Box<[u8]>>, item: Item) {
        let adds = item.expire.is_some() as usize;
        if let Some(old) = self.map.insert(key.into(), item) {
            self.volatile -= old.expire.is_some() as usize;
        }
        self.volatile += adds;
    }
    pub fn remove(&mut self, key: &[u8]) -> Option<Item> {
        let old = self.map.remove(key)?;
        self.volatile -= old.expire.is_some() as usize;
        Some(old)
    }
    pub fn set_expire(&mut self, key: &[u8], at: Option<i64>) {
        if let Some(i) = self.map.get_mut(key) {
            self.volatile = self.volatile + at.is_some() as usize - i.expire.is_some() as usize;
            i.expire = at;
        }
    }
    /// Deletes up to `budget` expired keys; the number deleted.
    pub fn expire_some(&mut self, now: i64, budget: usize) -> usize {
        if self.volatile == 0 {
            return 0;
        }
        let dead: Vec<Box<[u8]>> = self
            .map
            .iter()
            .filter(|(_, i)| i.expired(now))
            .take(budget)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            self.remove(k);
            crate::aof::propagate(self.db, &[b"DEL", k]);
        }
        dead.len()
    }
}

pub type Guard<'a> = MutexGuard<'a, Shard>;

pub struct Store {
    dbs: Vec<Vec<Mutex<Shard>>>,
    /// Picks the shard; seeded apart from the maps' hashers, so that the keys of one
    /// shard do not share their bucket bits.
    shard_hasher: foldhash::fast::FixedState,
    /// Writes since the last successful save (`rdb_changes_since_last_save`).
    pub dirty: AtomicU64,
}

impl Store {
    pub fn new() -> Store {
        Store {
            dbs: (0..DATABASES)
                .map(|db| {
                    (0..SHARDS)
                        .map(|_| {
                            Mutex::new(Shard {
                                db,
                                ..Shard::default()
                            })
                        })
                        .collect()
                })
                .collect(),
            shard_hasher: foldhash::fast::FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
            dirty: AtomicU64::new(0),
        }
    }
    pub fn shard_of(&self, key: &[u8]) -> usize {
        (self.shard_hasher.hash_one(key) >> 32) as usize % SHARDS
    }
    /// One shard's guard (a poisoned lock is still usable: the data is plain).
    pub fn lock(&self, db: usize, shard: usize) -> Guard<'_> {
        self.dbs[db][shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
    pub fn lock_key(&self, db: usize, key: &[u8]) -> Guard<'_> {
        self.lock(db, self.shard_of(key))
    }
    /// The guards of every shard `keys` fall in, in shard order (the order every caller
    /// takes them in, so no two can deadlock), indexed by shard.
    pub fn lock_keys<'a, K: AsRef<[u8]>>(
        &'a self,
        db: usize,
        keys: &[K],
    ) -> Vec<Option<Guard<'a>>> {
        let mut want = [false; SHARDS];
        for k in keys {
            want[self.shard_of(k.as_ref())] = true;
        }
        (0..SHARDS)
            .map(|s| want[s].then(|| self.lock(db, s)))
            .collect()
    }
    /// Every shard of one database, in order.
    pub fn lock_db(&self, db: usize) -> Vec<Guard<'_>> {
        (0..SHARDS).map(|s| self.lock(db, s)).collect()
    }
    /// Every shard of every database: the whole store frozen (for a snapshot or a digest).
    pub fn freeze(&self) -> Frozen<'_> {
        Frozen((0..DATABASES).map(|db| self.lock_db(db)).collect())
    }
    pub fn touch(&self, n: u64) {
        self.dirty.fetch_add(n, Relaxed);
    }
    /// (keys, keys with an expiry) of one database.
    pub fn db_size(&self, db: usize) -> (u64, u64) {
        (0..SHARDS).fold((0, 0), |(k, v), s| {
            let g = self.lock(db, s);
            (k + g.map.len() as u64, v + g.volatile as u64)
        })
    }
}

/// The whole store with every shard locked. forksnap's child walks it after fork (it
/// reads through these guards and never locks again: the fork contract on `Keyspace`).
pub struct Frozen<'a>(Vec<Vec<Guard<'a>>>);

impl Keyspace for Frozen<'_> {
    fn databases(&self) -> Vec<DbInfo> {
        let mut out = Vec::new();
        for (index, shards) in self.0.iter().enumerate() {
            let keys: usize = shards.iter().map(|s| s.map.len()).sum();
            let expires: usize = shards.iter().map(|s| s.volatile).sum();
            if keys > 0 {
                out.push(DbInfo {
                    index: index as u32,
                    keys: keys as u64,
                    expires: expires as u64,
                });
            }
        }
        out
    }

    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        for shard in &self.0[db as usize] {
            if walk_shard(shard, visit).is_break() {
                return;
            }
        }
    }

    fn partitioned(&self) -> Option<&dyn Partitioned> {
        Some(self)
    }
}

/// The shards are the parts: `--snapshot-threads N` encodes N shards at a time.
impl Partitioned for Frozen<'_> {
    fn partitions(&self, db: u32) -> usize {
        self.0[db as usize].len()
    }

    fn walk_partition(
        &self,
        db: u32,
        part: usize,
        visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
    ) {
        let _ = walk_shard(&self.0[db as usize][part], visit);
    }
}

fn walk_shard(
    shard: &Shard,
    visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    // Keys and values are allocations of their own: ask for those of the entry
    // 64 ahead, and for the table's entry 128 ahead, or the walk stalls on a
    // cache miss at every key (16/32 measured alike).
    let mut ahead = shard.map.iter().skip(64);
    let mut further = shard.map.iter().skip(128);
    for (key, item) in &shard.map {
        if let Some((_, i)) = further.next() {
            forksnap::prefetch(i);
        }
        if let Some((k, i)) = ahead.next() {
            forksnap::prefetch(&**k);
            match &i.val {
                Val::Str(v) => forksnap::prefetch(v.as_slice()),
                Val::List(l) => forksnap::prefetch(&**l),
                Val::Set(s) => forksnap::prefetch(&**s),
                Val::ZSet(z) => forksnap::prefetch(&**z),
                Val::Hash(h) => forksnap::prefetch(&**h),
            }
        }
        let e = Entry {
            key,
            expire_ms: item.expire,
            value: item.val.view(),
        };
        visit(&e)?;
    }
    ControlFlow::Continue(())
}

/// The start-up load runs on two threads: the `Loader` (forksnap's load visitor) decodes
/// and builds each value, `insert_all` puts them into the shards; batches of `Op`s pass
/// between them. Decoding and inserting (a cache miss into a large table per key) each
/// take about half of a single-threaded load.
pub enum Op {
    /// Size a database's shards for this many keys each (from RESIZEDB).
    Reserve {
        db: u32,
        per_shard: usize,
    },
    Put {
        db: u32,
        key: Box<[u8]>,
        item: Item,
    },
}

const BATCH: usize = 4096;

/// Builds the store from an RDB stream (start-up load), straight into the shards.
pub struct Loader {
    pub expired_skipped: u64,
    now: i64,
    /// The file's size: what bounds a database's key count (see `begin_db`).
    file_bytes: u64,
    batch: Vec<Op>,
    tx: std::sync::mpsc::SyncSender<Vec<Op>>,
}

impl Loader {
    pub fn new(file_bytes: u64, tx: std::sync::mpsc::SyncSender<Vec<Op>>) -> Self {
        Loader {
            expired_skipped: 0,
            now: now_ms(),
            file_bytes,
            batch: Vec::with_capacity(BATCH),
            tx,
        }
    }

    fn push(&mut self, op: Op) -> VisitResult {
        self.batch.push(op);
        if self.batch.len() == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the batch over (an error when the inserting thread has stopped on one).
    pub fn flush(&mut self) -> VisitResult {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx
            .send(batch)
            .map_err(|_| "the inserting thread stopped".into())
    }
}

/// Loads an RDB stream (`read` drives forksnap's loader into the given visitor) into
/// the store on two threads: decode on this one, insert on a second (see `Op`). A
/// replica keeps keys that have expired (its master deletes them); a master drops them.
/// Returns the load's report and the expired keys dropped.
pub fn load(
    store: &Store,
    bytes_hint: u64,
    replica: bool,
    read: impl FnOnce(&mut Loader) -> forksnap::Result<forksnap::LoadReport>,
) -> Result<(forksnap::LoadReport, u64), String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let (loaded, inserted, expired) = std::thread::scope(|s| {
        let inserter = s.spawn(|| insert_all(store, rx));
        let mut loader = Loader::new(bytes_hint, tx);
        if replica {
            loader.now = i64::MIN;
        }
        let loaded = read(&mut loader).map_err(|e| e.to_string());
        let flushed = loader.flush().map_err(|e| e.to_string());
        let expired = loader.expired_skipped;
        drop(loader); // closes the channel: the inserter finishes
        let inserted = inserter
            .join()
            .unwrap_or_else(|_| Err("the inserting thread panicked".into()));
        (loaded.and_then(|r| flushed.map(|()| r)), inserted, expired)
    });
    // The inserter's error is the cause when both failed.
    inserted?;
    Ok((loaded?, expired))
}

/// The inserting thread: holds the guards of the database being loaded (no client is
/// served yet) and puts each key in with one probe of its shard's table.
pub fn insert_all(store: &Store, rx: std::sync::mpsc::Receiver<Vec<Op>>) -> Result<(), String> {
    let mut held: Option<(u32, Vec<Guard<'_>>)> = None;
    for op in rx.into_iter().flatten() {
        let db = match &op {
            Op::Reserve { db, .. } | Op::Put { db, .. } => *db,
        };
        if held.as_ref().map(|h| h.0) != Some(db) {
            drop(held.take()); // one database's guards at a time, in (db, shard) order
            held = Some((db, store.lock_db(db as usize)));
        }
        let shards = &mut held.as_mut().expect("just set").1;
        match op {
            Op::Reserve { per_shard, .. } => {
                shards.iter_mut().for_each(|s| s.map.reserve(per_shard))
            }
            Op::Put { key, item, .. } => {
                let shard = &mut shards[store.shard_of(&key)];
                let volatile = item.expire.is_some() as usize;
                match shard.map.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        return Err(format!(
                            "duplicate key {:?} in database {db}",
                            String::from_utf8_lossy(e.key())
                        ))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(item);
                        shard.volatile += volatile;
                    }
                }
            }
        }
    }
    Ok(())
}

impl LoadVisitor for Loader {
    fn begin_db(&mut self, db: DbInfo) -> VisitResult {
        if db.index as usize >= DATABASES {
            return Err(format!(
                "database {} is out of range (this server has {DATABASES})",
                db.index
            )
            .into());
        }
        // RESIZEDB sizes the tables up front (growing them during the load rehashes
        // every key several times), but a damaged file can inflate it: a key takes at
        // least 8 bytes of file (type, key and value lengths, a few bytes of key and
        // value), so no more than that is believed.
        let per_shard = (db.keys.min(self.file_bytes / 8) as usize).div_ceil(SHARDS);
        self.push(Op::Reserve {
            db: db.index,
            per_shard,
        })
    }

    fn key(
        &mut self,
        db: u32,
        key: &[u8],
        expire: Option<i64>,
        value: LoadValue<'_>,
    ) -> VisitResult {
        let val = match value {
            LoadValue::Str(s) => Val::Str(s.to_vec()),
            LoadValue::List(l) => {
                let mut v = Box::new(VecDeque::with_capacity(l.len_hint()));
                l.for_each(|e| {
                    v.push_back(e.to_vec());
                    Ok(())
                })?;
                Val::List(v)
            }
            LoadValue::Set(s) => {
                let mut v = Box::new(Set::with_capacity_and_hasher(
                    s.len_hint(),
                    Hasher::default(),
                ));
                s.for_each(|e| match v.insert(e.to_vec()) {
                    true => Ok(()),
                    false => Err("duplicate set member".into()),
                })?;
                Val::Set(v)
            }
            LoadValue::ZSet(z) => {
                let mut v = Box::<ZSet>::default();
                z.for_each(|m, s| match v.insert(m, s) {
                    true => Ok(()),
                    false => Err("duplicate sorted set member".into()),
                })?;
                Val::ZSet(v)
            }
            // Refused rather than loaded without them: the fields would never expire.
            LoadValue::Hash(h) if h.field_ttls() > 0 => {
                return Err("this server has no hash field expiry (HEXPIRE)".into())
            }
            LoadValue::Hash(h) => {
                let mut v = Box::new(Map::with_capacity_and_hasher(
                    h.len_hint(),
                    Hasher::default(),
                ));
                h.for_each(|f, x| match v.insert(f.to_vec(), x.to_vec()) {
                    None => Ok(()),
                    Some(_) => Err("duplicate hash field".into()),
                })?;
                Val::Hash(v)
            }
            // Refused rather than dropped: the next save would lose it.
            LoadValue::Stream(_) => return Err("this server has no streams (no XADD)".into()),
            LoadValue::Module(m) => {
                return Err(
                    format!("this server has no modules ({:?} value)", m.type_name()).into(),
                )
            }
        };
        // Redis (as a master) does not load keys that have already expired.
        if expire.is_some_and(|t| t <= self.now) {
            self.expired_skipped += 1;
            return Ok(());
        }
        self.push(Op::Put {
            db,
            key: key.into(),
            item: Item { val, expire },
        })
    }
}
