//! The RDB reader: loads a whole RDB (plain or in an LZ4 frame) into a [`MemKeyspace`].
//!
//! **Invariants**
//! - Never panics on any input; every error names the byte offset (in the RDB stream).
//! - No allocation is sized by a length read from the input without first checking it
//!   against the bytes remaining (or, for LZF, against the maximum LZF expansion).
//! - The CRC-64 trailer is verified unless it is zero ("not computed").

use super::listpack::{self, Elem};
use super::num::parse_score;
use super::{intset, lzf, opcodes, types, ziplist, Crc64};
use crate::error::{Error, Result};
use crate::frame;
use crate::keyspace::{MemKeyspace, MemValue};
use std::borrow::Cow;
use std::path::Path;

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Skip (and count) streams and module values instead of failing on them.
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

/// One loaded key, as seen by an observer (the `inspect` tool).
#[derive(Debug)]
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
    /// Not loaded (a stream or module value, skipped on request).
    pub skipped: bool,
}

/// Receives each loaded key: its value (`None` when skipped) and its [`KeyInfo`].
/// Returning an error stops the load with a `Corrupt` error at that key.
pub type KeySink<'s> = dyn FnMut(Option<MemValue>, &KeyInfo<'_>) -> Result<(), String> + 's;

/// What a load found besides the keys.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The RDB version in the header.
    pub version: u32,
    /// `REDIS` or `VALKEY`.
    pub magic: &'static str,
    /// The AUX fields, in file order.
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// FUNCTION2 libraries skipped.
    pub functions_skipped: u64,
    /// MODULE_AUX records skipped.
    pub module_aux_skipped: u64,
    /// Stream and module values skipped (with `skip_unsupported`).
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

/// Reads and loads a file.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<(MemKeyspace, LoadReport)> {
    let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    load(&data, opts)
}

/// Loads an RDB held in memory (LZ4-framed input is decoded first).
pub fn load(data: &[u8], opts: &LoadOptions) -> Result<(MemKeyspace, LoadReport)> {
    let mut ks = MemKeyspace::new();
    let report = load_with(data, opts, &mut |value, info| {
        let Some(v) = value else { return Ok(()) };
        if ks
            .db_mut(info.db)
            .insert_if_absent(info.key, v, info.expire_ms)
        {
            Ok(())
        } else {
            Err(format!(
                "duplicate key {:?} in database {}",
                String::from_utf8_lossy(info.key),
                info.db
            ))
        }
    })?;
    Ok((ks, report))
}

/// Loads an RDB, calling `sink` for every key with its value and its [`KeyInfo`]
/// (a skipped stream or module value comes as `None`).
pub fn load_with(data: &[u8], opts: &LoadOptions, sink: &mut KeySink<'_>) -> Result<LoadReport> {
    let decoded;
    let (rdb, framed) = if frame::is_lz4_frame(data) {
        decoded = frame::decode(data)?;
        (&decoded[..], true)
    } else {
        (data, false)
    };
    let mut r = Reader {
        b: rdb,
        p: 0,
        opts,
        report: LoadReport {
            lz4_framed: framed,
            rdb_bytes: rdb.len() as u64,
            ..LoadReport::default()
        },
    };
    r.run(sink)?;
    Ok(r.report)
}

struct Reader<'a, 'o> {
    b: &'a [u8],
    p: usize,
    opts: &'o LoadOptions,
    report: LoadReport,
}

/// A length field: a plain length, or the marker of a specially encoded string.
enum Len {
    Plain(u64),
    Special(u8),
}

