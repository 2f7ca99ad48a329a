//! What a snapshot reports: [`SnapshotReport`] and [`Progress`], and the child → parent
//! protocol that carries them over a pipe: `u32` tag, `u32` length, payload. The child
//! encodes on the stack and writes with `write(2)` directly (no stdio, no lock a parent
//! thread may hold). The final report is encoded ([`final_message`]) and decoded
//! ([`parse_final`]) here, side by side.

use crate::pressure::CowFigures;
use crate::rdb::EncodeSummary;
use crate::sink::{BackendKind, BackendStats, Step, WriteReport};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PROGRESS: u32 = 1;
pub const DB_KEYS: u32 = 2;
pub const FINAL: u32 = 3;
pub const IO_ERROR: u32 = 4;
pub const OTHER_ERROR: u32 = 5;
pub const BACKEND_REASON: u32 = 6;
/// The keyspace gave an invalid value: key, what.
pub const BAD_VALUE: u32 = 7;
/// A full sync's replica: index, bytes sent, errno (0: it got everything), step.
pub const REPLICA: u32 = 8;

const MAX: usize = 512;

/// A message under construction, on the stack.
pub struct Msg {
    buf: [u8; MAX],
    len: usize,
}

impl Msg {
    pub fn new(tag: u32) -> Msg {
        let mut m = Msg {
            buf: [0; MAX],
            len: 8,
        };
        m.buf[..4].copy_from_slice(&tag.to_le_bytes());
        m
    }

    pub fn u64(mut self, v: u64) -> Msg {
        if self.len + 8 <= MAX {
            self.buf[self.len..self.len + 8].copy_from_slice(&v.to_le_bytes());
            self.len += 8;
        }
        self
    }

