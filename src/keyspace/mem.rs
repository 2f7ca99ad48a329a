//! `MemKeyspace`: an owned keyspace used by the tools, the tests, the benchmarks and the
//! reader.
//!
//! Layout: per database a dense `Vec<Slot>` (walked front to back, like a server walking
//! its dict's table) and a `hashbrown::HashTable` index of (slot number, 32 bits of the
//! key's xxh3 hash), so a lookup costs one probe plus one key compare and the keys are
//! stored once. Each key and string value is one boxed allocation, as in a real server.
//! The hash bits in the index spare the keys' memory where it matters: growing the table
//! rehashes from them (recomputing xxh3 from each key had cost a quarter of a 10M-key
//! load, in cache misses), and a probe compares them before it touches a key.

use super::{DbInfo, Entry, Keyspace, MemStream, ModuleAux, ModuleValue, Value};
use hashbrown::HashTable;
use std::ops::ControlFlow;
use xxhash_rust::xxh3::xxh3_64;

/// "No expiry" in a slot. An expiry of exactly `i64::MIN` (292 million years ago) is kept
/// as `i64::MIN + 1`: still an expiry, still long past.
const NO_EXPIRE: i64 = i64::MIN;

fn stored_expiry(expire_ms: Option<i64>) -> i64 {
    expire_ms.map_or(NO_EXPIRE, |e| e.max(NO_EXPIRE + 1))
}

/// A hash's (field, value) pairs.
pub type FieldValues = Vec<(Box<[u8]>, Box<[u8]>)>;

/// A hash's (field, value, expiry in unix ms) triples.
pub type FieldValueTtls = Vec<(Box<[u8]>, Box<[u8]>, Option<i64>)>;

/// An owned value.
#[derive(Clone, Debug, PartialEq)]
pub enum MemValue {
    /// A string.
    Str(Box<[u8]>),
    /// A string kept as an integer.
    Int(i64),
    /// A list, in order.
    List(Vec<Box<[u8]>>),
    /// A set; members unique.
    Set(Vec<Box<[u8]>>),
    /// (member, score) pairs; members unique, scores not NaN.
    ZSet(Vec<(Box<[u8]>, f64)>),
    /// (field, value) pairs; fields unique.
    Hash(FieldValues),
    /// A hash some of whose fields expire (`HEXPIRE`); fields unique.
    HashTtl(FieldValueTtls),
    /// A module type's value, carried without the module.
    Module(Box<ModuleValue>),
    /// A stream (boxed: it is larger than the other values).
    Stream(Box<MemStream>),
}

/// Why a collection could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// This member or field appears twice.
    Duplicate(Vec<u8>),
    /// This sorted-set member has a NaN score.
    NanScore(Vec<u8>),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Duplicate(m) => write!(
                f,
                "{:?} appears twice (set members, hash fields and sorted-set members are unique)",
                String::from_utf8_lossy(m)
            ),
            BuildError::NanScore(m) => write!(
                f,
                "sorted-set member {:?} has a NaN score",
                String::from_utf8_lossy(m)
            ),
        }
    }
}

impl std::error::Error for BuildError {}

impl MemValue {
    /// A string value.
    pub fn str(bytes: impl Into<Vec<u8>>) -> Self {
        MemValue::Str(bytes.into().into_boxed_slice())
    }

    /// A list value, in the given order.
    pub fn list<I: IntoIterator<Item = B>, B: Into<Vec<u8>>>(items: I) -> Self {
        MemValue::List(
            items
                .into_iter()
                .map(|b| b.into().into_boxed_slice())
                .collect(),
        )
    }

    /// A set; duplicate members are an error (a loader would reject the file).
    pub fn set<I: IntoIterator<Item = B>, B: Into<Vec<u8>>>(items: I) -> Result<Self, BuildError> {
        let v: Vec<Box<[u8]>> = items
            .into_iter()
            .map(|b| b.into().into_boxed_slice())
            .collect();
        check_unique(v.iter().map(|m| &m[..]))?;
        Ok(MemValue::Set(v))
    }

