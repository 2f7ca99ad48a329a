//! Background snapshots: fork, let the child encode and write the copy-on-write image of
//! the keyspace, keep serving in the parent.
//!
//! **Invariants**
//! - After fork the child takes no lock another parent thread may hold: it never logs,
//!   never touches stdio, reports only through `write(2)` on its pipe, builds its own
//!   io_uring ring and buffers (never inherited, never the parent's heap pages), and
//!   leaves with `_exit`.
//! - The child dies with the parent *process* (not with the thread that forked it: a
//!   runtime may retire that thread): it checks `getppid()` between batches of keys and
//!   from a 250 ms timer signal (so a walk blocked for ever still notices), and a report
//!   written to the closed pipe kills it (`SIGPIPE`).
//! - The child closes every descriptor it inherited except its report pipe, stdin/out/err
//!   and those the caller keeps (`SnapshotOptions::keep_fd`): a socket the parent closes
//!   is closed for its peer at once, not when the child exits.
//! - The target is replaced only by the child's rename of a complete, fsynced temp file
//!   `temp-<child pid>.rdb` beside it; the parent removes that temp file whenever the
//!   child fails or is killed.
//! - One snapshot at a time per process (`AlreadyRunning`).
//! - Success is the child's final report followed by its exit: a parent that ignores
//!   `SIGCHLD` or reaps children itself (so `waitpid` finds nothing) still gets the
//!   outcome.
//! - The parent never blocks except in [`RunningSnapshot::wait`] (and in `abort` or a
//!   drop, which reap a killed child).

pub(crate) mod report;

use crate::error::{Error, Result};
use crate::keyspace::Keyspace;
use crate::pressure::{CowFigures, CowSampler, CowSampling};
use crate::rdb::EncodeOptions;
use crate::rdb::EncodeSummary;
use crate::sink::io::Io;
use crate::sink::{
    write_snapshot, BackendKind, BackendStats, Format, Step, WriteOptions, WriteReport,
};
#[cfg(feature = "fault-injection")]
use crate::sink::Faults;
use report::{Fields, Msg};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ACTIVE: AtomicBool = AtomicBool::new(false);

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
    fn apply(self) {
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
}

impl SnapshotOptions {
    /// Defaults: plain RDB version 11 with LZF, 1 MiB chunks, `BackendKind::Auto`
    /// (pwrite for buffered writes, io_uring with O_DIRECT), 4 writes in flight, writeback
    /// paced every 4 MiB, no CoW budget, child at `SCHED_BATCH`, a 60 s stall timeout.
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
        }
    }
    /// Plain RDB or an LZ4 frame. In an LZ4 frame strings are never LZF-compressed (the
    /// frame compresses instead), whatever [`lzf`](Self::lzf) says, in either call order.
    pub fn format(mut self, f: Format) -> Self {
        self.write.format = f;
        self
    }
    /// The RDB version written, 9 to 11 (default 11); see the README's compatibility
    /// table: 10 for Redis 7.0, 9 for Redis 5 and 6.
    pub fn rdb_version(mut self, v: u8) -> Self {
        self.encode.version = v;
        self
    }
    /// LZF-compress long strings, as Redis's `rdbcompression yes` (default on). Applies
    /// to [`Format::Rdb`] only.
    pub fn lzf(mut self, on: bool) -> Self {
        self.encode.lzf = on;
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
    /// Write with `O_DIRECT`, bypassing the page cache (default off).
    pub fn direct(mut self, on: bool) -> Self {
        self.write.direct = on;
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
    fn effective_encode(&self) -> EncodeOptions {
        let mut e = self.encode.clone();
        if self.write.format == Format::Lz4 {
            e.lzf = false;
        }
        e
    }

    /// Encodes and writes in this process, without fork. `SIGXFSZ` is ignored while it
    /// writes (a file size limit then fails the write with `EFBIG` instead of killing the
    /// process) and restored after.
    pub fn save(&self, ks: &dyn Keyspace) -> Result<SnapshotReport> {
        let t = Instant::now();
        let tmp = temp_path(&self.path, &format!("{}-save", std::process::id()));
        let mut io = Io::new(tmp, self.path.clone(), self.write.faults.clone());
        // SAFETY: installing SIG_IGN for SIGXFSZ and reading the previous disposition
        // into a zeroed, valid sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `old` is a valid out-pointer.
        unsafe {
            let mut ign: libc::sigaction = std::mem::zeroed();
            ign.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGXFSZ, &ign, &mut old);
        }
        let enc = self.effective_encode();
        let r = write_snapshot(ks, &enc, &self.write, &mut io, &mut |_, _, _| {});
        // SAFETY: restoring the disposition read above.
        unsafe { libc::sigaction(libc::SIGXFSZ, &old, std::ptr::null_mut()) };
        let mut rep = SnapshotReport::from_write(&r?, &self.path);
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
        Ok(RunningSnapshot {
            pid,
            rd,
            stall_timeout: self.stall_timeout,
            last_activity: t,
            child_cpu_ticks: 0,
            last_stat: t,
            eof: false,
            tmp: temp_path(&self.path, &pid.to_string()),
            target: self.path.clone(),
            started: t,
            fork_us,
            budget: self.cow_budget,
            sampler: CowSampler::new(pid, self.cow_sampling),
            pending: Vec::new(),
            progress: Progress::default(),
            fin: None,
            child_error: None,
            summary: EncodeSummary::default(),
            backend_reason: String::new(),
            done: false,
        })
    }
}