impl<'a> Reader<'a, '_> {
    fn corrupt<T>(&self, at: usize, what: impl Into<String>) -> Result<T> {
        Err(Error::corrupt(at, what))
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.p
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return self.corrupt(
                self.p,
                format!(
                    "{what}: needs {n} bytes, {} left (truncated file?)",
                    self.remaining()
                ),
            );
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn len_field(&mut self, what: &str) -> Result<Len> {
        let at = self.p;
        let b = self.u8(what)?;
        Ok(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3f)),
            1 => Len::Plain((u64::from(b & 0x3f) << 8) | u64::from(self.u8(what)?)),
            3 => Len::Special(b & 0x3f),
            _ => match b {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.fixed(what)?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.fixed(what)?)),
                _ => return self.corrupt(at, format!("{what}: invalid length byte {b:#04x}")),
            },
        })
    }

    fn len(&mut self, what: &str) -> Result<u64> {
        let at = self.p;
        match self.len_field(what)? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => self.corrupt(
                at,
                format!("{what}: expected a length, found an encoded string"),
            ),
        }
    }

    /// An empty vector with room for `n` items, or an error at `at` when the memory is
    /// not there: an allocation sized by the input never aborts the process.
    fn room<T>(&self, n: usize, at: usize, what: &str) -> Result<Vec<T>> {
        let mut v = Vec::new();
        if v.try_reserve_exact(n).is_err() {
            return self.corrupt(
                at,
                format!(
                    "{what}: out of memory for {n} items of {} bytes",
                    std::mem::size_of::<T>()
                ),
            );
        }
        Ok(v)
    }

    /// Refuses a value longer than the per-value limit.
    fn limit(&self, n: u64, at: usize, what: &str) -> Result<()> {
        if n > self.opts.max_value_bytes {
            return self.corrupt(
                at,
                format!(
                    "{what}: {n} bytes exceed the per-value limit of {} (LoadOptions::max_value_bytes)",
                    self.opts.max_value_bytes
                ),
            );
        }
        Ok(())
    }

    /// A count of items that each take at least `min_bytes`: checked against what is left.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.p;
        let n = self.len(what)?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return self.corrupt(
                at,
                format!(
                    "{what}: count {n} exceeds what the {} remaining bytes can hold",
                    self.remaining()
                ),
            );
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<Cow<'a, [u8]>> {
        let at = self.p;
        match self.len_field(what)? {
            Len::Plain(n) => {
                self.limit(n, at, what)?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Ok(Cow::Borrowed(self.take(n, what)?))
            }
            Len::Special(0) => Ok(Cow::Owned((self.u8(what)? as i8).to_string().into_bytes())),
            Len::Special(1) => Ok(Cow::Owned(
                i16::from_le_bytes(self.fixed(what)?)
                    .to_string()
                    .into_bytes(),
            )),
            Len::Special(2) => Ok(Cow::Owned(
                i32::from_le_bytes(self.fixed(what)?)
                    .to_string()
                    .into_bytes(),
            )),
            Len::Special(3) => {
                let clen = self.len(what)?;
                let ulen = self.len(what)?;
                // One 3-byte LZF back reference expands to at most 264 bytes.
                if ulen > clen.saturating_mul(90).saturating_add(32) {
                    return self.corrupt(
                        at,
                        format!(
                            "{what}: LZF length {ulen} impossible from {clen} compressed bytes"
                        ),
                    );
                }
                self.limit(ulen, at, what)?;
                let src = self.take(usize::try_from(clen).unwrap_or(usize::MAX), what)?;
                let mut out = self.room(ulen as usize, at, what)?;
                out.resize(ulen as usize, 0);
                let data_at = self.p - src.len();
                lzf::decompress(src, &mut out)
                    .map_err(|(off, m)| Error::corrupt(data_at + off, format!("{what}: {m}")))?;
                Ok(Cow::Owned(out))
            }
            Len::Special(x) => self.corrupt(at, format!("{what}: unknown string encoding {x}")),
        }
    }

    fn boxed(&mut self, what: &str) -> Result<Box<[u8]>> {
        let at = self.p;
        match self.string(what)? {
            Cow::Owned(v) => Ok(v.into_boxed_slice()),
            Cow::Borrowed(s) => {
                let mut v = self.room(s.len(), at, what)?;
                v.extend_from_slice(s);
                Ok(v.into_boxed_slice())
            }
        }
    }

    fn run(&mut self, sink: &mut KeySink<'_>) -> Result<()> {
        self.header()?;
        let mut db: u32 = 0;
        loop {
            let entry_at = self.p;
            let op = self.u8("opcode")?;
            let mut expire = None;
            let ty = match op {
                opcodes::EOF => return self.trailer(entry_at),
                opcodes::SELECTDB => {
                    let at = self.p;
                    let n = self.len("SELECTDB index")?;
                    if n > 1 << 16 {
                        return self.corrupt(at, format!("database index {n} out of range"));
                    }
                    db = n as u32;
                    continue;
                }
                opcodes::RESIZEDB => {
                    self.len("RESIZEDB size")?;
                    self.len("RESIZEDB expires")?;
                    continue;
                }
                opcodes::AUX => {
                    let k = self.string("AUX key")?.into_owned();
                    let v = self.string("AUX value")?.into_owned();
                    self.report.aux.push((k, v));
                    continue;
                }
                opcodes::FUNCTION2 => {
                    self.string("FUNCTION2 library")?;
                    self.report.functions_skipped += 1;
                    continue;
                }
                opcodes::MODULE_AUX => {
                    self.len("MODULE_AUX module id")?;
                    self.len("MODULE_AUX when opcode")?;
                    self.len("MODULE_AUX when")?;
                    self.skip_module_value()?;
                    self.report.module_aux_skipped += 1;
                    continue;
                }
                opcodes::SLOT_INFO => {
                    for _ in 0..3 {
                        self.len("SLOT_INFO")?;
                    }
                    continue;
                }
                opcodes::FUNCTION_PRE_GA => {
                    return Err(Error::Unsupported {
                        offset: entry_at as u64,
                        what: "pre-release FUNCTION opcode (Redis 7.0 RC files)".into(),
                    })
                }
                opcodes::EXPIRETIME_MS | opcodes::EXPIRETIME | opcodes::IDLE | opcodes::FREQ => {
                    // Per-key prefixes, in any order, then the type byte.
                    let mut op = op;
                    loop {
                        match op {
                            opcodes::EXPIRETIME_MS => {
                                expire = Some(i64::from_le_bytes(self.fixed("expire time")?))
                            }
                            opcodes::EXPIRETIME => {
                                expire = Some(
                                    i64::from(i32::from_le_bytes(self.fixed("expire time")?))
                                        * 1000,
                                )
                            }
                            opcodes::IDLE => {
                                self.len("LRU idle")?;
                            }
                            opcodes::FREQ => {
                                self.u8("LFU frequency")?;
                            }
                            _ => break op,
                        }
                        op = self.u8("type")?;
                    }
                }
                t => t,
            };
            let key = self.string("key")?;
            let value = self.value(ty, entry_at)?;
            if value.as_ref().is_some_and(|v| v.is_empty()) {
                self.report.empty_skipped += 1;
                continue;
            }
            self.report.values_skipped += u64::from(value.is_none());
            let info = KeyInfo {
                db,
                key: &key,
                type_code: ty,
                expire_ms: expire,
                bytes: (self.p - entry_at) as u64,
                elements: value.as_ref().map_or(0, |v| v.len() as u64),
                skipped: value.is_none(),
            };
            sink(value, &info).map_err(|m| Error::corrupt(entry_at, m))?;
        }
    }

    fn header(&mut self) -> Result<()> {
        let (magic, digits): (&'static str, usize) = if self.b.starts_with(b"REDIS") {
            ("REDIS", 4)
        } else if self.b.starts_with(b"VALKEY") {
            ("VALKEY", 3)
        } else {
            return self.corrupt(0, "not an RDB file (no REDIS or VALKEY magic)");
        };
        self.p = magic.len();
        let d = self.take(digits, "version")?;
        let version = std::str::from_utf8(d)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok());
        let Some(version) = version else {
            return self.corrupt(magic.len(), "RDB version is not a number");
        };
        let ok = match magic {
            "REDIS" => (1..=12).contains(&version),
            _ => version == 80,
        };
        if !ok {
            return self.corrupt(
                magic.len(),
                format!("cannot handle RDB format version {magic}{version}"),
            );
        }
        self.report.magic = magic;
        self.report.version = version;
        Ok(())
    }

    fn trailer(&mut self, eof_at: usize) -> Result<()> {
        if self.report.magic == "REDIS" && self.report.version < 5 {
            return Ok(());
        }
        let stored = u64::from_le_bytes(self.fixed("CRC-64 trailer")?);
        self.report.crc = stored;
        if stored == 0 {
            return Ok(());
        }
        let got = Crc64::checksum(&self.b[..=eof_at]);
        if got != stored {
            return Err(Error::ChecksumMismatch {
                what: "RDB CRC-64",
                offset: eof_at as u64 + 1,
                expected: stored,
                got,
            });
        }
        self.report.crc_checked = true;
        Ok(())
    }

    /// Reads a value of type `ty`. `None` when it was skipped (stream, module).
    fn value(&mut self, ty: u8, entry_at: usize) -> Result<Option<MemValue>> {
        let at = self.p;
        let v = match ty {
            types::STRING => MemValue::Str(self.boxed("string value")?),
            types::LIST => {
                let n = self.count("list length", 1)?;
                let mut v = self.room(n, at, "collection")?;
                for _ in 0..n {
                    v.push(self.boxed("list element")?);
                }
                MemValue::List(v)
            }
            types::SET => {
                let n = self.count("set size", 1)?;
                let mut v = self.room(n, at, "collection")?;
                for _ in 0..n {
                    v.push(self.boxed("set member")?);
                }
                self.unique(at, v.iter().map(|m| &m[..]), "set member")?;
                MemValue::Set(v)
            }
            types::ZSET | types::ZSET_2 => {
                let n = self.count("sorted set size", 2)?;
                let mut v = self.room(n, at, "collection")?;
                for _ in 0..n {
                    let m = self.boxed("sorted set member")?;
                    let s_at = self.p;
                    let s = if ty == types::ZSET_2 {
                        f64::from_le_bytes(self.fixed("score")?)
                    } else {
                        self.ascii_score()?
                    };
                    if s.is_nan() {
                        return self.corrupt(s_at, "sorted set score is NaN");
                    }
                    v.push((m, s));
                }
                self.unique(at, v.iter().map(|(m, _)| &m[..]), "sorted set member")?;
                MemValue::ZSet(v)
            }
            types::HASH => {
                let n = self.count("hash size", 2)?;
                let mut v = self.room(n, at, "collection")?;
                for _ in 0..n {
                    let f = self.boxed("hash field")?;
                    let x = self.boxed("hash value")?;
                    v.push((f, x));
                }
                self.unique(at, v.iter().map(|(f, _)| &f[..]), "hash field")?;
                MemValue::Hash(v)
            }
            types::SET_INTSET => {
                let blob = self.string("intset")?;
                let data_at = self.p - blob.len();
                let mut v = Vec::new();
                intset::parse(&blob, |x| {
                    v.push(x.to_string().into_bytes().into_boxed_slice())
                })
                .map_err(|(o, m)| Error::corrupt(data_at + o, m))?;
                MemValue::Set(v)
            }
            types::LIST_ZIPLIST | types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
                let mut v = Vec::new();
                if ty == types::LIST_ZIPLIST {
                    self.blob_elems("list ziplist", false, &mut |e| v.push(e))?;
                } else {
                    let n = self.count("quicklist nodes", 2)?;
                    for _ in 0..n {
                        if ty == types::LIST_QUICKLIST {
                            self.blob_elems("quicklist ziplist", false, &mut |e| v.push(e))?;
                            continue;
                        }
                        let c_at = self.p;
                        match self.len("quicklist container")? {
                            1 => v.push(self.boxed("quicklist plain node")?),
                            2 => self.blob_elems("quicklist listpack", true, &mut |e| v.push(e))?,
                            c => {
                                return self
                                    .corrupt(c_at, format!("unknown quicklist container {c}"))
                            }
                        }
                    }
                }
                MemValue::List(v)
            }
            types::SET_LISTPACK => {
                let mut v = Vec::new();
                self.blob_elems("set listpack", true, &mut |e| v.push(e))?;
                self.unique(at, v.iter().map(|m| &m[..]), "set member")?;
                MemValue::Set(v)
            }
            types::HASH_ZIPLIST
            | types::HASH_LISTPACK
            | types::ZSET_ZIPLIST
            | types::ZSET_LISTPACK => {
                let lp = matches!(ty, types::HASH_LISTPACK | types::ZSET_LISTPACK);
                let mut flat = Vec::new();
                self.blob_elems("pairs", lp, &mut |e| flat.push(e))?;
                if flat.len() % 2 != 0 {
                    return self.corrupt(at, "odd number of elements in a field/value encoding");
                }
                let mut it = flat.into_iter();
                if matches!(ty, types::HASH_ZIPLIST | types::HASH_LISTPACK) {
                    let mut v = Vec::new();
                    while let (Some(f), Some(x)) = (it.next(), it.next()) {
                        v.push((f, x));
                    }
                    self.unique(at, v.iter().map(|(f, _)| &f[..]), "hash field")?;
                    MemValue::Hash(v)
                } else {
                    let mut v = Vec::new();
                    while let (Some(m), Some(s)) = (it.next(), it.next()) {
                        match parse_score(&s) {
                            Some(sc) if !sc.is_nan() => v.push((m, sc)),
                            _ => {
                                return self.corrupt(
                                    at,
                                    format!(
                                        "bad sorted set score {:?}",
                                        String::from_utf8_lossy(&s)
                                    ),
                                )
                            }
                        }
                    }
                    self.unique(at, v.iter().map(|(m, _)| &m[..]), "sorted set member")?;
                    MemValue::ZSet(v)
                }
            }
            types::HASH_ZIPMAP => {
                let blob = self.string("zipmap")?;
                let data_at = self.p - blob.len();
                let mut v = Vec::new();
                ziplist::parse_zipmap(&blob, |f, x| {
                    v.push((f.into(), x.into()));
                    Ok(())
                })
                .map_err(|(o, m)| Error::corrupt(data_at + o, m))?;
                self.unique(
                    at,
                    v.iter().map(|(f, _): &(Box<[u8]>, Box<[u8]>)| &f[..]),
                    "hash field",
                )?;
                MemValue::Hash(v)
            }
            types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
                self.unsupported(entry_at, "stream")?;
                self.skip_stream(ty)?;
                return Ok(None);
            }
            types::MODULE_2 => {
                self.unsupported(entry_at, "module value")?;
                self.len("module id")?;
                self.skip_module_value()?;
                return Ok(None);
            }
            types::MODULE_PRE_GA => {
                return Err(Error::Unsupported {
                    offset: entry_at as u64,
                    what: "pre-release module value (type 6) cannot be read or skipped".into(),
                })
            }
            types::HASH_METADATA_PRE_GA | types::HASH_METADATA => {
                // Redis 7.4 hashes with field expiry: [minExpire u64 LE (GA only)], count,
                // then (TTL length, field, value); GA TTLs are minExpire-relative + 1.
                if ty == types::HASH_METADATA {
                    self.fixed::<8>("hash minExpire")?;
                }
                let n = self.count("hash size", 3)?;
                let mut v = self.room(n, at, "collection")?;
                let mut with_ttl = 0u64;
                for _ in 0..n {
                    // GA: expireAt = ttl + minExpire - 1; PRE_GA: absolute; 0: no TTL.
                    with_ttl += u64::from(self.len("hash field TTL")? != 0);
                    let f = self.boxed("hash field")?;
                    let x = self.boxed("hash value")?;
                    v.push((f, x));
                }
                return self.hash_with_ttls(at, entry_at, v, with_ttl);
            }
            types::HASH_LISTPACK_EX_PRE_GA | types::HASH_LISTPACK_EX => {
                // [minExpire u64 LE (GA only)], a listpack of (field, value, expire ms or 0).
                if ty == types::HASH_LISTPACK_EX {
                    self.fixed::<8>("hash minExpire")?;
                }
                let mut flat = Vec::new();
                self.blob_elems("hash listpack with TTLs", true, &mut |e| flat.push(e))?;
                if flat.len() % 3 != 0 {
                    return self.corrupt(
                        at,
                        "hash listpack with TTLs is not made of (field, value, TTL) triples",
                    );
                }
                let mut v = self.room(flat.len() / 3, at, "collection")?;
                let mut with_ttl = 0u64;
                let mut it = flat.into_iter();
                while let (Some(f), Some(x), Some(t)) = (it.next(), it.next(), it.next()) {
                    match super::num::canonical_i64(&t) {
                        Some(0) => {}
                        Some(_) => with_ttl += 1,
                        None => return self.corrupt(at, "hash field TTL is not an integer"),
                    }
                    v.push((f, x));
                }
                return self.hash_with_ttls(at, entry_at, v, with_ttl);
            }
            t => return self.corrupt(entry_at, format!("unknown value type {t}")),
        };
        Ok(Some(v))
    }

    /// A Redis 7.4 hash with field expiry: loaded when no field has a TTL; otherwise
    /// refused, or skipped on request (field TTLs cannot be held, and are never dropped
    /// silently).
    fn hash_with_ttls(
        &self,
        at: usize,
        entry_at: usize,
        v: crate::keyspace::FieldValues,
        with_ttl: u64,
    ) -> Result<Option<MemValue>> {
        self.unique(at, v.iter().map(|(f, _)| &f[..]), "hash field")?;
        if with_ttl == 0 {
            return Ok(Some(MemValue::Hash(v)));
        }
        if self.opts.skip_unsupported {
            Ok(None)
        } else {
            Err(self.field_ttls_error(entry_at, with_ttl))
        }
    }

    fn field_ttls_error(&self, at: usize, n: u64) -> Error {
        Error::Unsupported {
            offset: at as u64,
            what: format!(
                "hash with {n} field TTL(s) (Redis 7.4 hash field expiry) cannot be loaded without losing them (ask to skip such keys)"
            ),
        }
    }

    fn unsupported(&self, at: usize, what: &str) -> Result<()> {
        if self.opts.skip_unsupported {
            Ok(())
        } else {
            Err(Error::Unsupported {
                offset: at as u64,
                what: format!("{what} values cannot be loaded (ask to skip them)"),
            })
        }
    }

    fn unique<'x>(
        &self,
        at: usize,
        items: impl Iterator<Item = &'x [u8]>,
        what: &str,
    ) -> Result<()> {
        match super::uniq::first_duplicate(items) {
            Some(m) => self.corrupt(
                at,
                format!("duplicate {what} {:?}", String::from_utf8_lossy(m)),
            ),
            None => Ok(()),
        }
    }

    fn ascii_score(&mut self) -> Result<f64> {
        let at = self.p;
        match self.u8("score length")? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let t = self.take(n as usize, "score")?;
                parse_score(t).map_or_else(|| self.corrupt(at, "unparsable score text"), Ok)
            }
        }
    }

    /// Reads a string holding a listpack (`lp`) or ziplist, passing each element out.
    fn blob_elems(&mut self, what: &str, lp: bool, f: &mut dyn FnMut(Box<[u8]>)) -> Result<()> {
        let s_at = self.p;
        let blob = self.string(what)?;
        // Offsets inside an LZF-compressed blob have no place in the file: report the
        // string's start for those.
        let data_at = if matches!(blob, Cow::Borrowed(_)) {
            self.p - blob.len()
        } else {
            s_at
        };
        let mut each = |e: Elem<'_>| {
            f(match e {
                Elem::Str(s) => s.into(),
                Elem::Int(v) => v.to_string().into_bytes().into_boxed_slice(),
            });
            Ok(())
        };
        let r = if lp {
            listpack::parse(&blob, &mut each)
        } else {
            ziplist::parse_ziplist(&blob, &mut each)
        };
        r.map(|_| ())
            .map_err(|(o, m)| Error::corrupt(data_at + o, format!("{what}: {m}")))
    }

    fn skip_module_value(&mut self) -> Result<()> {
        loop {
            let at = self.p;
            match self.len("module opcode")? {
                0 => return Ok(()),
                1 | 2 => {
                    self.len("module integer")?;
                }
                3 => {
                    self.take(4, "module float")?;
                }
                4 => {
                    self.take(8, "module double")?;
                }
                5 => {
                    self.string("module string")?;
                }
                x => return self.corrupt(at, format!("unknown module opcode {x}")),
            }
        }
    }

    fn skip_stream(&mut self, ty: u8) -> Result<()> {
        let nodes = self.count("stream nodes", 2)?;
        for _ in 0..nodes {
            self.string("stream node key")?;
            self.string("stream listpack")?;
        }
        let ids = if ty >= types::STREAM_LISTPACKS_2 {
            8
        } else {
            3
        };
        for _ in 0..ids {
            self.len("stream metadata")?;
        }
        let groups = self.count("stream consumer groups", 3)?;
        for _ in 0..groups {
            self.string("consumer group name")?;
            self.len("group last id")?;
            self.len("group last id")?;
            if ty >= types::STREAM_LISTPACKS_2 {
                self.len("group entries read")?;
            }
            let pel = self.count("group PEL", 25)?;
            for _ in 0..pel {
                self.take(16 + 8, "PEL entry")?;
                self.len("PEL delivery count")?;
            }
            let consumers = self.count("consumers", 10)?;
            for _ in 0..consumers {
                self.string("consumer name")?;
                self.take(8, "consumer seen time")?;
                if ty >= types::STREAM_LISTPACKS_3 {
                    self.take(8, "consumer active time")?;
                }
                let n = self.count("consumer PEL", 16)?;
                self.take(n * 16, "consumer PEL")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::listpack::LpWriter;

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
    fn hash_field_ttls_are_refused_or_skipped_never_dropped() {
        for (ty, val) in [
            (types::HASH_METADATA, metadata_hash(5)),
            (types::HASH_LISTPACK_EX, listpack_ex(1_900_000_000_500)),
        ] {
            let f = file(&[(ty, b"h", val), (types::STRING, b"after", s(b"x"))]);
            match load(&f, &LoadOptions::default()) {
                Err(Error::Unsupported { offset, what }) => {
                    assert_eq!(offset, 11, "type {ty}");
                    assert!(what.contains("field TTL"), "{what}");
                }
                other => panic!(
                    "type {ty}: expected Unsupported, got {:?}",
                    other.map(|(_, r)| r)
                ),
            }
            let (ks, r) = load(
                &f,
                &LoadOptions {
                    skip_unsupported: true,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(r.values_skipped, 1);
            assert!(ks.db(0).unwrap().get(b"h").is_none());
            assert!(
                ks.db(0).unwrap().get(b"after").is_some(),
                "type {ty}: the key after must load"
            );
        }
    }
}