    /// A sorted set from (member, score) pairs; refuses duplicate members and NaN scores.
    pub fn zset<I: IntoIterator<Item = (B, f64)>, B: Into<Vec<u8>>>(
        items: I,
    ) -> Result<Self, BuildError> {
        let v: Vec<(Box<[u8]>, f64)> = items
            .into_iter()
            .map(|(m, s)| (m.into().into_boxed_slice(), s))
            .collect();
        if let Some((m, _)) = v.iter().find(|(_, s)| s.is_nan()) {
            return Err(BuildError::NanScore(m.to_vec()));
        }
        check_unique(v.iter().map(|(m, _)| &m[..]))?;
        Ok(MemValue::ZSet(v))
    }

    /// A hash from (field, value) pairs; refuses duplicate fields.
    pub fn hash<I: IntoIterator<Item = (B, C)>, B: Into<Vec<u8>>, C: Into<Vec<u8>>>(
        items: I,
    ) -> Result<Self, BuildError> {
        let v: FieldValues = items
            .into_iter()
            .map(|(f, x)| (f.into().into_boxed_slice(), x.into().into_boxed_slice()))
            .collect();
        check_unique(v.iter().map(|(f, _)| &f[..]))?;
        Ok(MemValue::Hash(v))
    }

    /// A hash from (field, value, expiry) triples; refuses duplicate fields. Without any
    /// expiry it is a plain [`MemValue::Hash`].
    pub fn hash_ttl<I: IntoIterator<Item = (B, C, Option<i64>)>, B: Into<Vec<u8>>, C: Into<Vec<u8>>>(
        items: I,
    ) -> Result<Self, BuildError> {
        let v: FieldValueTtls = items
            .into_iter()
            .map(|(f, x, t)| (f.into().into_boxed_slice(), x.into().into_boxed_slice(), t))
            .collect();
        check_unique(v.iter().map(|(f, _, _)| &f[..]))?;
        if v.iter().all(|(_, _, t)| t.is_none()) {
            return Ok(MemValue::Hash(v.into_iter().map(|(f, x, _)| (f, x)).collect()));
        }
        Ok(MemValue::HashTtl(v))
    }

    /// Borrow as a [`Value`] view.
    pub fn view(&self) -> Value<'_> {
        match self {
            MemValue::Str(s) => Value::Str(s),
            MemValue::Int(i) => Value::Int(*i),
            MemValue::List(l) => Value::List(l),
            MemValue::Set(s) => Value::Set(s),
            MemValue::ZSet(z) => Value::ZSet(z),
            MemValue::Hash(h) => Value::Hash(h),
            MemValue::HashTtl(h) => Value::Hash(h),
            MemValue::Stream(x) => Value::Stream(&**x),
            MemValue::Module(m) => Value::Module(m),
        }
    }

    /// Number of elements (1 for strings).
    pub fn len(&self) -> usize {
        match self {
            MemValue::Str(_) | MemValue::Int(_) => 1,
            MemValue::List(l) | MemValue::Set(l) => l.len(),
            MemValue::ZSet(z) => z.len(),
            MemValue::Hash(h) => h.len(),
            MemValue::HashTtl(h) => h.len(),
            MemValue::Stream(x) => x.entries().len(),
            MemValue::Module(_) => 1,
        }
    }

    /// No elements (a stream may have none and still be a key).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_unique<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<(), BuildError> {
    match crate::rdb::uniq::first_duplicate(items) {
        Some(m) => Err(BuildError::Duplicate(m.to_vec())),
        None => Ok(()),
    }
}

#[derive(Clone, Debug)]
struct Slot {
    key: Box<[u8]>,
    expire_ms: i64,
    value: MemValue,
}

/// How many slots ahead the walk asks the CPU to fetch a slot's key and value. Without
/// it the walk stalls on a cache miss at each key's first byte (`perf annotate`: 86% of
/// `entry_header` on that load); 8 and 16 measured alike, both halving the child's CPU
/// time for 10M populate keys (docs/PERFORMANCE.md). The slot itself is prefetched twice
/// as far ahead: with only the first hint the walk stalled on loading the slot 16 ahead
/// (80% of the walk's samples); the second took child CPU from 0.40–0.47 s to 0.31–0.40 s.
const PREFETCH_KEYS_AHEAD: usize = 16;

