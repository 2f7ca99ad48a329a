//! The RDB reader: streams an RDB (plain or in an LZ4 frame) from any `Read` and hands
//! each key to a [`LoadVisitor`], the mirror image of [`Keyspace`](crate::Keyspace).
//!
//! **Invariants**
//! - Never panics on any input; every error names the byte offset (in the RDB stream).
//! - Memory is bounded by the largest single item (a string, a listpack), never by a
//!   count or size the file claims: collections stream element by element, every
//!   allocation sized by the input is fallible, and a per-value limit (Redis's 512 MiB
//!   bulk limit by default) refuses larger items.
//! - The CRC-64 trailer is verified unless it is zero ("not computed").
//! - A visitor sees exactly the values the file holds: an empty collection is skipped
//!   and counted (as Redis does), a value the visitor does not read is still read and
//!   validated, and a value it cannot be given (a hash with field TTLs, a module value)
//!   is an error unless the caller asked to skip such values.

use super::listpack::{self, Elem};
use super::num::parse_score;
use super::num::format_i64;
use super::source::Source;
use super::limits::FIELD_EXPIRE_MAX as EXPIRE_TIME_MAX;
use super::{intset, opcodes, types, ziplist};
use crate::error::{Error, Result};
use crate::frame;
use super::stream::parse_node;
use crate::keyspace::{check_group, check_tail, DbInfo, MemKeyspace};
use crate::keyspace::{ModuleAux, ModuleItem, ModuleValue};
use crate::keyspace::{PendingEntry, StreamConsumer, StreamGroup, StreamId, StreamMeta};
use super::module_ops::{MODULE_DOUBLE, MODULE_EOF, MODULE_FLOAT, MODULE_SINT, MODULE_STRING, MODULE_UINT};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Skip (and count) module values and MODULE_AUX records instead of handing them
    /// over: for a target server that lacks the modules (it would refuse them).
    pub skip_unsupported: bool,
    /// The largest string (or compressed element) a file may hold, bytes: Redis's own
    /// bulk limit (`proto-max-bulk-len`), 512 MiB, by default.
    pub max_value_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            skip_unsupported: false,
            max_value_bytes: 512 << 20,
        }
    }
}

/// What a load found besides the keys.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The RDB version in the header.
    pub version: u32,
    /// `REDIS` or `VALKEY`.
    pub magic: &'static str,
    /// Keys handed to the visitor.
    pub keys: u64,
    /// The AUX fields, in file order.
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// FUNCTION2 libraries (handed to [`LoadVisitor::function`]).
    pub functions: u64,
    /// MODULE_AUX records handed to [`LoadVisitor::module_aux`].
    pub module_aux: u64,
    /// MODULE_AUX records skipped ([`LoadOptions::skip_unsupported`]).
    pub module_aux_skipped: u64,
    /// Values skipped on request ([`LoadOptions::skip_unsupported`]).
    pub values_skipped: u64,
    /// Collections with no element, skipped and counted as Redis does ("empty keys
    /// skipped"): no server keeps an empty collection.
    pub empty_skipped: u64,
    /// false when the file stores a zero CRC (written with checksums off) or predates them.
    pub crc_checked: bool,
    /// The stored CRC-64 (0: none stored).
    pub crc: u64,
    /// True when the input was an LZ4 frame.
    pub lz4_framed: bool,
    /// Bytes of RDB (after LZ4 decoding).
    pub rdb_bytes: u64,
}

/// What a visitor returns: any error stops the load (it comes back as
/// [`Error::Rejected`], naming the key and its offset).
pub type VisitResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Receives a loading file, key by key: the mirror image of [`Keyspace`](crate::Keyspace).
/// The server implements it over its own structures and builds them as the file
/// streams by, without an intermediate copy; [`MemKeyspace`] is one implementation.
///
/// Calls come in file order: `aux` fields (usually first), `function` libraries, then
/// for each database `begin_db` followed by its keys. Every borrowed slice is valid for
/// the call only.
///
/// A damaged file may repeat a set member, a hash field or a key: Redis refuses such a
/// file, so check as you insert (`HashSet::insert` returning false) and return an error.
///
/// ```
/// use forksnap::{load_into, LoadOptions, LoadValue, LoadVisitor, VisitResult};
/// use std::collections::{HashMap, HashSet};
///
/// #[derive(Default)]
/// struct Store {
///     strings: HashMap<Vec<u8>, Vec<u8>>,
///     sets: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
/// }
///
/// impl LoadVisitor for Store {
///     fn key(&mut self, _db: u32, key: &[u8], _expire: Option<i64>, value: LoadValue<'_>) -> VisitResult {
///         match value {
///             LoadValue::Str(s) => {
///                 self.strings.insert(key.to_vec(), s.to_vec());
///             }
///             LoadValue::Set(members) => {
///                 let mut set = HashSet::with_capacity(members.len_hint());
///                 members.for_each(|m| match set.insert(m.to_vec()) {
///                     true => Ok(()),
///                     false => Err("duplicate set member".into()),
///                 })?;
///                 self.sets.insert(key.to_vec(), set);
///             }
///             other => return Err(format!("this store has no {}s", other.type_name()).into()),
///         }
///         Ok(())
///     }
/// }
///
/// # let mut ks = forksnap::MemKeyspace::new();
/// # ks.insert(0, "greeting", forksnap::MemValue::str("hello"), None);
/// # ks.insert(0, "colours", forksnap::MemValue::set(["red", "blue"]).unwrap(), None);
/// # let path = std::env::temp_dir().join(format!("visit-{}.rdb", std::process::id()));
/// # forksnap::SnapshotOptions::new(&path).start(&ks)?.wait()?;
/// let mut store = Store::default();
/// let file = std::fs::File::open(&path)?;
/// let report = load_into(file, &LoadOptions::default(), &mut store)?;
/// assert_eq!(report.keys, 2);
/// assert_eq!(store.sets[&b"colours"[..]].len(), 2);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait LoadVisitor {
    /// A database begins: its index and, when the file has them (RESIZEDB), how many
    /// keys and expiring keys it announces. A hint for reserving: a damaged file can lie.
    fn begin_db(&mut self, db: DbInfo) -> VisitResult {
        let _ = db;
        Ok(())
    }

    /// One key, with its absolute expiry (unix ms) and a view of its value. A
    /// collection's elements stream through the view's `for_each`; a value not read is
    /// skipped (and still validated).
    fn key(
        &mut self,
        db: u32,
        key: &[u8],
        expire_ms: Option<i64>,
        value: LoadValue<'_>,
    ) -> VisitResult;

    /// An AUX field (`redis-ver`, `ctime`, `repl-id`, ...).
    fn aux(&mut self, field: &[u8], value: &[u8]) -> VisitResult {
        let _ = (field, value);
        Ok(())
    }

    /// A function library (FUNCTION2: the library's code, as `FUNCTION LOAD` takes it).
    fn function(&mut self, library: &[u8]) -> VisitResult {
        let _ = library;
        Ok(())
    }

    /// A MODULE_AUX record (module data outside the keyspace); kept by a visitor that
    /// writes the data again (as [`MemKeyspace`] does). Default: ignored.
    fn module_aux(&mut self, aux: &ModuleAux) -> VisitResult {
        let _ = aux;
        Ok(())
    }
}

