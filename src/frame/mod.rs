//! LZ4 frames: the standard container (magic `0x184D2204`) that `lz4 -d` reads.
//!
//! forksnap writes independent blocks, each with an xxh32 block checksum, and a content
//! checksum (xxh32 of all raw bytes) at the end, so that chunks can be compressed in any
//! order or in parallel and `lz4 -d` restores the plain RDB byte for byte. The reader
//! also accepts linked blocks, content sizes, skippable frames and concatenated frames,
//! as the LZ4 frame format specification allows.
//!
//! **Invariants**: blocks never exceed the declared maximum block size; a block whose
//! compressed form is not smaller is stored raw (high bit of its size set).

use crate::error::{Error, Result};
use xxhash_rust::xxh32::{xxh32, Xxh32};

pub const MAGIC: u32 = 0x184D_2204;

/// The largest block the frame declares (the LZ4 "block maximum size" field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMax {
    K64 = 4,
    K256 = 5,
    M1 = 6,
    M4 = 7,
}

impl BlockMax {
    pub fn bytes(self) -> usize {
        match self {
            BlockMax::K64 => 64 << 10,
            BlockMax::K256 => 256 << 10,
            BlockMax::M1 => 1 << 20,
            BlockMax::M4 => 4 << 20,
        }
    }

    /// The smallest maximum that holds `n` bytes in one block (4 MiB above that).
    pub fn for_chunk(n: usize) -> Self {
        [BlockMax::K64, BlockMax::K256, BlockMax::M1]
            .into_iter()
            .find(|b| n <= b.bytes())
            .unwrap_or(BlockMax::M4)
    }
}

/// True when `data` starts with an LZ4 frame (or a skippable frame).
pub fn is_lz4_frame(data: &[u8]) -> bool {
    data.get(..4)
        .map(|m| u32::from_le_bytes(m.try_into().unwrap()))
        .is_some_and(|m| m == MAGIC || m & 0xFFFF_FFF0 == 0x184D_2A50)
}

/// The 7-byte frame header: independent blocks, block checksums, content checksum.
pub fn header(block_max: BlockMax) -> [u8; 7] {
    let flg = 0x40 | 0x20 | 0x10 | 0x04;
    let bd = (block_max as u8) << 4;
    let hc = (xxh32(&[flg, bd], 0) >> 8) as u8;
    let m = MAGIC.to_le_bytes();
    [m[0], m[1], m[2], m[3], flg, bd, hc]
}

/// Compresses `raw` as one or more independent blocks (each with its checksum), written
/// into `buf` from `at`; returns the end of what was written. `buf` only grows (to its
/// high-water mark, zero-filled once), so a reused buffer costs no memset per chunk.
/// Pure: chunks may be framed in parallel and concatenated in order.
pub fn compress_blocks(raw: &[u8], block_max: BlockMax, buf: &mut Vec<u8>, mut at: usize) -> usize {
    for block in raw.chunks(block_max.bytes()) {
        let bound = lz4_flex::block::get_maximum_output_size(block.len()).max(block.len());
        if buf.len() < at + 8 + bound {
            buf.resize(at + 8 + bound, 0);
        }
        let data = at + 4;
        let stored = match lz4_flex::block::compress_into(block, &mut buf[data..]) {
            Ok(n) if n < block.len() => n as u32,
            _ => {
                buf[data..data + block.len()].copy_from_slice(block);
                block.len() as u32 | 0x8000_0000
            }
        };
        let end = data + (stored & 0x7FFF_FFFF) as usize;
        buf[at..data].copy_from_slice(&stored.to_le_bytes());
        let sum = xxh32(&buf[data..end], 0);
        buf[end..end + 4].copy_from_slice(&sum.to_le_bytes());
        at = end + 4;
    }
    at
}

/// The end mark and the content checksum.
pub fn trailer(content_xxh32: u32) -> [u8; 8] {
    let c = content_xxh32.to_le_bytes();
    [0, 0, 0, 0, c[0], c[1], c[2], c[3]]
}

/// Frames a stream chunk by chunk: header first, then blocks, then the trailer.
pub struct Framer {
    block_max: BlockMax,
    content: Xxh32,
    started: bool,
    /// Output of the last call; only `buf[..len]` is meaningful.
    buf: Vec<u8>,
    len: usize,
}

