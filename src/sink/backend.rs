//! Write backends: io_uring (batched submissions, buffers in flight) and pwrite (the
//! fallback, and the reference the io_uring path must match byte for byte).
//!
//! **Invariant** (owned here for the whole crate): a buffer handed to the kernel stays
//! owned by the backend until its completion is reaped; only then is it returned to the
//! caller or dropped. Dropping a backend waits for every write in flight.

use super::io::{errno, Io, WriteGate};
use crate::buf::ChunkBuf;
use crate::error::{Error, Result};
use hdrhistogram::Histogram;
use io_uring::{opcode, types, IoUring};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

/// Which backend writes, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring for O_DIRECT, the default where the file system accepts it (falling back
    /// to pwrite if io_uring cannot be set up); pwrite for buffered writes, where io_uring
    /// measured slower (see `pipeline.rs`).
    Auto,
    /// The child's own io_uring ring.
    Uring,
    /// Plain `pwrite(2)`.
    Pwrite,
}

/// Counters a backend keeps.
#[derive(Clone, Debug, Default)]
pub struct BackendStats {
    /// `io_uring_enter` calls (or pwrite calls) that submitted at least one write.
    pub submit_calls: u64,
    /// io_uring submission entries (or pwrite calls).
    pub sqes: u64,
    /// Whether the buffers were registered with io_uring.
    pub fixed_buffers: bool,
    /// Write-completion latency, µs (submit to reap).
    pub p50_us: u64,
    /// p99 write-completion latency, µs.
    pub p99_us: u64,
    /// p99.9 write-completion latency, µs.
    pub p999_us: u64,
    /// Slowest write completion, µs.
    pub max_us: u64,
    /// Writes that wrote fewer bytes than asked; the rest was written by another call.
    pub short_writes: u64,
    /// Time the writer waited for the write-rate cap
    /// ([`SnapshotOptions::max_write_rate`](crate::SnapshotOptions::max_write_rate)), µs.
    pub throttled_us: u64,
    /// With O_DIRECT, preallocating the file ahead of the writes (`fallocate`) failed
    /// (no support, no room for the stretch ahead) and stopped; the writes went on.
    pub prealloc_stopped: bool,
}

pub(crate) trait Backend: Send {
    /// Writes all of `buf` at `offset` (now or later); returns an empty buffer to fill.
    fn write(&mut self, io: &mut Io, buf: ChunkBuf, offset: u64) -> Result<ChunkBuf>;
    /// Bytes from offset 0 that are known written (all writes below completed).
    fn written_frontier(&self) -> u64;
    /// Waits until every write has completed.
    fn drain(&mut self, io: &mut Io) -> Result<()>;
    /// Paces writeback: starts it for `[from, to)` and waits for `[prev, from)`.
    fn range_sync(&mut self, io: &mut Io, prev: u64, from: u64, to: u64) -> Result<()>;
    fn stats(&self) -> BackendStats;
}

/// `user_data` of range-sync SQEs (write slots are small indices).
const SYNC_MARK: u64 = u64::MAX;

fn latency_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

fn stats_from(
    h: &Histogram<u64>,
    submit_calls: u64,
    sqes: u64,
    fixed: bool,
    short_writes: u64,
) -> BackendStats {
    BackendStats {
        submit_calls,
        sqes,
        fixed_buffers: fixed,
        short_writes,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        throttled_us: 0,
        prealloc_stopped: false,
    }
}

/// pwrite: synchronous, loops over short writes.
pub(crate) struct Pwrite {
    fd: OwnedFd,
    frontier: u64,
    hist: Histogram<u64>,
    calls: u64,
    short_writes: u64,
}

impl Pwrite {
    pub fn new(fd: OwnedFd) -> Self {
        Pwrite {
            fd,
            frontier: 0,
            hist: latency_hist(),
            calls: 0,
            short_writes: 0,
        }
    }
}

