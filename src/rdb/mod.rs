//! The RDB format: an I/O-free encoder that fills caller-provided chunks, and a reader
//! that loads every encoding Redis ≥ 2.6 and Valkey write into a [`MemKeyspace`].
//!
//! Byte-level facts live in `docs/FORMAT.md`.
//!
//! [`MemKeyspace`]: crate::keyspace::MemKeyspace

pub mod encoder;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod num;
pub mod reader;
pub mod ziplist;

pub use encoder::{
    encode, encode_to_vec, encode_with, ChunkSink, EncodeOptions, EncodeSummary, Encoder,
};
pub use reader::{load, load_file, LoadOptions, LoadReport};

use crc::{Crc, Table, CRC_64_REDIS};

/// CRC-64/Jones as Redis computes it, with a slice-by-16 table: 3.5 GiB/s here
/// (`cargo bench --bench encode -- checksums`); ANCHORS.md measured the crate's default
/// 1-table variant at 0.45 GB/s.
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Versions the encoder writes. The reader accepts 1 ..= 12 (and Valkey's 80).
pub const MIN_WRITE_VERSION: u8 = 9;
pub const MAX_WRITE_VERSION: u8 = 11;

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
    pub const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
    pub const HASH_METADATA: u8 = 24;
    pub const HASH_LISTPACK_EX: u8 = 25;
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_check_value() {
        assert_eq!(super::CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }
}
