//! The appender: commands are encoded into a shared buffer by any thread (under one
//! short lock), and one flusher thread, which owns the io_uring ring, writes the buffer
//! to the current incr file and fsyncs it by policy. Writes of many clients that arrive
//! while a write or fsync is in flight go out together in the next one (group commit).
//!
//! Positions are *LSNs*: bytes appended since the AOF was opened, across incr files. A
//! caller that appended up to LSN `n` waits until `n` is written (`everysec`, `no`: in the
//! page cache, safe from a process crash, as Redis writes before it replies) or written
//! and fdatasync'ed (`always`).
//!
//! `everysec`: the flusher submits an fdatasync at most once a second and does not wait
//! for it before the next write, so a slow disk never holds up callers waiting for
//! their writes (Redis's 2-second postponement rule is there for the same reason).
//! Without io_uring (the ring could not be built), writes are `pwrite` and fsyncs
//! `fdatasync` in the flusher thread, the reason in [`AppendStats::backend`].

use super::Fsync;
use crate::error::{Error, Result};
use crate::sink::io::{errno, Faults, Io, Step};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the flusher writes what nobody waits for yet (and checks the clock).
const TICK: Duration = Duration::from_millis(100);
/// A buffer this large is written without waiting for the tick.
const EAGER: usize = 4 << 20;

/// Counters for `INFO persistence`.
#[derive(Clone, Debug, Default)]
pub struct AppendStats {
    /// Bytes appended (the LSN of the last append).
    pub appended: u64,
    /// Bytes written to incr files.
    pub written: u64,
    /// Bytes written and fsynced.
    pub synced: u64,
    /// Bytes waiting in the buffer (`aof_buffer_length`).
    pub buffered: u64,
    /// Size of the current incr file, bytes.
    pub incr_size: u64,
    /// fsyncs issued.
    pub fsyncs: u64,
    /// `everysec` fsyncs that were still running when the next second's was due
    /// (`aof_delayed_fsync`).
    pub delayed_fsyncs: u64,
    /// The last write or fsync error, until a later one succeeds (`aof_last_write_status`).
    pub error: Option<String>,
    /// How writes and fsyncs are issued, and why.
    pub backend: String,
}

struct St {
    buf: Vec<u8>,
    appended: u64,
    written: u64,
    synced: u64,
    /// The highest LSN a caller waits for.
    want: u64,
    /// The database of the last command appended (`SELECT` when it changes).
    db: Option<u32>,
    last_ts: i64,
    /// The current incr file and its size.
    file: Arc<OwnedFd>,
    path: PathBuf,
    file_len: u64,
    /// A file switch asked for (applied by the flusher once the buffer before it is out).
    switch: Option<(Arc<OwnedFd>, PathBuf, u64)>,
    error: Option<Error>,
    fsyncs: u64,
    delayed_fsyncs: u64,
    closing: bool,
    backend: String,
}

struct Inner {
    st: Mutex<St>,
    /// Wakes the flusher.
    work: Condvar,
    /// Wakes waiters.
    done: Condvar,
    policy: Fsync,
    timestamps: bool,
    waker: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn wake_waiters(&self) {
        self.done.notify_all();
        if let Some(w) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            w();
        }
    }
    fn durable(&self, st: &St) -> u64 {
        if self.policy == Fsync::Always {
            st.synced
        } else {
            st.written
        }
    }
}

