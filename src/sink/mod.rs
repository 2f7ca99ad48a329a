//! Where encoded chunks go: through one I/O interface ([`io::Io`]) to a write backend
//! (io_uring or pwrite), so that a target is only ever replaced by a complete, synced
//! snapshot.
//!
//! **Invariants**
//! - The target path is only ever replaced by `rename` of a fully written and fsynced
//!   temp file in the same directory; the directory is fsynced after.
//! - A failed save removes its temp file and leaves the target as it was.

pub mod backend;
pub mod io;
pub mod pipeline;

pub use backend::{BackendKind, BackendStats};
pub use io::{Faults, Step};
pub use pipeline::{write_snapshot, WriteOptions, WriteReport, MAX_CHUNK_SIZE, MAX_QUEUE_DEPTH};

use crate::error::Result;
use crate::keyspace::Keyspace;
use crate::rdb::{EncodeOptions, EncodeSummary};
use std::path::{Path, PathBuf};

/// The container the RDB bytes are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain RDB: loads in Redis and Valkey as is.
    Rdb,
    /// The RDB in a standard LZ4 frame: `lz4 -d` restores the plain RDB.
    Lz4,
}

/// Options for [`save`], the simple in-process entry point. [`crate::SnapshotOptions`]
/// has every knob.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    pub encode: EncodeOptions,
    pub format: Format,
    /// Bytes per chunk (rounded up to whole pages).
    pub chunk_size: usize,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            encode: EncodeOptions::default(),
            format: Format::Rdb,
            chunk_size: 1 << 20,
        }
    }
}

/// What [`save`] did.
#[derive(Clone, Debug)]
pub struct SaveReport {
    pub summary: EncodeSummary,
    /// Bytes in the file (after LZ4 framing, if any).
    pub bytes_written: u64,
    pub path: PathBuf,
}

/// Encodes `ks` in this process and atomically replaces `path` with it, through the same
/// pipeline a forked snapshot uses.
pub fn save(ks: &dyn Keyspace, path: &Path, opts: &SaveOptions) -> Result<SaveReport> {
    let write = WriteOptions {
        format: opts.format,
        chunk_size: opts.chunk_size,
        ..WriteOptions::default()
    };
    let tmp = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(format!("temp-{}-save.rdb", std::process::id()));
    let mut io = io::Io::new(tmp, path.to_path_buf(), io::Faults::default());
    let r = write_snapshot(ks, &opts.encode, &write, &mut io, &mut |_, _, _| {})?;
    Ok(SaveReport {
        summary: r.summary,
        bytes_written: r.bytes_written,
        path: path.to_path_buf(),
    })
}