/// A borrowed view of one loading value (see [`LoadVisitor::key`]).
pub enum LoadValue<'v> {
    /// A string (an integer-encoded one in its decimal form).
    Str(&'v [u8]),
    /// A list, in order.
    List(LoadSeq<'v>),
    /// A set.
    Set(LoadSeq<'v>),
    /// A sorted set.
    ZSet(LoadZSet<'v>),
    /// A hash.
    Hash(LoadHash<'v>),
    /// A stream.
    Stream(LoadStream<'v>),
    /// A module type's value, whole (see [`ModuleValue`]).
    Module(&'v ModuleValue),
}

impl LoadValue<'_> {
    /// The Redis type name (`string`, `list`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            LoadValue::Str(_) => "string",
            LoadValue::List(_) => "list",
            LoadValue::Set(_) => "set",
            LoadValue::ZSet(_) => "zset",
            LoadValue::Hash(_) => "hash",
            LoadValue::Stream(_) => "stream",
            LoadValue::Module(_) => "module",
        }
    }
}

type SeqFn<'f> = dyn FnMut(&[u8]) -> VisitResult + 'f;
type ZSetFn<'f> = dyn FnMut(&[u8], f64) -> VisitResult + 'f;
type HashFn<'f> = dyn FnMut(&[u8], &[u8]) -> VisitResult + 'f;

/// What a drain hands each element to.
enum Each<'f> {
    Seq(&'f mut SeqFn<'f>),
    ZSet(&'f mut ZSetFn<'f>),
    Hash(&'f mut HashFn<'f>),
}

/// The reader's side of a collection view.
trait Drain {
    fn hint(&self) -> usize;
    fn drain(&mut self, each: Each<'_>) -> Result<()>;
    /// Fields with an expiry (hashes only).
    fn field_ttls(&self) -> u64;
    /// A hash's (field, value, expiry) triples.
    fn drain_ttl(&mut self, f: &mut HashTtlFn<'_>) -> Result<()>;
}

type HashTtlFn<'f> = dyn FnMut(&[u8], &[u8], Option<i64>) -> VisitResult + 'f;

/// What a file announces is capped for reservations: a damaged file cannot make the
/// visitor reserve more than this many elements up front.
const HINT_CAP: u64 = 1 << 20;

macro_rules! view {
    ($(#[$m:meta])* $name:ident, $variant:ident, ($($arg:ident: $t:ty),*)) => {
        $(#[$m])*
        pub struct $name<'v>(&'v mut (dyn Drain + 'v));

        impl $name<'_> {
            /// The element count the file announces, capped at 2^20 (so that a damaged
            /// file cannot make you reserve gigabytes); 0 when the encoding does not say.
            pub fn len_hint(&self) -> usize {
                self.0.hint()
            }

            /// Streams every element to `f`, in file order, consuming the view. An error
            /// from `f` stops the load; an error in the file is returned (pass it on).
            pub fn for_each(self, mut f: impl FnMut($($t),*) -> VisitResult) -> Result<()> {
                self.0.drain(Each::$variant(&mut |$($arg: $t),*| f($($arg),*)))
            }
        }
    };
}

view!(
    /// A list's or a set's elements, streaming.
    LoadSeq, Seq, (e: &[u8])
);
view!(
    /// A sorted set's (member, score) pairs, streaming; scores are never NaN.
    LoadZSet, ZSet, (m: &[u8], s: f64)
);
view!(
    /// A hash's (field, value) pairs, streaming; with [`for_each_ttl`](Self::for_each_ttl),
    /// also each field's expiry (Redis ≥ 7.4 and Valkey ≥ 9 hash field expiry).
    LoadHash, Hash, (f: &[u8], v: &[u8])
);

impl LoadHash<'_> {
    /// How many fields carry an expiry (0 for hashes without field expiry). A hash that
    /// has some must be read with [`for_each_ttl`](Self::for_each_ttl): `for_each` then
    /// fails rather than lose them.
    pub fn field_ttls(&self) -> u64 {
        self.0.field_ttls()
    }

    /// Streams every field with its value and its expiry (unix milliseconds; `None`:
    /// none), consuming the view.
    pub fn for_each_ttl(
        self,
        mut f: impl FnMut(&[u8], &[u8], Option<i64>) -> VisitResult,
    ) -> Result<()> {
        self.0.drain_ttl(&mut f)
    }
}

type EntryFn<'f> = dyn FnMut(StreamId, &[&[u8]]) -> VisitResult + 'f;

/// The reader's side of a stream view.
trait StreamDrain {
    fn read(&mut self, f: &mut EntryFn<'_>) -> Result<(StreamMeta, Vec<StreamGroup>)>;
}

/// A stream, streaming: its entries first (as the file holds them), then its metadata
/// and consumer groups.
pub struct LoadStream<'v>(&'v mut (dyn StreamDrain + 'v));

impl LoadStream<'_> {
    /// Streams each live entry to `f` (its ID and its elements: field, value, field,
    /// value, ...), in ascending ID order, consuming the view; then returns the stream's
    /// metadata and consumer groups (checked: pending entries ascend, consumers own only
    /// pending entries of their group). An error from `f` stops the load; an error in
    /// the file is returned (pass it on).
    pub fn for_each(
        self,
        mut f: impl FnMut(StreamId, &[&[u8]]) -> VisitResult,
    ) -> Result<(StreamMeta, Vec<StreamGroup>)> {
        self.0.read(&mut f)
    }
}

/// One key as the `inspect` tool sees it, after its value was read (read only through
/// `load_observed`, a tool's API).
#[derive(Debug)]
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub struct KeyInfo<'a> {
    /// Its database.
    pub db: u32,
    /// The key.
    pub key: &'a [u8],
    /// The RDB type byte, which names the encoding.
    pub type_code: u8,
    /// Its expiry, unix milliseconds.
    pub expire_ms: Option<i64>,
    /// Bytes the entry takes in the file (expiry, type, key and value).
    pub bytes: u64,
    /// Elements (1 for strings); 0 for skipped values.
    pub elements: u64,
    /// Not handed to the visitor (skipped on request, or empty).
    pub skipped: bool,
}

/// Loads a file into a new [`MemKeyspace`], streaming it (memory: the keyspace, plus
/// the largest single value).
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<(MemKeyspace, LoadReport)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut ks = MemKeyspace::new();
    let report = run(Box::new(f), path.into(), opts, &mut ks, None)?;
    Ok((ks, report))
}

#[cfg(any(test, feature = "internals"))]
/// Loads an RDB held in memory into a new [`MemKeyspace`] (the tests and tools).
pub fn load(data: &[u8], opts: &LoadOptions) -> Result<(MemKeyspace, LoadReport)> {
    let mut ks = MemKeyspace::new();
    let report = run(Box::new(data), PathBuf::new(), opts, &mut ks, None)?;
    Ok((ks, report))
}

/// Streams an RDB (plain, or in an LZ4 frame: detected from its first bytes) from
/// `input` into `visitor`. Memory is a 256 KiB read buffer plus the largest single
/// string or listpack, whatever the file's size; `input` is read in large pieces, so a
/// `File` or a socket needs no `BufReader`.
pub fn load_into(
    input: impl Read,
    opts: &LoadOptions,
    visitor: &mut dyn LoadVisitor,
) -> Result<LoadReport> {
    run(Box::new(input), PathBuf::new(), opts, visitor, None)
}

#[cfg(any(test, feature = "internals"))]
/// [`load_into`], also telling `observe` about every key after its value was read
/// (including skipped ones): the `inspect` tool.
pub fn load_observed(
    input: impl Read,
    opts: &LoadOptions,
    visitor: &mut dyn LoadVisitor,
    observe: &mut dyn FnMut(&KeyInfo<'_>),
) -> Result<LoadReport> {
    run(Box::new(input), PathBuf::new(), opts, visitor, Some(observe))
}

fn run<'r>(
    mut input: Box<dyn Read + 'r>,
    name: PathBuf,
    opts: &LoadOptions,
    visitor: &mut dyn LoadVisitor,
    observe: Option<&mut dyn FnMut(&KeyInfo<'_>)>,
) -> Result<LoadReport> {
    // Peek at the first four bytes for the LZ4 magic, then read them again.
    let mut head = Vec::with_capacity(4);
    (&mut input)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| match Error::from_read(e) {
            Error::Io { op, source, .. } => Error::Io {
                op,
                path: name.clone(),
                offset: Some(0),
                source,
            },
            other => other,
        })?;
    let framed = frame::is_lz4_frame(&head);
    let chained = std::io::Cursor::new(head).chain(input);
    let input: Box<dyn Read + 'r> = if framed {
        Box::new(frame::FrameReader::new(chained))
    } else {
        Box::new(chained)
    };
    let mut r = Reader {
        io: Io {
            src: Source::new(input, name, opts.max_value_bytes),
            blob: Vec::new(),
            val: Vec::new(),
            field: Vec::new(),
        },
        key: Vec::new(),
        opts,
        report: LoadReport {
            lz4_framed: framed,
            ..LoadReport::default()
        },
    };
    r.run(visitor, observe)?;
    r.report.rdb_bytes = r.io.src.offset();
    Ok(r.report)
}

/// The input and the scratch buffers values are decoded into.
struct Io<'r> {
    src: Source<'r>,
    /// The current listpack, ziplist, intset, zipmap or quicklist node.
    blob: Vec<u8>,
    /// A string decoded from LZF (or a value read beside a copied field).
    val: Vec<u8>,
    /// A field or member copied while its partner is read.
    field: Vec<u8>,
}

impl Io<'_> {
    /// Gives back scratch memory a large value took.
    fn trim(&mut self) {
        for v in [&mut self.blob, &mut self.val, &mut self.field] {
            if v.capacity() > 1 << 20 {
                *v = Vec::new();
            }
        }
    }
}

struct Reader<'r, 'o> {
    io: Io<'r>,
    key: Vec<u8>,
    opts: &'o LoadOptions,
    report: LoadReport,
}

/// How a collection's elements are laid out in the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A count, then each element (or pair) as strings: `left` to go.
    Plain,
    /// Everything in `blob`: a listpack (`lp`) or a ziplist, elements in groups of
    /// `stride` (1; 2 for pairs; 3 for a hash's field, value and TTL).
    Blob { lp: bool, stride: u8 },
    /// An intset in `blob`.
    Intset,
    /// A quicklist: `left` more nodes after the one in `blob`.
    Quicklist { v2: bool, plain_node: bool },
    /// Pairs already decoded into `owned` (zipmaps, hashes with field metadata).
    Owned,
}

