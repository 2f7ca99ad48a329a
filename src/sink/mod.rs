//! Where encoded chunks go: files, written so that a target is only ever replaced by a
//! complete, synced snapshot.
//!
//! **Invariants**
//! - The target path is only ever replaced by `rename` of a fully written and fsynced
//!   temp file in the same directory; the directory is fsynced after.
//! - A failed save removes its temp file and leaves the target as it was.

mod atomic;

pub use atomic::AtomicFile;

use crate::buf::ChunkBuf;
use crate::error::{Error, Result};
use crate::frame::{BlockMax, Framer};
use crate::keyspace::Keyspace;
use crate::rdb::{encode, ChunkSink, EncodeOptions, EncodeSummary};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The container the RDB bytes are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain RDB: loads in Redis and Valkey as is.
    Rdb,
    /// The RDB in a standard LZ4 frame: `lz4 -d` restores the plain RDB.
    Lz4,
}

/// Options for [`save`].
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

/// Writes chunks to a file, LZ4-framing them if asked.
struct FileChunkSink<'f> {
    file: &'f mut File,
    path: &'f Path,
    framer: Option<Framer>,
    written: u64,
}

impl FileChunkSink<'_> {
    fn write(&mut self, raw: &[u8], last: bool) -> Result<()> {
        let bytes = match self.framer.as_mut() {
            Some(f) if last => f.finish(raw),
            Some(f) => f.chunk(raw),
            None => raw,
        };
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("write", self.path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

impl ChunkSink for FileChunkSink<'_> {
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        self.write(chunk.as_slice(), false)?;
        chunk.clear();
        Ok(())
    }
}

/// Encodes `ks` in this process and atomically replaces `path` with it.
pub fn save(ks: &dyn Keyspace, path: &Path, opts: &SaveOptions) -> Result<SaveReport> {
    let mut tmp = AtomicFile::create(path)?;
    let framer =
        (opts.format == Format::Lz4).then(|| Framer::new(BlockMax::for_chunk(opts.chunk_size)));
    let target = tmp.target().to_path_buf();
    let (summary, bytes_written) = {
        let (file, tpath) = tmp.file_mut();
        let sink = FileChunkSink {
            file,
            path: tpath,
            framer,
            written: 0,
        };
        let (mut sink, last, summary) =
            encode(ks, &opts.encode, sink, ChunkBuf::new(opts.chunk_size))?;
        sink.write(last.as_slice(), true)?;
        (summary, sink.written)
    };
    tmp.commit()?;
    Ok(SaveReport {
        summary,
        bytes_written,
        path: target,
    })
}
