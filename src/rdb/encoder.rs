//! The RDB encoder: walks a [`Keyspace`] and appends RDB bytes to fixed-size chunks.
//!
//! It does no I/O. Bytes go into the current [`ChunkBuf`]; when it is full the encoder
//! updates the CRC-64 over it and hands it to a [`ChunkSink`], which must give back an
//! empty buffer of the same capacity (its own spare, or the same one once consumed). So
//! every chunk but the last is exactly one chunk size long.
//!
//! Per-key scratch (listpack and intset building, LZF output, sorting small sorted sets)
//! comes from a bumpalo arena that is reset at the first key boundary after each chunk
//! hand-off; the LZF hash table is allocated once per encoder and reused; numbers are
//! formatted on the stack. In steady state the encoder makes no global-allocator call per
//! key (see `tests/encoder_steady_state_allocs.rs`).
//!
//! **Invariants**
//! - No I/O and no locks: safe to drive from a freshly forked child.
//! - The CRC covers every byte from the magic through the EOF opcode, in order.
//! - Compact encodings are chosen only when the target version has them and Redis 7's
//!   default thresholds allow them, so a loaded key has the encoding Redis would give it.

use super::listpack::{self, LpWriter};
use super::num::{canonical_i64, format_i64, score_text, ScoreText};
use super::uniq::{Rewalk, Uniq};
use super::{intset, limits, lzf, opcodes, types, Crc64};
use super::module_ops::{MODULE_DOUBLE, MODULE_EOF, MODULE_FLOAT, MODULE_SINT, MODULE_STRING, MODULE_UINT};
use super::{MAX_WRITE_VERSION, MIN_WRITE_VERSION, VALKEY_VERSION};
use crate::aof::resp;
use crate::buf::ChunkBuf;
use crate::error::{Error, Result};
use super::limits::FIELD_EXPIRE_MAX as EXPIRE_TIME_MAX;
use super::stream::{self, NodePlan};
use crate::keyspace::{check_groups, check_tail, ModuleItem, ModuleValue, StreamId, StreamView};
use crate::keyspace::{DbInfo, Entry, HashView, Keyspace, SeqView, Value, ZSetView};
use bumpalo::collections::Vec as BVec;
use bumpalo::Bump;
use std::ops::ControlFlow;

/// What the encoder writes.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// RDB version, 9 ..= 12, or 80 for `VALKEY080`. 9 uses only the types every Redis ≥
    /// 5 and Valkey load; 10 adds listpack hashes/sorted sets, intsets and quicklist 2
    /// (Redis ≥ 7.0); 11 adds listpack sets (Redis ≥ 7.2, Valkey); 12 (Redis ≥ 7.4, not
    /// Valkey) adds hashes with field expiry; 80 (Valkey ≥ 9, not Redis) likewise in
    /// Valkey's layout.
    pub version: u8,
    /// Write hashes whose fields have TTLs without the TTLs at a version that cannot hold
    /// them (9 to 11), instead of failing.
    pub drop_field_ttls: bool,
    /// LZF-compress strings longer than 20 bytes when that saves at least 4 bytes.
    pub lzf: bool,
    /// `ctime` AUX field, unix seconds; `None` (the default): the clock when the encoding
    /// starts (for a forked snapshot, in the child, right after fork).
    pub ctime: Option<i64>,
    /// `used-mem` AUX field.
    pub used_mem: u64,
    /// `aof-base` AUX field: true for the base file of a multi-part AOF.
    pub aof_base: bool,
    /// Write RESP commands instead of RDB (an AOF base without RDB preamble, as Redis's
    /// `aof-use-rdb-preamble no`): per database `SELECT`, per key `SET`, `RPUSH`, `SADD`,
    /// `ZADD` or `HMSET` with at most 64 elements each, then `PEXPIREAT`.
    pub resp: bool,
    /// Encoding threads: above 1, a keyspace that offers [`Keyspace::partitioned`] is
    /// walked by that many threads at once (see `encode_with`); others by one.
    pub threads: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            version: 11,
            lzf: true,
            ctime: None,
            used_mem: 0,
            aof_base: false,
            resp: false,
            threads: 1,
            drop_field_ttls: false,
        }
    }
}

impl EncodeOptions {
    pub fn validate(&self) -> Result<()> {
        if !(MIN_WRITE_VERSION..=MAX_WRITE_VERSION).contains(&self.version)
            && self.version != VALKEY_VERSION
        {
            return Err(Error::InvalidOption(format!(
                "RDB version {} cannot be written (supported: {MIN_WRITE_VERSION} to {MAX_WRITE_VERSION}, and {VALKEY_VERSION} for VALKEY080)",
                self.version
            )));
        }
        Ok(())
    }
}

/// Receives full chunks from the encoder.
pub trait ChunkSink {
    /// Takes the full `chunk` (its bytes are final) and leaves `chunk` empty, ready to be
    /// filled again, with the same capacity.
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()>;
}

/// What an encode produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeSummary {
    /// `(db index, keys written)` per database.
    pub keys_per_db: Vec<(u32, u64)>,
    /// `(db index, keys skipped)` per database (unsupported values and empty collections).
    pub skipped_per_db: Vec<(u32, u64)>,
    /// Values the server marked [`Value::Unsupported`], skipped.
    pub skipped_unsupported: u64,
    /// Hashes written without their field TTLs (`EncodeOptions::drop_field_ttls`).
    pub field_ttls_dropped: u64,
    /// Empty collections, which RDB cannot hold and loaders reject; skipped.
    pub skipped_empty: u64,
    /// Bytes of RDB produced, CRC trailer included.
    pub bytes: u64,
    /// The CRC-64 written in the trailer.
    pub crc: u64,
}

impl EncodeSummary {
    /// Keys written, all databases.
    pub fn keys(&self) -> u64 {
        self.keys_per_db.iter().map(|(_, n)| n).sum()
    }
}

/// Output half of the encoder: current chunk, CRC, sink.
struct Out<S> {
    sink: S,
    buf: ChunkBuf,
    crc: Crc64,
    flushed: u64,
    crossed_chunk: bool,
    /// Bytes of `buf` before this index are already in `crc` (those of a fragment are
    /// combined, not digested again).
    crc_from: usize,
}

impl<S: ChunkSink> Out<S> {
    #[inline]
    fn put(&mut self, mut b: &[u8]) -> Result<()> {
        loop {
            let n = self.buf.push_some(b);
            if n == b.len() {
                return Ok(());
            }
            b = &b[n..];
            self.hand_off()?;
        }
    }

    #[inline]
    fn byte(&mut self, b: u8) -> Result<()> {
        self.put(&[b])
    }

    #[cold]
    fn hand_off(&mut self) -> Result<()> {
        self.crc.update(&self.buf.as_slice()[self.crc_from..]);
        self.pass_on()
    }

    /// Hands the full chunk to the sink (its bytes already digested).
    fn pass_on(&mut self) -> Result<()> {
        self.flushed += self.buf.len() as u64;
        self.sink.chunk_full(&mut self.buf)?;
        debug_assert!(self.buf.is_empty(), "ChunkSink must return an empty chunk");
        self.buf.clear();
        self.crc_from = 0;
        self.crossed_chunk = true;
        Ok(())
    }

    /// Appends bytes whose CRC-64 `crc` was computed by whoever encoded them: copied,
    /// and their CRC combined with the digest so far instead of computed again.
    fn put_digested(&mut self, parts: &[ChunkBuf], crc: u64) -> Result<()> {
        let mut len = 0;
        self.crc.update(&self.buf.as_slice()[self.crc_from..]);
        self.crc_from = self.buf.len();
        for part in parts {
            len += part.len() as u64;
            let mut b = part.as_slice();
            loop {
                let n = self.buf.push_some(b);
                b = &b[n..];
                if b.is_empty() {
                    break;
                }
                self.pass_on()?;
            }
        }
        self.crc_from = self.buf.len();
        self.crc.combine(crc, len);
        Ok(())
    }