/// Hints the CPU to start loading the cache line at `p`. A hint only: it never faults,
/// whatever `p` points to.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not dereference its argument in the language's sense and
    // cannot fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Slot {
    /// Hints the CPU to load the key and value this slot points to.
    #[inline(always)]
    fn prefetch_targets(&self) {
        prefetch(self.key.as_ptr());
        match &self.value {
            MemValue::Str(v) => prefetch(v.as_ptr()),
            MemValue::Int(_) => {}
            MemValue::List(v) | MemValue::Set(v) => prefetch(v.as_ptr()),
            MemValue::ZSet(v) => prefetch(v.as_ptr()),
            MemValue::Hash(v) => prefetch(v.as_ptr()),
            MemValue::HashTtl(v) => prefetch(v.as_ptr()),
            MemValue::Stream(v) => prefetch(&**v),
            MemValue::Module(v) => prefetch(&**v),
        }
    }
}

/// One database of a [`MemKeyspace`].
#[derive(Clone, Default)]
pub struct MemDb {
    slots: Vec<Slot>,
    index: HashTable<Ix>,
    expires: u64,
    /// Keys a loading file announced for this database (RESIZEDB); see `begin_db`.
    load_hint: u64,
}

/// An index entry: the slot, and 32 bits of its key's hash.
#[derive(Clone, Copy)]
struct Ix {
    slot: u32,
    hash: u32,
}

/// 32 bits of the key's xxh3.
#[inline]
fn key_hash(key: &[u8]) -> u32 {
    let h = xxh3_64(key);
    (h ^ (h >> 32)) as u32
}

/// The table's 64-bit hash, from the 32 kept bits (hashbrown takes the bucket from the
/// low bits and its tag from the top seven).
#[inline]
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

impl MemDb {
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.find_hashed(key, key_hash(key))
    }

    #[inline]
    fn find_hashed(&self, key: &[u8], h: u32) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(spread(h), |e| {
                e.hash == h && &*slots[e.slot as usize].key == key
            })
            .map(|e| e.slot as usize)
    }

    /// Keys in this database.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Keys with an expiry.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Makes room for `additional` more keys.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.index.reserve(additional, |e| spread(e.hash));
    }

    /// Inserts or replaces `key`. Returns the previous value.
    pub fn insert(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: MemValue,
        expire_ms: Option<i64>,
    ) -> Option<MemValue> {
        let key = key.into().into_boxed_slice();
        let expire_ms = stored_expiry(expire_ms);
        let h = key_hash(&key);
        if let Some(i) = self.find_hashed(&key, h) {
            let slot = &mut self.slots[i];
            self.expires -= u64::from(slot.expire_ms != NO_EXPIRE);
            self.expires += u64::from(expire_ms != NO_EXPIRE);
            slot.expire_ms = expire_ms;
            return Some(std::mem::replace(&mut slot.value, value));
        }
        self.insert_new(key, value, expire_ms, h);
        None
    }

    /// Inserts a key the caller knows is absent, whose `key_hash` is `h`.
    fn insert_new(&mut self, key: Box<[u8]>, value: MemValue, expire_ms: i64, h: u32) {
        let n = u32::try_from(self.slots.len()).expect("a MemDb holds at most 2^32 keys");
        self.expires += u64::from(expire_ms != NO_EXPIRE);
        self.slots.push(Slot {
            key,
            expire_ms,
            value,
        });
        self.index
            .insert_unique(spread(h), Ix { slot: n, hash: h }, |e| spread(e.hash));
    }

    /// Inserts `key` unless present; returns false (and changes nothing) if it was present.
    pub fn insert_if_absent(
        &mut self,
        key: &[u8],
        value: MemValue,
        expire_ms: Option<i64>,
    ) -> bool {
        // One probe: the lookup's vacant entry takes the new slot.
        let h = key_hash(key);
        let n = u32::try_from(self.slots.len()).expect("a MemDb holds at most 2^32 keys");
        let slots = &self.slots;
        match self.index.entry(
            spread(h),
            |e| e.hash == h && &*slots[e.slot as usize].key == key,
            |e| spread(e.hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Ix { slot: n, hash: h });
            }
        }
        let expire_ms = stored_expiry(expire_ms);
        self.expires += u64::from(expire_ms != NO_EXPIRE);
        self.slots.push(Slot {
            key: key.into(),
            expire_ms,
            value,
        });
        true
    }

    /// The value of `key` and its expiry (unix ms), if present.
    pub fn get(&self, key: &[u8]) -> Option<(&MemValue, Option<i64>)> {
        self.find(key).map(|i| {
            let s = &self.slots[i];
            (&s.value, (s.expire_ms != NO_EXPIRE).then_some(s.expire_ms))
        })
    }

    /// Mutable access to a value in place (the benchmark's mutator overwrites through this).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut MemValue> {
        self.find(key).map(|i| &mut self.slots[i].value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<MemValue> {
        let h = key_hash(key);
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(spread(h), |e| {
                e.hash == h && &*slots[e.slot as usize].key == key
            })
            .ok()?;
        let (removed, _) = entry.remove();
        let i = removed.slot as usize;
        let last = self.slots.len() - 1;
        if i != last {
            // The last slot moves into `i`: repoint its index entry.
            let lh = key_hash(&self.slots[last].key);
            if let Some(e) = self
                .index
                .find_mut(spread(lh), |e| e.slot as usize == last)
            {
                e.slot = i as u32;
            }
        }
        let slot = self.slots.swap_remove(i);
        self.expires -= u64::from(slot.expire_ms != NO_EXPIRE);
        Some(slot.value)
    }

    /// All entries, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &MemValue, Option<i64>)> {
        self.slots.iter().map(|s| {
            (
                &s.key[..],
                &s.value,
                (s.expire_ms != NO_EXPIRE).then_some(s.expire_ms),
            )
        })
    }
}