impl Backend for Pwrite {
    fn write(&mut self, io: &mut Io, mut buf: ChunkBuf, offset: u64) -> Result<ChunkBuf> {
        let data = buf.as_slice();
        let mut done = 0usize;
        while done < data.len() {
            let want = match io.write_gate_at(offset + done as u64)? {
                WriteGate::Short => ((data.len() - done) / 2).max(1),
                WriteGate::Full => data.len() - done,
            };
            let t = Instant::now();
            // SAFETY: `data[done..done + want]` lies within `buf`, which outlives the call.
            let n = unsafe {
                libc::pwrite(
                    self.fd.as_raw_fd(),
                    data.as_ptr().add(done).cast(),
                    want,
                    (offset + done as u64) as i64,
                )
            };
            self.calls += 1;
            let _ = self.hist.record(t.elapsed().as_micros() as u64);
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(io.write_error(e, offset + done as u64));
            }
            if n == 0 {
                return Err(io.write_error(libc::ENOSPC, offset + done as u64));
            }
            done += n as usize;
            self.short_writes += u64::from(done < data.len());
        }
        self.frontier = offset + data.len() as u64;
        buf.clear();
        Ok(buf)
    }

    fn written_frontier(&self) -> u64 {
        self.frontier
    }

    fn drain(&mut self, _io: &mut Io) -> Result<()> {
        Ok(())
    }

    fn range_sync(&mut self, io: &mut Io, prev: u64, from: u64, to: u64) -> Result<()> {
        io.range_sync(&self.fd, prev, from, to)
    }

    fn stats(&self) -> BackendStats {
        stats_from(&self.hist, self.calls, self.calls, false, self.short_writes)
    }
}

struct Slot {
    buf: Option<ChunkBuf>,
    offset: u64,
    len: usize,
    done: usize,
    submitted_at: Instant,
    /// Index in the registered-buffer table, if the buffer is registered.
    fixed: Option<u16>,
    /// A short write left bytes to write.
    resubmit: bool,
}

/// io_uring: the child's own ring; writes at explicit offsets, several in flight,
/// submitted in batches of `batch` SQEs per `io_uring_enter`.
pub(crate) struct Uring {
    ring: IoUring,
    fd: OwnedFd,
    slots: Vec<Slot>,
    free: Vec<ChunkBuf>,
    /// Buffers are registered; each carries its index (`ChunkBuf::fixed_index`).
    registered: bool,
    pending: usize,
    batch: usize,
    /// Slots holding a buffer (being written, or waiting to be resubmitted).
    in_flight: usize,
    /// SQEs pushed whose CQE has not been reaped: the kernel may still use their buffers.
    outstanding: usize,
    /// Range syncs pushed and not yet reaped.
    syncs: usize,
    /// Errno of a failed range sync, reported at the next call.
    sync_error: Option<i32>,
    issued_end: u64,
    hist: Histogram<u64>,
    submit_calls: u64,
    /// Completions that wrote fewer bytes than asked (resubmitted for the rest).
    short_writes: u64,
    sqes: u64,
}