fn temp_path(target: &Path, tag: &str) -> PathBuf {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(format!("temp-{tag}.rdb"))
}

/// Writes a whole message to the pipe (retrying while full, for messages that must arrive).
fn send(fd: i32, msg: &mut Msg, must: bool) {
    let b = msg.bytes();
    let mut off = 0;
    while off < b.len() {
        // SAFETY: writing from a live stack buffer to our pipe fd.
        let n = unsafe { libc::write(fd, b[off..].as_ptr().cast(), b.len() - off) };
        if n > 0 {
            off += n as usize;
            continue;
        }
        let e = crate::sink::io::errno();
        if e == libc::EINTR {
            continue;
        }
        if e == libc::EAGAIN && must {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: poll on one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 100) };
            continue;
        }
        if e == libc::EPIPE {
            // The parent is gone: nothing left to report to.
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(3) };
        }
        return;
    }
}

/// The forking process's pid, for the child's watchdog signal handler.
static PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGALRM in the child: leave if the parent process is gone, whatever the walk is doing.
extern "C" fn watchdog(_: libc::c_int) {
    // SAFETY: getppid and _exit are async-signal-safe.
    unsafe {
        if libc::getppid() != PARENT.load(Ordering::Relaxed) {
            libc::_exit(3);
        }
    }
}

/// Closes every inherited descriptor above 2 except `wr` and `keep`, without allocating
/// more than the sorted list.
fn close_inherited(wr: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.push(wr);
    keep.sort_unstable();
    keep.dedup();
    let close_range = |lo: u32, hi: u32| {
        // SAFETY: close_range only closes descriptors of this (child) process.
        let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        if r != 0 {
            // Kernels before 5.9: close one by one up to the descriptor limit.
            // SAFETY: sysconf has no preconditions.
            let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 1 << 20) as u32;
            for fd in lo..=hi.min(max) {
                // SAFETY: closing a descriptor of this process (EBADF if not open).
                unsafe { libc::close(fd as RawFd) };
            }
        }
    };
    let mut lo = 3u32;
    for &k in &keep {
        let k = k as u32;
        if k > lo {
            close_range(lo, k - 1);
        }
        lo = k + 1;
    }
    close_range(lo, u32::MAX);
}

