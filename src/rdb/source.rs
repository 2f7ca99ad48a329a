//! The reader's input: any `Read`, buffered, with the RDB stream offset of every byte
//! (for errors), the running CRC-64 of what was consumed, and the RDB primitives (length
//! fields, strings in their three encodings).
//!
//! **Invariants**
//! - Memory is the read buffer (256 KiB) plus the largest single item asked for at once,
//!   which the per-value limit bounds; growth is fallible and becomes an error.
//! - Every byte consumed is covered by the CRC exactly once, in order.

use super::{lzf, Crc64};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::PathBuf;

/// The read buffer's usual size.
const CHUNK: usize = 256 << 10;

/// A buffer that grew past this for one large item is given back afterwards.
const KEEP: usize = 4 << 20;

/// A length field: a plain length, or the marker of a specially encoded string.
pub(crate) enum Len {
    Plain(u64),
    Special(u8),
}

pub(crate) struct Source<'r> {
    r: Box<dyn Read + 'r>,
    /// The input's name for read errors (a path, or empty).
    pub name: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    crc: Crc64,
    /// `buf[crc_from..pos]` is consumed but not yet in `crc`.
    crc_from: usize,
    /// The largest string (or compressed string) accepted.
    pub limit: u64,
    /// Scratch for LZF-compressed compressed bytes and integer strings.
    num: [u8; 20],
}

impl<'r> Source<'r> {
    pub fn new(r: Box<dyn Read + 'r>, name: PathBuf, limit: u64) -> Self {
        Source {
            r,
            name,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            base: 0,
            crc: Crc64::new(),
            crc_from: 0,
            limit,
            num: [0; 20],
        }
    }

