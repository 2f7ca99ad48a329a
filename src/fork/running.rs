//! [`RunningSnapshot`]: the parent's handle on a child: reports, copy-on-write, budget,
//! stall timeout, reaping.

use super::report::{self, Fields, Progress, SnapshotReport};
use super::options::SnapshotOptions;
use super::{temp_path, ACTIVE};
use crate::error::{Error, Result};
use crate::pressure::{CowFigures, CowSampler};
use crate::rdb::EncodeSummary;
use crate::sink::Step;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    /// The child's temp file (`None`: a full sync to replicas writes no file).
    tmp: Option<PathBuf>,
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
    replica_fds: Vec<RawFd>,
    replicas: Vec<crate::repl::ReplicaTransfer>,
}

/// Whether a snapshot child is running in this process (a server defers CoW-heavy work,
/// such as rehashing or defragmentation, while it is).
pub fn snapshot_running() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

impl RunningSnapshot {
    /// The handle on child `pid`, forked at `started` for `opts`, reporting on `rd`.
    pub(super) fn new(
        pid: i32,
        rd: OwnedFd,
        opts: &SnapshotOptions,
        started: Instant,
        fork_us: u64,
    ) -> Self {
        RunningSnapshot {
            pid,
            rd,
            stall_timeout: opts.stall_timeout,
            last_activity: started,
            child_cpu_ticks: 0,
            last_stat: started,
            eof: false,
            tmp: opts
                .replicas
                .is_none()
                .then(|| temp_path(&opts.path, &pid.to_string())),
            target: opts.path.clone(),
            started,
            fork_us,
            budget: opts.cow_budget,
            sampler: CowSampler::new(pid, opts.cow_sampling),
            pending: Vec::new(),
            progress: Progress::default(),
            fin: None,
            child_error: None,
            summary: EncodeSummary::default(),
            backend_reason: String::new(),
            done: false,
            replica_fds: opts.replicas.as_ref().map_or(Vec::new(), |r| r.fds.clone()),
            replicas: Vec::new(),
        }
    }

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

    /// The temp file the child writes (empty for a full sync to replicas).
    pub fn temp_path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the child's temp file, if it writes one.
    fn remove_tmp(&self) {
        if let Some(t) = &self.tmp {
            let _ = std::fs::remove_file(t);
        }
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
            report::REPLICA => {
                let i = f.u64() as usize;
                let bytes = f.u64();
                let errno = f.u64() as i32;
                let step = f.str();
                self.replicas.push(crate::repl::ReplicaTransfer {
                    fd: self.replica_fds.get(i).copied().unwrap_or(-1),
                    bytes,
                    error: (errno != 0).then(|| crate::repl::peer_error(errno, &step)),
                });
            }
            report::FINAL => {
                let summary = std::mem::take(&mut self.summary);
                let (mut r, progress) = report::parse_final(&mut f, summary);
                r.path = self.target.clone();
                r.fork_us = self.fork_us;
                r.backend_reason = std::mem::take(&mut self.backend_reason);
                if self.tmp.is_none() {
                    r.backend = None; // sockets, not a file backend
                }
                r.replicas = std::mem::take(&mut self.replicas);
                self.progress = progress;
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
                    _ => self
                        .tmp
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("replica sockets")),
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
        self.remove_tmp();
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
        self.remove_tmp();
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

