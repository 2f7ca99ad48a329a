//! What a server exposes to a snapshot: databases, and in each its entries, walked in place.
//!
//! A server implements [`Keyspace`] over its own data structures. The snapshot calls
//! [`Keyspace::walk`] once per database and receives borrowed [`Entry`] views; nothing is
//! copied and the implementor never has to allocate per entry. Collections are exposed as
//! trait objects with a `len` and a `for_each`, so the encoder can size headers first and
//! stream elements after.
//!
//! **Invariants**
//! - `len()` of a collection view equals the number of elements its `for_each` yields.
//! - Set members and hash fields are unique; sorted-set members are unique and scores are
//!   not NaN. (Loaders reject duplicates; [`MemKeyspace`] enforces this on construction.)

mod digest;
mod mem;
mod module;
mod stream;

pub use digest::{dataset_digest, format_score, value_digest, Digest};
pub use mem::{BuildError, FieldValueTtls, FieldValues, MemDb, MemKeyspace, MemValue};
pub use stream::{
    MemStream, PendingEntry, StreamConsumer, StreamEntry, StreamGroup, StreamId, StreamMeta,
    StreamView,
};
pub(crate) use stream::{check_group, check_groups, check_tail};
pub use module::{ModuleAux, ModuleItem, ModuleValue};

use std::ops::ControlFlow;

/// A list or set: a sequence of byte strings.
pub trait SeqView {
    /// Elements; must equal what `for_each` yields.
    fn len(&self) -> usize;
    /// Calls `f` with each element (a list's in order).
    fn for_each(&self, f: &mut dyn FnMut(&[u8]));
    /// No elements (an empty collection is skipped and counted, as Redis does).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sorted set: (member, score) pairs, in any order.
pub trait ZSetView {
    /// Members; must equal what `for_each` yields.
    fn len(&self) -> usize;
    /// Calls `f` with each member and its score.
    fn for_each(&self, f: &mut dyn FnMut(&[u8], f64));
    /// No members.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hash: (field, value) pairs, and, for a server with per-field expiry (`HEXPIRE`,
/// `HSETEX`: Redis ≥ 7.4, Valkey ≥ 9), each field's expiry.
pub trait HashView {
    /// Fields; must equal what `for_each` yields.
    fn len(&self) -> usize;
    /// Calls `f` with each field and its value.
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8]));
    /// No fields.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether any field has an expiry; if so the snapshot reads the fields through
    /// [`for_each_ttl`](Self::for_each_ttl). Default: false.
    fn has_field_ttls(&self) -> bool {
        false
    }
    /// Calls `f` with each field, its value and its expiry (unix milliseconds), in the
    /// order `for_each` yields them. Default: `for_each` with no expiries.
    #[allow(clippy::type_complexity)] // a callback's signature, read once
    fn for_each_ttl(&self, f: &mut dyn FnMut(&[u8], &[u8], Option<i64>)) {
        self.for_each(&mut |k, v| f(k, v, None))
    }
}

