//! [`SnapshotOptions`], the one builder, and what it starts: `save` in this process,
//! `start` by fork.

use super::child::child_main;
use super::running::RunningSnapshot;
use super::{temp_path, ACTIVE};
use crate::error::{Error, Result};
use crate::keyspace::Keyspace;
use crate::pressure::CowSampling;
use crate::rdb::EncodeOptions;
use crate::sink::io::Io;
use crate::sink::{write_snapshot, BackendKind, Format, WriteOptions};
#[cfg(feature = "fault-injection")]
use crate::sink::Faults;
use super::report::SnapshotReport;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How the child competes with the parent for CPU.
///
/// On a machine with few cores the child (encoding at full speed) and the serving parent
/// share them, and a parent thread that wakes to serve a request can wait for the child's
/// time slice. Measured with snapbench (10M populate keys, 100k overwrites/s in the
/// parent, `--runs 1 --load-runs 3 --child-priority inherit|batch` alternated twice;
/// docs/PERFORMANCE.md): the parent's write p99 during the snapshot over its p99 without one had
/// a median of ~7.5× (5.2–19.7×) inheriting the parent's policy and ~2.7× (2.4–6.7×) with
/// `Batch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChildPriority {
    /// The parent's scheduling policy and nice value, unchanged.
    Inherit,
    /// `SCHED_BATCH`: the same CPU share as the parent, but it does not preempt the
    /// parent's wake-ups, so a busy parent slows the snapshot only by the CPU it uses.
    #[default]
    Batch,
    /// `SCHED_IDLE`: runs only when nothing else wants the CPU; a parent that keeps every
    /// core busy can stall the snapshot indefinitely.
    Idle,
    /// The parent's policy at this nice value (0 to 19; it can only lower the priority,
    /// which needs no privilege).
    Nice(i32),
}

impl ChildPriority {
    fn validate(self) -> Result<()> {
        match self {
            ChildPriority::Nice(n) if !(0..=19).contains(&n) => Err(Error::InvalidOption(format!(
                "child nice value {n} is outside 0..=19"
            ))),
            _ => Ok(()),
        }
    }

    /// Applies to the calling process (the child, before it starts any thread, so its
    /// threads inherit it). A hint: if the kernel refuses, the child runs as the parent.
    pub(super) fn apply(self) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscalls on this process with a valid, live `sched_param`.
        unsafe {
            match self {
                ChildPriority::Inherit => {}
                ChildPriority::Batch => {
                    libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
                }
                ChildPriority::Idle => {
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                }
                ChildPriority::Nice(n) => {
                    libc::setpriority(libc::PRIO_PROCESS, 0, n);
                }
            }
        }
    }
}

/// Everything a snapshot needs to know: the one builder, for [`save`](Self::save)
/// (in-process) and [`start`](Self::start) (forked). Every option has a method; the
/// result never depends on the order they are called in.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub(crate) path: PathBuf,
    pub(crate) encode: EncodeOptions,
    pub(crate) write: WriteOptions,
    pub(crate) cow_budget: Option<u64>,
    pub(crate) cow_sampling: CowSampling,
    pub(crate) probe_child_memory: bool,
    pub(crate) child_priority: ChildPriority,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) keep_fds: Vec<RawFd>,
    /// A full sync's sockets instead of the file.
    pub(crate) replicas: Option<crate::repl::Replicas>,
}

