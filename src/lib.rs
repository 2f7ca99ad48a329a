//! forksnap: Redis-compatible background snapshots for in-memory key-value servers.
//!
//! A server implements [`Keyspace`] over its data; forksnap encodes it as Redis RDB,
//! optionally wrapped in an LZ4 frame, and writes it so that stock Redis and Valkey load
//! it. See `ARCHITECTURE.md` for the pipeline and its invariants.
//!
//! The README follows; its example is compiled as a doctest.
#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "internals"), deny(missing_docs))]

// forksnap is Linux-only: it forks, reads /proc/self/smaps_rollup, sets the child's
// scheduling class and writes through io_uring (pwrite when the kernel refuses it).
#[cfg(not(target_os = "linux"))]
compile_error!(
    "forksnap supports Linux only: it forks the server, reads /proc and writes through \
     io_uring (with a pwrite fallback); no other operating system provides these"
);

/// Declares the pipeline's modules: private, or public (hidden from the docs) with the
/// `internals` feature, which the benches, the tools and the tests use.
macro_rules! internal_modules {
    ($($m:ident),*) => {$(
        #[cfg(all(target_os = "linux", feature = "internals"))]
        #[doc(hidden)]
        pub mod $m;
        #[cfg(all(target_os = "linux", not(feature = "internals")))]
        mod $m;
    )*};
}
internal_modules!(aof, buf, error, fork, frame, keyspace, pressure, rdb, repl, sink);

// The public API: what a server uses. Everything else is private (see ARCHITECTURE.md,
// "API boundary").
#[cfg(target_os = "linux")]
pub use aof::{
    Aof, AofLoadReport, AofOptions, AofStats, AofVisitor, AppendStats, Fsync, RewriteReport,
};
#[cfg(target_os = "linux")]
pub use error::{Error, Result};
#[cfg(target_os = "linux")]
pub use fork::{
    snapshot_running, ChildPriority, Progress, RunningSnapshot, SavePoints, SavePointsError,
    SnapshotOptions, SnapshotReport,
};
#[cfg(target_os = "linux")]
pub use keyspace::{
    dataset_digest, format_score, prefetch, value_digest, BuildError, DbInfo, Digest, Entry,
    FieldValueTtls, FieldValues, HashView, Keyspace, MemDb, MemKeyspace, MemStream, MemValue,
    ModuleAux, ModuleItem, ModuleValue, Partitioned, PendingEntry, SeqView, StreamConsumer,
    StreamEntry, StreamGroup, StreamId, StreamMeta, StreamView, Value, ZSetView,
};
#[cfg(target_os = "linux")]
pub use pressure::{CowFigures, CowSampling};
#[cfg(target_os = "linux")]
pub use rdb::{
    load_file, load_into, EncodeSummary, LoadHash, LoadOptions, LoadReport, LoadSeq, LoadStream,
    LoadValue, LoadVisitor, LoadZSet, VisitResult,
};
#[cfg(target_os = "linux")]
pub use repl::{
    Lagged, Master, Psync, ReplCommand, ReplicaInfo, ReplicaLink, ReplicaOptions, ReplicaTransfer,
    SyncKind,
};
#[cfg(target_os = "linux")]
pub use sink::{BackendKind, BackendStats, Format};
/// Fault injection for tests: make any I/O step of a snapshot fail (feature
/// `fault-injection`).
#[cfg(all(target_os = "linux", feature = "fault-injection"))]
pub use sink::{Faults, Step};