/// A borrowed view of one value.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// A string value.
    Str(&'a [u8]),
    /// A string value the server keeps as an integer (written as its decimal form).
    Int(i64),
    /// A list.
    List(&'a dyn SeqView),
    /// A set (members unique).
    Set(&'a dyn SeqView),
    /// A sorted set (members unique, scores not NaN).
    ZSet(&'a dyn ZSetView),
    /// A hash (fields unique).
    Hash(&'a dyn HashView),
    /// A stream: entries, metadata and consumer groups.
    Stream(&'a dyn StreamView),
    /// A module type's value, carried as its items (see [`ModuleValue`]).
    Module(&'a ModuleValue),
    /// A value the snapshot cannot encode. It is skipped and counted.
    Unsupported(&'static str),
}

impl Value<'_> {
    /// The Redis type name (`string`, `list`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) | Value::Int(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Hash(_) => "hash",
            Value::Stream(_) => "stream",
            Value::Module(_) => "module",
            Value::Unsupported(kind) => kind,
        }
    }
}

/// One key with its value, borrowed from the keyspace.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Absolute expiry time in unix milliseconds.
    pub expire_ms: Option<i64>,
    /// The value.
    pub value: Value<'a>,
}

/// Size hints for one database, written as RDB's RESIZEDB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbInfo {
    /// The database number (`SELECT`'s).
    pub index: u32,
    /// Keys in it (a hint: the walk decides).
    pub keys: u64,
    /// Keys with an expiry (a hint).
    pub expires: u64,
}

/// The data a snapshot walks. Implemented by the server.
///
/// # The fork contract
///
/// [`SnapshotOptions::start`](crate::SnapshotOptions::start) forks, and `databases` and
/// `walk` then run **in the child**, on the copy-on-write image of the parent's memory,
/// in the child's only thread (the one that called `start`; no other thread of the server
/// exists there). So `walk` must:
/// - **take no lock** that another thread may have held at fork: that thread does not
///   exist in the child, the lock stays held for ever, and the walk waits for ever (the
///   parent kills such a child after `SnapshotOptions::stall_timeout` and reports
///   [`Error::Stalled`](crate::Error::Stalled));
/// - not log through the server's logger, write to its sockets or files, or run its
///   async runtime: their threads and locks are the parent's;
/// - read, not write: every page it writes is copied (the data stays consistent either
///   way; the copy only costs memory).
///
/// A server whose data sits behind locks freezes it for the fork by taking the guards,
/// calling `start` and dropping the guards: the child's image then holds the guards'
/// data, locked by the thread that is the child's only thread, and `walk` reads through
/// the guards it was built from instead of locking again. Allocation is fine (glibc's
/// allocator is usable in a forked child).
///
/// Also: the views' `len()` must equal what their `for_each` yields (or the snapshot
/// fails with [`Error::BadValue`](crate::Error::BadValue) naming the key), and the
/// trait needs neither `Send` nor `Sync`: a single-threaded server's `Rc`/`RefCell`
/// data implements it as well.
///
/// ```
/// use forksnap::{DbInfo, Entry, Keyspace, SnapshotOptions, Value};
/// use std::collections::{BTreeSet, HashMap};
/// use std::ops::ControlFlow;
/// use std::sync::{Mutex, MutexGuard};
///
/// enum Val { Str(Vec<u8>), Set(BTreeSet<Vec<u8>>), Hash(HashMap<Vec<u8>, Vec<u8>>) }
/// type Shard = HashMap<Vec<u8>, Val>;
///
/// /// The server's store: one database of shards, each behind its own lock.
/// struct Store { shards: Vec<Mutex<Shard>> }
///
/// /// Every shard's guard, taken for the fork; the child reads through them.
/// struct Frozen<'a>(Vec<MutexGuard<'a, Shard>>);
///
/// impl Keyspace for Frozen<'_> {
///     fn databases(&self) -> Vec<DbInfo> {
///         let keys = self.0.iter().map(|s| s.len() as u64).sum();
///         vec![DbInfo { index: 0, keys, expires: 0 }]
///     }
///     fn walk(&self, _db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
///         for (key, val) in self.0.iter().flat_map(|shard| shard.iter()) {
///             let value = match val {
///                 Val::Str(s) => Value::Str(s),
///                 Val::Set(s) => Value::Set(s),
///                 Val::Hash(h) => Value::Hash(h),
///             };
///             if visit(&Entry { key, expire_ms: None, value }).is_break() {
///                 return;
///             }
///         }
///     }
/// }
///
/// let store = Store { shards: (0..4).map(|_| Mutex::new(HashMap::new())).collect() };
/// store.shards[1].lock().unwrap().insert(b"k".to_vec(), Val::Str(b"v".to_vec()));
/// let path = std::env::temp_dir().join(format!("frozen-{}.rdb", std::process::id()));
///
/// let frozen = Frozen(store.shards.iter().map(|m| m.lock().unwrap()).collect());
/// let running = SnapshotOptions::new(&path).start(&frozen)?;
/// drop(frozen); // the parent serves again; the child keeps the frozen image
/// assert_eq!(running.wait()?.keys(), 1);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), forksnap::Error>(())
/// ```
pub trait Keyspace {
    /// The non-empty databases, in ascending index order.
    fn databases(&self) -> Vec<DbInfo>;

    /// Calls `visit` for every entry of database `db`, in any order, until `visit`
    /// returns `ControlFlow::Break`.
    ///
    /// A walk over millions of small keys is bound by the cache miss at each entry's
    /// first touch, not by encoding: prefetching a few entries ahead (as [`MemKeyspace`]
    /// does) halved the child's CPU time for 10M populate keys.
    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>);

    /// The same data split into parts that several threads can walk at once, or `None`
    /// (the default): a keyspace that is `Sync` returns `Some(self)` after implementing
    /// [`Partitioned`], and [`SnapshotOptions::threads`](crate::SnapshotOptions::threads)
    /// above 1 then encodes with that many threads in the child.
    fn partitioned(&self) -> Option<&dyn Partitioned> {
        None
    }

    /// Calls `visit` with each function library's code (what `FUNCTION LOAD` takes and
    /// `FUNCTION LIST WITHCODE` shows), written as FUNCTION2 records before the first
    /// database. Default: none. RDB 9 cannot hold them: a snapshot at version 9 of a
    /// keyspace that has any fails instead of dropping them.
    fn functions(&self, visit: &mut dyn FnMut(&[u8])) {
        let _ = visit;
    }

    /// Calls `visit` with each MODULE_AUX record to write (module data outside the
    /// keyspace, kept from a loaded file): those with `when` 1 before the first
    /// database, the others after the last. Default: none.
    fn module_aux(&self, visit: &mut dyn FnMut(&ModuleAux)) {
        let _ = visit;
    }
}

/// A keyspace whose databases split into disjoint parts (shards, ranges of a table),
/// each walked on its own by one of the child's encoding threads. Every entry of a
/// database must be in exactly one part; the file lists the keys of a database in any
/// order, so parts may be visited in any order and interleaved (a part's keys stay
/// together in runs of whole keys). The fork contract of [`Keyspace`] holds for every
/// thread: the threads are the child's own, started after fork.
pub trait Partitioned: Sync {
    /// How many parts database `db` has (0 or more; more parts than threads balance
    /// better: a thread takes the next part when it finishes one).
    fn partitions(&self, db: u32) -> usize;

    /// Calls `visit` for every entry of part `part` of database `db`, until it returns
    /// `ControlFlow::Break`. Called from several threads at once, for different parts.
    fn walk_partition(
        &self,
        db: u32,
        part: usize,
        visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
    );
}

/// Hints the CPU to start loading the memory `data` starts at (its first cache line).
///
/// For a [`Keyspace::walk`] whose keys and values live in allocations of their own (a
/// hash map of `Box<[u8]>` keys and `Vec<u8>` values): hinting the key and value of an
/// entry some way ahead of the one being visited (16 to 64 entries measured alike) keeps
/// the child from stalling on a cache miss at each key's first byte. [`MemKeyspace`]
/// does it (halving the child's CPU on 10M small keys); examples/kvserver's walk went
/// from 10.0 s to 6.6–7.3 s of child CPU. A hint only: it reads nothing and never
/// faults, whatever `data` is.
///
/// ```
/// let keys: Vec<Box<[u8]>> = (0..100).map(|i| format!("key:{i}").into_bytes().into()).collect();
/// let mut ahead = keys.iter().skip(16);
/// let mut total = 0;
/// for k in &keys {
///     if let Some(next) = ahead.next() {
///         forksnap::prefetch(&**next);
///     }
///     total += k.len();
/// }
/// assert!(total > 0);
/// ```
#[inline(always)]
pub fn prefetch<T: ?Sized>(data: &T) {
    mem::prefetch(data as *const T);
}

// The views for the collections a server would hold: any element type that is bytes
// (`Vec<u8>`, `Box<[u8]>`, `String`, `bytes::Bytes`, ...).

macro_rules! seq_view {
    ($($t:ty),*) => {$(
        impl<T: AsRef<[u8]>> SeqView for $t {
            fn len(&self) -> usize {
                <$t>::len(self)
            }
            fn for_each(&self, f: &mut dyn FnMut(&[u8])) {
                for m in self.iter() {
                    f(m.as_ref())
                }
            }
        }
    )*};
}
seq_view!(
    Vec<T>,
    std::collections::VecDeque<T>,
    std::collections::BTreeSet<T>
);

impl<T: AsRef<[u8]>, S> SeqView for std::collections::HashSet<T, S> {
    fn len(&self) -> usize {
        std::collections::HashSet::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8])) {
        for m in self.iter() {
            f(m.as_ref())
        }
    }
}