impl std::fmt::Debug for MemDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemDb")
            .field("keys", &self.slots.len())
            .field("expires", &self.expires)
            .finish()
    }
}

impl std::fmt::Debug for MemKeyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.dbs()).finish()
    }
}

/// An owned, indexed keyspace with any number of databases.
#[derive(Clone, Default)]
pub struct MemKeyspace {
    dbs: Vec<MemDb>,
    /// Function libraries' code, in the order loaded.
    functions: Vec<Box<[u8]>>,
    /// MODULE_AUX records, in the order loaded.
    module_aux: Vec<ModuleAux>,
}

impl MemKeyspace {
    /// An empty keyspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a function library (its code, as `FUNCTION LOAD` takes it).
    pub fn add_function(&mut self, code: &[u8]) {
        self.functions.push(code.into());
    }

    /// The function libraries' code, in the order added or loaded.
    pub fn functions(&self) -> impl Iterator<Item = &[u8]> {
        self.functions.iter().map(|f| &f[..])
    }

    /// Adds a MODULE_AUX record (written with the keyspace, before or after its
    /// databases by its `when`).
    pub fn add_module_aux(&mut self, aux: ModuleAux) {
        self.module_aux.push(aux);
    }

    /// The MODULE_AUX records, in the order added or loaded.
    pub fn module_aux_records(&self) -> &[ModuleAux] {
        &self.module_aux
    }

    /// Database `index`, created if absent.
    pub fn db_mut(&mut self, index: u32) -> &mut MemDb {
        let i = index as usize;
        if self.dbs.len() <= i {
            self.dbs.resize_with(i + 1, MemDb::default);
        }
        &mut self.dbs[i]
    }

    /// Database `index`, if it holds a key.
    pub fn db(&self, index: u32) -> Option<&MemDb> {
        self.dbs.get(index as usize)
    }

    /// Shorthand for `db_mut(db).insert(..)`.
    pub fn insert(
        &mut self,
        db: u32,
        key: impl Into<Vec<u8>>,
        value: MemValue,
        expire_ms: Option<i64>,
    ) -> Option<MemValue> {
        self.db_mut(db).insert(key, value, expire_ms)
    }

