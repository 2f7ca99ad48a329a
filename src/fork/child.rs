//! The child: after fork, in its only thread. Everything here keeps the after-fork rules
//! (module invariants in `fork`): no lock another thread may hold, reports through
//! `write(2)` only, `_exit` at the end.

use super::options::SnapshotOptions;
use super::report::{self, Msg};
use super::temp_path;
use crate::error::Error;
use crate::keyspace::Keyspace;
use crate::sink::io::Io;
use crate::sink::write_snapshot;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
pub(super) fn child_main(ks: &dyn Keyspace, opts: &SnapshotOptions, wr: i32, parent: i32) -> ! {
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
    let mut keep = opts.keep_fds.clone();
    if let Some(r) = &opts.replicas {
        keep.extend_from_slice(&r.fds);
    }
    close_inherited(wr, &keep);
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
    if let Some(to) = &opts.replicas {
        return child_sync(ks, opts, to, wr, t);
    }
    let mut io = Io::new(
        temp_path(&opts.path, &me.to_string()),
        opts.path.clone(),
        opts.write.faults.clone(),
    );
    let mut progress = Throttled::new(wr);
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
            if let Some(slot @ None) = probe.as_mut() {
                if keys >= total / 2 {
                    *slot = Some(take_probe());
                }
            }
            progress.tick(keys, raw, written);
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
            send_db_keys(wr, &r.summary);
            send(
                wr,
                &mut Msg::new(report::BACKEND_REASON).str(&r.backend_reason),
                true,
            );
            let mut m = report::final_message(&r, t.elapsed(), private, probe_us);
            send(wr, &mut m, true);
            true
        }
        Err(e) => {
            send_error(wr, e);
            false
        }
    }
}

/// A full sync in the child: the RDB to every replica's socket, then a report per
/// replica and the final report.
fn child_sync(
    ks: &dyn Keyspace,
    opts: &SnapshotOptions,
    to: &crate::repl::Replicas,
    wr: i32,
    t: Instant,
) -> bool {
    let mut progress = Throttled::new(wr);
    let res = crate::repl::stream_snapshot(
        ks,
        &opts.effective_encode(),
        opts.write.chunk_size,
        to,
        &mut |keys, raw, written| progress.tick(keys, raw, written),
    );
    match res {
        Ok(s) => {
            for (i, p) in s.peers.iter().enumerate() {
                let (errno, step) = p.failed.unwrap_or((0, ""));
                let mut m = Msg::new(report::REPLICA)
                    .u64(i as u64)
                    .u64(p.sent)
                    .u64(errno as u64)
                    .str(step);
                send(wr, &mut m, true);
            }
            send_db_keys(wr, &s.summary);
            let why = format!(
                "replica sockets: non-blocking send and poll ({} waits for a slow replica)",
                s.waits
            );
            send(wr, &mut Msg::new(report::BACKEND_REASON).str(&why), true);
            let w = crate::sink::WriteReport {
                bytes_written: s.summary.bytes,
                summary: s.summary,
                backend: crate::sink::BackendKind::Pwrite,
                backend_reason: why,
                stats: Default::default(),
            };
            let mut m = report::final_message(&w, t.elapsed(), None, 0);
            send(wr, &mut m, true);
            true
        }
        Err(e) => {
            send_error(wr, e);
            false
        }
    }
}

/// The child's error, as the message the parent turns back into it.
fn send_error(wr: i32, e: Error) {
    match e {
        Error::Io {
            op, offset, source, ..
        } => {
            // The parent knows the paths (temp file, target, its directory) from `op`.
            let errno = source.raw_os_error().unwrap_or(0) as u64;
            let mut m = Msg::new(report::IO_ERROR)
                .u64(errno)
                .u64(offset.unwrap_or(u64::MAX))
                .str(op);
            send(wr, &mut m, true);
        }
        Error::BadValue { key, what } => {
            let key: String = key.chars().take(200).collect();
            let mut m = Msg::new(report::BAD_VALUE).str(&what).str(&key);
            send(wr, &mut m, true);
        }
        e => {
            send(
                wr,
                &mut Msg::new(report::OTHER_ERROR).str(&e.to_string()),
                true,
            );
        }
    }
}

/// Progress reports, at most one per 200 ms (they are hints: a full pipe drops one).
struct Throttled {
    wr: i32,
    last: Instant,
}

impl Throttled {
    fn new(wr: i32) -> Self {
        Throttled {
            wr,
            last: Instant::now(),
        }
    }

    fn tick(&mut self, keys: u64, raw: u64, written: u64) {
        if self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            let mut m = Msg::new(report::PROGRESS).u64(keys).u64(raw).u64(written);
            send(self.wr, &mut m, false);
        }
    }
}

/// The keys (and skipped keys) per database, before the final report.
fn send_db_keys(wr: i32, summary: &crate::rdb::EncodeSummary) {
    let dbs = summary.keys_per_db.iter().zip(&summary.skipped_per_db);
    for ((db, n), (_, skipped)) in dbs {
        let mut m = Msg::new(report::DB_KEYS)
            .u64(u64::from(*db))
            .u64(*n)
            .u64(*skipped);
        send(wr, &mut m, true);
    }
}