struct Cursor<'a, 'r> {
    io: &'a mut Io<'r>,
    ty: u8,
    shape: Shape,
    left: u64,
    hint: u64,
    owned: crate::keyspace::FieldValues,
    /// The expiries of `owned`'s fields (hashes with field expiry), and how many have one.
    owned_ttl: Vec<Option<i64>>,
    field_ttls: u64,
    /// Where the value with field expiry starts (for the error that refuses to drop them).
    ttl_at: u64,
    /// Stream offset of the blob's data (for errors inside it).
    blob_at: u64,
    elements: u64,
    drained: bool,
    /// An error found while the visitor read the value (it may have swallowed it).
    failed: Option<String>,
}

/// Stops a parser's callback with the visitor's error, which is kept aside.
const STOPPED: &str = "\0stopped";

fn elem_bytes<'e>(e: &Elem<'e>, num: &'e mut [u8; 20]) -> &'e [u8] {
    match *e {
        Elem::Str(s) => s,
        Elem::Int(v) => format_i64(v, num),
    }
}

impl Drain for Cursor<'_, '_> {
    fn hint(&self) -> usize {
        self.hint.min(HINT_CAP) as usize
    }

    fn drain(&mut self, each: Each<'_>) -> Result<()> {
        self.guarded(|c, stopped| c.drain_inner(each, stopped))
    }

    fn field_ttls(&self) -> u64 {
        self.field_ttls
    }

