//! The RDB format: an I/O-free encoder that fills caller-provided chunks, and a
//! streaming reader that hands every encoding Redis ≥ 2.6 and Valkey write to a
//! [`LoadVisitor`] ([`MemKeyspace`] is one).
//!
//! Byte-level facts live in `docs/FORMAT.md`.
//!
//! [`MemKeyspace`]: crate::keyspace::MemKeyspace

pub mod encoder;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod num;
pub(crate) mod parallel;
pub mod reader;
pub(crate) mod source;
pub(crate) mod stream;
pub(crate) mod uniq;
pub mod ziplist;

pub use encoder::{encode_with, ChunkSink, EncodeOptions, EncodeSummary, Encoder};
/// Whole-keyspace encoders for the benches, tools and tests.
#[cfg(any(test, feature = "internals"))]
pub use encoder::{encode, encode_to_vec, VecSink};
#[cfg(any(test, feature = "internals"))]
pub use reader::load;
pub use reader::{
    load_file, load_into, LoadHash, LoadOptions, LoadReport, LoadSeq, LoadStream, LoadValue, LoadVisitor,
    LoadZSet, VisitResult,
};

/// CRC-64/Jones as Redis computes it (the catalogue's CRC-64/REDIS), by `crc-fast`'s
/// carry-less-multiply folding (PCLMULQDQ; a table fallback elsewhere). It replaced the
/// `crc` crate's slice-by-16 table (3.4 GiB/s) after a profile of the 10M-key child showed
/// CRC at 47% of its time: `cargo bench --bench encode -- checksums` has both side by side.
///
/// A digest may also absorb the CRC of bytes digested elsewhere ([`Crc64::combine`]:
/// the parallel child's fragments), without reading them again.
#[derive(Clone, Copy)]
pub struct Crc64 {
    /// The CRC of everything before `tail`'s bytes.
    prefix: u64,
    tail: crc_fast::Digest,
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 {
            prefix: 0,
            tail: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis),
        }
    }
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.tail.update(bytes)
    }
    pub fn finalize(&self) -> u64 {
        crc64_combine(self.prefix, self.tail.finalize(), self.tail.get_amount())
    }
    /// Appends `other` (the CRC of `len` bytes) as if its bytes had followed.
    pub fn combine(&mut self, other: u64, len: u64) {
        self.prefix = crc64_combine(self.finalize(), other, len);
        self.tail.reset();
    }
    /// The CRC of `bytes` in one call.
    pub fn checksum(bytes: &[u8]) -> u64 {
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, bytes)
    }
    /// Runs crc-fast's one-time CPU feature detection (a `OnceLock`) now. Called before
    /// fork, so that a child never waits on a detection another parent thread had begun.
    pub fn prepare() {
        let _ = Self::checksum(b"");
    }
}

/// CRC-64/REDIS's polynomial, reflected (the CRC is computed LSB first).
const CRC64_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

/// `a · b mod P` for polynomials in the reflected representation (x^0 is bit 63).
const fn mult_mod_p(a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return 0;
    }
    let mut m = 1u64 << 63;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ CRC64_POLY } else { b >> 1 };
    }
}