    #[inline]
    fn len(&mut self, n: u64) -> Result<()> {
        let mut b = [0u8; 9];
        let used = if n < 1 << 6 {
            b[0] = n as u8;
            1
        } else if n < 1 << 14 {
            b[0] = 0x40 | (n >> 8) as u8;
            b[1] = n as u8;
            2
        } else if n <= u64::from(u32::MAX) {
            b[0] = 0x80;
            b[1..5].copy_from_slice(&(n as u32).to_be_bytes());
            5
        } else {
            b[0] = 0x81;
            b[1..9].copy_from_slice(&n.to_be_bytes());
            9
        };
        self.put(&b[..used])
    }

    /// A string the server keeps as an integer: integer-encoded if it fits in 32 bits,
    /// else its decimal text.
    fn int_value(&mut self, v: i64) -> Result<()> {
        if self.int_string(v)? {
            return Ok(());
        }
        let mut b = [0u8; 20];
        let t = format_i64(v, &mut b);
        self.len(t.len() as u64)?;
        self.put(t)
    }

    /// An integer-encoded string (0xC0/0xC1/0xC2) if `v` fits in 32 bits.
    #[inline]
    fn int_string(&mut self, v: i64) -> Result<bool> {
        if let Ok(x) = i8::try_from(v) {
            self.put(&[0xC0, x as u8])?;
        } else if let Ok(x) = i16::try_from(v) {
            let b = x.to_le_bytes();
            self.put(&[0xC1, b[0], b[1]])?;
        } else if let Ok(x) = i32::try_from(v) {
            let b = x.to_le_bytes();
            self.put(&[0xC2, b[0], b[1], b[2], b[3]])?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

/// LZF state: the reusable hash table, an output buffer reused for values up to
/// [`LZF_SCRATCH`] (zeroed once, when it grows, instead of a fresh zeroed arena slice per
/// value: −1.8% of callgrind's cycle estimate, docs/PERFORMANCE.md), and the on/off
/// switch.
struct Lzf {
    table: Box<[u32; lzf::HASH_SIZE]>,
    scratch: Vec<u8>,
    enabled: bool,
}

/// The largest value compressed into [`Lzf`]'s reused buffer; larger ones use the arena.
const LZF_SCRATCH: usize = 1 << 20;

impl Lzf {
    /// Writes `s` as an RDB string: integer-encoded if exact, else LZF if enabled and
    /// worth it, else raw. LZF output goes to the arena.
    #[inline]
    fn string<S: ChunkSink>(&mut self, arena: &Bump, out: &mut Out<S>, s: &[u8]) -> Result<()> {
        if s.len() <= 11 {
            if let Some(v) = canonical_i64(s) {
                if out.int_string(v)? {
                    return Ok(());
                }
            }
        }
        self.blob(arena, out, s)
    }

    /// Writes `s` without trying integer encoding (listpack and intset blobs).
    #[inline]
    fn blob<S: ChunkSink>(&mut self, arena: &Bump, out: &mut Out<S>, s: &[u8]) -> Result<()> {
        if self.enabled && s.len() > 20 {
            let dst = if s.len() <= LZF_SCRATCH {
                if self.scratch.len() < s.len() {
                    self.scratch.resize(s.len(), 0);
                }
                &mut self.scratch[..s.len() - 4]
            } else {
                arena.alloc_slice_fill_copy(s.len() - 4, 0u8)
            };
            if let Some(n) = lzf::compress(s, dst, &mut self.table) {
                out.byte(0xC3)?;
                out.len(n as u64)?;
                out.len(s.len() as u64)?;
                return out.put(&dst[..n]);
            }
        }
        out.len(s.len() as u64)?;
        out.put(s)
    }
}

/// Expiry, type byte and key of an entry.
fn entry_header<S: ChunkSink>(
    out: &mut Out<S>,
    arena: &Bump,
    lzf: &mut Lzf,
    e: &Entry<'_>,
    ty: u8,
) -> Result<()> {
    if let Some(ms) = e.expire_ms {
        out.byte(opcodes::EXPIRETIME_MS)?;
        out.put(&ms.to_le_bytes())?;
    }
    out.byte(ty)?;
    lzf.string(arena, out, e.key)
}

/// The RDB encoder. See the module documentation.
pub struct Encoder<S: ChunkSink> {
    out: Out<S>,
    /// Per-key scratch; reset at the first key boundary after a chunk hand-off.
    arena: Bump,
    lzf: Lzf,
    /// Reused from collection to collection: are the members distinct?
    uniq: Uniq,
    version: u8,
    drop_field_ttls: bool,
    summary: EncodeSummary,
    db_keys: u64,
    db_skipped: u64,
    in_db: Option<u32>,
    /// RESP commands instead of RDB ([`EncodeOptions::resp`]), and their scratch.
    resp: Option<RespScratch>,
}

/// Whole keys of one database encoded by one of `parallel`'s threads, for the encoder
/// that writes the file to append.
pub(crate) struct Fragment {
    pub chunks: Vec<ChunkBuf>,
    /// The CRC-64 of the chunks' bytes.
    pub crc: u64,
    pub keys: u64,
    pub skipped_empty: u64,
    pub skipped_unsupported: u64,
    pub field_ttls_dropped: u64,
}

/// A sink that keeps a fragment's full chunks until it is cut (`parallel`).
pub(crate) trait FragmentParts: ChunkSink {
    /// The chunks handed to it since the last cut.
    fn take_parts(&mut self) -> Vec<ChunkBuf>;
}

/// What happened to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    SkippedEmpty,
    SkippedUnsupported,
}

impl<S: ChunkSink> Encoder<S> {
    /// Starts an RDB: writes the magic and AUX fields into `chunk`.
    pub fn new(sink: S, chunk: ChunkBuf, opts: &EncodeOptions) -> Result<Self> {
        let mut e = Self::bare(sink, chunk, opts)?;
        if opts.resp {
            return Ok(e);
        }
        e.file_header(opts)?;
        Ok(e)
    }

    /// An encoder that has written nothing: for a fragment of a database's entries
    /// (`parallel`), whose bytes another encoder appends.
    pub(crate) fn bare(sink: S, chunk: ChunkBuf, opts: &EncodeOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Encoder {
            out: Out {
                sink,
                buf: chunk,
                crc: Crc64::new(),
                flushed: 0,
                crossed_chunk: false,
                crc_from: 0,
            },
            arena: Bump::with_capacity(64 * 1024),
            lzf: Lzf {
                table: Box::new([0u32; lzf::HASH_SIZE]),
                scratch: Vec::new(),
                enabled: opts.lzf,
            },
            uniq: Uniq::default(),
            version: opts.version,
            drop_field_ttls: opts.drop_field_ttls,
            summary: EncodeSummary::default(),
            db_keys: 0,
            db_skipped: 0,
            in_db: None,
            resp: opts.resp.then(RespScratch::default),
        })
    }

    /// The magic and the AUX fields.
    fn file_header(&mut self, opts: &EncodeOptions) -> Result<()> {
        let e = self;
        let magic = match opts.version {
            VALKEY_VERSION => format!("VALKEY{:03}", opts.version),
            v => format!("REDIS{v:04}"),
        };
        e.out.put(magic.as_bytes())?;
        let mut aux = |k: &str, v: &[u8]| -> Result<()> {
            e.out.byte(opcodes::AUX)?;
            e.lzf.string(&e.arena, &mut e.out, k.as_bytes())?;
            e.lzf.string(&e.arena, &mut e.out, v)
        };
        let (name, ver) = match opts.version {
            9 => ("redis-ver", "6.2.0"),
            10 => ("redis-ver", "7.0.0"),
            11 => ("redis-ver", "7.2.0"),
            12 => ("redis-ver", "7.4.0"),
            _ => ("valkey-ver", "9.0.0"),
        };
        aux(name, ver.as_bytes())?;
        aux("redis-bits", b"64")?;
        let ctime = opts.ctime.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        aux("ctime", ctime.to_string().as_bytes())?;
        aux("used-mem", opts.used_mem.to_string().as_bytes())?;
        aux("aof-base", if opts.aof_base { b"1" } else { b"0" })?;
        aux("forksnap-ver", env!("CARGO_PKG_VERSION").as_bytes())
    }

    /// The keyspace's function libraries, before the first database: FUNCTION2 records
    /// (RDB 10 and later), or `FUNCTION LOAD` commands in a RESP base (as Redis's
    /// rewrite writes them). RDB 9 has no place for them: an error, never a silent drop.
    pub fn functions(&mut self, ks: &dyn Keyspace) -> Result<()> {
        let mut err = None;
        ks.functions(&mut |code| {
            if err.is_some() {
                return;
            }
            let r = if let Some(r) = &mut self.resp {
                resp_command(&mut self.out, &mut r.head, &[b"FUNCTION", b"LOAD", code], &[], 0)
            } else if self.version < 10 {
                Err(Error::InvalidOption(format!(
                    "the keyspace has function libraries, which RDB {} cannot hold (RDB 10 or later: Redis 7.0+, Valkey)",
                    self.version
                )))
            } else {
                self.out
                    .byte(opcodes::FUNCTION2)
                    .and_then(|()| self.lzf.string(&self.arena, &mut self.out, code))
            };
            if let Err(e) = r {
                err = Some(e);
            }
        });
        err.map_or(Ok(()), Err)
    }

    /// Starts database `info.index` (SELECTDB + RESIZEDB).
    pub fn begin_db(&mut self, info: &DbInfo) -> Result<()> {
        self.end_db();
        if let Some(r) = &mut self.resp {
            self.in_db = Some(info.index);
            let mut num = [0u8; 20];
            let db = super::num::format_u64(u64::from(info.index), &mut num);
            return resp_command(&mut self.out, &mut r.head, &[b"SELECT", db], &[], 0);
        }
        self.out.byte(opcodes::SELECTDB)?;
        self.out.len(u64::from(info.index))?;
        self.out.byte(opcodes::RESIZEDB)?;
        self.out.len(info.keys)?;
        self.out.len(info.expires)?;
        self.in_db = Some(info.index);
        Ok(())
    }

    fn end_db(&mut self) {
        if let Some(db) = self.in_db.take() {
            self.summary.keys_per_db.push((db, self.db_keys));
            self.summary.skipped_per_db.push((db, self.db_skipped));
            self.db_keys = 0;
            self.db_skipped = 0;
        }
    }

    /// The sink chunks are handed to.
    #[cfg(any(test, feature = "internals"))]
    pub fn sink(&self) -> &S {
        &self.out.sink
    }

    /// Bytes produced so far (handed off plus the current chunk).
    pub fn bytes(&self) -> u64 {
        self.out.flushed + self.out.buf.len() as u64
    }

    /// Ends a fragment (`parallel`): the bytes encoded since the last cut, whole keys
    /// only, with their CRC-64 and counts. The encoder goes on with an empty chunk.
    pub(crate) fn cut(&mut self) -> Result<Fragment>
    where
        S: FragmentParts,
    {
        let out = &mut self.out;
        // The partial last chunk goes to the sink too: it is the fragment's end.
        if !out.buf.is_empty() {
            out.hand_off()?;
        }
        out.flushed = 0;
        self.arena.reset();
        out.crossed_chunk = false;
        let f = Fragment {
            chunks: out.sink.take_parts(),
            crc: std::mem::take(&mut out.crc).finalize(),
            keys: self.db_keys,
            skipped_empty: self.summary.skipped_empty,
            skipped_unsupported: self.summary.skipped_unsupported,
            field_ttls_dropped: std::mem::take(&mut self.summary.field_ttls_dropped),
        };
        self.db_keys = 0;
        self.db_skipped = 0;
        self.summary.skipped_empty = 0;
        self.summary.skipped_unsupported = 0;
        Ok(f)
    }

    /// Appends a fragment another encoder cut, into the current database; its CRC is
    /// combined, not computed again. Hands back its chunks for reuse.
    pub(crate) fn append(&mut self, mut f: Fragment) -> Result<Vec<ChunkBuf>> {
        self.out.put_digested(&f.chunks, f.crc)?;
        self.db_keys += f.keys;
        self.db_skipped += f.skipped_empty + f.skipped_unsupported;
        self.summary.skipped_empty += f.skipped_empty;
        self.summary.skipped_unsupported += f.skipped_unsupported;
        self.summary.field_ttls_dropped += f.field_ttls_dropped;
        if self.out.crossed_chunk {
            self.arena.reset();
            self.out.crossed_chunk = false;
        }
        Ok(std::mem::take(&mut f.chunks))
    }

    /// Encodes one entry.
    pub fn write_entry(&mut self, e: &Entry<'_>) -> Result<Outcome> {
        let outcome = match &mut self.resp {
            Some(r) => resp_entry(&mut self.out, r, e)?,
            None => self.entry(e)?,
        };
        match outcome {
            Outcome::Written => self.db_keys += 1,
            Outcome::SkippedEmpty => self.summary.skipped_empty += 1,
            Outcome::SkippedUnsupported => self.summary.skipped_unsupported += 1,
        }
        if outcome != Outcome::Written {
            self.db_skipped += 1;
        }
        if self.out.crossed_chunk {
            // A chunk was handed off: the key's scratch is dead, recycle the arena.
            self.arena.reset();
            self.out.crossed_chunk = false;
        }
        Ok(outcome)
    }

    fn header(&mut self, e: &Entry<'_>, ty: u8) -> Result<()> {
        entry_header(&mut self.out, &self.arena, &mut self.lzf, e, ty)
    }

    fn entry(&mut self, e: &Entry<'_>) -> Result<Outcome> {
        let v10 = self.version >= 10;
        match e.value {
            Value::Str(s) => {
                self.header(e, types::STRING)?;
                self.lzf.string(&self.arena, &mut self.out, s)?;
            }
            Value::Int(i) => {
                self.header(e, types::STRING)?;
                self.out.int_value(i)?;
            }
            Value::Unsupported(_) => return Ok(Outcome::SkippedUnsupported),
            Value::List(l) if l.is_empty() => return Ok(Outcome::SkippedEmpty),
            Value::Set(l) if l.is_empty() => return Ok(Outcome::SkippedEmpty),
            Value::ZSet(z) if z.is_empty() => return Ok(Outcome::SkippedEmpty),
            Value::Hash(h) if h.is_empty() => return Ok(Outcome::SkippedEmpty),
            Value::List(l) if v10 => {
                self.header(e, types::LIST_QUICKLIST_2)?;
                self.quicklist(e, l)?;
            }
            Value::List(l) => {
                self.header(e, types::LIST)?;
                self.plain_seq(e, Coll::List, l)?;
            }
            Value::Set(s) => self.set(e, s)?,
            Value::ZSet(z) => self.zset(e, z)?,
            Value::Hash(h) => self.hash(e, h)?,
            Value::Stream(x) => self.stream(e, x)?,
            Value::Module(m) => {
                self.header(e, types::MODULE_2)?;
                self.module_value(m)?;
            }
        }
        Ok(Outcome::Written)
    }

    /// A module value's type id and items, then the EOF item (strings as Redis writes
    /// them: integer-encoded or LZF where that applies).
    fn module_value(&mut self, m: &ModuleValue) -> Result<()> {
        self.out.len(m.type_id)?;
        self.module_items(m)
    }

    /// A module value's items and the EOF item.
    fn module_items(&mut self, m: &ModuleValue) -> Result<()> {
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        for item in &m.items {
            match item {
                ModuleItem::Signed(v) => {
                    out.len(MODULE_SINT)?;
                    out.len(*v as u64)?;
                }
                ModuleItem::Unsigned(v) => {
                    out.len(MODULE_UINT)?;
                    out.len(*v)?;
                }
                ModuleItem::Float(bits) => {
                    out.len(MODULE_FLOAT)?;
                    out.put(&bits.to_le_bytes())?;
                }
                ModuleItem::Double(bits) => {
                    out.len(MODULE_DOUBLE)?;
                    out.put(&bits.to_le_bytes())?;
                }
                ModuleItem::String(s) => {
                    out.len(MODULE_STRING)?;
                    lzf.string(arena, out, s)?;
                }
            }
        }
        out.len(MODULE_EOF)
    }

    /// The keyspace's MODULE_AUX records whose `when` is `before` (1: before the first
    /// database) or not (after the last). A RESP base cannot hold them: an error.
    pub fn module_aux(&mut self, ks: &dyn Keyspace, before: bool) -> Result<()> {
        let mut err = None;
        ks.module_aux(&mut |a| {
            if err.is_some() || (a.when == 1) != before {
                return;
            }
            if self.resp.is_some() {
                err = Some(Error::InvalidOption(format!(
                    "module {:?} has data outside the keyspace (MODULE_AUX), which commands cannot hold: write an RDB",
                    a.data.type_name()
                )));
                return;
            }
            let r = self
                .out
                .byte(opcodes::MODULE_AUX)
                .and_then(|()| self.out.len(a.data.type_id))
                .and_then(|()| self.out.len(MODULE_UINT))
                .and_then(|()| self.out.len(a.when))
                .and_then(|()| self.module_items(&a.data));
            if let Err(e) = r {
                err = Some(e);
            }
        });
        err.map_or(Ok(()), Err)
    }

    /// A stream: its entries in nodes split as Redis splits them (`rdb::stream`), then
    /// its metadata and groups, in the layout of type 15 (RDB 9), 19 (10) or 21 (11).
    /// Two passes over the entries: one checks them and counts the nodes (written
    /// first), one builds each node's listpack in the arena and writes it.
    fn stream(&mut self, e: &Entry<'_>, x: &dyn StreamView) -> Result<()> {
        let ty = match self.version {
            9 => types::STREAM_LISTPACKS,
            10 => types::STREAM_LISTPACKS_2,
            _ => types::STREAM_LISTPACKS_3,
        };
        let meta = x.meta();
        let groups = x.groups();
        let mut plan = NodePlan::new(&self.arena);
        let (mut nodes, mut n) = (0u64, 0usize);
        let (mut prev, mut bad) = (None::<StreamId>, None::<String>);
        x.for_each(&mut |id, elems| {
            n += 1;
            if bad.is_some() {
                return;
            }
            if let Some(p) = prev.filter(|p| *p >= id) {
                bad = Some(format!("its stream view yielded entry {id} after entry {p}"));
            } else if elems.len() % 2 != 0 {
                bad = Some(format!(
                    "its stream entry {id} has an odd number of elements ({})",
                    elems.len()
                ));
            } else {
                prev = Some(id);
                nodes += u64::from(plan.add(id, elems).new_node);
            }
        });
        if let Some(b) = bad {
            return Err(bad_value(e, b));
        }
        if n != x.len() {
            return Err(bad_value(
                e,
                format!("its stream view says len() = {} but for_each yielded {n}", x.len()),
            ));
        }
        check_tail(prev, &meta)
            .and_then(|()| check_groups(groups))
            .map_err(|m| bad_value(e, format!("its stream is inconsistent: {m}")))?;
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        entry_header(out, arena, lzf, e, ty)?;
        out.len(nodes)?;
        let mut plan = NodePlan::new(arena);
        let mut lp = BVec::with_capacity_in(stream::NODE_MAX_BYTES + 256, arena);
        let mut w: Option<LpWriter> = None;
        let mut written = 0u64;
        let mut res = Ok(());
        let mut flush = |lp: &mut BVec<'_, u8>,
                         w: LpWriter,
                         master: StreamId,
                         count: usize,
                         out: &mut Out<S>|
         -> Result<()> {
            w.finish(lp);
            // The live count, written as 1 when the node began: at most
            // NODE_MAX_ENTRIES (100), a one-byte listpack integer.
            debug_assert!(count <= stream::NODE_MAX_ENTRIES && lp[listpack::HEADER] == 1);
            lp[listpack::HEADER] = count as u8;
            out.len(16)?;
            out.put(&master.to_be_bytes())?;
            lzf.blob(arena, out, lp)?;
            lp.clear();
            Ok(())
        };
        x.for_each(&mut |id, elems| {
            if res.is_err() {
                return;
            }
            let (master, count) = (plan.master, plan.count);
            let placed = plan.add(id, elems);
            let half = elems.len() / 2;
            if placed.new_node {
                written += 1;
                if let Some(done) = w.take() {
                    res = flush(&mut lp, done, master, count, out);
                    if res.is_err() {
                        return;
                    }
                }
                let mut m = LpWriter::begin(&mut lp);
                m.push_int(&mut lp, 1);
                m.push_int(&mut lp, 0);
                m.push_int(&mut lp, half as i64);
                let mut i = 0;
                elems.for_each(&mut |f| {
                    if i % 2 == 0 {
                        m.push(&mut lp, f);
                    }
                    i += 1;
                });
                m.push_int(&mut lp, 0);
                w = Some(m);
            }
            let Some(w) = w.as_mut() else { return };
            let same = placed.same_fields;
            let (ms, seq) = stream::diffs(id, plan.master);
            w.push_int(&mut lp, if same { stream::FLAG_SAMEFIELDS } else { 0 });
            w.push_int(&mut lp, ms);
            w.push_int(&mut lp, seq);
            if !same {
                w.push_int(&mut lp, half as i64);
            }
            let mut i = 0;
            elems.for_each(&mut |v| {
                if !same || i % 2 == 1 {
                    w.push(&mut lp, v);
                }
                i += 1;
            });
            w.push_int(&mut lp, if same { half + 3 } else { 2 * half + 4 } as i64);
        });
        res?;
        if let Some(done) = w.take() {
            flush(&mut lp, done, plan.master, plan.count, out)?;
        }
        if written != nodes {
            return Err(bad_value(
                e,
                "its stream view yielded different entries on a second for_each".into(),
            ));
        }
        out.len(n as u64)?;
        out.len(meta.last_id.ms)?;
        out.len(meta.last_id.seq)?;
        if ty >= types::STREAM_LISTPACKS_2 {
            for v in [
                meta.first_id.ms,
                meta.first_id.seq,
                meta.max_deleted_id.ms,
                meta.max_deleted_id.seq,
                meta.entries_added,
            ] {
                out.len(v)?;
            }
        }
        out.len(groups.len() as u64)?;
        for g in groups {
            lzf.string(arena, out, &g.name)?;
            out.len(g.last_id.ms)?;
            out.len(g.last_id.seq)?;
            if ty >= types::STREAM_LISTPACKS_2 {
                // Redis's -1 ("not known") is the 64-bit length of all ones.
                out.len(g.entries_read.unwrap_or(u64::MAX))?;
            }
            out.len(g.pending.len() as u64)?;
            for p in &g.pending {
                out.put(&p.id.to_be_bytes())?;
                out.put(&p.delivery_ms.to_le_bytes())?;
                out.len(p.delivery_count)?;
            }
            out.len(g.consumers.len() as u64)?;
            for c in &g.consumers {
                lzf.string(arena, out, &c.name)?;
                out.put(&c.seen_ms.to_le_bytes())?;
                if ty >= types::STREAM_LISTPACKS_3 {
                    out.put(&c.active_ms.to_le_bytes())?;
                }
                out.len(c.pending.len() as u64)?;
                for id in &c.pending {
                    out.put(&id.to_be_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// length + each element as a string; a set's members checked distinct.
    fn plain_seq(&mut self, e: &Entry<'_>, coll: Coll, l: &dyn SeqView) -> Result<()> {
        let n = l.len();
        self.out.len(n as u64)?;
        let mut res = Ok(());
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        let set = coll == Coll::Set;
        let mut t = Tally::new(coll, n, &mut self.uniq);
        l.for_each(&mut |m| {
            if set {
                t.add(m);
            } else {
                t.count();
            }
            if res.is_ok() {
                res = lzf.string(arena, out, m);
            }
        });
        res?;
        t.finish(e, n, &|f| l.for_each(f))
    }

    fn quicklist(&mut self, e: &Entry<'_>, l: &dyn SeqView) -> Result<()> {
        // Pass 1: count nodes with the same split rule pass 2 uses.
        let mut nodes = 0u64;
        let mut split = NodeSplit::default();
        let mut t = Tally::new(Coll::List, l.len(), &mut self.uniq);
        l.for_each(&mut |m| {
            t.count();
            nodes += u64::from(split.starts_node(listpack::entry_size(m)))
        });
        t.finish(e, l.len(), &|f| l.for_each(f))?;
        self.out.len(nodes)?;
        // Pass 2: build each node's listpack in the arena and write it as soon as the next
        // element would not fit.
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        let mut lp = BVec::with_capacity_in(limits::LIST_NODE_BYTES + 64, arena);
        let mut w: Option<LpWriter> = None;
        let mut split = NodeSplit::default();
        let mut res = Ok(());
        let mut written_nodes = 0u64;
        let mut flush = |lp: &mut BVec<'_, u8>, w: LpWriter, out: &mut Out<S>| -> Result<()> {
            w.finish(lp);
            out.byte(2)?; // QUICKLIST_NODE_CONTAINER_PACKED
            lzf.blob(arena, out, lp)?;
            lp.clear();
            Ok(())
        };
        l.for_each(&mut |m| {
            if res.is_err() {
                return;
            }
            if split.starts_node(listpack::entry_size(m)) {
                written_nodes += 1;
                if let Some(done) = w.take() {
                    res = flush(&mut lp, done, out);
                }
                w = Some(LpWriter::begin(&mut lp));
            }
            if let Some(w) = w.as_mut() {
                w.push(&mut lp, m);
            }
        });
        res?;
        if let Some(done) = w.take() {
            flush(&mut lp, done, out)?;
        }
        if written_nodes != nodes {
            // The view yielded different elements the second time: the node count
            // already written is wrong.
            return Err(bad_value(
                e,
                "its list view yielded different elements on a second for_each".into(),
            ));
        }
        Ok(())
    }

    fn set(&mut self, e: &Entry<'_>, s: &dyn SeqView) -> Result<()> {
        let n = s.len();
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        if self.version >= 10 && n <= limits::SET_MAX_INTSET_ENTRIES {
            let mut ints = BVec::with_capacity_in(n, arena);
            let mut all_int = true;
            // Counted here; an intset's members are checked distinct by its sort below.
            let mut t = Tally::counting(Coll::Set, &mut self.uniq);
            s.for_each(&mut |m| {
                t.count();
                match canonical_i64(m) {
                    Some(v) if all_int => ints.push(v),
                    _ => all_int = false,
                }
            });
            t.finish(e, n, &|f| s.for_each(f))?;
            if all_int {
                ints.sort_unstable();
                // Canonical decimals: equal integers are equal members.
                if let Some(w) = ints.windows(2).find(|w| w[0] == w[1]) {
                    return Err(Coll::Set.duplicate(e, w[0].to_string().as_bytes()));
                }
                let mut blob = BVec::with_capacity_in(8 + 8 * n, arena);
                intset::write(&ints, &mut blob);
                entry_header(out, arena, lzf, e, types::SET_INTSET)?;
                return lzf.blob(arena, out, &blob);
            }
        }
        if self.version >= 11 && n <= limits::SET_MAX_LISTPACK_ENTRIES {
            let mut small = true;
            s.for_each(&mut |m| small &= m.len() <= limits::SET_MAX_LISTPACK_VALUE);
            if small {
                entry_header(out, arena, lzf, e, types::SET_LISTPACK)?;
                let mut lp = BVec::with_capacity_in(16 + n * 16, arena);
                let mut w = LpWriter::begin(&mut lp);
                let mut t = Tally::new(Coll::Set, n, &mut self.uniq);
                s.for_each(&mut |m| {
                    t.add(m);
                    w.push(&mut lp, m)
                });
                w.finish(&mut lp);
                t.finish(e, n, &|f| s.for_each(f))?;
                return lzf.blob(arena, out, &lp);
            }
        }
        entry_header(out, arena, lzf, e, types::SET)?;
        self.plain_seq(e, Coll::Set, s)
    }

    fn zset(&mut self, e: &Entry<'_>, z: &dyn ZSetView) -> Result<()> {
        let n = z.len();
        if self.version >= 10 && n <= limits::ZSET_MAX_LISTPACK_ENTRIES {
            let mut small = true;
            z.for_each(&mut |m, _| small &= m.len() <= limits::ZSET_MAX_LISTPACK_VALUE);
            if small {
                let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
                // A listpack zset is ordered by (score, member); copy the (short) members
                // into the arena to sort them.
                let mut items = BVec::with_capacity_in(n, arena);
                let mut t = Tally::new(Coll::ZSet, n, &mut self.uniq);
                z.for_each(&mut |m, sc| {
                    t.add(m);
                    items.push((&*arena.alloc_slice_copy(m), sc))
                });
                t.finish(e, n, &|f| z.for_each(&mut |m, _| f(m)))?;
                items.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
                let mut lp = BVec::with_capacity_in(16 + n * 24, arena);
                let mut w = LpWriter::begin(&mut lp);
                let mut tb = [0u8; 32];
                for (m, sc) in items.iter() {
                    w.push(&mut lp, m);
                    match score_text(*sc, &mut tb) {
                        ScoreText::Int(v) => w.push_int(&mut lp, v),
                        ScoreText::Text(t) => w.push(&mut lp, t),
                    }
                }
                w.finish(&mut lp);
                entry_header(out, arena, lzf, e, types::ZSET_LISTPACK)?;
                return lzf.blob(arena, out, &lp);
            }
        }
        self.header(e, types::ZSET_2)?;
        self.out.len(n as u64)?;
        let mut res = Ok(());
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        let mut t = Tally::new(Coll::ZSet, n, &mut self.uniq);
        z.for_each(&mut |m, sc| {
            t.add(m);
            if res.is_ok() {
                res = lzf
                    .string(arena, out, m)
                    .and_then(|()| out.put(&sc.to_le_bytes()));
            }
        });
        res?;
        t.finish(e, n, &|f| z.for_each(&mut |m, _| f(m)))
    }

    fn hash(&mut self, e: &Entry<'_>, h: &dyn HashView) -> Result<()> {
        let n = h.len();
        if h.has_field_ttls() {
            match self.version {
                12 | VALKEY_VERSION => return self.hash_ttl(e, h),
                _ if !self.drop_field_ttls => {
                    return Err(bad_value(
                        e,
                        format!(
                            "its fields have TTLs, which RDB {} cannot hold (write 12 for Redis ≥ 7.4, 80 for Valkey ≥ 9, or ask to drop them)",
                            self.version
                        ),
                    ))
                }
                _ => self.summary.field_ttls_dropped += 1,
            }
        }
        if self.version >= 10 && n <= limits::HASH_MAX_LISTPACK_ENTRIES {
            let mut small = true;
            h.for_each(&mut |f, v| {
                small &= f.len() <= limits::HASH_MAX_LISTPACK_VALUE
                    && v.len() <= limits::HASH_MAX_LISTPACK_VALUE
            });
            if small {
                let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
                entry_header(out, arena, lzf, e, types::HASH_LISTPACK)?;
                let mut lp = BVec::with_capacity_in(16 + n * 32, arena);
                let mut w = LpWriter::begin(&mut lp);
                let mut t = Tally::new(Coll::Hash, n, &mut self.uniq);
                h.for_each(&mut |f, v| {
                    t.add(f);
                    w.push(&mut lp, f);
                    w.push(&mut lp, v);
                });
                w.finish(&mut lp);
                t.finish(e, n, &|g| h.for_each(&mut |f, _| g(f)))?;
                return lzf.blob(arena, out, &lp);
            }
        }
        self.header(e, types::HASH)?;
        self.out.len(n as u64)?;
        let mut res = Ok(());
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        let mut t = Tally::new(Coll::Hash, n, &mut self.uniq);
        h.for_each(&mut |f, v| {
            t.add(f);
            if res.is_ok() {
                res = lzf
                    .string(arena, out, f)
                    .and_then(|()| lzf.string(arena, out, v));
            }
        });
        res?;
        t.finish(e, n, &|g| h.for_each(&mut |f, _| g(f)))
    }

    /// A hash with field TTLs: at RDB 12 as Redis 7.4 writes it (a listpack of (field,
    /// value, expiry or 0) triples ordered by expiry, fields without one last, behind the
    /// smallest expiry: type 25; a larger hash as (expiry − smallest + 1 or 0, field,
    /// value): type 24); in `VALKEY080` as Valkey 9's HASH_2 (field, value, expiry as
    /// i64 LE, −1 for none).
    fn hash_ttl(&mut self, e: &Entry<'_>, h: &dyn HashView) -> Result<()> {
        let n = h.len();
        let (out, arena, lzf) = (&mut self.out, &self.arena, &mut self.lzf);
        let mut t = Tally::new(Coll::Hash, n, &mut self.uniq);
        let (mut min, mut max) = (i64::MAX, 1);
        let mut small = n <= limits::HASH_MAX_LISTPACK_ENTRIES;
        h.for_each_ttl(&mut |f, v, ttl| {
            t.add(f);
            if let Some(x) = ttl {
                min = min.min(x);
                max = max.max(x);
            }
            small &= f.len() <= limits::HASH_MAX_LISTPACK_VALUE
                && v.len() <= limits::HASH_MAX_LISTPACK_VALUE;
        });
        t.finish(e, n, &|g| h.for_each(&mut |f, _| g(f)))?;
        // Redis's range for a field's expiry (0 would read back as "none").
        for x in [min, max] {
            if !(1..=EXPIRE_TIME_MAX as i64).contains(&x) {
                return Err(bad_value(
                    e,
                    format!("a field's expiry {x} is outside 1 ..= 2^48 - 1 (unix ms)"),
                ));
            }
        }
        let mut res = Ok(());
        if self.version == VALKEY_VERSION {
            entry_header(out, arena, lzf, e, types::HASH_2)?;
            out.len(n as u64)?;
            h.for_each_ttl(&mut |f, v, ttl| {
                if res.is_ok() {
                    res = lzf
                        .string(arena, out, f)
                        .and_then(|()| lzf.string(arena, out, v))
                        .and_then(|()| out.put(&ttl.unwrap_or(-1).to_le_bytes()));
                }
            });
            return res;
        }
        if small {
            // Ordered by expiry, fields without one last (Redis's listpackEx order).
            let mut items = BVec::with_capacity_in(n, arena);
            h.for_each_ttl(&mut |f, v, ttl| {
                items.push((ttl.map_or(u64::MAX, |x| x as u64), &*arena.alloc_slice_copy(f), &*arena.alloc_slice_copy(v)))
            });
            items.sort_by_key(|i| i.0);
            let mut lp = BVec::with_capacity_in(16 + n * 40, arena);
            let mut w = LpWriter::begin(&mut lp);
            for (ttl, f, v) in items.iter() {
                w.push(&mut lp, f);
                w.push(&mut lp, v);
                w.push_int(&mut lp, if *ttl == u64::MAX { 0 } else { *ttl as i64 });
            }
            w.finish(&mut lp);
            entry_header(out, arena, lzf, e, types::HASH_LISTPACK_EX)?;
            out.put(&min.to_le_bytes())?;
            return lzf.blob(arena, out, &lp);
        }
        entry_header(out, arena, lzf, e, types::HASH_METADATA)?;
        out.put(&min.to_le_bytes())?;
        out.len(n as u64)?;
        h.for_each_ttl(&mut |f, v, ttl| {
            if res.is_ok() {
                res = out
                    .len(ttl.map_or(0, |x| (x - min) as u64 + 1))
                    .and_then(|()| lzf.string(arena, out, f))
                    .and_then(|()| lzf.string(arena, out, v));
            }
        });
        res
    }

    /// Writes EOF and the CRC. Returns the sink, the last (partial) chunk and the summary.
    pub fn finish(mut self) -> Result<(S, ChunkBuf, EncodeSummary)> {
        self.end_db();
        if self.resp.is_some() {
            self.summary.bytes = self.out.flushed + self.out.buf.len() as u64;
            let Out { sink, buf, .. } = self.out;
            return Ok((sink, buf, self.summary));
        }
        self.out.byte(opcodes::EOF)?;
        // The CRC covers everything up to and including EOF; the trailer may straddle a
        // chunk boundary, so fold the current chunk in before appending it.
        let mut crc = self.out.crc;
        crc.update(&self.out.buf.as_slice()[self.out.crc_from..]);
        let sum = crc.finalize();
        // Hand-offs from here on must not fold the trailer into the CRC again; the digest
        // in `out` is not used after this point.
        self.out.put(&sum.to_le_bytes())?;
        self.summary.bytes = self.out.flushed + self.out.buf.len() as u64;
        self.summary.crc = sum;
        let Out { sink, buf, .. } = self.out;
        Ok((sink, buf, self.summary))
    }
}

/// Elements (or pairs) per command in a RESP base, as Redis's
/// `AOF_REWRITE_ITEMS_PER_CMD`.
const RESP_ITEMS_PER_CMD: usize = 64;

/// A RESP base's scratch, reused from key to key: the current command's head and the
/// arguments after its key.
#[derive(Default)]
struct RespScratch {
    head: Vec<u8>,
    args: Vec<u8>,
    score: String,
}

/// Writes a command: `head` arguments, then `n` more already encoded in `tail` (the
/// AOF's RESP encoding, `aof::resp`).
fn resp_command<S: ChunkSink>(
    out: &mut Out<S>,
    scratch: &mut Vec<u8>,
    head: &[&[u8]],
    tail: &[u8],
    n: usize,
) -> Result<()> {
    scratch.clear();
    resp::header(scratch, head.len() + n);
    for a in head {
        resp::arg(scratch, a);
    }
    out.put(scratch)?;
    out.put(tail)
}

/// One key as RESP commands (a RESP base).
fn resp_entry<S: ChunkSink>(out: &mut Out<S>, r: &mut RespScratch, e: &Entry<'_>) -> Result<Outcome> {
    let key = e.key;
    let mut res = Ok(());
    // Collects elements; writes a command each `RESP_ITEMS_PER_CMD` (pairs count once).
    #[rustfmt::skip]
    let mut batch = |out: &mut Out<S>, head: &mut Vec<u8>, args: &mut Vec<u8>, n: &mut usize,
                     per: usize, name: &[u8], last: bool| {
        if *n > 0 && (last || *n == RESP_ITEMS_PER_CMD * per) {
            if res.is_ok() {
                res = resp_command(out, head, &[name, key], args, *n);
            }
            args.clear();
            *n = 0;
        }
    };
    let mut n = 0usize;
    let mut yielded = 0usize;
    let (len, coll) = match e.value {
        Value::Str(s) => {
            resp_command(out, &mut r.head, &[b"SET", key, s], &[], 0)?;
            (0, None)
        }
        Value::Int(i) => {
            let mut num = [0u8; 20];
            let i = format_i64(i, &mut num);
            resp_command(out, &mut r.head, &[b"SET", key, i], &[], 0)?;
            (0, None)
        }
        Value::Unsupported(_) => return Ok(Outcome::SkippedUnsupported),
        Value::Module(m) => {
            return Err(bad_value(
                e,
                format!(
                    "it is a {:?} module value, which commands cannot rebuild without the module: write an RDB",
                    m.type_name()
                ),
            ))
        }
        Value::Stream(x) => {
            resp_stream(out, &mut r.head, e, x)?;
            (0, None)
        }
        Value::List(l) | Value::Set(l) if l.is_empty() => return Ok(Outcome::SkippedEmpty),
        Value::ZSet(z) if z.is_empty() => return Ok(Outcome::SkippedEmpty),
        Value::Hash(h) if h.is_empty() => return Ok(Outcome::SkippedEmpty),
        Value::List(l) | Value::Set(l) => {
            let (name, coll): (&[u8], _) = match e.value {
                Value::List(_) => (b"RPUSH", Coll::List),
                _ => (b"SADD", Coll::Set),
            };
            l.for_each(&mut |m| {
                yielded += 1;
                resp::arg(&mut r.args, m);
                n += 1;
                batch(out, &mut r.head, &mut r.args, &mut n, 1, name, false);
            });
            batch(out, &mut r.head, &mut r.args, &mut n, 1, name, true);
            (l.len(), Some(coll))
        }
        Value::ZSet(z) => {
            z.for_each(&mut |m, s| {
                yielded += 1;
                crate::keyspace::format_score(s, &mut r.score);
                resp::arg(&mut r.args, r.score.as_bytes());
                resp::arg(&mut r.args, m);
                n += 2;
                batch(out, &mut r.head, &mut r.args, &mut n, 2, b"ZADD", false);
            });
            batch(out, &mut r.head, &mut r.args, &mut n, 2, b"ZADD", true);
            (z.len(), Some(Coll::ZSet))
        }
        Value::Hash(h) => {
            h.for_each(&mut |f, v| {
                yielded += 1;
                resp::arg(&mut r.args, f);
                resp::arg(&mut r.args, v);
                n += 2;
                batch(out, &mut r.head, &mut r.args, &mut n, 2, b"HMSET", false);
            });
            batch(out, &mut r.head, &mut r.args, &mut n, 2, b"HMSET", true);
            if h.has_field_ttls() {
                // As Redis 7.4's rewrite: the fields' expiries after the fields.
                let mut num = [0u8; 20];
                h.for_each_ttl(&mut |f, _, ttl| {
                    if let (Some(at), true) = (ttl, res.is_ok()) {
                        let at = format_i64(at, &mut num);
                        res = resp_command(
                            out,
                            &mut r.head,
                            &[b"HPEXPIREAT", key, at, b"FIELDS", b"1", f],
                            &[],
                            0,
                        );
                    }
                });
            }
            (h.len(), Some(Coll::Hash))
        }
    };
    res?;
    if let Some(coll) = coll {
        if yielded != len {
            return Err(bad_value(
                e,
                format!("its {} view says len() = {len} but for_each yielded {yielded}", coll.name()),
            ));
        }
    }
    if let Some(ms) = e.expire_ms {
        let mut num = [0u8; 20];
        let ms = format_i64(ms, &mut num);
        resp_command(out, &mut r.head, &[b"PEXPIREAT", key, ms], &[], 0)?;
    }
    Ok(Outcome::Written)
}

/// A stream as the commands that rebuild it, as Redis's AOF rewrite writes them: an
/// `XADD` per entry (an empty stream: `XADD key MAXLEN 0 0-1 x y`), `XSETID` with the
/// metadata, then per group `XGROUP CREATE … ENTRIESREAD`, an `XCLAIM … FORCE JUSTID` per
/// pending entry of each consumer and `XGROUP CREATECONSUMER` for consumers with none.
/// (A pending entry no consumer owns cannot be expressed in commands, as in Redis.)
fn resp_stream<S: ChunkSink>(
    out: &mut Out<S>,
    buf: &mut Vec<u8>,
    e: &Entry<'_>,
    x: &dyn StreamView,
) -> Result<()> {
    let key = e.key;
    let mut res = Ok(());
    let mut n = 0usize;
    let mut prev = None::<StreamId>;
    let mut bad = None::<String>;
    x.for_each(&mut |id, elems| {
        n += 1;
        if res.is_err() || bad.is_some() {
            return;
        }
        if elems.is_empty() || elems.len() % 2 != 0 || prev.is_some_and(|p| p >= id) {
            bad = Some(format!(
                "its stream entry {id} cannot be an XADD ({} elements, after {:?})",
                elems.len(),
                prev.map(|p| p.to_string())
            ));
            return;
        }
        prev = Some(id);
        let id = id.to_string();
        buf.clear();
        resp::header(buf, 3 + elems.len());
        for a in [&b"XADD"[..], key, id.as_bytes()] {
            resp::arg(buf, a);
        }
        elems.for_each(&mut |a| resp::arg(buf, a));
        res = out.put(buf);
    });
    res?;
    if let Some(b) = bad {
        return Err(bad_value(e, b));
    }
    if n != x.len() {
        return Err(bad_value(
            e,
            format!("its stream view says len() = {} but for_each yielded {n}", x.len()),
        ));
    }
    let meta = x.meta();
    check_tail(prev, &meta)
        .and_then(|()| check_groups(x.groups()))
        .map_err(|m| bad_value(e, format!("its stream is inconsistent: {m}")))?;
    let mut cmd = |argv: &[&[u8]]| -> Result<()> {
        buf.clear();
        resp::encode(buf, argv);
        out.put(buf)
    };
    if n == 0 {
        cmd(&[b"XADD", key, b"MAXLEN", b"0", b"0-1", b"x", b"y"])?;
    }
    let (last, added, deleted) = (
        meta.last_id.to_string(),
        meta.entries_added.to_string(),
        meta.max_deleted_id.to_string(),
    );
    cmd(&[
        b"XSETID",
        key,
        last.as_bytes(),
        b"ENTRIESADDED",
        added.as_bytes(),
        b"MAXDELETEDID",
        deleted.as_bytes(),
    ])?;
    for g in x.groups() {
        let last = g.last_id.to_string();
        let read = g.entries_read.map_or("-1".to_string(), |r| r.to_string());
        cmd(&[
            b"XGROUP",
            b"CREATE",
            key,
            &g.name,
            last.as_bytes(),
            b"ENTRIESREAD",
            read.as_bytes(),
        ])?;
        for c in &g.consumers {
            if c.pending.is_empty() {
                cmd(&[b"XGROUP", b"CREATECONSUMER", key, &g.name, &c.name])?;
            }
            for id in &c.pending {
                let Ok(i) = g.pending.binary_search_by(|p| p.id.cmp(id)) else {
                    continue; // check_groups proved it is there
                };
                let p = g.pending[i];
                let (id, time, count) = (
                    id.to_string(),
                    p.delivery_ms.to_string(),
                    p.delivery_count.to_string(),
                );
                cmd(&[
                    b"XCLAIM",
                    key,
                    &g.name,
                    &c.name,
                    b"0",
                    id.as_bytes(),
                    b"TIME",
                    time.as_bytes(),
                    b"RETRYCOUNT",
                    count.as_bytes(),
                    b"JUSTID",
                    b"FORCE",
                ])?;
            }
        }
    }
    Ok(())
}

/// The quicklist node split rule: a node takes the next element while it stays within
/// 8 KiB (a node always takes at least one element).
#[derive(Default)]
struct NodeSplit {
    bytes: usize,
    count: usize,
}

impl NodeSplit {
    /// Accounts for an element of `size` bytes; true if it starts a new node.
    #[inline]
    fn starts_node(&mut self, size: usize) -> bool {
        let fresh = self.count == 0
            || self.bytes + size > limits::LIST_NODE_BYTES
            || self.count >= u16::MAX as usize - 1;
        if fresh {
            self.bytes = listpack::HEADER + 1;
            self.count = 0;
        }
        self.bytes += size;
        self.count += 1;
        fresh
    }
}

/// The kinds of collection a view can be; sets, hashes and sorted sets hold distinct
/// members.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coll {
    List,
    Set,
    ZSet,
    Hash,
}

impl Coll {
    fn name(self) -> &'static str {
        match self {
            Coll::List => "list",
            Coll::Set => "set",
            Coll::ZSet => "sorted set",
            Coll::Hash => "hash",
        }
    }

    /// The error for member `m` appearing twice.
    fn duplicate(self, e: &Entry<'_>, m: &[u8]) -> Error {
        let member = match self {
            Coll::Hash => "hash field",
            Coll::ZSet => "sorted-set member",
            _ => "set member",
        };
        bad_value(
            e,
            format!(
                "{member} {:?} appears twice (the server would refuse the file)",
                String::from_utf8_lossy(m)
            ),
        )
    }
}

fn bad_value(e: &Entry<'_>, what: String) -> Error {
    Error::BadValue {
        key: String::from_utf8_lossy(e.key).into_owned(),
        what,
    }
}

/// What one pass over a view yielded: how many elements and, for a set, hash or sorted
/// set, whether they are distinct. Checked after the pass, since `len()` is already in
/// the file or chose the encoding: a disagreement is an error naming the key, never a
/// file the servers refuse.
struct Tally<'u> {
    coll: Coll,
    yielded: usize,
    /// Check distinct members (sets, hashes, sorted sets; not an intset, whose sort does).
    distinct: bool,
    uniq: &'u mut Uniq,
}

impl<'u> Tally<'u> {
    fn new(coll: Coll, n: usize, uniq: &'u mut Uniq) -> Self {
        let distinct = coll != Coll::List;
        if distinct {
            uniq.begin(n);
        }
        Tally {
            coll,
            yielded: 0,
            distinct,
            uniq,
        }
    }

    /// Counts only.
    fn counting(coll: Coll, uniq: &'u mut Uniq) -> Self {
        Tally {
            coll,
            yielded: 0,
            distinct: false,
            uniq,
        }
    }

    /// One member of a set, hash or sorted set: counted and checked distinct.
    #[inline(always)]
    fn add(&mut self, m: &[u8]) {
        debug_assert!(self.distinct);
        self.yielded += 1;
        self.uniq.add(m);
    }

    /// One element that needs no distinct check (a list's; an intset candidate's).
    #[inline(always)]
    fn count(&mut self) {
        self.yielded += 1;
    }

    /// `rewalk` yields the members again, for the rare second look at hash suspects.
    fn finish(self, e: &Entry<'_>, len: usize, rewalk: &Rewalk<'_>) -> Result<()> {
        if self.yielded != len {
            return Err(bad_value(
                e,
                format!(
                    "its {} view says len() = {len} but for_each yielded {}",
                    self.coll.name(),
                    self.yielded
                ),
            ));
        }
        if !self.distinct {
            return Ok(());
        }
        match self.uniq.duplicate(rewalk) {
            Some(m) => Err(self.coll.duplicate(e, &m)),
            None => Ok(()),
        }
    }
}

/// Encodes a whole keyspace. The caller provides the sink and the first chunk; gets back
/// the sink, the final partial chunk and the summary.
#[cfg(any(test, feature = "internals"))]
pub fn encode<S: ChunkSink>(
    ks: &dyn Keyspace,
    opts: &EncodeOptions,
    sink: S,
    chunk: ChunkBuf,
) -> Result<(S, ChunkBuf, EncodeSummary)> {
    encode_with(ks, opts, sink, chunk, &mut |_, _| {})
}

/// Keys between two calls of an [`encode_with`] progress callback.
pub const PROGRESS_EVERY_KEYS: u64 = 4096;

/// [`encode`], calling `progress(&encoder, keys so far)` every [`PROGRESS_EVERY_KEYS`]
/// and once after the last key (before the final chunk is handed back).
pub fn encode_with<S: ChunkSink>(
    ks: &dyn Keyspace,
    opts: &EncodeOptions,
    sink: S,
    chunk: ChunkBuf,
    progress: &mut dyn FnMut(&Encoder<S>, u64),
) -> Result<(S, ChunkBuf, EncodeSummary)> {
    if opts.threads > 1 {
        if let Some(parts) = ks.partitioned() {
            return super::parallel::encode_parallel(ks, parts, opts, sink, chunk, progress);
        }
    }
    let mut enc = Encoder::new(sink, chunk, opts)?;
    enc.module_aux(ks, true)?;
    enc.functions(ks)?;
    let mut keys = 0u64;
    for info in ks.databases() {
        enc.begin_db(&info)?;
        let mut err = None;
        ks.walk(info.index, &mut |e| match enc.write_entry(e) {
            Ok(_) => {
                keys += 1;
                if keys.is_multiple_of(PROGRESS_EVERY_KEYS) {
                    progress(&enc, keys);
                }
                ControlFlow::Continue(())
            }
            Err(x) => {
                err = Some(x);
                ControlFlow::Break(())
            }
        });
        if let Some(x) = err {
            return Err(x);
        }
    }
    if !keys.is_multiple_of(PROGRESS_EVERY_KEYS) {
        // A last report while the encoder's buffers are still alive (a keyspace of a
        // few huge keys has no other; the child's memory probe relies on it).
        progress(&enc, keys);
    }
    enc.module_aux(ks, false)?;
    enc.finish()
}

/// A sink that appends every chunk to a `Vec<u8>`.
#[cfg(any(test, feature = "internals"))]
pub struct VecSink(pub Vec<u8>);

#[cfg(any(test, feature = "internals"))]
impl ChunkSink for VecSink {
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        self.0.extend_from_slice(chunk.as_slice());
        chunk.clear();
        Ok(())
    }
}

/// Encodes a keyspace into memory (tests, tools, small data).
#[cfg(any(test, feature = "internals"))]
pub fn encode_to_vec(ks: &dyn Keyspace, opts: &EncodeOptions) -> Result<(Vec<u8>, EncodeSummary)> {
    let (VecSink(mut v), last, summary) =
        encode(ks, opts, VecSink(Vec::new()), ChunkBuf::new(64 * 1024))?;
    v.extend_from_slice(last.as_slice());
    Ok((v, summary))
}