    fn drain_ttl(&mut self, f: &mut HashTtlFn<'_>) -> Result<()> {
        if self.shape != Shape::Owned {
            return self.drain(Each::Hash(&mut |k, v| f(k, v, None)));
        }
        self.guarded(|c, stopped| {
            let ttls = std::mem::take(&mut c.owned_ttl);
            for ((k, v), t) in std::mem::take(&mut c.owned).into_iter().zip(ttls) {
                match f(&k, &v, t) {
                    Ok(()) => c.elements += 1,
                    Err(e) => {
                        *stopped = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })
    }
}

impl Cursor<'_, '_> {
    /// Runs a drain once, keeping the visitor's error aside and remembering a failure
    /// (the visitor may swallow it; the load still stops).
    fn guarded(&mut self, body: impl FnOnce(&mut Self, &mut Stopped) -> Result<()>) -> Result<()> {
        // The views' `for_each` consumes them, and the reader drains only an unread value.
        debug_assert!(!self.drained, "a value drained twice");
        self.drained = true;
        let mut stopped = None;
        let r = body(self, &mut stopped);
        settle(r, stopped, &mut self.failed)
    }
}

type Stopped = Option<Box<dyn std::error::Error + Send + Sync>>;

/// A view's read is over: the visitor's error (kept aside while parsing) or the file's
/// becomes the result, and is remembered in `failed` so that the load stops even if the
/// visitor swallows it.
fn settle<T>(r: Result<T>, stopped: Stopped, failed: &mut Option<String>) -> Result<T> {
    if let Some(e) = stopped {
        let e = Error::Rejected {
            offset: 0,
            key: String::new(),
            source: e,
        };
        *failed = Some(e.to_string());
        return Err(e);
    }
    if let Err(e) = &r {
        *failed = Some(e.to_string());
    }
    r
}

impl Cursor<'_, '_> {
    fn drain_inner(&mut self, mut each: Each<'_>, stopped: &mut Stopped) -> Result<()> {
        macro_rules! emit {
            ($e:expr) => {
                match $e {
                    Ok(()) => self.elements += 1,
                    Err(e) => {
                        *stopped = Some(e);
                        return Ok(());
                    }
                }
            };
        }
        match self.shape {
            Shape::Plain => {
                let io = &mut *self.io;
                while self.left > 0 {
                    self.left -= 1;
                    match &mut each {
                        Each::Seq(f) => {
                            let what = if self.ty == types::LIST {
                                "list element"
                            } else {
                                "set member"
                            };
                            let s = io.src.string(what, &mut io.val)?;
                            emit!(f(s));
                        }
                        Each::ZSet(f) => {
                            io.src.string_into("sorted set member", &mut io.field)?;
                            let s_at = io.src.offset();
                            let s = if self.ty == types::ZSET_2 {
                                f64::from_le_bytes(io.src.fixed("score")?)
                            } else {
                                ascii_score(&mut io.src)?
                            };
                            if s.is_nan() {
                                return io.src.corrupt(s_at, "sorted set score is NaN");
                            }
                            emit!(f(&io.field, s));
                        }
                        Each::Hash(f) => {
                            io.src.string_into("hash field", &mut io.field)?;
                            let v = io.src.string("hash value", &mut io.val)?;
                            emit!(f(&io.field, v));
                        }
                    }
                }
                Ok(())
            }
            Shape::Owned => {
                let Each::Hash(f) = &mut each else {
                    unreachable!("owned pairs are hashes")
                };
                if self.field_ttls > 0 {
                    return Err(Error::Unsupported {
                        offset: self.ttl_at,
                        what: format!(
                            "hash with {} field TTL(s) read without them (LoadHash::for_each_ttl keeps them)",
                            self.field_ttls
                        ),
                    });
                }
                for (k, v) in std::mem::take(&mut self.owned) {
                    emit!(f(&k, &v));
                }
                Ok(())
            }
            Shape::Intset => {
                let Each::Seq(f) = &mut each else {
                    unreachable!("an intset is a set")
                };
                let mut n = 0u64;
                let mut num = [0; 20];
                intset::parse(&self.io.blob, |x| {
                    if stopped.is_none() {
                        match f(format_i64(x, &mut num)) {
                            Ok(()) => n += 1,
                            Err(e) => *stopped = Some(e),
                        }
                    }
                })
                .map_err(|(o, m)| Error::corrupt(self.blob_at + o as u64, m))?;
                self.elements += n;
                Ok(())
            }
            Shape::Blob { lp, stride } => self.blob_elems(lp, stride, &mut each, stopped),
            Shape::Quicklist { v2, plain_node } => {
                let mut plain = plain_node;
                loop {
                    if plain {
                        let Each::Seq(f) = &mut each else {
                            unreachable!("a quicklist is a list")
                        };
                        emit!(f(&self.io.blob));
                    } else {
                        self.blob_elems(v2, 1, &mut each, stopped)?;
                        if stopped.is_some() {
                            return Ok(());
                        }
                    }
                    if self.left == 0 {
                        return Ok(());
                    }
                    self.left -= 1;
                    plain = self.next_node(v2)?;
                }
            }
        }
    }

    /// Reads the next quicklist node into `blob`; true when it is a plain node.
    fn next_node(&mut self, v2: bool) -> Result<bool> {
        let io = &mut *self.io;
        let mut plain = false;
        if v2 {
            let c_at = io.src.offset();
            match io.src.len("quicklist container")? {
                1 => plain = true,
                2 => {}
                c => return io.src.corrupt(c_at, format!("unknown quicklist container {c}")),
            }
        }
        let what = if plain {
            "quicklist plain node"
        } else if v2 {
            "quicklist listpack"
        } else {
            "quicklist ziplist"
        };
        self.blob_at = io.src.string_into(what, &mut io.blob)?;
        Ok(plain)
    }

    /// Emits the elements of the listpack or ziplist in `blob`, in groups of `stride`.
    fn blob_elems(
        &mut self,
        lp: bool,
        stride: u8,
        each: &mut Each<'_>,
        stopped: &mut Stopped,
    ) -> Result<()> {
        let blob = &self.io.blob;
        let mut group: [Elem<'_>; 3] = [Elem::Int(0); 3];
        let mut i = 0usize;
        let mut n = 0u64;
        let mut bad_score = None;
        let mut cb = |e| -> std::result::Result<(), (usize, String)> {
            group[i] = e;
            i += 1;
            if i < stride as usize {
                return Ok(());
            }
            i = 0;
            let (mut n0, mut n1) = ([0u8; 20], [0u8; 20]);
            let r = match each {
                Each::Seq(f) => f(elem_bytes(&group[0], &mut n0)),
                Each::Hash(f) => f(
                    elem_bytes(&group[0], &mut n0),
                    elem_bytes(&group[1], &mut n1),
                ),
                Each::ZSet(f) => {
                    let score = match group[1] {
                        Elem::Int(v) => Some(v as f64),
                        Elem::Str(s) => parse_score(s).filter(|s| !s.is_nan()),
                    };
                    let Some(score) = score else {
                        let mut t = [0u8; 20];
                        bad_score = Some(String::from_utf8_lossy(elem_bytes(&group[1], &mut t)).into_owned());
                        return Err((0, STOPPED.into()));
                    };
                    f(elem_bytes(&group[0], &mut n0), score)
                }
            };
            match r {
                Ok(()) => {
                    n += 1;
                    Ok(())
                }
                Err(e) => {
                    *stopped = Some(e);
                    Err((0, STOPPED.into()))
                }
            }
        };
        let r = if lp {
            listpack::parse(blob, &mut cb)
        } else {
            ziplist::parse_ziplist(blob, &mut cb)
        };
        let partial = i;
        self.elements += n;
        if let Some(s) = bad_score {
            return Err(Error::corrupt(self.blob_at, format!("bad sorted set score {s:?}")));
        }
        match r {
            Err((_, m)) if m == STOPPED => Ok(()),
            Err((o, m)) => Err(Error::corrupt(self.blob_at + o as u64, m)),
            Ok(_) if partial != 0 => Err(Error::Corrupt {
                offset: self.blob_at,
                what: match stride {
                    3 => "hash listpack with TTLs is not made of (field, value, TTL) triples",
                    _ => "odd number of elements in a field/value encoding",
                }
                .into(),
            }),
            Ok(_) => Ok(()),
        }
    }
}

fn ascii_score(src: &mut Source<'_>) -> Result<f64> {
    let at = src.offset();
    match src.u8("score length")? {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        n => {
            let t = src.take(n as usize, "score")?;
            match parse_score(t) {
                Some(s) => Ok(s),
                None => src.corrupt(at, "unparsable score text"),
            }
        }
    }
}

/// The element count a listpack or ziplist header declares (`None`: unknown, ≥ 65535).
fn declared(lp: bool, blob: &[u8]) -> Option<u64> {
    let at = if lp { 4 } else { 8 };
    let c = u16::from_le_bytes(blob.get(at..at + 2)?.try_into().ok()?);
    (c != u16::MAX).then_some(u64::from(c))
}

/// Checks that a blob whose header declares no element is valid (and so empty): the
/// intset (`lp` None), listpack or ziplist parsers compare what they find with the header.
fn validate_empty(lp: Option<bool>, blob: &[u8], at: u64) -> Result<()> {
    let r = match lp {
        None => intset::parse(blob, |_| {}).map(|_| ()),
        Some(true) => listpack::parse(blob, |_| Ok(())).map(|_| ()),
        Some(false) => ziplist::parse_ziplist(blob, |_| Ok(())).map(|_| ()),
    };
    r.map_err(|(o, m)| Error::corrupt(at + o as u64, m))?;
    Ok(())
}

/// Drains a cursor nobody read, with callbacks of its type that take nothing.
fn drain_unread(c: &mut Cursor<'_, '_>) -> Result<()> {
    match c.ty {
        types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
            c.drain(Each::ZSet(&mut |_, _| Ok(())))
        }
        types::HASH
        | types::HASH_ZIPLIST
        | types::HASH_LISTPACK
        | types::HASH_ZIPMAP
        | types::HASH_METADATA
        | types::HASH_METADATA_PRE_GA
        | types::HASH_LISTPACK_EX
        | types::HASH_LISTPACK_EX_PRE_GA => c.drain_ttl(&mut |_, _, _| Ok(())),
        _ => c.drain(Each::Seq(&mut |_| Ok(()))),
    }
}

impl Reader<'_, '_> {
    fn corrupt<T>(&self, at: u64, what: impl Into<String>) -> Result<T> {
        self.io.src.corrupt(at, what)
    }

    fn run(
        &mut self,
        visitor: &mut dyn LoadVisitor,
        mut observe: Option<&mut dyn FnMut(&KeyInfo<'_>)>,
    ) -> Result<()> {
        self.header()?;
        let mut db = DbInfo::default();
        let mut begun: Option<u32> = None;
        loop {
            let entry_at = self.io.src.offset();
            let op = self.io.src.u8("opcode")?;
            let mut expire = None;
            let ty = match op {
                opcodes::EOF => return self.trailer(entry_at),
                opcodes::SELECTDB => {
                    let at = self.io.src.offset();
                    let n = self.io.src.len("SELECTDB index")?;
                    if n > 1 << 16 {
                        return self.corrupt(at, format!("database index {n} out of range"));
                    }
                    db = DbInfo {
                        index: n as u32,
                        keys: 0,
                        expires: 0,
                    };
                    begun = None;
                    continue;
                }
                opcodes::RESIZEDB => {
                    db.keys = self.io.src.len("RESIZEDB size")?;
                    db.expires = self.io.src.len("RESIZEDB expires")?;
                    continue;
                }
                opcodes::AUX => {
                    let io = &mut self.io;
                    io.src.string_into("AUX key", &mut io.field)?;
                    let v = io.src.string("AUX value", &mut io.val)?;
                    self.report.aux.push((io.field.clone(), v.to_vec()));
                    visitor
                        .aux(&io.field, v)
                        .map_err(|e| rejected(entry_at, b"(AUX field)", e))?;
                    continue;
                }
                opcodes::FUNCTION2 => {
                    let io = &mut self.io;
                    let code = io.src.string("FUNCTION2 library", &mut io.val)?;
                    self.report.functions += 1;
                    visitor
                        .function(code)
                        .map_err(|e| rejected(entry_at, b"(function library)", e))?;
                    continue;
                }
                opcodes::MODULE_AUX => {
                    let type_id = self.io.src.len("MODULE_AUX module id")?;
                    let at = self.io.src.offset();
                    if self.io.src.len("MODULE_AUX when opcode")? != MODULE_UINT {
                        return self.corrupt(at, "MODULE_AUX's when is not an unsigned item");
                    }
                    let when = self.io.src.len("MODULE_AUX when")?;
                    if self.opts.skip_unsupported {
                        self.skip_module_value()?;
                        self.report.module_aux_skipped += 1;
                        continue;
                    }
                    let data = ModuleValue {
                        type_id,
                        items: self.module_items()?,
                    };
                    self.report.module_aux += 1;
                    visitor
                        .module_aux(&ModuleAux { when, data })
                        .map_err(|e| rejected(entry_at, b"(MODULE_AUX)", e))?;
                    continue;
                }
                opcodes::SLOT_INFO => {
                    for _ in 0..3 {
                        self.io.src.len("SLOT_INFO")?;
                    }
                    continue;
                }
                opcodes::FUNCTION_PRE_GA => {
                    return Err(Error::Unsupported {
                        offset: entry_at,
                        what: "pre-release FUNCTION opcode (Redis 7.0 RC files)".into(),
                    })
                }
                opcodes::EXPIRETIME_MS | opcodes::EXPIRETIME | opcodes::IDLE | opcodes::FREQ => {
                    // Per-key prefixes, in any order, then the type byte.
                    let mut op = op;
                    loop {
                        let src = &mut self.io.src;
                        match op {
                            opcodes::EXPIRETIME_MS => {
                                expire = Some(i64::from_le_bytes(src.fixed("expire time")?))
                            }
                            opcodes::EXPIRETIME => {
                                expire = Some(
                                    i64::from(i32::from_le_bytes(src.fixed("expire time")?))
                                        * 1000,
                                )
                            }
                            opcodes::IDLE => {
                                src.len("LRU idle")?;
                            }
                            opcodes::FREQ => {
                                src.u8("LFU frequency")?;
                            }
                            _ => break op,
                        }
                        op = src.u8("type")?;
                    }
                }
                t => t,
            };
            self.io.src.string_into("key", &mut self.key)?;
            if begun != Some(db.index) {
                visitor
                    .begin_db(db)
                    .map_err(|e| rejected(entry_at, b"(database)", e))?;
                begun = Some(db.index);
            }
            let seen = self.entry(visitor, db.index, ty, expire, entry_at)?;
            if let (Some(obs), Some((elements, handed))) = (observe.as_deref_mut(), seen) {
                obs(&KeyInfo {
                    db: db.index,
                    key: &self.key,
                    type_code: ty,
                    expire_ms: expire,
                    bytes: self.io.src.offset() - entry_at,
                    elements,
                    skipped: !handed,
                });
            }
            self.io.trim();
        }
    }

    /// Reads one key's value and hands it to the visitor. Returns (elements, handed over),
    /// or `None` for an empty collection (skipped: no server keeps one).
    fn entry(
        &mut self,
        visitor: &mut dyn LoadVisitor,
        db: u32,
        ty: u8,
        expire: Option<i64>,
        entry_at: u64,
    ) -> Result<Option<(u64, bool)>> {
        let at = self.io.src.offset();
        let key = &self.key[..];
        let io = &mut self.io;
        let mut blob_at = 0;
        // Strings: no cursor.
        if ty == types::STRING {
            let s = io.src.string("string value", &mut io.val)?;
            visitor
                .key(db, key, expire, LoadValue::Str(s))
                .map_err(|e| rejected(entry_at, key, e))?;
            self.report.keys += 1;
            return Ok(Some((1, true)));
        }
        let (shape, left, hint) = match ty {
            types::LIST | types::SET | types::ZSET | types::ZSET_2 | types::HASH => {
                let what = match ty {
                    types::LIST => "list length",
                    types::SET => "set size",
                    types::HASH => "hash size",
                    _ => "sorted set size",
                };
                let n = io.src.len(what)?;
                (Shape::Plain, n, n)
            }
            types::SET_INTSET => {
                blob_at = io.src.string_into("intset", &mut io.blob)?;
                let n = io
                    .blob
                    .get(4..8)
                    .map_or(0, |c| u32::from_le_bytes(c.try_into().expect("4 bytes")));
                (Shape::Intset, 0, u64::from(n))
            }
            types::LIST_ZIPLIST
            | types::SET_LISTPACK
            | types::HASH_ZIPLIST
            | types::HASH_LISTPACK
            | types::ZSET_ZIPLIST
            | types::ZSET_LISTPACK => {
                let lp = !matches!(
                    ty,
                    types::LIST_ZIPLIST | types::HASH_ZIPLIST | types::ZSET_ZIPLIST
                );
                let what = match ty {
                    types::LIST_ZIPLIST => "list ziplist",
                    types::SET_LISTPACK => "set listpack",
                    _ => "pairs",
                };
                blob_at = io.src.string_into(what, &mut io.blob)?;
                let stride = if matches!(ty, types::LIST_ZIPLIST | types::SET_LISTPACK) {
                    1
                } else {
                    2
                };
                let n = declared(lp, &io.blob);
                (Shape::Blob { lp, stride }, 0, n.map_or(u64::MAX, |n| n / u64::from(stride)))
            }
            types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
                let nodes = io.src.len("quicklist nodes")?;
                (Shape::Quicklist { v2: ty == types::LIST_QUICKLIST_2, plain_node: false }, nodes, 0)
            }
            types::HASH_ZIPMAP => (Shape::Owned, 0, 0),
            types::HASH_METADATA_PRE_GA
            | types::HASH_METADATA
            | types::HASH_LISTPACK_EX_PRE_GA
            | types::HASH_LISTPACK_EX => (Shape::Owned, 0, 0),
            types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
                let nodes = io.src.len("stream nodes")?;
                let mut c = StreamCursor {
                    io: &mut self.io,
                    ty,
                    nodes,
                    entries: 0,
                    drained: false,
                    failed: None,
                };
                let r = visitor.key(db, key, expire, LoadValue::Stream(LoadStream(&mut c)));
                visited(r, c.failed.take(), entry_at, key)?;
                if !c.drained {
                    c.read(&mut |_, _| Ok(()))?;
                }
                self.report.keys += 1;
                return Ok(Some((c.entries, true)));
            }
            types::MODULE_2 if self.opts.skip_unsupported => {
                self.io.src.len("module id")?;
                self.skip_module_value()?;
                self.report.values_skipped += 1;
                return Ok(Some((0, false)));
            }
            types::MODULE_2 => {
                let type_id = io.src.len("module id")?;
                let m = ModuleValue {
                    type_id,
                    items: self.module_items()?,
                };
                visitor
                    .key(db, &self.key, expire, LoadValue::Module(&m))
                    .map_err(|e| rejected(entry_at, &self.key, e))?;
                self.report.keys += 1;
                return Ok(Some((m.items.len() as u64, true)));
            }
            types::MODULE_PRE_GA => {
                return Err(Error::Unsupported {
                    offset: entry_at,
                    what: "pre-release module value (type 6) cannot be read or skipped".into(),
                })
            }
            t => return self.corrupt(entry_at, format!("unknown value type {t}")),
        };
        let valkey = self.report.magic == "VALKEY";
        let mut c = Cursor {
            io: &mut self.io,
            ty,
            shape,
            left,
            hint,
            owned: Vec::new(),
            owned_ttl: Vec::new(),
            field_ttls: 0,
            ttl_at: 0,
            blob_at,
            elements: 0,
            drained: false,
            failed: None,
        };
        // Empty collections are skipped (and counted) before the visitor sees them; the
        // encodings that do not say up front are looked into.
        let empty = match shape {
            Shape::Plain => left == 0,
            Shape::Intset => {
                hint == 0 && {
                    validate_empty(None, &c.io.blob, blob_at)?;
                    true
                }
            }
            Shape::Blob { lp, .. } => {
                declared(lp, &c.io.blob) == Some(0) && {
                    validate_empty(Some(lp), &c.io.blob, blob_at)?;
                    true
                }
            }
            Shape::Quicklist { v2, .. } => {
                // Skip empty nodes up to the first that holds something.
                let mut found = false;
                while c.left > 0 {
                    c.left -= 1;
                    let plain = c.next_node(v2)?;
                    if plain || declared(v2, &c.io.blob) != Some(0) {
                        c.shape = Shape::Quicklist {
                            v2,
                            plain_node: plain,
                        };
                        found = true;
                        break;
                    }
                    validate_empty(Some(v2), &c.io.blob, c.blob_at)?;
                }
                !found
            }
            Shape::Owned => {
                c.field_ttls = c.owned_pairs(ty, at, valkey)?;
                c.ttl_at = entry_at;
                c.hint = c.owned.len() as u64;
                c.owned.is_empty()
            }
        };
        if empty {
            self.report.empty_skipped += 1;
            return Ok(None);
        }
        let value = match ty {
            types::LIST | types::LIST_ZIPLIST | types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
                LoadValue::List(LoadSeq(&mut c))
            }
            types::SET | types::SET_INTSET | types::SET_LISTPACK => LoadValue::Set(LoadSeq(&mut c)),
            types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
                LoadValue::ZSet(LoadZSet(&mut c))
            }
            _ => LoadValue::Hash(LoadHash(&mut c)),
        };
        let r = visitor.key(db, key, expire, value);
        visited(r, c.failed.take(), entry_at, key)?;
        if !c.drained {
            drain_unread(&mut c)?;
        }
        self.report.keys += 1;
        Ok(Some((c.elements, true)))
    }