    /// Total keys over all databases.
    pub fn len(&self) -> usize {
        self.dbs.iter().map(MemDb::len).sum()
    }

    /// No keys in any database.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(index, db)` for every non-empty database.
    pub fn dbs(&self) -> impl Iterator<Item = (u32, &MemDb)> {
        self.dbs
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_empty())
            .map(|(i, d)| (i as u32, d))
    }

    /// The same data as Redis's `DEBUG POPULATE count key size` in database 0: keys
    /// `key:<i>`, values `value:<i>` cut or padded with zero bytes to exactly `size`
    /// bytes (`size` 0: the text as is), keys that already exist are left alone.
    pub fn populate(&mut self, count: u64, size: usize) {
        self.populate_prefix(0, count, "key", size)
    }

    /// `DEBUG POPULATE count prefix size` into database `db`.
    pub fn populate_prefix(&mut self, db: u32, count: u64, prefix: &str, size: usize) {
        let db = self.db_mut(db);
        db.reserve(count as usize);
        let mut key = Vec::with_capacity(prefix.len() + 21);
        for i in 0..count {
            key.clear();
            key.extend_from_slice(prefix.as_bytes());
            key.push(b':');
            push_decimal(&mut key, i);
            let h = key_hash(&key);
            if db.find_hashed(&key, h).is_some() {
                continue;
            }
            let mut val = Vec::with_capacity(size.max(6 + 20));
            val.extend_from_slice(b"value:");
            push_decimal(&mut val, i);
            if size > 0 {
                val.resize(size, 0);
            }
            db.insert_new(key.as_slice().into(), MemValue::Str(val.into()), NO_EXPIRE, h);
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(crate::rdb::num::format_u64(v, &mut [0u8; 20]));
}

impl Keyspace for MemKeyspace {
    fn databases(&self) -> Vec<DbInfo> {
        self.dbs()
            .map(|(index, d)| DbInfo {
                index,
                keys: d.len() as u64,
                expires: d.expires,
            })
            .collect()
    }

    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        if let Some(d) = self.dbs.get(db as usize) {
            walk_slots(&d.slots, visit);
        }
    }

    fn partitioned(&self) -> Option<&dyn crate::Partitioned> {
        Some(self)
    }

    fn functions(&self, visit: &mut dyn FnMut(&[u8])) {
        self.functions.iter().for_each(|f| visit(f));
    }

    fn module_aux(&self, visit: &mut dyn FnMut(&ModuleAux)) {
        self.module_aux.iter().for_each(visit);
    }
}

/// Keys per part of a [`MemKeyspace`] database: 10M keys make 611 parts, so threads that
/// take the next part when done finish within one part of each other (not tuned: the
/// one size measured, docs/PERFORMANCE.md "The parallel child").
const KEYS_PER_PART: usize = 16 * 1024;

impl crate::Partitioned for MemKeyspace {
    fn partitions(&self, db: u32) -> usize {
        self.dbs
            .get(db as usize)
            .map_or(0, |d| d.slots.len().div_ceil(KEYS_PER_PART))
    }

    fn walk_partition(
        &self,
        db: u32,
        part: usize,
        visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
    ) {
        let Some(d) = self.dbs.get(db as usize) else {
            return;
        };
        let start = part.saturating_mul(KEYS_PER_PART).min(d.slots.len());
        let end = start.saturating_add(KEYS_PER_PART).min(d.slots.len());
        walk_slots(&d.slots[start..end], visit);
    }
}

/// Visits `slots` in order, prefetching ahead.
fn walk_slots(slots: &[Slot], visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
    for (i, s) in slots.iter().enumerate() {
        if let Some(ahead) = slots.get(i + 2 * PREFETCH_KEYS_AHEAD) {
            prefetch(ahead);
        }
        if let Some(ahead) = slots.get(i + PREFETCH_KEYS_AHEAD) {
            ahead.prefetch_targets();
        }
        let e = Entry {
            key: &s.key,
            expire_ms: (s.expire_ms != NO_EXPIRE).then_some(s.expire_ms),
            value: s.value.view(),
        };
        if visit(&e).is_break() {
            return;
        }
    }
}

