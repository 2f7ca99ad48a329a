//! Replication: a full sync is the snapshot pipeline with sockets instead of a file.
//!
//! - Master side ([`master`]): [`Master`] keeps the replication ID, the offset and the
//!   backlog of the command stream (fed in the AOF's propagated form, `SELECT` on a
//!   database change), answers `PSYNC` and records what replicas say in `REPLCONF`
//!   ([`ReplicaInfo`]). A full sync forks as a snapshot does
//!   (`SnapshotOptions::for_replicas`): the child streams `+FULLRESYNC`, `$EOF:<mark>`,
//!   the RDB and the mark to every replica's socket at once ([`send`]: one walk, several
//!   sockets, a per-replica deadline), and reports each replica's outcome.
//! - Replica side ([`replica`]): [`ReplicaLink`] handshakes as a stock Redis 7 replica,
//!   loads the RDB from the socket through a [`LoadVisitor`](crate::LoadVisitor) (no file)
//!   and hands over the command stream, acknowledging its offset every second.
//!
//! **Invariants**
//! - The child never changes the sockets it inherited (their file descriptions are the
//!   parent's): every send is non-blocking and signal-free, and it waits in `poll`.
//! - A replica that fails or takes nothing for the timeout is dropped and reported; the
//!   others go on; the sync fails only when none is left.
//! - The stream a replica gets after the RDB starts at the `+FULLRESYNC` offset, which
//!   is taken with the server's store frozen (no write between it and the fork), and
//!   starts with a `SELECT`.
//! - A replica is sent nothing after an EOF-marked RDB until its first `REPLCONF ACK`
//!   (it finds the mark at the end of what it received).

pub(crate) mod master;
pub(crate) mod replica;
pub(crate) mod send;

pub use master::{Lagged, Master, Psync, ReplicaInfo};
pub use replica::{ReplCommand, ReplicaLink, ReplicaOptions, SyncKind};

use crate::buf::ChunkBuf;
use crate::error::Result;
use crate::keyspace::Keyspace;
use crate::rdb::{encode_with, EncodeOptions, EncodeSummary};
use std::os::fd::RawFd;
use std::time::Duration;

/// The sockets of a full sync (`SnapshotOptions::for_replicas`).
#[derive(Clone, Debug)]
pub(crate) struct Replicas {
    pub fds: Vec<RawFd>,
    /// Sent to each before the RDB (the `+FULLRESYNC` line).
    pub first: Vec<u8>,
    /// How long a replica may take nothing before it is dropped.
    pub timeout: Duration,
}

/// How one replica's transfer went (in `SnapshotReport::replicas`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaTransfer {
    /// The socket, as passed to `SnapshotOptions::for_replicas`.
    pub fd: RawFd,
    /// Bytes it took (the first line and the framing included).
    pub bytes: u64,
    /// Why it was dropped (`None`: it got the whole RDB).
    pub error: Option<String>,
}

/// What the child's transfer did: the encoder's summary and each replica's outcome.
pub(crate) struct Streamed {
    pub summary: EncodeSummary,
    pub peers: Vec<send::Peer>,
    pub waits: u64,
}

/// In the child: `first`, `$EOF:<mark>\r\n`, the RDB, the mark, to every replica.
pub(crate) fn stream_snapshot(
    ks: &dyn Keyspace,
    enc: &EncodeOptions,
    chunk_size: usize,
    to: &Replicas,
    progress: &mut dyn FnMut(u64, u64, u64),
) -> Result<Streamed> {
    let mark = send::eof_mark();
    let mut fan = send::Fanout::new(&to.fds, to.timeout);
    let mut head = to.first.clone();
    head.extend_from_slice(b"$EOF:");
    head.extend_from_slice(&mark);
    head.extend_from_slice(b"\r\n");
    fan.send_all(&head)?;
    let chunk = ChunkBuf::new(chunk_size);
    let mut report =
        |e: &crate::rdb::Encoder<send::Fanout>, keys: u64| progress(keys, e.bytes(), e.bytes());
    let (mut fan, last, summary) = encode_with(ks, enc, fan, chunk, &mut report)?;
    fan.send_all(last.as_slice())?;
    fan.send_all(&mark)?;
    progress(summary.keys(), summary.bytes, summary.bytes);
    Ok(Streamed {
        summary,
        waits: fan.waits,
        peers: fan.peers,
    })
}

/// `errno` and step as the report's text for a dropped replica.
pub(crate) fn peer_error(errno: i32, step: &str) -> String {
    format!(
        "{step} failed: {}",
        std::io::Error::from_raw_os_error(errno)
    )
}