impl<T: AsRef<[u8]>> ZSetView for Vec<(T, f64)> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], f64)) {
        for (m, s) in self {
            f(m.as_ref(), *s)
        }
    }
}

impl<T: AsRef<[u8]>> ZSetView for std::collections::BTreeMap<T, f64> {
    fn len(&self) -> usize {
        std::collections::BTreeMap::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], f64)) {
        for (m, s) in self {
            f(m.as_ref(), *s)
        }
    }
}

impl<T: AsRef<[u8]>, S> ZSetView for std::collections::HashMap<T, f64, S> {
    fn len(&self) -> usize {
        std::collections::HashMap::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], f64)) {
        for (m, s) in self {
            f(m.as_ref(), *s)
        }
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> HashView for Vec<(K, V)> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in self {
            f(k.as_ref(), v.as_ref())
        }
    }
}

/// (field, value, expiry) triples: a hash whose fields may expire.
impl<K: AsRef<[u8]>, V: AsRef<[u8]>> HashView for Vec<(K, V, Option<i64>)> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v, _) in self {
            f(k.as_ref(), v.as_ref())
        }
    }
    fn has_field_ttls(&self) -> bool {
        self.iter().any(|(_, _, t)| t.is_some())
    }
    #[allow(clippy::type_complexity)] // a callback's signature, read once
    fn for_each_ttl(&self, f: &mut dyn FnMut(&[u8], &[u8], Option<i64>)) {
        for (k, v, t) in self {
            f(k.as_ref(), v.as_ref(), *t)
        }
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> HashView for std::collections::BTreeMap<K, V> {
    fn len(&self) -> usize {
        std::collections::BTreeMap::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in self {
            f(k.as_ref(), v.as_ref())
        }
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>, S> HashView for std::collections::HashMap<K, V, S> {
    fn len(&self) -> usize {
        std::collections::HashMap::len(self)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in self {
            f(k.as_ref(), v.as_ref())
        }
    }
}