/// The child. Never returns.
fn child_main(ks: &dyn Keyspace, opts: &SnapshotOptions, wr: i32, parent: i32) -> ! {
    PARENT.store(parent, Ordering::Relaxed);
    // SAFETY: prctl/getppid/signal/fcntl/sigaction/setitimer are syscalls on this process
    // with valid arguments; `watchdog` is async-signal-safe.
    unsafe {
        // A name of its own in ps, top and perf (`perf report --comm forksnap-child`).
        libc::prctl(libc::PR_SET_NAME, c"forksnap-child".as_ptr());
        if libc::getppid() != parent {
            libc::_exit(3);
        }
        // A report to a dead parent's pipe ends the child.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGUSR1, libc::SIG_DFL);
        // A file size limit fails the write with EFBIG (reported) instead of killing.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        libc::fcntl(wr, libc::F_SETFL, libc::O_NONBLOCK);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = watchdog as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let every = libc::timeval {
            tv_sec: 0,
            tv_usec: 250_000,
        };
        let t = libc::itimerval {
            it_interval: every,
            it_value: every,
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
    }
    close_inherited(wr, &opts.keep_fds);
    opts.child_priority.apply();
    let code =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_run(ks, opts, wr))) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(_) => 2,
        };
    // SAFETY: leaving without unwinding into the parent's code or running its destructors.
    unsafe { libc::_exit(code) }
}

fn child_run(ks: &dyn Keyspace, opts: &SnapshotOptions, wr: i32) -> bool {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let t = Instant::now();
    let mut io = Io::new(
        temp_path(&opts.path, &me.to_string()),
        opts.path.clone(),
        opts.write.faults.clone(),
    );
    let mut last = Instant::now();
    // The memory probe runs once, half-way through the walk (at the latest at the
    // encoder's report after its last key): by then the arenas, chunk buffers and ring
    // are all in use (the encoder allocates nothing more in steady state,
    // tests/encoder_steady_state_allocs.rs), and none has been freed yet
    // (tests/child_memory_probe.rs).
    let total: u64 = ks.databases().iter().map(|d| d.keys).sum();
    // `Some(None)`: wanted, not taken yet; `Some(Some((bytes, µs)))`: taken.
    let mut probe: Option<Option<(Option<u64>, u64)>> = opts.probe_child_memory.then_some(None);
    let take_probe = || {
        let p = Instant::now();
        let bytes = crate::pressure::private_dirty(me);
        (bytes, p.elapsed().as_micros() as u64)
    };
    let res = write_snapshot(
        ks,
        &opts.effective_encode(),
        &opts.write,
        &mut io,
        &mut |keys, raw, written| {
            // SAFETY: getppid/_exit have no preconditions.
            unsafe {
                if libc::getppid() != PARENT.load(Ordering::Relaxed) {
                    libc::_exit(3);
                }
            }
            if let Some(slot @ None) = probe.as_mut() {
                if keys >= total / 2 {
                    *slot = Some(take_probe());
                }
            }
            if last.elapsed() >= Duration::from_millis(200) {
                last = Instant::now();
                send(
                    wr,
                    &mut Msg::new(report::PROGRESS).u64(keys).u64(raw).u64(written),
                    false,
                );
            }
        },
    );
    match res {
        Ok(r) => {
            // No mutator may run in the parent for the probe to mean "the child's own"
            // (a page the parent rewrites becomes the child's alone too). The fallback
            // below serves only a keyspace whose walk yields fewer keys than it declared.
            let (private, probe_us) = match probe {
                Some(None) => take_probe(),
                Some(Some(taken)) => taken,
                None => (None, 0),
            };
            let dbs = r.summary.keys_per_db.iter().zip(&r.summary.skipped_per_db);
            for ((db, n), (_, skipped)) in dbs {
                let mut m = Msg::new(report::DB_KEYS)
                    .u64(u64::from(*db))
                    .u64(*n)
                    .u64(*skipped);
                send(wr, &mut m, true);
            }
            send(
                wr,
                &mut Msg::new(report::BACKEND_REASON).str(&r.backend_reason),
                true,
            );
            let s = &r.stats;
            let mut m = Msg::new(report::FINAL)
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
                .u64(t.elapsed().as_micros() as u64)
                .u64(r.summary.keys())
                // u64::MAX: not measured.
                .u64(private.unwrap_or(u64::MAX))
                .u64(probe_us);
            send(wr, &mut m, true);
            true
        }
        Err(Error::Io {
            op, offset, source, ..
        }) => {
            // The parent knows the paths (temp file, target, its directory) from `op`.
            let errno = source.raw_os_error().unwrap_or(0) as u64;
            let mut m = Msg::new(report::IO_ERROR)
                .u64(errno)
                .u64(offset.unwrap_or(u64::MAX))
                .str(op);
            send(wr, &mut m, true);
            false
        }
        Err(Error::BadValue { key, what }) => {
            let key: String = key.chars().take(200).collect();
            let mut m = Msg::new(report::BAD_VALUE).str(&what).str(&key);
            send(wr, &mut m, true);
            false
        }
        Err(e) => {
            send(
                wr,
                &mut Msg::new(report::OTHER_ERROR).str(&e.to_string()),
                true,
            );
            false
        }
    }
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
    /// [`SnapshotOptions::probe_child_memory`] was set.
    pub child_private_bytes: Option<u64>,
    /// What that measurement took in the child (included in `child_wall` and `wall`).
    pub child_probe: Duration,
}

