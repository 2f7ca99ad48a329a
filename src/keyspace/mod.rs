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

mod mem;

pub use mem::{FieldValues, MemDb, MemKeyspace, MemValue};

use std::ops::ControlFlow;

/// A list or set: a sequence of byte strings.
pub trait SeqView {
    fn len(&self) -> usize;
    fn for_each(&self, f: &mut dyn FnMut(&[u8]));
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sorted set: (member, score) pairs, in any order.
pub trait ZSetView {
    fn len(&self) -> usize;
    fn for_each(&self, f: &mut dyn FnMut(&[u8], f64));
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hash: (field, value) pairs.
pub trait HashView {
    fn len(&self) -> usize;
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8]));
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed view of one value.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// A string value.
    Str(&'a [u8]),
    /// A string value the server keeps as an integer (written as its decimal form).
    Int(i64),
    List(&'a dyn SeqView),
    Set(&'a dyn SeqView),
    ZSet(&'a dyn ZSetView),
    Hash(&'a dyn HashView),
    /// A value the snapshot cannot encode (stream, module type). It is skipped and counted.
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
            Value::Unsupported(kind) => kind,
        }
    }
}

/// One key with its value, borrowed from the keyspace.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    /// Absolute expiry time in unix milliseconds.
    pub expire_ms: Option<i64>,
    pub value: Value<'a>,
}

/// Size hints for one database, written as RDB's RESIZEDB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbInfo {
    pub index: u32,
    pub keys: u64,
    pub expires: u64,
}

/// The data a snapshot walks. Implemented by the server.
///
/// `Sync` because the snapshot may walk it from a forked child's worker thread while the
/// parent's copy is untouched (after fork the child's image is private to it).
pub trait Keyspace: Sync {
    /// The non-empty databases, in ascending index order.
    fn databases(&self) -> Vec<DbInfo>;

    /// Calls `visit` for every entry of database `db`, in any order, until `visit`
    /// returns `ControlFlow::Break`.
    ///
    /// A walk over millions of small keys is bound by the cache miss at each entry's
    /// first touch, not by encoding: prefetching a few entries ahead (as [`MemKeyspace`]
    /// does) halved the child's CPU time for 10M populate keys.
    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>);
}
