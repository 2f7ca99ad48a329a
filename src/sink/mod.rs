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
pub(crate) mod ratelimit;

pub use backend::{BackendKind, BackendStats};
pub use io::Step;
#[cfg(any(test, feature = "fault-injection", feature = "internals"))]
pub use io::Faults;
pub use pipeline::{write_snapshot, WriteOptions, WriteReport};
/// The largest chunk and queue depth a snapshot accepts.
#[cfg(any(test, feature = "internals"))]
pub use pipeline::{MAX_CHUNK_SIZE, MAX_QUEUE_DEPTH};

/// The container the RDB bytes are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain RDB: loads in Redis and Valkey as is.
    Rdb,
    /// The RDB in a standard LZ4 frame: `lz4 -d` restores the plain RDB.
    Lz4,
}