/// Room for one more element, or an error (not an abort) when the memory is not there:
/// a collection's size comes from the file.
#[inline]
fn room<T>(v: &mut Vec<T>) -> crate::rdb::VisitResult {
    if v.len() == v.capacity() && v.try_reserve(v.len().max(8)).is_err() {
        return Err(format!(
            "out of memory for a collection of {} elements of {} bytes",
            v.len().saturating_mul(2),
            std::mem::size_of::<T>()
        )
        .into());
    }
    Ok(())
}

/// A list's or a set's elements, each boxed.
fn elements(
    l: crate::rdb::LoadSeq<'_>,
) -> Result<Vec<Box<[u8]>>, Box<dyn std::error::Error + Send + Sync>> {
    let mut v = Vec::with_capacity(l.len_hint());
    l.for_each(|e| {
        room(&mut v)?;
        v.push(e.into());
        Ok(())
    })?;
    Ok(v)
}

/// Loading into a `MemKeyspace`: every value copied into a [`MemValue`]; a repeated key,
/// set member, hash field or sorted-set member refuses the file, as Redis does.
impl crate::rdb::LoadVisitor for MemKeyspace {
    fn function(&mut self, library: &[u8]) -> crate::rdb::VisitResult {
        self.add_function(library);
        Ok(())
    }

    fn module_aux(&mut self, aux: &ModuleAux) -> crate::rdb::VisitResult {
        self.add_module_aux(aux.clone());
        Ok(())
    }

    fn begin_db(&mut self, db: DbInfo) -> crate::rdb::VisitResult {
        // The file's hint is believed only as far as the keys loaded justify: 1024 keys
        // up front, then (in `key`) growth to at most four times the keys loaded, up to
        // the hint, so a damaged file cannot make the load reserve gigabytes, and a true
        // hint still saves most rehashing. Measured with 64K up front (`forksnap load` of
        // the 10M populate file, 3 runs each): 7.8-8.7 s, against 9.8-10.5 s growing by
        // doubling from 64K; the 1024 up front (for the fuzzer's many small inputs) was
        // not timed against it separately.
        let d = self.db_mut(db.index);
        d.load_hint = db.keys;
        d.reserve(db.keys.min(1 << 10) as usize);
        Ok(())
    }

