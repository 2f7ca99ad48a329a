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

/// Decodes every frame in `data` into the raw bytes, verifying the header, block and
/// content checksums. Errors name the byte offset in the framed input.
pub fn decode(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let bad = |at: usize, what: String| Err(Error::corrupt(at, format!("LZ4 frame: {what}")));
    while p < data.len() {
        let Some(m) = data.get(p..p + 4) else {
            return bad(p, "trailing bytes after the last frame".into());
        };
        let magic = u32::from_le_bytes(m.try_into().unwrap());
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let Some(sz) = data.get(p + 4..p + 8) else {
                return bad(p, "skippable frame truncated".into());
            };
            p += 8 + u32::from_le_bytes(sz.try_into().unwrap()) as usize;
            continue;
        }
        if magic != MAGIC {
            return bad(p, format!("bad magic {magic:#010x}"));
        }
        let frame_at = p;
        let Some(&[flg, bd]) = data.get(p + 4..p + 6) else {
            return bad(p, "header truncated".into());
        };
        if flg >> 6 != 1 {
            return bad(p + 4, format!("unsupported frame version {}", flg >> 6));
        }
        let independent = flg & 0x20 != 0;
        let block_sums = flg & 0x10 != 0;
        let has_size = flg & 0x08 != 0;
        let content_sum = flg & 0x04 != 0;
        if flg & 0x01 != 0 {
            return bad(p + 4, "dictionary IDs are not supported".into());
        }
        let block_max = match (bd >> 4) & 7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            x => return bad(p + 5, format!("invalid block maximum size id {x}")),
        };
        let desc_end = p + 6 + if has_size { 8 } else { 0 };
        let Some(&hc) = data.get(desc_end) else {
            return bad(p, "header truncated".into());
        };
        let want = (xxh32(&data[p + 4..desc_end], 0) >> 8) as u8;
        if hc != want {
            return Err(Error::ChecksumMismatch {
                what: "LZ4 frame header",
                offset: desc_end as u64,
                expected: u64::from(hc),
                got: u64::from(want),
            });
        }
        p = desc_end + 1;
        let frame_start = out.len();
        loop {
            let Some(s) = data.get(p..p + 4) else {
                return bad(p, "block size truncated".into());
            };
            let raw_size = u32::from_le_bytes(s.try_into().unwrap());
            if raw_size == 0 {
                p += 4;
                break;
            }
            let stored_raw = raw_size & 0x8000_0000 != 0;
            let len = (raw_size & 0x7FFF_FFFF) as usize;
            if len > block_max {
                return bad(
                    p,
                    format!("block of {len} bytes exceeds the frame's maximum {block_max}"),
                );
            }
            let Some(block) = data.get(p + 4..p + 4 + len) else {
                return bad(p, "block truncated".into());
            };
            if block_sums {
                let Some(c) = data.get(p + 4 + len..p + 8 + len) else {
                    return bad(p + 4 + len, "block checksum truncated".into());
                };
                let stored = u32::from_le_bytes(c.try_into().unwrap());
                let got = xxh32(block, 0);
                if stored != got {
                    return Err(Error::ChecksumMismatch {
                        what: "LZ4 block",
                        offset: p as u64,
                        expected: u64::from(stored),
                        got: u64::from(got),
                    });
                }
            }
            // LZ4 expands at most ~255-fold: room for what this block can decode to, not
            // the frame's block maximum (4 MiB of zeroes per block made a frame of many
            // tiny blocks cost seconds). Allocation sized by the input is fallible.
            let room = if stored_raw {
                len
            } else {
                block_max.min(len.saturating_mul(256).saturating_add(64))
            };
            if out.try_reserve(room).is_err() {
                return bad(p, format!("out of memory for a block of up to {room} bytes"));
            }
            if stored_raw {
                out.extend_from_slice(block);
            } else {
                let start = out.len();
                out.resize(start + room, 0);
                let (prev, dst) = out.split_at_mut(start);
                let n = if independent {
                    lz4_flex::block::decompress_into(block, dst)
                } else {
                    let dict = &prev[frame_start.max(start.saturating_sub(64 << 10))..];
                    lz4_flex::block::decompress_into_with_dict(block, dst, dict)
                };
                match n {
                    Ok(n) => out.truncate(start + n),
                    Err(e) => return bad(p, format!("block does not decompress: {e}")),
                }
            }
            p += 4 + len + if block_sums { 4 } else { 0 };
        }
        if has_size {
            let size = u64::from_le_bytes(data[frame_at + 6..frame_at + 14].try_into().unwrap());
            if size != (out.len() - frame_start) as u64 {
                return bad(
                    frame_at + 6,
                    format!(
                        "content size {size} does not match {} decoded bytes",
                        out.len() - frame_start
                    ),
                );
            }
        }
        if content_sum {
            let Some(c) = data.get(p..p + 4) else {
                return bad(p, "content checksum truncated".into());
            };
            let stored = u32::from_le_bytes(c.try_into().unwrap());
            let got = xxh32(&out[frame_start..], 0);
            if stored != got {
                return Err(Error::ChecksumMismatch {
                    what: "LZ4 content",
                    offset: p as u64,
                    expected: u64::from(stored),
                    got: u64::from(got),
                });
            }
            p += 4;
        }
    }
    Ok(out)
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