impl SnapshotOptions {
    /// Defaults: plain RDB version 11 with LZF, 1 MiB chunks, O_DIRECT where the file
    /// system accepts it with `BackendKind::Auto` (io_uring with O_DIRECT, pwrite for
    /// buffered writes), 4 writes in flight, writeback paced every 4 MiB (buffered only), no CoW budget, child at `SCHED_BATCH`, a 60 s stall timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SnapshotOptions {
            path: path.into(),
            encode: EncodeOptions::default(),
            write: WriteOptions::default(),
            cow_budget: None,
            cow_sampling: CowSampling::default(),
            probe_child_memory: false,
            child_priority: ChildPriority::default(),
            stall_timeout: Some(Duration::from_secs(60)),
            keep_fds: Vec::new(),
            replicas: None,
        }
    }

    /// A full sync: [`start`](Self::start) streams the snapshot to these connected
    /// replica sockets instead of writing a file (diskless replication), with the same
    /// encoder, progress, copy-on-write figures and report. Each socket gets `first` (the
    /// line from [`Master::full_resync`](crate::Master::full_resync), taken with the store
    /// frozen), then `$EOF:<40 random characters>\r\n`, the RDB and the same 40
    /// characters, as a Redis master sends to a replica that announced `capa eof`.
    ///
    /// One walk feeds every socket: a replica that fails or takes nothing for
    /// [`replica_timeout`](Self::replica_timeout) is dropped and the others go on; each
    /// one's outcome is in [`SnapshotReport::replicas`]; the snapshot fails only when
    /// none is left. The child never changes the sockets (they stay the parent's,
    /// non-blocking or not) and ignores `SIGPIPE`. Send nothing else on them until each
    /// replica's first `REPLCONF ACK`. The file options (`direct`, `backend`,
    /// `queue_depth`, `batch`, `pacing_bytes`, `max_write_rate`, `workers`) do not
    /// apply; the format must be [`Format::Rdb`]; choose the version the replicas load
    /// ([`ReplicaInfo::rdb_version`](crate::ReplicaInfo::rdb_version)).
    ///
    /// LZF is off by default here (on for files): on loopback a full sync of 10M
    /// `DEBUG POPULATE` keys from examples/kvserver to itself took a median 8.71 s without
    /// LZF and 12.36 s with it, the master's child and the replica sharing 2 cores
    /// (`tools/compare-repl`, docs/PERFORMANCE.md). Turn it on with
    /// [`lzf(true)`](Self::lzf) for a link slower than the encoder (about 1 Gb/s for that
    /// data, whose plain RDB is 3.3 times its LZF one).
    pub fn for_replicas(sockets: &[RawFd], first: &[u8]) -> Self {
        let mut o = SnapshotOptions::new(PathBuf::new()).lzf(false);
        o.replicas = Some(crate::repl::Replicas {
            fds: sockets.to_vec(),
            first: first.to_vec(),
            timeout: Duration::from_secs(60),
        });
        o
    }
    /// A full sync's per-replica timeout: a replica that takes no byte for this long is
    /// dropped (default 60 s, Redis's `repl-timeout`). No effect on a file.
    pub fn replica_timeout(mut self, t: Duration) -> Self {
        if let Some(r) = self.replicas.as_mut() {
            r.timeout = t;
        }
        self
    }
    /// Plain RDB or an LZ4 frame. In an LZ4 frame strings are never LZF-compressed (the
    /// frame compresses instead), whatever [`lzf`](Self::lzf) says, in either call order.
    pub fn format(mut self, f: Format) -> Self {
        self.write.format = f;
        self
    }
    /// The RDB version written, 9 to 12, or 80 for Valkey 9's `VALKEY080` (default 11);
    /// see the README's compatibility table: 10 for Redis 7.0, 9 for Redis 5 and 6, 12
    /// (Redis ≥ 7.4) or 80 (Valkey ≥ 9) to keep hash field TTLs.
    pub fn rdb_version(mut self, v: u8) -> Self {
        self.encode.version = v;
        self
    }
    /// Write hashes whose fields have TTLs without the TTLs when the version cannot hold
    /// them (9 to 11), counting them in the report, instead of failing (the default).
    pub fn drop_field_ttls(mut self, on: bool) -> Self {
        self.encode.drop_field_ttls = on;
        self
    }
    /// LZF-compress long strings, as Redis's `rdbcompression yes` (default on). Applies
    /// to [`Format::Rdb`] only.
    pub fn lzf(mut self, on: bool) -> Self {
        self.encode.lzf = on;
        self
    }
    /// Caps the snapshot's disk write rate at `bytes_per_s` (default `None`: no cap), so
    /// that it does not starve other I/O on the same disk (redis/redis#5518, #4815). A
    /// token bucket in the child's writer: a write that would pass the rate waits
    /// (sleeps; never spins) and the encoder runs ahead into the pipeline's buffers; the
    /// burst is two chunks or 50 ms of the rate. The wait is reported in
    /// [`BackendStats::throttled_us`](crate::BackendStats::throttled_us). `Some(0)` is
    /// refused at `start`/`save`.
    pub fn max_write_rate(mut self, bytes_per_s: Option<u64>) -> Self {
        self.write.max_write_rate = bytes_per_s;
        self
    }
    /// Bytes per chunk, one write each (default 1 MiB; rounded up to whole pages; at
    /// most 64 MiB).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.write.chunk_size = bytes;
        self
    }
    /// io_uring writes in flight (default 4).
    pub fn queue_depth(mut self, n: u32) -> Self {
        self.write.queue_depth = n;
        self
    }
    /// io_uring submission entries per `io_uring_enter` (default 1).
    pub fn batch(mut self, sqes: usize) -> Self {
        self.write.batch = sqes;
        self
    }
    /// Write with `O_DIRECT` (bypassing the page cache: no copy into it, no writeback
    /// competing with the server's own I/O), or never. Default: `O_DIRECT` where the
    /// target's file system accepts it (probed with `fcntl` on the temp file: ext4, XFS
    /// and, since Linux 6.6, tmpfs do; some FUSE and network file systems do not),
    /// buffered writes otherwise; `SnapshotReport::backend_reason` says which and why.
    /// `true` makes a refusal an error (op `"O_DIRECT"`).
    pub fn direct(mut self, on: bool) -> Self {
        self.write.direct = Some(on);
        self
    }
    /// Start writeback every this many bytes, so the final fsync does not stall (default
    /// 4 MiB; not used with `O_DIRECT`).
    pub fn pacing_bytes(mut self, bytes: u64) -> Self {
        self.write.pacing_bytes = bytes;
        self
    }
    /// The write backend (default [`BackendKind::Auto`]).
    pub fn backend(mut self, b: BackendKind) -> Self {
        self.write.backend = b;
        self
    }
    /// Writer threads in the child: 0 (default) frames and writes on the encoding thread;
    /// 1 (any value above 0) hands chunks to one thread that frames and writes them while
    /// the encoder goes on.
    pub fn workers(mut self, n: usize) -> Self {
        self.write.workers = n;
        self
    }
    /// Encoding threads in the child (default 1). Above 1, a keyspace that offers
    /// [`Keyspace::partitioned`](crate::Keyspace::partitioned) ([`MemKeyspace`](crate::MemKeyspace)
    /// does) is walked and encoded (LZF included) by that many threads at once, each into
    /// fragments of whole keys that this thread appends to the file as they come; others
    /// are encoded by one thread whatever this says. The file holds the same keys in
    /// another order. Worth it when the child's CPU, not the disk, is the limit (LZF on
    /// text) and a core is free: the threads compete with the server's.
    pub fn threads(mut self, n: usize) -> Self {
        self.encode.threads = n.max(1);
        self
    }
    /// Register the child's chunk buffers with io_uring as fixed buffers when
    /// `RLIMIT_MEMLOCK` allows (default off).
    pub fn register_buffers(mut self, on: bool) -> Self {
        self.write.register_buffers = on;
        self
    }
    /// Abort the snapshot ([`Error::CowLimitExceeded`]) when copy-on-write passes this
    /// many bytes (default: no budget).
    pub fn cow_budget(mut self, bytes: Option<u64>) -> Self {
        self.cow_budget = bytes;
        self
    }
    /// How the parent samples copy-on-write (default: at most 1% of a core).
    pub fn cow_sampling(mut self, s: CowSampling) -> Self {
        self.cow_sampling = s;
        self
    }
    /// Measure the child's own memory half-way through the walk. The read walks the
    /// child's page tables (46–57 ms for a 2 GiB child, `tools/smaps-cost.py`), counted in
    /// the snapshot's wall time, so it is off by default; snapbench turns it on in a
    /// separate, untimed run.
    pub fn probe_child_memory(mut self, on: bool) -> Self {
        self.probe_child_memory = on;
        self
    }
    /// The child's scheduling class (default [`ChildPriority::Batch`]).
    pub fn child_priority(mut self, p: ChildPriority) -> Self {
        self.child_priority = p;
        self
    }
    /// The `ctime` AUX field, unix seconds (default: the clock when the snapshot starts).
    /// A fixed value makes the file reproducible byte for byte.
    pub fn ctime(mut self, secs: Option<i64>) -> Self {
        self.encode.ctime = secs;
        self
    }
    /// The encoder's options as resolved for this snapshot (benches and tools).
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn encode_options(&self) -> EncodeOptions {
        self.effective_encode()
    }
    /// Kill the child and fail with [`Error::Stalled`] when it makes no progress for
    /// `timeout`: no report, no CPU time and no disk wait (a walk blocked on a lock that
    /// was held at fork waits for ever otherwise). `None`: wait for ever. Default 60 s.
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stall_timeout = timeout;
        self
    }
    /// Keep the inherited descriptor `fd` open in the child (by default the child closes
    /// all but its report pipe and stdin/out/err, so that the server's listening and
    /// client sockets close when the parent closes them). For a keyspace whose `walk`
    /// reads through a descriptor.
    pub fn keep_fd(mut self, fd: RawFd) -> Self {
        self.keep_fds.push(fd);
        self
    }
    /// A fault plan (tests; feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub fn faults(mut self, f: Faults) -> Self {
        self.write.faults = f;
        self
    }

    /// The encoder's options as the format resolves them (no LZF inside an LZ4 frame), so
    /// that no result depends on the order the builder's methods were called in.
    pub(super) fn effective_encode(&self) -> EncodeOptions {
        let mut e = self.encode.clone();
        if self.write.format == Format::Lz4 {
            e.lzf = false;
        }
        e
    }

    /// Encodes and writes in this process, without fork. `SIGXFSZ` is ignored while it
    /// writes (a file size limit then fails the write with `EFBIG` instead of killing the
    /// process) and restored after, as in the child.
    pub fn save(&self, ks: &dyn Keyspace) -> Result<SnapshotReport> {
        if self.replicas.is_some() {
            return Err(Error::InvalidOption(
                "a full sync to replicas runs forked: use start, not save".into(),
            ));
        }
        let t = Instant::now();
        let tmp = temp_path(&self.path, &format!("{}-save", std::process::id()));
        let mut io = Io::new(tmp, self.path.clone(), self.write.faults.clone());
        let enc = self.effective_encode();
        let r = write_snapshot(ks, &enc, &self.write, &mut io, &mut |_, _, _| {})?;
        let mut rep = SnapshotReport::from_write(&r, &self.path);
        rep.child_wall = t.elapsed();
        Ok(rep)
    }

    /// Forks; the child writes the snapshot while the caller goes on serving.
    ///
    /// The child runs `ks.databases()` and `ks.walk()` on the copy-on-write image of this
    /// process, in its only thread: read [`Keyspace`]'s fork contract before
    /// implementing it (a server with locks takes its guards, calls `start`, and drops
    /// them). The child survives the calling thread's exit (a runtime's blocking pool may
    /// retire it) and dies with this process. Keep the returned handle: dropping it kills
    /// the child.
    pub fn start(&self, ks: &dyn Keyspace) -> Result<RunningSnapshot> {
        self.effective_encode().validate()?;
        self.write.validate()?;
        self.child_priority.validate()?;
        if let Some(r) = &self.replicas {
            if self.write.format != Format::Rdb {
                return Err(Error::InvalidOption(
                    "replicas load plain RDB only, not an LZ4 frame".into(),
                ));
            }
            if r.fds.is_empty() {
                return Err(Error::InvalidOption("a full sync needs at least one replica socket".into()));
            }
        }
        if ACTIVE
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::AlreadyRunning);
        }
        match self.fork_child(ks) {
            Ok(r) => Ok(r),
            Err(e) => {
                ACTIVE.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn fork_child(&self, ks: &dyn Keyspace) -> Result<RunningSnapshot> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Error::io(
                "pipe",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        let (rd, wr) = (fds[0], fds[1]);
        crate::rdb::Crc64::prepare();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let t = Instant::now();
        // SAFETY: fork is sound to call; in the child we only run code that respects the
        // after-fork rules in the module invariants, and leave with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: closing fds we own.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            return Err(Error::io("fork", &self.path, e));
        }
        if pid == 0 {
            // SAFETY: closing our copy of the read end.
            unsafe { libc::close(rd) };
            child_main(ks, self, wr, parent);
        }
        let fork_us = t.elapsed().as_micros() as u64;
        // SAFETY: closing the parent's copy of the write end; making our read end
        // non-blocking on an fd we own.
        unsafe {
            libc::close(wr);
            libc::fcntl(rd, libc::F_SETFL, libc::O_NONBLOCK);
        }
        // SAFETY: `rd` is our pipe's read end, owned by nobody else from here on.
        let rd = unsafe { OwnedFd::from_raw_fd(rd) };
        Ok(RunningSnapshot::new(pid, rd, self, t, fork_us))
    }
}