    fn header(&mut self) -> Result<()> {
        let src = &mut self.io.src;
        let head: [u8; 5] = match src.fixed("magic") {
            Ok(h) => h,
            Err(_) => return src.corrupt(0, "not an RDB file (no REDIS or VALKEY magic)"),
        };
        let (magic, digits): (&'static str, usize) = if &head == b"REDIS" {
            ("REDIS", 4)
        } else if &head == b"VALKE" && src.u8("magic").ok() == Some(b'Y') {
            ("VALKEY", 3)
        } else {
            return src.corrupt(0, "not an RDB file (no REDIS or VALKEY magic)");
        };
        let d = src.take(digits, "version")?;
        let version = std::str::from_utf8(d)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok());
        let at = magic.len() as u64;
        let Some(version) = version else {
            return src.corrupt(at, "RDB version is not a number");
        };
        let ok = match magic {
            "REDIS" => (1..=12).contains(&version),
            _ => version == 80,
        };
        if !ok {
            return src.corrupt(at, format!("cannot handle RDB format version {magic}{version}"));
        }
        self.report.magic = magic;
        self.report.version = version;
        Ok(())
    }

    fn trailer(&mut self, eof_at: u64) -> Result<()> {
        if self.report.magic == "REDIS" && self.report.version < 5 {
            return Ok(());
        }
        let got = self.io.src.crc();
        let stored = u64::from_le_bytes(self.io.src.fixed("CRC-64 trailer")?);
        self.report.crc = stored;
        if stored == 0 {
            return Ok(());
        }
        if got != stored {
            return Err(Error::ChecksumMismatch {
                what: "RDB CRC-64",
                offset: eof_at + 1,
                expected: stored,
                got,
            });
        }
        self.report.crc_checked = true;
        Ok(())
    }

    fn skip_string(&mut self, what: &str) -> Result<()> {
        let io = &mut self.io;
        io.src.skip_string(what, &mut io.val)
    }

    /// A module value's items, up to its EOF item (strings decoded).
    fn module_items(&mut self) -> Result<Vec<ModuleItem>> {
        let mut items = Vec::new();
        loop {
            let at = self.io.src.offset();
            let src = &mut self.io.src;
            items.push(match src.len("module opcode")? {
                MODULE_EOF => return Ok(items),
                MODULE_SINT => ModuleItem::Signed(src.len("module integer")? as i64),
                MODULE_UINT => ModuleItem::Unsigned(src.len("module integer")?),
                MODULE_FLOAT => ModuleItem::Float(u32::from_le_bytes(src.fixed("module float")?)),
                MODULE_DOUBLE => {
                    ModuleItem::Double(u64::from_le_bytes(src.fixed("module double")?))
                }
                MODULE_STRING => {
                    let io = &mut self.io;
                    ModuleItem::String(io.src.string("module string", &mut io.val)?.into())
                }
                x => return self.corrupt(at, format!("unknown module opcode {x}")),
            });
        }
    }

    fn skip_module_value(&mut self) -> Result<()> {
        loop {
            let at = self.io.src.offset();
            match self.io.src.len("module opcode")? {
                0 => return Ok(()),
                1 | 2 => {
                    self.io.src.len("module integer")?;
                }
                3 => self.io.src.skip(4, "module float")?,
                4 => self.io.src.skip(8, "module double")?,
                5 => self.skip_string("module string")?,
                x => return self.corrupt(at, format!("unknown module opcode {x}")),
            }
        }
    }
}