    /// A length-prefixed string, truncated to fit (empty when not even its length fits).
    pub fn str(mut self, s: &str) -> Msg {
        let Some(room) = MAX.checked_sub(self.len + 2) else {
            return self;
        };
        let n = s.len().min(room);
        self.buf[self.len..self.len + 2].copy_from_slice(&(n as u16).to_le_bytes());
        self.buf[self.len + 2..self.len + 2 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += 2 + n;
        self
    }

    pub fn bytes(&mut self) -> &[u8] {
        let body = (self.len - 8) as u32;
        self.buf[4..8].copy_from_slice(&body.to_le_bytes());
        &self.buf[..self.len]
    }
}

/// Splits complete messages off the front of `pending`.
pub fn parse(pending: &mut Vec<u8>, mut f: impl FnMut(u32, &[u8])) {
    let mut at = 0;
    while pending.len() - at >= 8 {
        let tag = u32::from_le_bytes(pending[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(pending[at + 4..at + 8].try_into().unwrap()) as usize;
        if pending.len() - at - 8 < len {
            break;
        }
        f(tag, &pending[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    pending.drain(..at);
}

/// Reads payload fields in order.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    pub fn u64(&mut self) -> u64 {
        if self.0.len() < 8 {
            return 0;
        }
        let v = u64::from_le_bytes(self.0[..8].try_into().unwrap());
        self.0 = &self.0[8..];
        v
    }

    pub fn str(&mut self) -> String {
        if self.0.len() < 2 {
            return String::new();
        }
        let n = (u16::from_le_bytes([self.0[0], self.0[1]]) as usize).min(self.0.len() - 2);
        let s = String::from_utf8_lossy(&self.0[2..2 + n]).into_owned();
        self.0 = &self.0[2 + n..];
        s
    }
}

/// The name of an I/O step the child reported, as the `&'static str` its error carries.
/// Every step the child can fail in is listed; anything else is named as such.
pub fn op_name(op: &str) -> &'static str {
    // The `Io` steps, then the steps outside it (the ring's, the descriptor's copy).
    if let Some(step) = Step::from_name(op) {
        return step.name();
    }
    ["dup", "io_uring setup", "io_uring_enter", "send to replicas"]
        .into_iter()
        .find(|o| *o == op)
        .unwrap_or("an unnamed snapshot I/O step")
}

/// Progress of a running snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Keys encoded so far.
    pub keys: u64,
    /// RDB bytes encoded.
    pub raw_bytes: u64,
    /// Bytes in the file so far.
    pub bytes_written: u64,
}

/// What a finished snapshot did.
#[derive(Clone, Debug, Default)]
pub struct SnapshotReport {
    /// The snapshot's target file.
    pub path: PathBuf,
    /// What the encoder wrote: keys and skipped keys per database, RDB bytes, CRC.
    pub summary: EncodeSummary,
    /// Bytes in the file (after LZ4 framing, if any).
    pub bytes_written: u64,
    /// Time `fork()` took in the parent, µs (0 for `save`).
    pub fork_us: u64,
    /// From `start` until the child was reaped (the span of Redis's BGSAVE).
    pub wall: Duration,
    /// The child's own time, from fork to its final report (or `save`'s time).
    pub child_wall: Duration,
    /// The child's CPU time, user and system (0 when another waiter reaped it).
    pub child_cpu: Duration,
    /// The backend that wrote the file.
    pub backend: Option<BackendKind>,
    /// Why that backend (forced, auto's choice, io_uring refused, ...).
    pub backend_reason: String,
    /// Submissions, SQEs, fixed buffers, write-completion latency percentiles.
    pub stats: BackendStats,
    /// Copy-on-write the parent paid while the child ran.
    pub cow: CowFigures,
    /// Fraction of one core the CoW sampling used.
    pub cow_sampling_duty: f64,
    /// The child's own memory half-way through its walk (its `Private_Dirty`: buffers,
    /// arenas, ring, and any shared page it wrote), when
    /// [`SnapshotOptions::probe_child_memory`](crate::SnapshotOptions::probe_child_memory) was set.
    pub child_private_bytes: Option<u64>,
    /// What that measurement took in the child (included in `child_wall` and `wall`).
    pub child_probe: Duration,
    /// A full sync ([`SnapshotOptions::for_replicas`](crate::SnapshotOptions::for_replicas)):
    /// each replica's outcome, in the order given (empty for a file).
    pub replicas: Vec<crate::repl::ReplicaTransfer>,
}

impl SnapshotReport {
    pub(crate) fn from_write(r: &WriteReport, path: &Path) -> Self {
        SnapshotReport {
            path: path.to_path_buf(),
            summary: r.summary.clone(),
            bytes_written: r.bytes_written,
            backend: Some(r.backend),
            backend_reason: r.backend_reason.clone(),
            stats: r.stats.clone(),
            ..Default::default()
        }
    }

    /// Keys written, all databases.
    pub fn keys(&self) -> u64 {
        self.summary.keys()
    }

    /// io_uring entries per submission (batching); 0 for pwrite.
    pub fn sqes_per_submit(&self) -> f64 {
        if self.stats.submit_calls == 0 {
            0.0
        } else {
            self.stats.sqes as f64 / self.stats.submit_calls as f64
        }
    }
}


/// The child's final report: encode.
pub fn final_message(
    r: &WriteReport,
    child_wall: Duration,
    private: Option<u64>,
    probe_us: u64,
) -> Msg {
    let s = &r.stats;
    Msg::new(FINAL)
        .u64(r.summary.skipped_unsupported)
        .u64(r.summary.skipped_empty)
        .u64(r.summary.bytes)
        .u64(r.bytes_written)
        .u64(r.summary.crc)
        .u64(u64::from(r.backend == BackendKind::Uring))
        .u64(s.submit_calls)
        .u64(s.sqes)
        .u64(s.p50_us)
        .u64(s.p99_us)
        .u64(s.p999_us)
        .u64(s.max_us)
        .u64(u64::from(s.fixed_buffers))
        .u64(s.short_writes)
        .u64(s.throttled_us)
        .u64(u64::from(s.prealloc_stopped))
        .u64(child_wall.as_micros() as u64)
        .u64(r.summary.keys())
        // u64::MAX: not measured.
        .u64(private.unwrap_or(u64::MAX))
        .u64(probe_us)
        .u64(r.summary.field_ttls_dropped)
}

/// The child's final report: decode, in [`final_message`]'s order, onto the per-database
/// counts gathered before it. The parent fills in what only it knows (path, fork time,
/// the backend's reason, wall time, CPU, copy-on-write).
pub fn parse_final(f: &mut Fields<'_>, mut summary: EncodeSummary) -> (SnapshotReport, Progress) {
    summary.skipped_unsupported = f.u64();
    summary.skipped_empty = f.u64();
    summary.bytes = f.u64();
    let bytes_written = f.u64();
    summary.crc = f.u64();
    let backend = Some(if f.u64() == 1 {
        BackendKind::Uring
    } else {
        BackendKind::Pwrite
    });
    let stats = BackendStats {
        submit_calls: f.u64(),
        sqes: f.u64(),
        p50_us: f.u64(),
        p99_us: f.u64(),
        p999_us: f.u64(),
        max_us: f.u64(),
        fixed_buffers: f.u64() == 1,
        short_writes: f.u64(),
        throttled_us: f.u64(),
        prealloc_stopped: f.u64() == 1,
    };
    let child_wall = Duration::from_micros(f.u64());
    let progress = Progress {
        keys: f.u64(),
        raw_bytes: summary.bytes,
        bytes_written,
    };
    let child_private_bytes = Some(f.u64()).filter(|&b| b != u64::MAX);
    let child_probe = Duration::from_micros(f.u64());
    summary.field_ttls_dropped = f.u64();
    let r = SnapshotReport {
        summary,
        bytes_written,
        child_wall,
        backend,
        stats,
        child_private_bytes,
        child_probe,
        ..Default::default()
    };
    (r, progress)
}