    /// The stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn corrupt<T>(&self, at: u64, what: impl Into<String>) -> Result<T> {
        Err(Error::corrupt(at, what.into()))
    }

    /// Up to `n` bytes buffered from `pos` (fewer only at the end of the input).
    fn fill(&mut self, n: usize) -> Result<()> {
        if self.end - self.pos >= n {
            return Ok(());
        }
        // Move what is left to the front (the consumed part into the CRC first).
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        self.crc_from = 0;
        let want = n.max(CHUNK);
        if self.buf.len() > KEEP && want <= KEEP {
            self.buf.truncate(want.max(self.end));
            self.buf.shrink_to_fit();
        }
        if self.buf.len() < want {
            if self.buf.try_reserve_exact(want - self.buf.len()).is_err() {
                return self.corrupt(
                    self.offset(),
                    format!("out of memory for an item of {n} bytes"),
                );
            }
            self.buf.resize(want, 0);
        }
        while self.end < n {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match Error::from_read(e) {
                        Error::Io {
                            op, offset, source, ..
                        } => Error::Io {
                            op,
                            path: self.name.clone(),
                            offset: offset.or(Some(self.base + self.end as u64)),
                            source,
                        },
                        other => other,
                    })
                }
            }
        }
        Ok(())
    }

    /// True when the input has no byte left.
    #[cfg(test)]
    pub fn at_end(&mut self) -> Result<bool> {
        self.fill(1)?;
        Ok(self.pos == self.end)
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if self.end - self.pos < n {
            self.fill(n)?;
            if self.end - self.pos < n {
                return self.corrupt(
                    self.offset(),
                    format!(
                        "{what}: needs {n} bytes, {} left (truncated file?)",
                        self.end - self.pos
                    ),
                );
            }
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Consumes `n` bytes without keeping them (more than the buffer holds, if need be).
    pub fn skip(&mut self, mut n: u64, what: &str) -> Result<()> {
        while n > 0 {
            let step = n.min(CHUNK as u64) as usize;
            self.take(step, what)?;
            n -= step as u64;
        }
        Ok(())
    }

    #[inline]
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            self.pos += 1;
            return Ok(b);
        }
        Ok(self.take(1, what)?[0])
    }

    pub fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    /// The CRC-64 of everything consumed so far.
    pub fn crc(&mut self) -> u64 {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
        self.crc.finalize()
    }

    pub fn len_field(&mut self, what: &str) -> Result<Len> {
        let at = self.offset();
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

    pub fn len(&mut self, what: &str) -> Result<u64> {
        let at = self.offset();
        match self.len_field(what)? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => self.corrupt(
                at,
                format!("{what}: expected a length, found an encoded string"),
            ),
        }
    }

    /// Refuses a value longer than the per-value limit.
    fn limit(&self, n: u64, at: u64, what: &str) -> Result<usize> {
        if n > self.limit {
            return self.corrupt(
                at,
                format!(
                    "{what}: {n} bytes exceed the per-value limit of {} (LoadOptions::max_value_bytes)",
                    self.limit
                ),
            );
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A string, borrowed from the buffer when stored plain; an integer or LZF string is
    /// decoded into `scratch`.
    pub fn string<'s>(&'s mut self, what: &str, scratch: &'s mut Vec<u8>) -> Result<&'s [u8]> {
        let at = self.offset();
        match self.len_field(what)? {
            Len::Plain(n) => {
                let n = self.limit(n, at, what)?;
                self.take(n, what)
            }
            Len::Special(x) => {
                let k = self.special(x, at, what, Some(scratch))?;
                match k {
                    Some(k) => Ok(&self.num[20 - k..]),
                    None => Ok(&scratch[..]),
                }
            }
        }
    }

    /// A string copied (or decoded) into `dst`, which it replaces. Returns the stream
    /// offset of its bytes (for an LZF or integer string, of its header: offsets inside a
    /// compressed string have no place in the file).
    pub fn string_into(&mut self, what: &str, dst: &mut Vec<u8>) -> Result<u64> {
        let at = self.offset();
        match self.len_field(what)? {
            Len::Plain(n) => {
                let n = self.limit(n, at, what)?;
                let data_at = self.offset();
                dst.clear();
                if dst.try_reserve(n).is_err() {
                    return self.corrupt(at, format!("{what}: out of memory for {n} bytes"));
                }
                // Large strings pass through in pieces; the buffer does not grow for them.
                let mut left = n;
                while left > 0 {
                    let step = left.min(CHUNK);
                    dst.extend_from_slice(self.take(step, what)?);
                    left -= step;
                }
                Ok(data_at)
            }
            Len::Special(x) => {
                if let Some(k) = self.special(x, at, what, Some(dst))? {
                    dst.clear();
                    dst.extend_from_slice(&self.num[20 - k..]);
                }
                Ok(at)
            }
        }
    }

    /// Skips a string (LZF strings are still decompressed, into `scratch`, to validate them).
    pub fn skip_string(&mut self, what: &str, scratch: &mut Vec<u8>) -> Result<()> {
        let at = self.offset();
        match self.len_field(what)? {
            Len::Plain(n) => {
                self.limit(n, at, what)?;
                self.skip(n, what)
            }
            Len::Special(x) => self.special(x, at, what, Some(scratch)).map(|_| ()),
        }
    }

    /// A specially encoded string: an integer (formatted into `num`, its length returned)
    /// or LZF (decompressed into `out`, `None` returned).
    fn special(
        &mut self,
        x: u8,
        at: u64,
        what: &str,
        out: Option<&mut Vec<u8>>,
    ) -> Result<Option<usize>> {
        let v: i64 = match x {
            0 => i64::from(self.u8(what)? as i8),
            1 => i64::from(i16::from_le_bytes(self.fixed(what)?)),
            2 => i64::from(i32::from_le_bytes(self.fixed(what)?)),
            3 => {
                let clen = self.len(what)?;
                let ulen = self.len(what)?;
                // One 3-byte LZF back reference expands to at most 264 bytes.
                if ulen > clen.saturating_mul(90).saturating_add(32) {
                    return self.corrupt(
                        at,
                        format!("{what}: LZF length {ulen} impossible from {clen} compressed bytes"),
                    );
                }
                let ulen = self.limit(ulen, at, what)?;
                let clen = self.limit(clen, at, what)?;
                let out = out.expect("a buffer for LZF");
                out.clear();
                if out.try_reserve_exact(ulen).is_err() {
                    return self.corrupt(at, format!("{what}: out of memory for {ulen} bytes"));
                }
                out.resize(ulen, 0);
                let data_at = self.offset();
                let src = self.take(clen, what)?;
                lzf::decompress(src, out).map_err(|(off, m)| Error::corrupt(data_at + off as u64, format!("{what}: {m}")))?;
                return Ok(None);
            }
            x => return self.corrupt(at, format!("{what}: unknown string encoding {x}")),
        };
        Ok(Some(super::num::format_i64(v, &mut self.num).len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one byte at a time: every boundary of the buffer is crossed.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if out.is_empty() {
                return Ok(0);
            }
            out[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn crc_and_offsets_across_refills() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 17) as u32).map(|i| (i * 7) as u8).collect();
        let mut s = Source::new(Box::new(Trickle(&data)), PathBuf::new(), u64::MAX);
        s.take(10, "x").unwrap();
        s.skip((CHUNK + 5) as u64, "x").unwrap();
        assert_eq!(s.offset(), (CHUNK + 15) as u64);
        let big = s.take(CHUNK + 1, "x").unwrap().to_vec();
        assert_eq!(big, &data[CHUNK + 15..2 * CHUNK + 16]);
        let rest = data.len() - s.offset() as usize;
        s.take(rest, "x").unwrap();
        assert!(s.at_end().unwrap());
        assert_eq!(s.crc(), Crc64::checksum(&data));
        let e = s.take(1, "tail").unwrap_err().to_string();
        assert!(e.contains("tail: needs 1 bytes, 0 left"), "{e}");
    }
}