impl Uring {
    /// Builds a ring of `depth` entries with `pool` as its free buffers. If `register`,
    /// registers `pool` and `others` (buffers the caller fills) as fixed buffers when the
    /// kernel and RLIMIT_MEMLOCK allow. All are the caller's own memory, never the
    /// parent's heap pages.
    pub fn new(
        fd: OwnedFd,
        depth: u32,
        batch: usize,
        mut pool: Vec<ChunkBuf>,
        others: &mut [&mut ChunkBuf],
        register: bool,
    ) -> std::io::Result<Self> {
        let ring = IoUring::builder().build(depth.max(2).next_power_of_two())?;
        let mut registered = false;
        if register && pool.len() + others.len() <= usize::from(u16::MAX) {
            let all: Vec<&ChunkBuf> = pool.iter().chain(others.iter().map(|b| &**b)).collect();
            let iov: Vec<libc::iovec> = all
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut _,
                    iov_len: b.capacity(),
                })
                .collect();
            // SAFETY: every iovec points at a live ChunkBuf allocation. Registration pins
            // those pages in the kernel until the ring is dropped, so even a buffer freed
            // earlier cannot be reused under the kernel's feet; writes from it only happen
            // while the backend owns it (see the module invariant).
            if unsafe { ring.submitter().register_buffers(&iov) }.is_ok() {
                registered = true;
                let n = pool.len();
                for (i, b) in pool.iter_mut().enumerate() {
                    b.set_fixed_index(Some(i as u16));
                }
                for (i, b) in others.iter_mut().enumerate() {
                    b.set_fixed_index(Some((n + i) as u16));
                }
            }
        }
        Ok(Uring {
            ring,
            fd,
            slots: Vec::new(),
            free: pool,
            registered,
            pending: 0,
            batch: batch.max(1),
            in_flight: 0,
            outstanding: 0,
            syncs: 0,
            sync_error: None,
            issued_end: 0,
            hist: latency_hist(),
            submit_calls: 0,
            short_writes: 0,
            sqes: 0,
        })
    }

    fn push(&mut self, io: &mut Io, slot: usize) -> Result<()> {
        let at = self.slots[slot].offset + self.slots[slot].done as u64;
        let gate = match io.write_gate_at(at) {
            Ok(g) => g,
            Err(e) => {
                // Nothing was pushed for this slot: its buffer is ours again.
                if let Some(mut b) = self.slots[slot].buf.take() {
                    b.clear();
                    self.free.push(b);
                    self.in_flight -= 1;
                }
                return Err(e);
            }
        };
        let s = &self.slots[slot];
        let buf = s.buf.as_ref().expect("slot in flight holds its buffer");
        let mut len = s.len - s.done;
        if let WriteGate::Short = gate {
            len = (len / 2).max(1);
        }
        // SAFETY: `done < len <= capacity`, so the pointer is inside the buffer, which
        // stays in `self.slots[slot]` until this operation's completion is reaped.
        let ptr = unsafe { buf.as_ptr().add(s.done) };
        let fd = types::Fd(self.fd.as_raw_fd());
        let off = s.offset + s.done as u64;
        let e = match s.fixed {
            Some(idx) => opcode::WriteFixed::new(fd, ptr, len as u32, idx)
                .offset(off)
                .build(),
            None => opcode::Write::new(fd, ptr, len as u32).offset(off).build(),
        }
        .user_data(slot as u64);
        // SAFETY: the entry's buffer outlives the operation (see above).
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.submit()?;
        }
        self.pending += 1;
        self.outstanding += 1;
        if self.pending >= self.batch {
            self.submit()?;
        }
        Ok(())
    }

    fn submit(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        loop {
            match self.ring.submit() {
                Ok(n) => {
                    self.submit_calls += u64::from(n > 0);
                    self.sqes += n as u64;
                    self.pending -= n.min(self.pending);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                    self.reap(true)?
                }
                Err(e) => return Err(Error::io("io_uring_enter", std::path::PathBuf::new(), e)),
            }
        }
    }

    /// Reaps completions (waiting for one if `wait`). Short writes keep their slot (the
    /// caller resubmits the rest); errors are returned once their buffer is back.
    fn reap(&mut self, wait: bool) -> Result<()> {
        if wait && self.outstanding > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(n) => {
                    // An enter that only waited is not a submission.
                    self.submit_calls += u64::from(n > 0);
                    self.sqes += n as u64;
                    self.pending -= n.min(self.pending);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(Error::io("io_uring_enter", std::path::PathBuf::new(), e)),
            }
        }
        let mut first_err = None;
        // Iterate the completion queue in place (no allocation per reap); only fields
        // other than the ring are touched inside.
        for c in self.ring.completion() {
            self.outstanding -= 1;
            let (slot, res) = (c.user_data() as usize, c.result());
            if slot as u64 == SYNC_MARK {
                self.syncs -= 1;
                if res < 0 {
                    self.sync_error.get_or_insert(-res);
                }
                continue;
            }
            let s = &mut self.slots[slot];
            if res <= 0 {
                let errno = if res == 0 { libc::ENOSPC } else { -res };
                first_err.get_or_insert((errno, s.offset + s.done as u64));
            } else {
                s.done += res as usize;
                if s.done < s.len {
                    self.short_writes += 1;
                    s.resubmit = true;
                    continue;
                }
                let _ = self
                    .hist
                    .record(s.submitted_at.elapsed().as_micros() as u64);
            }
            let mut b = s.buf.take().expect("completed slot holds its buffer");
            b.clear();
            self.free.push(b);
            self.in_flight -= 1;
        }
        match first_err {
            Some((e, at)) => Err(Error::Io {
                op: "write",
                path: std::path::PathBuf::new(),
                offset: Some(at),
                source: std::io::Error::from_raw_os_error(e),
            }),
            None => Ok(()),
        }
    }

    fn resubmit_short(&mut self, io: &mut Io) -> Result<()> {
        for i in 0..self.slots.len() {
            if std::mem::take(&mut self.slots[i].resubmit) {
                self.push(io, i)?;
            }
        }
        Ok(())
    }

    fn retarget(e: Error, io: &Io) -> Error {
        match e {
            Error::Io {
                op, offset, source, ..
            } => Error::Io {
                op,
                path: io.tmp.clone(),
                offset,
                source,
            },
            other => other,
        }
    }

    fn write_inner(&mut self, io: &mut Io, buf: ChunkBuf, offset: u64) -> Result<ChunkBuf> {
        // The index travels with the buffer; one this ring did not register has none.
        let fixed = buf.fixed_index().filter(|_| self.registered);
        let len = buf.len();
        let slot = Slot {
            buf: Some(buf),
            offset,
            len,
            done: 0,
            submitted_at: Instant::now(),
            fixed,
            resubmit: false,
        };
        let i = match self.slots.iter().position(|s| s.buf.is_none()) {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.in_flight += 1;
        self.issued_end = self.issued_end.max(offset + len as u64);
        self.push(io, i)?;
        // Hand back a free buffer: reap what is done without waiting while we have one.
        self.reap(false)?;
        self.resubmit_short(io)?;
        while self.free.is_empty() {
            self.submit()?;
            self.reap(true)?;
            self.resubmit_short(io)?;
        }
        Ok(self.free.pop().expect("a free buffer after reaping"))
    }

    fn drain_inner(&mut self, io: &mut Io) -> Result<()> {
        while self.in_flight > 0 || self.syncs > 0 {
            self.submit()?;
            self.reap(true)?;
            self.resubmit_short(io)?;
        }
        match self.sync_error.take() {
            Some(e) => Err(io.range_sync_error(e)),
            None => Ok(()),
        }
    }
}

