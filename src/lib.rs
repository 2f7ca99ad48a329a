//! forksnap: Redis-compatible background snapshots for in-memory key-value servers.
//!
//! A server implements [`Keyspace`] over its data; forksnap encodes it as Redis RDB
//! ([`rdb`]), optionally wrapped in an LZ4 frame ([`frame`]), and writes it so that stock
//! Redis and Valkey load it. See `ARCHITECTURE.md` for the pipeline and its invariants.
//!
//! The README follows; its example is compiled as a doctest.
#![doc = include_str!("../README.md")]

// forksnap is Linux-only: it forks, reads /proc/self/smaps_rollup, sets the child's
// scheduling class and writes through io_uring (pwrite when the kernel refuses it).
#[cfg(not(target_os = "linux"))]
compile_error!(
    "forksnap supports Linux only: it forks the server, reads /proc and writes through \
     io_uring (with a pwrite fallback); no other operating system provides these"
);

#[cfg(target_os = "linux")]
pub mod buf;
#[cfg(target_os = "linux")]
pub mod error;
#[cfg(target_os = "linux")]
pub mod fork;
#[cfg(target_os = "linux")]
pub mod frame;
#[cfg(target_os = "linux")]
pub mod keyspace;
#[cfg(target_os = "linux")]
pub mod pressure;
#[cfg(target_os = "linux")]
pub mod rdb;
#[cfg(target_os = "linux")]
pub mod sink;

#[cfg(target_os = "linux")]
pub use buf::ChunkBuf;
#[cfg(target_os = "linux")]
pub use error::{Error, Result};
#[cfg(target_os = "linux")]
pub use fork::{
    snapshot_running, ChildPriority, Progress, RunningSnapshot, SnapshotOptions, SnapshotReport,
};
#[cfg(target_os = "linux")]
pub use keyspace::{
    DbInfo, Entry, HashView, Keyspace, MemKeyspace, MemValue, SeqView, Value, ZSetView,
};
#[cfg(target_os = "linux")]
pub use sink::{BackendKind, Faults, Format, Step};