impl SnapshotReport {
    fn from_write(r: &WriteReport, path: &Path) -> Self {
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

/// A snapshot being written by a child process.
///
/// Drive it with [`poll`](RunningSnapshot::poll) from the server's loop (or
/// [`wait`](RunningSnapshot::wait)); an event loop can wait for its descriptor
/// ([`AsFd`]) to become readable instead of polling on a timer. **Dropping it kills the
/// child**, reaps it and removes its temp file: the target keeps its previous content.
/// Dropping it by accident is a warning (`#[must_use]`), an error under
/// `deny(unused_must_use)`:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> forksnap::Result<()> {
/// let ks = forksnap::MemKeyspace::new();
/// forksnap::SnapshotOptions::new("dump.rdb").start(&ks)?; // the handle is dropped here
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping a RunningSnapshot kills the child: keep it and poll() or wait() it"]
pub struct RunningSnapshot {
    pid: i32,
    /// The report pipe's read end (kept open until drop, so `AsFd` stays valid).
    rd: OwnedFd,
    stall_timeout: Option<Duration>,
    /// Last report, CPU-time advance or disk wait seen from the child.
    last_activity: Instant,
    child_cpu_ticks: u64,
    last_stat: Instant,
    /// The pipe reached end of file: the child closed it (it exited).
    eof: bool,
    tmp: PathBuf,
    target: PathBuf,
    started: Instant,
    fork_us: u64,
    budget: Option<u64>,
    sampler: CowSampler,
    pending: Vec<u8>,
    progress: Progress,
    fin: Option<SnapshotReport>,
    child_error: Option<Error>,
    /// Per-database counts gathered from DB_KEYS messages before FINAL.
    summary: EncodeSummary,
    backend_reason: String,
    done: bool,
}

/// Whether a snapshot child is running in this process (a server defers CoW-heavy work,
/// such as rehashing or defragmentation, while it is).
pub fn snapshot_running() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

impl RunningSnapshot {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Progress as last reported by the child.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Copy-on-write so far.
    pub fn cow(&self) -> CowFigures {
        self.sampler.figures()
    }

    /// The temp file the child writes.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Reads every report available; true if any arrived.
    fn drain_pipe(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let mut got = false;
        loop {
            // SAFETY: reading into a stack buffer from our pipe fd.
            let n = unsafe { libc::read(self.rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                self.eof = true;
            }
            if n <= 0 {
                break;
            }
            got = true;
            self.pending.extend_from_slice(&buf[..n as usize]);
        }
        let mut pending = std::mem::take(&mut self.pending);
        report::parse(&mut pending, |tag, body| self.on_message(tag, body));
        self.pending = pending;
        got
    }

    /// The child's CPU ticks (user + system) and whether it waits on the disk, from
    /// `/proc/<pid>/stat`; `None` once it is gone.
    fn child_stat(&self) -> Option<(u64, bool)> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let rest = &s[s.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((ticks, f.first() == Some(&"D")))
    }

    /// Whether the child has been idle past the stall timeout (checked at most every
    /// 250 ms: one small /proc read).
    fn stalled(&mut self, reported: bool) -> Option<Duration> {
        let limit = self.stall_timeout?;
        let now = Instant::now();
        if reported {
            self.last_activity = now;
        }
        if now.duration_since(self.last_stat) >= Duration::from_millis(250) {
            self.last_stat = now;
            if let Some((ticks, disk)) = self.child_stat() {
                if ticks != self.child_cpu_ticks || disk {
                    self.child_cpu_ticks = ticks;
                    self.last_activity = now;
                }
            }
        }
        let idle = now.duration_since(self.last_activity);
        (idle >= limit).then_some(idle)
    }

    fn on_message(&mut self, tag: u32, body: &[u8]) {
        let mut f = Fields(body);
        match tag {
            report::PROGRESS => {
                self.progress = Progress {
                    keys: f.u64(),
                    raw_bytes: f.u64(),
                    bytes_written: f.u64(),
                };
            }
            report::DB_KEYS => {
                let db = f.u64() as u32;
                self.summary.keys_per_db.push((db, f.u64()));
                self.summary.skipped_per_db.push((db, f.u64()));
            }
            report::BACKEND_REASON => self.backend_reason = f.str(),
            report::FINAL => {
                let mut summary = std::mem::take(&mut self.summary);
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
                };
                let child_wall = Duration::from_micros(f.u64());
                self.progress = Progress {
                    keys: f.u64(),
                    raw_bytes: summary.bytes,
                    bytes_written,
                };
                let child_private_bytes = Some(f.u64()).filter(|&b| b != u64::MAX);
                let child_probe = Duration::from_micros(f.u64());
                let r = SnapshotReport {
                    path: self.target.clone(),
                    summary,
                    bytes_written,
                    fork_us: self.fork_us,
                    child_wall,
                    backend,
                    backend_reason: std::mem::take(&mut self.backend_reason),
                    stats,
                    child_private_bytes,
                    child_probe,
                    ..Default::default()
                };
                self.fin = Some(r);
            }
            report::IO_ERROR => {
                let errno = f.u64() as i32;
                let offset = Some(f.u64()).filter(|&o| o != u64::MAX);
                let op = f.str();
                let step = Step::from_name(&op);
                let path = match step {
                    Some(Step::Rename) => self.target.clone(),
                    Some(Step::DirSync) => match self.target.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                        _ => PathBuf::from("."),
                    },
                    _ => self.tmp.clone(),
                };
                let op = report::op_name(&op);
                self.child_error = Some(Error::Io {
                    op,
                    path,
                    offset,
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            report::OTHER_ERROR => self.child_error = Some(Error::Child { status: f.str() }),
            report::BAD_VALUE => {
                let what = f.str();
                self.child_error = Some(Error::BadValue { key: f.str(), what });
            }
            _ => {}
        }
    }

    /// Kills and reaps the child and removes its temp file.
    fn kill_and_clean(&mut self) {
        if self.done {
            return;
        }
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, 0);
        }
        let _ = std::fs::remove_file(&self.tmp);
        self.finish();
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            ACTIVE.store(false, Ordering::Release);
        }
    }

    /// Non-blocking: reads reports, samples CoW, enforces the budget, reaps the child if it
    /// exited. `Ok(Some(report))` once the snapshot is complete and in place.
    pub fn poll(&mut self) -> Result<Option<SnapshotReport>> {
        if self.done {
            return Err(Error::Child {
                status: "already finished".into(),
            });
        }
        let reported = self.drain_pipe();
        let cow = self.sampler.tick();
        if let Some(budget) = self.budget {
            if cow.current_bytes > budget {
                self.kill_and_clean();
                return Err(Error::CowLimitExceeded {
                    budget,
                    observed: cow.current_bytes,
                });
            }
        }
        let mut st = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: non-blocking reap of our own child.
        let r = unsafe { libc::wait4(self.pid, &mut st, libc::WNOHANG, &mut ru) };
        let reaped_elsewhere = r < 0 && crate::sink::io::errno() == libc::ECHILD;
        if r == 0 || (reaped_elsewhere && !self.eof) {
            // Running (or, reaped by someone else, its last reports still in the pipe).
            if let Some(idle) = self.stalled(reported) {
                let keys = self.progress.keys;
                self.kill_and_clean();
                return Err(Error::Stalled {
                    seconds: idle.as_secs(),
                    keys,
                });
            }
            return Ok(None);
        }
        self.drain_pipe();
        let wall = self.started.elapsed();
        self.finish();
        // Reaped here: the exit status decides. Reaped elsewhere (SIGCHLD ignored, or the
        // server's own waitpid): the child's final report does, since it comes only after
        // the file is in place.
        let ok = if reaped_elsewhere {
            self.child_error.is_none()
        } else {
            r == self.pid && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
        };
        if ok {
            if let Some(mut rep) = self.fin.take() {
                rep.wall = wall;
                rep.child_cpu = Duration::from_micros(
                    (ru.ru_utime.tv_sec as u64 + ru.ru_stime.tv_sec as u64) * 1_000_000
                        + ru.ru_utime.tv_usec as u64
                        + ru.ru_stime.tv_usec as u64,
                );
                rep.cow = self.sampler.figures();
                rep.cow_sampling_duty = self.sampler.duty_used();
                return Ok(Some(rep));
            }
        }
        let _ = std::fs::remove_file(&self.tmp);
        Err(self.child_error.take().unwrap_or_else(|| Error::Child {
            status: if reaped_elsewhere {
                "exited without a final report (its status was reaped by another waiter)".into()
            } else if libc::WIFSIGNALED(st) {
                format!("killed by signal {}", libc::WTERMSIG(st))
            } else {
                format!("exited with status {}", libc::WEXITSTATUS(st))
            },
        }))
    }

    /// Blocks until the snapshot completes or fails.
    pub fn wait(mut self) -> Result<SnapshotReport> {
        loop {
            if let Some(r) = self.poll()? {
                return Ok(r);
            }
            let until_sample = self
                .sampler
                .next_due()
                .saturating_duration_since(Instant::now());
            let timeout = until_sample.clamp(Duration::from_millis(1), Duration::from_millis(50));
            let mut p = libc::pollfd {
                fd: self.rd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid pollfd; wakes on a report or on the child's exit
            // (the pipe's write end closes).
            unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
            if p.revents & libc::POLLHUP != 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Kills the child, reaps it and removes its temp file; the target is untouched.
    pub fn abort(mut self) -> Result<()> {
        self.kill_and_clean();
        Ok(())
    }
}

/// The report pipe: readable when the child reports progress or its outcome, or exits.
/// An event loop (mio, tokio's `AsyncFd`) waits on it, then calls
/// [`RunningSnapshot::poll`]; `wait` and `poll` read it, nothing else should. Call `poll`
/// on a timer as well (every 100 ms or so): the copy-on-write budget and the stall
/// timeout are enforced in `poll`, and a stalled child sends nothing.
impl AsFd for RunningSnapshot {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rd.as_fd()
    }
}

impl AsRawFd for RunningSnapshot {
    fn as_raw_fd(&self) -> RawFd {
        self.rd.as_raw_fd()
    }
}

impl Drop for RunningSnapshot {
    fn drop(&mut self) {
        self.kill_and_clean();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_order_does_not_matter() {
        let a = SnapshotOptions::new("x").format(Format::Lz4).lzf(true);
        let b = SnapshotOptions::new("x").lzf(true).format(Format::Lz4);
        assert!(!a.effective_encode().lzf && !b.effective_encode().lzf);
        let c = SnapshotOptions::new("x").lzf(false).format(Format::Rdb);
        let d = SnapshotOptions::new("x").format(Format::Rdb).lzf(false);
        assert!(!c.effective_encode().lzf && !d.effective_encode().lzf);
        assert!(SnapshotOptions::new("x").effective_encode().lzf);
    }

    #[test]
    fn every_child_io_step_keeps_its_name() {
        for op in [
            "create",
            "write",
            "fsync directory",
            "io_uring_enter",
            "dup",
        ] {
            assert_eq!(report::op_name(op), op);
        }
        assert_eq!(report::op_name("bogus"), "an unnamed snapshot I/O step");
    }
}