/// A stream being read: `nodes` node (key, listpack) pairs, then the metadata and groups.
struct StreamCursor<'a, 'r> {
    io: &'a mut Io<'r>,
    ty: u8,
    nodes: u64,
    /// Live entries read.
    entries: u64,
    drained: bool,
    /// An error found while the visitor read the value (it may have swallowed it).
    failed: Option<String>,
}

impl StreamDrain for StreamCursor<'_, '_> {
    fn read(&mut self, f: &mut EntryFn<'_>) -> Result<(StreamMeta, Vec<StreamGroup>)> {
        debug_assert!(!self.drained, "a stream read twice");
        self.drained = true;
        let mut stopped = None;
        let r = self.read_inner(f, &mut stopped);
        settle(r, stopped, &mut self.failed)
    }
}

impl StreamCursor<'_, '_> {
    fn read_inner(
        &mut self,
        f: &mut EntryFn<'_>,
        stopped: &mut Stopped,
    ) -> Result<(StreamMeta, Vec<StreamGroup>)> {
        let io = &mut *self.io;
        let (mut prev, mut first) = (None::<StreamId>, None::<StreamId>);
        let mut text = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        for _ in 0..self.nodes {
            let key_at = io.src.offset();
            let k = io.src.string("stream node key", &mut io.field)?;
            let k = <[u8; 16]>::try_from(k).map_err(|_| k.len());
            let k = match k {
                Ok(k) => k,
                Err(n) => {
                    return io.src.corrupt(
                        key_at,
                        format!("stream node key is {n} bytes, not a 16-byte entry ID"),
                    )
                }
            };
            let master = StreamId::from_be_bytes(k);
            let blob_at = io.src.string_into("stream listpack", &mut io.blob)?;
            let mut entries = 0u64;
            let r = parse_node(&io.blob, master, |id, elems| {
                if let Some(p) = prev.filter(|p| *p >= id) {
                    return Err((0, format!("stream entry {id} comes after entry {p}")));
                }
                prev = Some(id);
                first.get_or_insert(id);
                entries += 1;
                // Integers become their decimal text, back to back in `text` (`ends`: where
                // each ends); then the slices, in element order.
                text.clear();
                ends.clear();
                for e in elems {
                    if let Elem::Int(v) = *e {
                        let mut num = [0u8; 20];
                        text.extend_from_slice(format_i64(v, &mut num));
                        ends.push(text.len());
                    }
                }
                let mut ints = ends.iter().scan(0, |start, &end| {
                    let r = *start..end;
                    *start = end;
                    Some(r)
                });
                let args: Vec<&[u8]> = elems
                    .iter()
                    .map(|e| match *e {
                        Elem::Str(s) => s,
                        Elem::Int(_) => &text[ints.next().unwrap_or_default()],
                    })
                    .collect();
                f(id, &args).map_err(|e| {
                    *stopped = Some(e);
                    (0, STOPPED.to_string())
                })
            });
            self.entries += entries;
            match r {
                Err((_, m)) if m == STOPPED => return Err(Error::corrupt(blob_at, STOPPED)),
                Err((o, m)) => return Err(Error::corrupt(blob_at + o as u64, m)),
                Ok(_) => {}
            }
        }
        let src = &mut io.src;
        let at = src.offset();
        let length = src.len("stream length")?;
        if length != self.entries {
            return src.corrupt(
                at,
                format!("stream length says {length} entries, its nodes hold {}", self.entries),
            );
        }
        let id = |src: &mut Source<'_>, what: &str| -> Result<StreamId> {
            Ok(StreamId::new(src.len(what)?, src.len(what)?))
        };
        let last_id = id(src, "stream last ID")?;
        let meta = if self.ty >= types::STREAM_LISTPACKS_2 {
            StreamMeta {
                last_id,
                first_id: id(src, "stream first ID")?,
                max_deleted_id: id(src, "stream max deleted ID")?,
                entries_added: src.len("stream entries added")?,
            }
        } else {
            // What Redis fills in for a type-15 stream.
            StreamMeta {
                last_id,
                first_id: first.unwrap_or_default(),
                max_deleted_id: StreamId::default(),
                entries_added: length,
            }
        };
        if let Err(m) = check_tail(prev, &meta) {
            return src.corrupt(at, m);
        }
        let n = src.len("stream consumer groups")?;
        let mut groups = Vec::with_capacity(n.min(HINT_CAP) as usize);
        let mut names = std::collections::HashSet::new();
        for _ in 0..n {
            let group_at = src.offset();
            let name = src.string("consumer group name", &mut io.val)?.to_vec();
            let last_id = id(src, "group last ID")?;
            let entries_read = if self.ty >= types::STREAM_LISTPACKS_2 {
                Some(src.len("group entries read")?).filter(|&r| r != u64::MAX)
            } else {
                None
            };
            let np = src.len("group pending entries")?;
            let mut pending = Vec::with_capacity(np.min(HINT_CAP) as usize);
            for _ in 0..np {
                pending.push(PendingEntry {
                    id: StreamId::from_be_bytes(src.fixed("pending entry ID")?),
                    delivery_ms: i64::from_le_bytes(src.fixed("pending delivery time")?),
                    delivery_count: src.len("pending delivery count")?,
                });
            }
            // Redis writes them ascending; any order is the same list.
            pending.sort_unstable_by_key(|p| p.id);
            let nc = src.len("consumers")?;
            let mut consumers = Vec::with_capacity(nc.min(HINT_CAP) as usize);
            for _ in 0..nc {
                let name = src.string("consumer name", &mut io.val)?.to_vec();
                let seen_ms = i64::from_le_bytes(src.fixed("consumer seen time")?);
                let active_ms = if self.ty >= types::STREAM_LISTPACKS_3 {
                    i64::from_le_bytes(src.fixed("consumer active time")?)
                } else {
                    seen_ms // Redis's estimate for older files
                };
                let ni = src.len("consumer pending entries")?;
                let mut ids = Vec::with_capacity(ni.min(HINT_CAP) as usize);
                for _ in 0..ni {
                    let at = src.offset();
                    let id = StreamId::from_be_bytes(src.fixed("consumer pending ID")?);
                    if pending.binary_search_by_key(&id, |p: &PendingEntry| p.id).is_err() {
                        return src.corrupt(
                            at,
                            format!("consumer's pending ID {id} is not in its group's pending entries"),
                        );
                    }
                    ids.push(id);
                }
                consumers.push(StreamConsumer {
                    name,
                    seen_ms,
                    active_ms,
                    pending: ids,
                });
            }
            let g = StreamGroup {
                name,
                last_id,
                entries_read,
                pending,
                consumers,
            };
            // Repeated names and IDs (what is left to check) are named from the group.
            if let Err(m) = check_group(&g) {
                return src.corrupt(group_at, m);
            }
            if !names.insert(g.name.clone()) {
                return src.corrupt(
                    group_at,
                    format!("consumer group {:?} appears twice", String::from_utf8_lossy(&g.name)),
                );
            }
            groups.push(g);
        }
        Ok((meta, groups))
    }
}

