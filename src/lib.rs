//! forksnap: Redis-compatible background snapshots for in-memory key-value servers.
//!
//! A server implements [`Keyspace`] over its data; forksnap encodes it as Redis RDB
//! ([`rdb`]), optionally wrapped in an LZ4 frame ([`frame`]), and writes it so that stock
//! Redis and Valkey load it. See `ARCHITECTURE.md` for the pipeline and its invariants.
//!
//! The README follows; its example is compiled as a doctest.
#![doc = include_str!("../README.md")]
#![cfg(target_os = "linux")]

pub mod buf;
pub mod error;
pub mod fork;
pub mod frame;
pub mod keyspace;
pub mod pressure;
pub mod rdb;
pub mod sink;

pub use buf::ChunkBuf;
pub use error::{Error, Result};
pub use fork::{
    snapshot_running, ChildPriority, Progress, RunningSnapshot, SnapshotOptions, SnapshotReport,
};
pub use keyspace::{Entry, Keyspace, MemKeyspace, MemValue, Value};
pub use sink::{save, BackendKind, Faults, Format, SaveOptions, SaveReport, Step};