fn copy_err(e: &Error) -> Error {
    match e {
        Error::Io {
            op,
            path,
            offset,
            source,
        } => Error::Io {
            op,
            path: path.clone(),
            offset: *offset,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::InvalidOption(other.to_string()),
    }
}

pub(crate) struct Appender {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Appender {
    /// Starts appending to `file` (open for writing, `len` bytes long).
    pub fn start(
        file: OwnedFd,
        path: PathBuf,
        len: u64,
        policy: Fsync,
        timestamps: bool,
        use_ring: bool,
        faults: Faults,
    ) -> Result<Appender> {
        let ring = if use_ring {
            io_uring::IoUring::new(8).map_err(|e| format!("io_uring refused: {e}"))
        } else {
            Err("asked".to_string())
        };
        let backend = match &ring {
            Ok(_) => "io_uring".to_string(),
            Err(why) => format!("pwrite and fdatasync ({why})"),
        };
        let inner = Arc::new(Inner {
            st: Mutex::new(St {
                buf: Vec::new(),
                appended: 0,
                written: 0,
                synced: 0,
                want: 0,
                db: None,
                last_ts: 0,
                file: Arc::new(file),
                path: path.clone(),
                file_len: len,
                switch: None,
                error: None,
                fsyncs: 0,
                delayed_fsyncs: 0,
                closing: false,
                backend,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            policy,
            timestamps,
            waker: Mutex::new(None),
        });
        let io = Io::new(path.clone(), path, faults);
        let flusher = Flusher {
            inner: inner.clone(),
            ring: ring.ok(),
            io,
            fsync_inflight: None,
        };
        let thread = std::thread::Builder::new()
            .name("forksnap-aof".into())
            .spawn(move || flusher.run())
            .map_err(|e| Error::io("spawn the AOF flusher thread", "", e))?;
        Ok(Appender {
            inner,
            thread: Some(thread),
        })
    }

    /// Encodes a command for database `db` (a `SELECT` first when the database changes);
    /// returns its LSN.
    pub fn append(&self, db: u32, argv: &[&[u8]]) -> u64 {
        let mut st = self.inner.lock();
        let from = st.buf.len();
        self.select(&mut st, db);
        super::resp::encode(&mut st.buf, argv);
        self.appended(st, from)
    }

    /// Several commands as one transaction (`MULTI` … `EXEC`).
    pub fn append_multi(&self, db: u32, cmds: &[&[&[u8]]]) -> u64 {
        let mut st = self.inner.lock();
        let from = st.buf.len();
        self.select(&mut st, db);
        super::resp::encode(&mut st.buf, &[b"MULTI"]);
        for c in cmds {
            super::resp::encode(&mut st.buf, c);
        }
        super::resp::encode(&mut st.buf, &[b"EXEC"]);
        self.appended(st, from)
    }

    fn select(&self, st: &mut St, db: u32) {
        if self.inner.timestamps {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if now != st.last_ts {
                st.last_ts = now;
                st.buf.extend_from_slice(format!("#TS:{now}\r\n").as_bytes());
            }
        }
        if st.db != Some(db) {
            super::resp::encode_select(&mut st.buf, db);
            st.db = Some(db);
        }
    }

    /// Counts the bytes encoded since `buf[from]` (the buffer may be in the flusher's
    /// hands while this runs: the LSN counts bytes appended, not what is buffered).
    fn appended(&self, mut st: MutexGuard<'_, St>, from: usize) -> u64 {
        st.appended += (st.buf.len() - from) as u64;
        if st.buf.len() >= EAGER {
            self.inner.work.notify_one();
        }
        st.appended
    }

    /// `Some(Ok)` once `lsn` is written (and fsynced under `always`), `Some(Err)` after a
    /// write or fsync error, `None` while pending (the flusher is asked to write it now).
    pub fn poll(&self, lsn: u64) -> Option<Result<()>> {
        let mut st = self.inner.lock();
        self.check(&mut st, lsn)
    }

    fn check(&self, st: &mut St, lsn: u64) -> Option<Result<()>> {
        if self.inner.durable(st) >= lsn {
            return Some(Ok(()));
        }
        if let Some(e) = &st.error {
            return Some(Err(copy_err(e)));
        }
        if st.want < lsn {
            st.want = lsn;
            self.inner.work.notify_one();
        }
        None
    }

    /// Blocks until `lsn` is written (and fsynced under `always`).
    pub fn wait(&self, lsn: u64) -> Result<()> {
        let mut st = self.inner.lock();
        loop {
            if let Some(r) = self.check(&mut st, lsn) {
                return r;
            }
            st = self.inner.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Called by the flusher after each write, fsync or error (from its thread).
    pub fn set_waker(&self, f: Box<dyn Fn() + Send + Sync>) {
        *self.inner.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// The LSN of everything appended so far.
    pub fn lsn(&self) -> u64 {
        self.inner.lock().appended
    }

    /// Writes (and fsyncs) everything appended so far, then continues in `file`: the
    /// next command starts with a `SELECT`. Returns once the old file is complete. No
    /// append may run meanwhile (`start_rewrite`'s caller holds its data frozen), or it
    /// could land in either file.
    pub fn switch(&self, file: OwnedFd, path: PathBuf) -> Result<()> {
        let mut st = self.inner.lock();
        let at = st.appended;
        st.switch = Some((Arc::new(file), path, at));
        st.want = st.want.max(at);
        self.inner.work.notify_one();
        loop {
            if st.switch.is_none() {
                // The new file starts with its own SELECT (and timestamp annotation).
                st.db = None;
                st.last_ts = 0;
                return Ok(());
            }
            if let Some(e) = &st.error {
                let e = copy_err(e);
                st.switch = None;
                return Err(e);
            }
            st = self.inner.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn stats(&self) -> AppendStats {
        let st = self.inner.lock();
        AppendStats {
            appended: st.appended,
            written: st.written,
            synced: st.synced,
            buffered: st.buf.len() as u64,
            incr_size: st.file_len,
            fsyncs: st.fsyncs,
            delayed_fsyncs: st.delayed_fsyncs,
            error: st.error.as_ref().map(|e| e.to_string()),
            backend: st.backend.clone(),
        }
    }

    /// Writes and fsyncs everything, then stops the flusher.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        {
            let mut st = self.inner.lock();
            st.closing = true;
            self.inner.work.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let st = self.inner.lock();
        match &st.error {
            Some(e) if st.synced < st.appended => Err(copy_err(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The flusher thread's own state: the ring and the fault plan.
struct Flusher {
    inner: Arc<Inner>,
    ring: Option<io_uring::IoUring>,
    io: Io,
    /// An `everysec` fsync submitted and not yet completed: its file (kept open until it
    /// completes), the LSN it covers and when it was submitted.
    fsync_inflight: Option<(Arc<OwnedFd>, u64, Instant)>,
}

const UD_WRITE: u64 = 1;
const UD_FSYNC: u64 = 2;
const UD_FSYNC_NOW: u64 = 3;

impl Flusher {
    fn run(mut self) {
        let mut last_sync = Instant::now();
        loop {
            let mut st = self.inner.lock();
            // Wait for work: someone waits, the buffer is large, the tick, or closing.
            loop {
                let pending = !st.buf.is_empty();
                let waited = st.want > st.written;
                // A switch is served at once even with nothing to write (the server is
                // frozen until it is done); after an error the next attempt waits for
                // the tick (a full disk must not make this thread spin).
                let urgent = st.error.is_none()
                    && (st.switch.is_some() || (pending && (waited || st.buf.len() >= EAGER)));
                if st.closing || urgent {
                    break;
                }
                let (g, t) = self
                    .inner
                    .work
                    .wait_timeout(st, TICK)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                if t.timed_out() {
                    break;
                }
            }
            let data = std::mem::take(&mut st.buf);
            let end = st.written + data.len() as u64;
            let (file, path, offset) = (st.file.clone(), st.path.clone(), st.file_len);
            let closing = st.closing;
            drop(st);

            self.io.tmp = path.clone();
            let mut result = Ok(());
            if !data.is_empty() {
                result = self.write(&file, &data, offset);
            }
            let sync_now = self.inner.policy == Fsync::Always
                || closing
                || self.inner.lock().switch.is_some();
            let mut synced_to = None;
            if result.is_ok() && sync_now {
                result = self.fsync_now(&file).map(|_| synced_to = Some(end));
            }
            self.reap_fsync();

            let mut st = self.inner.lock();
            match result {
                Ok(()) => {
                    st.written = end;
                    st.file_len = offset + data.len() as u64;
                    if let Some(s) = synced_to {
                        st.synced = s;
                        st.fsyncs += 1;
                    }
                    st.error = None;
                }
                Err(e) => {
                    // Keep the bytes for the next attempt, in front of what came since.
                    let mut again = data;
                    again.extend_from_slice(&st.buf);
                    st.buf = again;
                    st.error = Some(e);
                }
            }
            if self.inner.policy == Fsync::EverySec
                && st.error.is_none()
                && st.synced < st.written
                && last_sync.elapsed() >= Duration::from_secs(1)
            {
                last_sync = Instant::now();
                let (f, to) = (st.file.clone(), st.written);
                st.fsyncs += 1;
                if self.fsync_inflight.is_some() {
                    st.delayed_fsyncs += 1;
                } else {
                    drop(st);
                    self.fsync_later(f, to);
                    st = self.inner.lock();
                }
            }
            if st.error.is_none() {
                if let Some((_, _, at)) = &st.switch {
                    if st.written >= *at {
                        let (f, p, _) = st.switch.take().expect("checked");
                        st.file = f;
                        st.path = p;
                        st.file_len = 0;
                    }
                }
            }
            let done = closing && (st.buf.is_empty() || st.error.is_some());
            drop(st);
            self.inner.wake_waiters();
            if done {
                self.finish_fsync();
                return;
            }
        }
    }

    /// Writes `data` at `offset` (whole: short writes are continued).
    fn write(&mut self, file: &OwnedFd, data: &[u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let short = matches!(self.io.write_gate_at(at)?, crate::sink::io::WriteGate::Short);
            let mut len = data.len() - done;
            if short {
                len = len.div_ceil(2);
            }
            let chunk = &data[done..done + len];
            let n = match &mut self.ring {
                Some(ring) => {
                    let sqe = io_uring::opcode::Write::new(
                        io_uring::types::Fd(file.as_raw_fd()),
                        chunk.as_ptr(),
                        chunk.len() as u32,
                    )
                    .offset(at)
                    .build()
                    .user_data(UD_WRITE);
                    submit_wait(ring, sqe, UD_WRITE, &mut self.fsync_inflight, &self.inner)
                }
                None => {
                    // SAFETY: pwrite from a live slice into an open descriptor.
                    let r = unsafe {
                        libc::pwrite(file.as_raw_fd(), chunk.as_ptr().cast(), chunk.len(), at as i64)
                    };
                    if r < 0 {
                        -errno()
                    } else {
                        r as i32
                    }
                }
            };
            if n < 0 {
                return Err(self.io.write_error(-n, at));
            }
            if n == 0 {
                return Err(self.io.write_error(libc::EIO, at));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// fdatasync now (`always`, a file switch, closing).
    fn fsync_now(&mut self, file: &OwnedFd) -> Result<()> {
        self.io.gate_step(Step::Fsync)?;
        let r = match &mut self.ring {
            Some(ring) => {
                let sqe = io_uring::opcode::Fsync::new(io_uring::types::Fd(file.as_raw_fd()))
                    .flags(io_uring::types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(UD_FSYNC_NOW);
                submit_wait(ring, sqe, UD_FSYNC_NOW, &mut self.fsync_inflight, &self.inner)
            }
            // SAFETY: fdatasync on an open descriptor.
            None => match unsafe { libc::fdatasync(file.as_raw_fd()) } {
                0 => 0,
                _ => -errno(),
            },
        };
        if r < 0 {
            return Err(self.io.step_error(Step::Fsync, -r));
        }
        Ok(())
    }

    /// `everysec`: an fdatasync covering LSN `to`, not waited for.
    fn fsync_later(&mut self, file: Arc<OwnedFd>, to: u64) {
        if let Err(e) = self.io.gate_step(Step::Fsync) {
            self.inner.lock().error = Some(e);
            return;
        }
        match &mut self.ring {
            Some(ring) => {
                let sqe = io_uring::opcode::Fsync::new(io_uring::types::Fd(file.as_raw_fd()))
                    .flags(io_uring::types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(UD_FSYNC);
                // SAFETY: the SQE names a descriptor kept open by `fsync_inflight` until
                // its completion is reaped; it points at no memory.
                let pushed = unsafe { ring.submission().push(&sqe).is_ok() };
                if pushed && ring.submit().is_ok() {
                    self.fsync_inflight = Some((file, to, Instant::now()));
                    return;
                }
                self.sync_done(-libc::EAGAIN, to);
            }
            None => {
                // SAFETY: fdatasync on an open descriptor.
                let r = unsafe { libc::fdatasync(file.as_raw_fd()) };
                self.sync_done(if r == 0 { 0 } else { -errno() }, to);
            }
        }
    }

    fn sync_done(&mut self, res: i32, to: u64) {
        let mut st = self.inner.lock();
        if res < 0 {
            st.error = Some(self.io.step_error(Step::Fsync, -res));
        } else {
            st.synced = st.synced.max(to);
        }
    }

    /// Collects a finished background fsync, if any.
    fn reap_fsync(&mut self) {
        let Some(ring) = &mut self.ring else { return };
        let mut res = None;
        for cqe in ring.completion() {
            if cqe.user_data() == UD_FSYNC {
                res = Some(cqe.result());
            }
        }
        if let Some(r) = res {
            if let Some((_, to, _)) = self.fsync_inflight.take() {
                self.sync_done(r, to);
            }
        }
    }

    /// Waits for the background fsync before the thread ends.
    fn finish_fsync(&mut self) {
        while self.fsync_inflight.is_some() {
            let Some(ring) = &mut self.ring else { return };
            if ring.submit_and_wait(1).is_err() {
                return;
            }
            self.reap_fsync();
        }
    }
}

/// Submits one SQE and waits for its completion (reaping a background fsync's on the
/// way). Returns the CQE's result.
fn submit_wait(
    ring: &mut io_uring::IoUring,
    sqe: io_uring::squeue::Entry,
    ud: u64,
    inflight: &mut Option<(Arc<OwnedFd>, u64, Instant)>,
    inner: &Inner,
) -> i32 {
    // SAFETY: the SQE's buffer (for a write) is borrowed by the caller for the whole
    // call and this function returns only after its completion has been reaped; the
    // descriptor is held open by the caller.
    if unsafe { ring.submission().push(&sqe) }.is_err() {
        return -libc::EBUSY;
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return -e.raw_os_error().unwrap_or(libc::EIO),
        }
        let mut mine = None;
        for cqe in ring.completion() {
            match cqe.user_data() {
                u if u == ud => mine = Some(cqe.result()),
                UD_FSYNC => {
                    if let Some((_, to, _)) = inflight.take() {
                        let mut st = inner.lock();
                        if cqe.result() < 0 {
                            st.error = Some(Error::io(
                                "fdatasync",
                                st.path.clone(),
                                std::io::Error::from_raw_os_error(-cqe.result()),
                            ));
                        } else {
                            st.synced = st.synced.max(to);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = mine {
            return r;
        }
    }
}