impl Cursor<'_, '_> {
    /// Decodes a zipmap or a hash with field metadata into `owned`; returns how many
    /// fields carry a TTL.
    fn owned_pairs(&mut self, ty: u8, at: u64, valkey: bool) -> Result<u64> {
        let io = &mut *self.io;
        let mut with_ttl = 0u64;
        let mut v: crate::keyspace::FieldValues = Vec::new();
        let mut ttls: Vec<Option<i64>> = Vec::new();
        let boxed = |b: &[u8]| -> Result<Box<[u8]>> {
            let mut x = Vec::new();
            if x.try_reserve_exact(b.len()).is_err() {
                return Err(Error::corrupt(at, format!("out of memory for {} bytes", b.len())));
            }
            x.extend_from_slice(b);
            Ok(x.into_boxed_slice())
        };
        match ty {
            types::HASH_ZIPMAP => {
                let data_at = io.src.string_into("zipmap", &mut io.blob)?;
                let mut err = None;
                ziplist::parse_zipmap(&io.blob, |f, x| {
                    match (boxed(f), boxed(x)) {
                        (Ok(f), Ok(x)) => {
                            v.push((f, x));
                            ttls.push(None);
                        }
                        (Err(e), _) | (_, Err(e)) => err = Some(e),
                    }
                    Ok(())
                })
                .map_err(|(o, m)| Error::corrupt(data_at + o as u64, m))?;
                if let Some(e) = err {
                    return Err(e);
                }
            }
            types::HASH_2 if valkey => {
                // Valkey 9's HASH_2 (same number as Redis's pre-release 22): count, then
                // (field, value, expiry as i64 LE unix ms, -1 for none).
                let n = io.src.len("hash size")?;
                for _ in 0..n {
                    io.src.string_into("hash field", &mut io.field)?;
                    let x = boxed(io.src.string("hash value", &mut io.val)?)?;
                    let ttl_at = io.src.offset();
                    let ttl = i64::from_le_bytes(io.src.fixed("hash field expiry")?);
                    if ttl != -1 && !(1..=EXPIRE_TIME_MAX as i64).contains(&ttl) {
                        return io.src.corrupt(ttl_at, format!("hash field expiry {ttl} out of range"));
                    }
                    with_ttl += u64::from(ttl != -1);
                    ttls.push((ttl != -1).then_some(ttl));
                    v.push((boxed(&io.field)?, x));
                }
            }
            types::HASH_METADATA_PRE_GA | types::HASH_METADATA => {
                // Redis 7.4 hashes with field expiry: [minExpire u64 LE (GA only)], count,
                // then (TTL length, field, value); GA TTLs are minExpire-relative + 1.
                let min = if ty == types::HASH_METADATA {
                    u64::from_le_bytes(io.src.fixed::<8>("hash minExpire")?)
                } else {
                    1
                };
                let n = io.src.len("hash size")?;
                for _ in 0..n {
                    // GA: expireAt = ttl + minExpire - 1; PRE_GA: absolute; 0: no TTL.
                    let ttl_at = io.src.offset();
                    let ttl = io.src.len("hash field TTL")?;
                    let at = match ttl {
                        0 => None,
                        t => match t.checked_add(min).and_then(|x| x.checked_sub(1)) {
                            Some(x) if x <= EXPIRE_TIME_MAX => Some(x as i64),
                            _ => {
                                return io.src.corrupt(
                                    ttl_at,
                                    format!("hash field TTL {t} (minExpire {min}) out of range"),
                                )
                            }
                        },
                    };
                    with_ttl += u64::from(at.is_some());
                    ttls.push(at);
                    io.src.string_into("hash field", &mut io.field)?;
                    let x = io.src.string("hash value", &mut io.val)?;
                    let x = boxed(x)?;
                    v.push((boxed(&io.field)?, x));
                }
            }
            _ => {
                // [minExpire u64 LE (GA only)], a listpack of (field, value, expire ms or 0).
                if ty == types::HASH_LISTPACK_EX {
                    io.src.fixed::<8>("hash minExpire")?;
                }
                self.blob_at = io
                    .src
                    .string_into("hash listpack with TTLs", &mut io.blob)?;
                let mut flat: Vec<Box<[u8]>> = Vec::new();
                listpack::parse(&io.blob, |e| {
                    let mut n = [0; 20];
                    flat.push(elem_bytes(&e, &mut n).into());
                    Ok(())
                })
                .map_err(|(o, m)| Error::corrupt(self.blob_at + o as u64, format!("hash listpack with TTLs: {m}")))?;
                if !flat.len().is_multiple_of(3) {
                    return Err(Error::Corrupt {
                        offset: at,
                        what: "hash listpack with TTLs is not made of (field, value, TTL) triples"
                            .into(),
                    });
                }
                let mut it = flat.into_iter();
                while let (Some(f), Some(x), Some(t)) = (it.next(), it.next(), it.next()) {
                    match super::num::canonical_i64(&t) {
                        Some(0) => ttls.push(None),
                        Some(x) if (1..=EXPIRE_TIME_MAX as i64).contains(&x) => {
                            with_ttl += 1;
                            ttls.push(Some(x));
                        }
                        _ => {
                            return Err(Error::corrupt(
                                at,
                                format!("hash field TTL {:?} is not a time", String::from_utf8_lossy(&t)),
                            ))
                        }
                    }
                    v.push((f, x));
                }
            }
        }
        self.owned = v;
        self.owned_ttl = ttls;
        Ok(with_ttl)
    }
}

/// What a visitor's `key` call comes to: if the value it read failed (`failed`), the
/// load stops with that error whatever the visitor returned (it may have swallowed it);
/// else the visitor's own error, naming the key.
fn visited(r: VisitResult, failed: Option<String>, at: u64, key: &[u8]) -> Result<()> {
    if let Some(failed) = failed {
        return Err(match r {
            Err(e) => rejected(at, key, e),
            Ok(()) => Error::corrupt(at, failed),
        });
    }
    r.map_err(|e| rejected(at, key, e))
}

/// The visitor's error as the load's: a forksnap error it passed on is returned as
/// is; its own becomes `Rejected`, naming the key.
fn rejected(at: u64, key: &[u8], e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => match *e {
            Error::Rejected { source, .. } => Error::Rejected {
                offset: at,
                key: String::from_utf8_lossy(key).into_owned(),
                source,
            },
            e => e,
        },
        Err(source) => Error::Rejected {
            offset: at,
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        },
    }
}

#[cfg(any(test, feature = "internals"))]
/// Validates a file without keeping its values: counts keys per database and checks
/// that no set member, hash field or sorted-set member repeats within a key (by 128-bit
/// hashes, 16 bytes per element of the largest key) and that no key repeats in a
/// database (by a 64-bit hash per key, 8 bytes each; [`Validator::finish`] returns the
/// hashes seen twice, which [`repeated_key`] confirms byte for byte in a second pass, so
/// a hash collision is never reported). The `verify` tool.
#[derive(Default)]
pub struct Validator {
    /// Keys per database.
    pub per_db: std::collections::BTreeMap<u32, u64>,
    hashes: Vec<u128>,
    keys: Vec<u64>,
}

#[cfg(any(test, feature = "internals"))]
/// A key's hash for [`Validator`]: seeded by its database.
fn key_hash(db: u32, key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, u64::from(db))
}