impl Framer {
    pub fn new(block_max: BlockMax) -> Self {
        Framer {
            block_max,
            content: Xxh32::new(0),
            started: false,
            buf: Vec::new(),
            len: 0,
        }
    }

    /// Frames `raw`; the header precedes the first chunk. The result is valid until the
    /// next call.
    pub fn chunk(&mut self, raw: &[u8]) -> &[u8] {
        let mut at = 0;
        if !self.started {
            self.put(0, &header(self.block_max));
            at = 7;
            self.started = true;
        }
        self.content.update(raw);
        self.len = compress_blocks(raw, self.block_max, &mut self.buf, at);
        &self.buf[..self.len]
    }

    /// The last chunk and the trailer.
    pub fn finish(&mut self, raw: &[u8]) -> &[u8] {
        self.chunk(raw);
        let t = trailer(self.content.digest());
        self.put(self.len, &t);
        self.len += t.len();
        &self.buf[..self.len]
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        if self.buf.len() < at + bytes.len() {
            self.buf.resize(at + bytes.len(), 0);
        }
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

#[cfg(any(test, feature = "internals"))]
/// Decodes every frame in `data` into the raw bytes, verifying the header, block and
/// content checksums. Errors name the byte offset in the framed input. (The tools and
/// tests; loading streams through [`FrameReader`] instead.)
pub fn decode(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = FrameReader::new(data);
    std::io::Read::read_to_end(&mut r, &mut out).map_err(Error::from_read)?;
    Ok(out)
}

/// The 64 KiB of history a linked block may refer back to.
const WINDOW: usize = 64 << 10;

/// Decodes LZ4 frames as a [`std::io::Read`], one block at a time: memory is one
/// compressed block, one decoded block and (for linked blocks) 64 KiB of history,
/// whatever the size of the content. Errors come out as `io::Error`s of kind
/// `InvalidData` wrapping an [`Error`] with the offset in the framed input
/// ([`Error::from_read`] unwraps them).
pub struct FrameReader<R> {
    inner: R,
    /// Framed bytes consumed.
    at: u64,
    /// Decoded bytes: `[history | current block]`; `pos..end` not yet read.
    out: Vec<u8>,
    pos: usize,
    end: usize,
    block: Vec<u8>,
    frame: Option<FrameState>,
    frames: u64,
    done: bool,
}

struct FrameState {
    at: u64,
    block_max: usize,
    independent: bool,
    block_sums: bool,
    content_size: Option<u64>,
    content_sum: Option<Xxh32>,
    decoded: u64,
}

impl<R: std::io::Read> FrameReader<R> {
    /// Reads frames from `inner`, which must start with one.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            at: 0,
            out: Vec::new(),
            pos: 0,
            end: 0,
            block: Vec::new(),
            frame: None,
            frames: 0,
            done: false,
        }
    }

    fn bad<T>(&self, at: u64, what: impl std::fmt::Display) -> Result<T> {
        Err(Error::corrupt(at, format!("LZ4 frame: {what}")))
    }