/// `x^(2^k) mod P` for k in 0..64.
const X2N: [u64; 64] = {
    let mut t = [0u64; 64];
    t[0] = 1 << 62; // x^1
    let mut k = 1;
    while k < 64 {
        t[k] = mult_mod_p(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// The CRC of `A ‖ B` from `crc(A)`, `crc(B)` and B's length, for CRC-64/REDIS (its
/// initial value and final XOR are 0, so no correction is needed): `crc(A)` times
/// `x^(8·len)`, plus `crc(B)`, mod P; the power by squares from `X2N` (a few dozen
/// 64-bit steps; crc-fast's own combine squares 64×64 bit matrices and took 9% of a
/// parallel child's CPU).
pub fn crc64_combine(a: u64, b: u64, len: u64) -> u64 {
    let mut p = 1u64 << 63; // x^0
    let (mut n, mut k) = (len, 3);
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(X2N[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    mult_mod_p(p, a) ^ b
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:#018x})", self.finalize())
    }
}

/// Versions the encoder writes. The reader accepts 1 ..= 12 (and Valkey's 80).
pub const MIN_WRITE_VERSION: u8 = 9;
pub const MAX_WRITE_VERSION: u8 = 12;
/// `VALKEY080`'s version: Valkey 9's files (written when asked for version 80).
pub const VALKEY_VERSION: u8 = 80;

pub mod types {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
    pub const HASH_METADATA_PRE_GA: u8 = 22;
    /// Valkey 9's hash with field expiry (in `VALKEY080` files; Redis's 22 otherwise).
    pub const HASH_2: u8 = 22;
    pub const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
    pub const HASH_METADATA: u8 = 24;
    pub const HASH_LISTPACK_EX: u8 = 25;
}

/// The items of a module value or MODULE_AUX record (each introduced by one of these as
/// a length).
pub mod module_ops {
    pub const MODULE_EOF: u64 = 0;
    pub const MODULE_SINT: u64 = 1;
    pub const MODULE_UINT: u64 = 2;
    pub const MODULE_FLOAT: u64 = 3;
    pub const MODULE_DOUBLE: u64 = 4;
    pub const MODULE_STRING: u64 = 5;
}

pub mod opcodes {
    pub const SLOT_INFO: u8 = 0xF4;
    pub const FUNCTION2: u8 = 0xF5;
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    pub const MODULE_AUX: u8 = 0xF7;
    pub const IDLE: u8 = 0xF8;
    pub const FREQ: u8 = 0xF9;
    pub const AUX: u8 = 0xFA;
    pub const RESIZEDB: u8 = 0xFB;
    pub const EXPIRETIME_MS: u8 = 0xFC;
    pub const EXPIRETIME: u8 = 0xFD;
    pub const SELECTDB: u8 = 0xFE;
    pub const EOF: u8 = 0xFF;
}

/// Redis 7's defaults for choosing a compact encoding.
pub mod limits {
    pub const HASH_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
    pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;
    pub const SET_MAX_INTSET_ENTRIES: usize = 512;
    pub const SET_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const SET_MAX_LISTPACK_VALUE: usize = 64;
    /// `list-max-listpack-size -2`: quicklist nodes of at most 8 KiB.
    pub const LIST_NODE_BYTES: usize = 8192;
    /// The latest hash field expiry Redis accepts (`EB_EXPIRE_TIME_MAX`, 2^48 − 1 ms).
    pub const FIELD_EXPIRE_MAX: u64 = (1 << 48) - 1;
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_check_value() {
        assert_eq!(super::Crc64::checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn crc64_matches_the_table_implementation_across_splits() {
        let table = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [0, 1, 15, 16, 17, 127, 128, 129, 255, 4096, 65_537, 70_000] {
            let want = table.checksum(&data[..len]);
            assert_eq!(super::Crc64::checksum(&data[..len]), want, "len {len}");
            for split in [0, 1, 7, 64, len / 2, len.saturating_sub(3)] {
                let split = split.min(len);
                let mut d = super::Crc64::new();
                d.update(&data[..split]);
                d.update(&data[split..len]);
                assert_eq!(d.finalize(), want, "len {len} split {split}");
            }
        }
    }
}

#[cfg(test)]
mod crc_tests {
    use super::*;

    #[test]
    fn combine_equals_the_crc_of_the_concatenation() {
        assert_eq!(Crc64::checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 255, 4096, 65_537, 299_999, 300_000] {
            let (a, b) = data.split_at(cut);
            let want = Crc64::checksum(&data);
            let got = crc64_combine(Crc64::checksum(a), Crc64::checksum(b), b.len() as u64);
            assert_eq!(got, want, "cut at {cut}");
            let mut d = Crc64::new();
            d.update(&a[..cut / 2]);
            d.combine(Crc64::checksum(&a[cut / 2..]), (cut - cut / 2) as u64);
            d.update(b);
            assert_eq!(d.finalize(), want, "digest, cut at {cut}");
        }
    }
}