#[cfg(any(test, feature = "internals"))]
impl Validator {
    fn check(&mut self, what: &str) -> VisitResult {
        self.hashes.sort_unstable();
        let dup = self.hashes.windows(2).any(|w| w[0] == w[1]);
        self.hashes.clear();
        if self.hashes.capacity() > 1 << 20 {
            self.hashes = Vec::new();
        }
        if dup {
            return Err(format!("duplicate {what}").into());
        }
        Ok(())
    }

    /// After the load: the key hashes seen more than once (empty: every key is distinct).
    pub fn finish(&mut self) -> Vec<u64> {
        self.keys.sort_unstable();
        let mut twice: Vec<u64> = self
            .keys
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        twice.dedup();
        self.keys = Vec::new();
        twice
    }
}

#[cfg(any(test, feature = "internals"))]
/// The second pass behind [`Validator::finish`]: reads the file again and returns the
/// first key (with its database) that really appears twice among those whose hash is in
/// `suspects`.
pub fn repeated_key(
    input: impl Read,
    opts: &LoadOptions,
    suspects: &[u64],
) -> Result<Option<(u32, Vec<u8>)>> {
    struct Confirm {
        suspects: std::collections::HashSet<u64>,
        seen: std::collections::HashSet<(u32, Vec<u8>)>,
        found: Option<(u32, Vec<u8>)>,
    }
    impl LoadVisitor for Confirm {
        fn key(&mut self, db: u32, key: &[u8], _: Option<i64>, _: LoadValue<'_>) -> VisitResult {
            if self.found.is_none()
                && self.suspects.contains(&key_hash(db, key))
                && !self.seen.insert((db, key.to_vec()))
            {
                self.found = Some((db, key.to_vec()));
            }
            Ok(())
        }
    }
    let mut c = Confirm {
        suspects: suspects.iter().copied().collect(),
        seen: Default::default(),
        found: None,
    };
    load_into(input, opts, &mut c)?;
    Ok(c.found)
}

#[cfg(any(test, feature = "internals"))]
impl LoadVisitor for Validator {
    fn key(&mut self, db: u32, key: &[u8], _: Option<i64>, value: LoadValue<'_>) -> VisitResult {
        *self.per_db.entry(db).or_default() += 1;
        let h = xxhash_rust::xxh3::xxh3_128;
        self.keys.push(key_hash(db, key));
        match value {
            LoadValue::Str(_) => Ok(()),
            LoadValue::List(l) => Ok(l.for_each(|_| Ok(()))?),
            LoadValue::Set(s) => {
                s.for_each(|m| {
                    self.hashes.push(h(m));
                    Ok(())
                })?;
                self.check("set member")
            }
            LoadValue::ZSet(z) => {
                z.for_each(|m, _| {
                    self.hashes.push(h(m));
                    Ok(())
                })?;
                self.check("sorted set member")
            }
            LoadValue::Hash(x) => {
                x.for_each_ttl(|f, _, _| {
                    self.hashes.push(h(f));
                    Ok(())
                })?;
                self.check("hash field")
            }
            LoadValue::Stream(x) => Ok(x.for_each(|_, _| Ok(())).map(|_| ())?),
            LoadValue::Module(_) => Ok(()),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::MemValue;
    use crate::rdb::listpack::LpWriter;
    use crate::rdb::Crc64;

    /// A file of version 12 with the given entries (type byte, key, value bytes).
    fn file(entries: &[(u8, &[u8], Vec<u8>)]) -> Vec<u8> {
        let mut f = b"REDIS0012\xfe\x00".to_vec();
        for (ty, key, val) in entries {
            f.push(*ty);
            f.push(key.len() as u8);
            f.extend_from_slice(key);
            f.extend_from_slice(val);
        }
        f.push(0xFF);
        let crc = Crc64::checksum(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    fn s(x: &[u8]) -> Vec<u8> {
        [&[x.len() as u8][..], x].concat()
    }

    fn metadata_hash(ttl: u8) -> Vec<u8> {
        // minExpire, 2 fields: ("a","1") without TTL, ("b","2") with `ttl`.
        let mut v = 1_900_000_000_000u64.to_le_bytes().to_vec();
        v.push(2);
        v.push(0);
        v.extend(s(b"a"));
        v.extend(s(b"1"));
        v.push(ttl);
        v.extend(s(b"b"));
        v.extend(s(b"2"));
        v
    }

    fn listpack_ex(ttl: i64) -> Vec<u8> {
        let mut lp = Vec::new();
        let mut w = LpWriter::begin(&mut lp);
        for (f, x, t) in [(&b"a"[..], &b"1"[..], 0), (b"b", b"2", ttl)] {
            w.push(&mut lp, f);
            w.push(&mut lp, x);
            w.push_int(&mut lp, t);
        }
        w.finish(&mut lp);
        let mut v = 1_900_000_000_000u64.to_le_bytes().to_vec();
        v.push(lp.len() as u8);
        v.extend(lp);
        v
    }

    #[test]
    fn hash_field_expiry_loads_when_no_field_has_a_ttl() {
        for (ty, val) in [
            (types::HASH_METADATA, metadata_hash(0)),
            (types::HASH_LISTPACK_EX, listpack_ex(0)),
        ] {
            let f = file(&[(ty, b"h", val), (types::STRING, b"after", s(b"x"))]);
            let (ks, _) = load(&f, &LoadOptions::default()).unwrap();
            let db = ks.db(0).unwrap();
            assert_eq!(
                db.get(b"h").unwrap().0,
                &MemValue::hash([("a", "1"), ("b", "2")]).unwrap(),
                "type {ty}"
            );
            assert!(db.get(b"after").is_some());
        }
    }

    #[test]
    fn hash_field_ttls_load_with_the_fields_and_are_never_dropped() {
        /// A visitor that reads hashes without their TTLs.
        struct Plain;
        impl LoadVisitor for Plain {
            fn key(&mut self, _: u32, _: &[u8], _: Option<i64>, v: LoadValue<'_>) -> VisitResult {
                match v {
                    LoadValue::Hash(h) => Ok(h.for_each(|_, _| Ok(()))?),
                    _ => Ok(()),
                }
            }
        }
        for (ty, val, at) in [
            (types::HASH_METADATA, metadata_hash(5), 1_900_000_000_004),
            (types::HASH_LISTPACK_EX, listpack_ex(1_900_000_000_500), 1_900_000_000_500),
        ] {
            let f = file(&[(ty, b"h", val), (types::STRING, b"after", s(b"x"))]);
            let (ks, r) = load(&f, &LoadOptions::default()).unwrap();
            assert_eq!(r.values_skipped, 0);
            let want = MemValue::hash_ttl([("a", "1", None), ("b", "2", Some(at))]).unwrap();
            assert_eq!(ks.db(0).unwrap().get(b"h").unwrap().0, &want, "type {ty}");
            assert!(ks.db(0).unwrap().get(b"after").is_some());
            match load_into(&f[..], &LoadOptions::default(), &mut Plain) {
                Err(Error::Unsupported { offset, what }) => {
                    assert_eq!(offset, 11, "type {ty}");
                    assert!(what.contains("1 field TTL(s) read without them"), "{what}");
                }
                other => panic!("type {ty}: read without its TTLs: {other:?}"),
            }
        }
    }

    #[test]
    fn validator_finds_repeated_keys_and_members() {
        let twice = file(&[
            (types::STRING, b"k", s(b"1")),
            (types::STRING, b"k", s(b"2")),
        ]);
        let mut v = Validator::default();
        load_into(&twice[..], &LoadOptions::default(), &mut v).unwrap();
        let suspects = v.finish();
        assert_eq!(suspects.len(), 1);
        let found = repeated_key(&twice[..], &LoadOptions::default(), &suspects).unwrap();
        assert_eq!(found, Some((0, b"k".to_vec())));
        // A suspect that is only a hash (another key's) confirms nothing.
        let once = file(&[(types::STRING, b"k", s(b"1"))]);
        assert_eq!(
            repeated_key(&once[..], &LoadOptions::default(), &suspects).unwrap(),
            None
        );
        assert!(load(&twice, &LoadOptions::default()).is_err());

        let members = [vec![2u8], s(b"a"), s(b"a")].concat();
        let dup = file(&[(types::SET, b"s", members)]);
        let e = load_into(&dup[..], &LoadOptions::default(), &mut Validator::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate set member") && e.contains("\"s\""), "{e}");
        let e = load(&dup, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
    }
}