impl Backend for Uring {
    fn write(&mut self, io: &mut Io, buf: ChunkBuf, offset: u64) -> Result<ChunkBuf> {
        self.write_inner(io, buf, offset)
            .map_err(|e| Self::retarget(e, io))
    }

    fn written_frontier(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.buf.is_some())
            .map(|s| s.offset)
            .min()
            .unwrap_or(self.issued_end)
    }

    fn drain(&mut self, io: &mut Io) -> Result<()> {
        self.drain_inner(io).map_err(|e| Self::retarget(e, io))
    }

    fn stats(&self) -> BackendStats {
        stats_from(
            &self.hist,
            self.submit_calls,
            self.sqes,
            self.registered,
            self.short_writes,
        )
    }

    /// Through the ring: SYNC_FILE_RANGE SQEs that start writeback of the new range and
    /// make a kernel worker (not this thread) wait for the previous one.
    fn range_sync(&mut self, io: &mut Io, prev: u64, from: u64, to: u64) -> Result<()> {
        io.range_sync_gate()?;
        if let Some(e) = self.sync_error.take() {
            return Err(io.range_sync_error(e));
        }
        let fd = types::Fd(self.fd.as_raw_fd());
        let len = |a: u64, b: u64| (b - a).min(u64::from(u32::MAX)) as u32;
        let mut ops = vec![opcode::SyncFileRange::new(fd, len(from, to))
            .offset(from)
            .flags(libc::SYNC_FILE_RANGE_WRITE)
            .build()
            .user_data(SYNC_MARK)];
        if from > prev {
            let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            ops.push(
                opcode::SyncFileRange::new(fd, len(prev, from))
                    .offset(prev)
                    .flags(flags)
                    .build()
                    .user_data(SYNC_MARK),
            );
        }
        for e in ops {
            // SAFETY: a range sync references no memory of ours.
            while unsafe { self.ring.submission().push(&e) }.is_err() {
                self.submit().map_err(|x| Self::retarget(x, io))?;
            }
            self.pending += 1;
            self.outstanding += 1;
            self.syncs += 1;
        }
        Ok(())
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Never free a buffer the kernel may still be writing from: wait for the CQE of
        // every SQE pushed (submitting any still queued).
        while self.outstanding > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // A signal (the child's watchdog timer, say) must not end the wait.
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The ring is unusable; nothing more will complete.
                Err(_) => break,
            }
            let n = self.ring.completion().count();
            self.outstanding -= n.min(self.outstanding);
        }
        // Unregister before any buffer is freed (the ring's fields drop first, but the
        // pipeline's own registered buffers may outlive or predecease this backend):
        // from here on the kernel holds no registered page of ours.
        if self.registered {
            let _ = self.ring.submitter().unregister_buffers();
            self.registered = false;
        }
    }
}