    /// Fills `buf` completely; `Ok(false)` when the input ended before its first byte
    /// (allowed only where `eof_ok`).
    fn fill(&mut self, buf: &mut [u8], what: &str, eof_ok: bool) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 && eof_ok => return Ok(false),
                Ok(0) => return self.bad(self.at + got as u64, format!("{what} truncated")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from_read(e)),
            }
        }
        self.at += buf.len() as u64;
        Ok(true)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0; 4];
        self.fill(&mut b, what, false)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Starts the next frame (skipping skippable ones). `Ok(false)`: the input ended.
    fn begin_frame(&mut self) -> Result<bool> {
        loop {
            let at = self.at;
            let mut m = [0; 4];
            if !self.fill(&mut m, "frame magic", self.frames > 0)? {
                return Ok(false);
            }
            let magic = u32::from_le_bytes(m);
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                let n = self.u32("skippable frame size")?;
                let skipped = std::io::copy(
                    &mut <&mut R as std::io::Read>::take(&mut self.inner, u64::from(n)),
                    &mut std::io::sink(),
                )
                .map_err(Error::from_read)?;
                self.at += skipped;
                if skipped != u64::from(n) {
                    return self.bad(self.at, "skippable frame truncated");
                }
                self.frames += 1;
                continue;
            }
            if magic != MAGIC {
                let what = if self.frames == 0 {
                    format!("bad magic {magic:#010x}")
                } else {
                    format!("trailing bytes after the last frame (magic {magic:#010x})")
                };
                return self.bad(at, what);
            }
            let mut d = [0u8; 11];
            self.fill(&mut d[..2], "header", false)?;
            let (flg, bd) = (d[0], d[1]);
            if flg >> 6 != 1 {
                return self.bad(at + 4, format!("unsupported frame version {}", flg >> 6));
            }
            if flg & 0x01 != 0 {
                return self.bad(at + 4, "dictionary IDs are not supported");
            }
            let block_max = match (bd >> 4) & 7 {
                4 => 64 << 10,
                5 => 256 << 10,
                6 => 1 << 20,
                7 => 4 << 20,
                x => return self.bad(at + 5, format!("invalid block maximum size id {x}")),
            };
            let has_size = flg & 0x08 != 0;
            let desc_len = 2 + if has_size { 8 } else { 0 };
            self.fill(&mut d[2..desc_len + 1], "header", false)?;
            let want = (xxh32(&d[..desc_len], 0) >> 8) as u8;
            if d[desc_len] != want {
                return Err(Error::ChecksumMismatch {
                    what: "LZ4 frame header",
                    offset: at + 4 + desc_len as u64,
                    expected: u64::from(d[desc_len]),
                    got: u64::from(want),
                });
            }
            self.frame = Some(FrameState {
                at,
                block_max,
                independent: flg & 0x20 != 0,
                block_sums: flg & 0x10 != 0,
                content_size: has_size
                    .then(|| u64::from_le_bytes(d[2..10].try_into().expect("8 bytes"))),
                content_sum: (flg & 0x04 != 0).then(|| Xxh32::new(0)),
                decoded: 0,
            });
            self.frames += 1;
            // History never crosses frames.
            self.pos = 0;
            self.end = 0;
            return Ok(true);
        }
    }

    /// Decodes the next block into `out[pos..end]`. `Ok(false)`: no more content.
    fn next_block(&mut self) -> Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            if self.frame.is_none() && !self.begin_frame()? {
                self.done = true;
                return Ok(false);
            }
            let f = self.frame.as_ref().expect("a frame is open");
            let (block_max, independent, block_sums) = (f.block_max, f.independent, f.block_sums);
            let at = self.at;
            let raw_size = self.u32("block size")?;
            if raw_size == 0 {
                self.end_frame()?;
                continue;
            }
            let stored_raw = raw_size & 0x8000_0000 != 0;
            let len = (raw_size & 0x7FFF_FFFF) as usize;
            if len > block_max {
                return self.bad(
                    at,
                    format!("block of {len} bytes exceeds the frame's maximum {block_max}"),
                );
            }
            let mut block = std::mem::take(&mut self.block);
            if block.len() < len && block.try_reserve(len - block.len()).is_err() {
                return self.bad(at, format!("out of memory for a block of {len} bytes"));
            }
            block.resize(block.len().max(len), 0);
            let r = self.block_into(&mut block[..len], at, block_sums);
            let r = r.and_then(|()| self.decode_block(&block[..len], at, stored_raw, independent));
            self.block = block;
            r?;
            if self.end > self.pos {
                return Ok(true);
            }
        }
    }

    fn block_into(&mut self, block: &mut [u8], at: u64, block_sums: bool) -> Result<()> {
        self.fill(block, "block", false)?;
        if block_sums {
            let stored = self.u32("block checksum")?;
            let got = xxh32(block, 0);
            if stored != got {
                return Err(Error::ChecksumMismatch {
                    what: "LZ4 block",
                    offset: at,
                    expected: u64::from(stored),
                    got: u64::from(got),
                });
            }
        }
        Ok(())
    }

    fn decode_block(&mut self, block: &[u8], at: u64, raw: bool, independent: bool) -> Result<()> {
        let f = self.frame.as_ref().expect("a frame is open");
        // Keep up to 64 KiB of history for linked blocks, at the front of `out`.
        let keep = if independent { 0 } else { self.end.min(WINDOW) };
        self.out.copy_within(self.end - keep..self.end, 0);
        // LZ4 expands at most ~255-fold: room for what this block can decode to, not the
        // frame's block maximum (4 MiB of zeroes per block made a frame of many tiny
        // blocks cost seconds). Allocation sized by the input is fallible.
        let room = if raw {
            block.len()
        } else {
            f.block_max.min(block.len().saturating_mul(256).saturating_add(64))
        };
        let need = keep + room;
        if self.out.len() < need {
            if self.out.try_reserve(need - self.out.len()).is_err() {
                return self.bad(at, format!("out of memory for a block of up to {room} bytes"));
            }
            self.out.resize(need, 0);
        }
        let n = if raw {
            self.out[keep..keep + room].copy_from_slice(block);
            room
        } else {
            let (dict, dst) = self.out.split_at_mut(keep);
            let r = if independent {
                lz4_flex::block::decompress_into(block, &mut dst[..room])
            } else {
                lz4_flex::block::decompress_into_with_dict(block, &mut dst[..room], dict)
            };
            match r {
                Ok(n) => n,
                Err(e) => return self.bad(at, format!("block does not decompress: {e}")),
            }
        };
        self.pos = keep;
        self.end = keep + n;
        let f = self.frame.as_mut().expect("a frame is open");
        f.decoded += n as u64;
        if let Some(h) = f.content_sum.as_mut() {
            h.update(&self.out[keep..keep + n]);
        }
        Ok(())
    }

    fn end_frame(&mut self) -> Result<()> {
        let f = self.frame.take().expect("a frame is open");
        if let Some(size) = f.content_size {
            if size != f.decoded {
                return self.bad(
                    f.at + 6,
                    format!("content size {size} does not match {} decoded bytes", f.decoded),
                );
            }
        }
        if let Some(h) = f.content_sum {
            let at = self.at;
            let stored = self.u32("content checksum")?;
            let got = h.digest();
            if stored != got {
                return Err(Error::ChecksumMismatch {
                    what: "LZ4 content",
                    offset: at,
                    expected: u64::from(stored),
                    got: u64::from(got),
                });
            }
        }
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.end && !self.next_block().map_err(Error::into_read)? {
            return Ok(0);
        }
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of many tiny blocks decodes without reserving the block maximum for each
    /// (the decoded buffer stays small: its capacity tracks the input, not 4 MiB).
    #[test]
    fn tiny_blocks_do_not_reserve_the_block_maximum() {
        let (flg, bd) = (0x60u8, 0x70u8); // version 1, independent blocks; 4 MiB maximum
        let mut f = MAGIC.to_le_bytes().to_vec();
        f.extend_from_slice(&[flg, bd, (xxh32(&[flg, bd], 0) >> 8) as u8]);
        for _ in 0..10_000 {
            // A compressed block of one token: no literals, nothing to decode.
            f.extend_from_slice(&1u32.to_le_bytes());
            f.push(0);
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        let out = decode(&f).unwrap();
        assert!(out.is_empty());
        assert!(out.capacity() < 1 << 20, "capacity {}", out.capacity());
    }

    #[test]
    fn roundtrip_chunks_and_damage() {
        let raw: Vec<u8> = (0..300_000u32)
            .flat_map(|i| ((i / 7) as u16).to_le_bytes())
            .collect();
        let mut f = Framer::new(BlockMax::K64);
        let mut framed = Vec::new();
        let chunks: Vec<&[u8]> = raw.chunks(100_000).collect();
        for c in &chunks[..chunks.len() - 1] {
            framed.extend_from_slice(f.chunk(c));
        }
        framed.extend_from_slice(f.finish(chunks[chunks.len() - 1]));
        assert!(is_lz4_frame(&framed));
        assert_eq!(decode(&framed).unwrap(), raw);
        for at in [5, 20, framed.len() / 2, framed.len() - 2] {
            let mut bad = framed.clone();
            bad[at] ^= 0x41;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
        for cut in [3, 7, 100, framed.len() - 1] {
            assert!(decode(&framed[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let raw: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut f = Framer::new(BlockMax::K64);
        let framed = f.finish(&raw).to_vec();
        // header 7 + block size 4 + raw data + block checksum 4 + end mark and checksum 8
        assert_eq!(framed.len(), 7 + 4 + raw.len() + 4 + 8);
        assert_eq!(decode(&framed).unwrap(), raw);
    }
}