    fn key(
        &mut self,
        db: u32,
        key: &[u8],
        expire_ms: Option<i64>,
        value: crate::rdb::LoadValue<'_>,
    ) -> crate::rdb::VisitResult {
        use crate::rdb::LoadValue as L;
        let boxed = |b: &[u8]| -> Box<[u8]> { b.into() };
        let v = match value {
            L::Str(s) => MemValue::Str(boxed(s)),
            L::List(l) => MemValue::List(elements(l)?),
            L::Set(l) => {
                let v = elements(l)?;
                check_unique(v.iter().map(|m| &m[..]))?;
                MemValue::Set(v)
            }
            L::ZSet(z) => {
                let mut v = Vec::with_capacity(z.len_hint());
                z.for_each(|m, s| {
                    room(&mut v)?;
                    v.push((boxed(m), s));
                    Ok(())
                })?;
                check_unique(v.iter().map(|(m, _)| &m[..]))?;
                MemValue::ZSet(v)
            }
            L::Hash(h) if h.field_ttls() > 0 => {
                let mut v = Vec::with_capacity(h.len_hint());
                h.for_each_ttl(|f, x, t| {
                    room(&mut v)?;
                    v.push((boxed(f), boxed(x), t));
                    Ok(())
                })?;
                check_unique(v.iter().map(|(f, _, _)| &f[..]))?;
                MemValue::HashTtl(v)
            }
            L::Hash(h) => {
                let mut v = Vec::with_capacity(h.len_hint());
                h.for_each(|f, x| {
                    room(&mut v)?;
                    v.push((boxed(f), boxed(x)));
                    Ok(())
                })?;
                check_unique(v.iter().map(|(f, _)| &f[..]))?;
                MemValue::Hash(v)
            }
            L::Module(m) => MemValue::Module(Box::new(m.clone())),
            L::Stream(x) => {
                let mut entries = Vec::new();
                let (meta, groups) = x.for_each(|id, elems| {
                    room(&mut entries)?;
                    entries.push((id, elems.iter().map(|e| boxed(e)).collect()));
                    Ok(())
                })?;
                MemValue::Stream(Box::new(MemStream::new(entries, meta, groups)?))
            }
        };
        let d = self.db_mut(db);
        let len = d.slots.len() as u64;
        if len == d.slots.capacity() as u64 && d.load_hint > len {
            d.reserve((d.load_hint - len).min(3 * len.max(1)) as usize);
        }
        if d.insert_if_absent(key, v, expire_ms) {
            Ok(())
        } else {
            Err(format!("duplicate key in database {db}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove_keep_index_consistent() {
        let mut ks = MemKeyspace::new();
        for i in 0..1000u32 {
            let exp = (i % 3 == 0).then_some(i as i64);
            assert!(ks
                .insert(0, format!("k{i}"), MemValue::Int(i as i64), exp)
                .is_none());
        }
        assert_eq!(ks.db(0).unwrap().expires(), 334);
        assert_eq!(
            ks.insert(0, "k5", MemValue::str("x"), Some(9)),
            Some(MemValue::Int(5))
        );
        assert_eq!(ks.db(0).unwrap().expires(), 335);
        for i in (0..1000u32).step_by(2) {
            assert!(ks.db_mut(0).remove(format!("k{i}").as_bytes()).is_some());
        }
        let db = ks.db(0).unwrap();
        assert_eq!(db.len(), 500);
        for i in 0..1000u32 {
            let got = db.get(format!("k{i}").as_bytes());
            assert_eq!(got.is_some(), i % 2 == 1, "key k{i}");
        }
        assert_eq!(db.get(b"k5").unwrap().0, &MemValue::str("x"));
        let expiring = db.iter().filter(|(_, _, e)| e.is_some()).count() as u64;
        assert_eq!(db.expires(), expiring);
    }

    #[test]
    fn populate_matches_debug_populate_shape() {
        let mut ks = MemKeyspace::new();
        ks.populate(12, 10);
        let db = ks.db(0).unwrap();
        assert_eq!(db.len(), 12);
        let (v, _) = db.get(b"key:11").unwrap();
        assert_eq!(v, &MemValue::str(b"value:11\0\0".to_vec()));
        // Sizes below the text's length cut it, and size 0 keeps it whole, as Redis's
        // and Valkey's DEBUG POPULATE do (tests/scenarios/redis_loads_snapshot.rs
        // compares both with the servers' digests).
        let mut ks = MemKeyspace::new();
        ks.populate(1, 3);
        ks.populate_prefix(0, 1, "whole", 0);
        let db = ks.db(0).unwrap();
        assert_eq!(db.get(b"key:0").unwrap().0, &MemValue::str("val"));
        assert_eq!(db.get(b"whole:0").unwrap().0, &MemValue::str("value:0"));
    }

    #[test]
    fn an_expiry_of_i64_min_stays_an_expiry() {
        let mut ks = MemKeyspace::new();
        ks.insert(0, "old", MemValue::str("v"), Some(i64::MIN));
        let db = ks.db(0).unwrap();
        assert_eq!(db.get(b"old").unwrap().1, Some(i64::MIN + 1));
        assert_eq!(db.expires(), 1);
    }

    #[test]
    fn collections_reject_duplicates_and_nan() {
        let e = MemValue::set(["a", "b", "a"]).unwrap_err();
        assert_eq!(e, BuildError::Duplicate(b"a".to_vec()));
        assert!(e.to_string().starts_with("\"a\" appears twice"), "{e}");
        let e: Box<dyn std::error::Error> = Box::new(MemValue::zset([("m", f64::NAN)]).unwrap_err());
        assert!(e.to_string().contains("NaN"), "{e}");
        assert!(MemValue::hash([("f", "1"), ("f", "2")]).is_err());
        assert!(MemValue::zset([("m", f64::NAN)]).is_err());
        assert!(MemValue::zset([("m", f64::INFINITY)]).is_ok());
    }
}
