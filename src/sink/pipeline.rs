//! The write pipeline: encoder chunks → (LZ4 framing) → fixed-size output buffers →
//! a backend, with Redis-style writeback pacing, an O_DIRECT-safe tail, and the
//! temp → fsync → rename → directory fsync commit. Used in-process by `save` and in the
//! forked child by `fork::start`.

use super::backend::{Backend, BackendKind, BackendStats, Pwrite, Uring};
use super::io::{Faults, IgnoreSigxfsz, Io};
use super::ratelimit::TokenBucket;
use super::Format;
use crate::buf::{ChunkBuf, CHUNK_ALIGN};
use crate::error::{Error, Result};
use crate::frame::{BlockMax, Framer};
use crate::keyspace::Keyspace;
use crate::rdb::{encode_with, ChunkSink, EncodeOptions, EncodeSummary};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

/// How the snapshot's bytes reach the disk.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub format: Format,
    /// Bytes per chunk (rounded up to whole pages).
    pub chunk_size: usize,
    /// Writes in flight (io_uring).
    pub queue_depth: u32,
    /// SQEs per `io_uring_enter`.
    pub batch: usize,
    /// O_DIRECT (no page-cache copy): `Some(true)` required, `Some(false)` never, `None`
    /// (the default) where the target's file system accepts it, probed on the temp file.
    pub direct: Option<bool>,
    /// Start writeback every this many bytes and wait for the previous range (0: off).
    pub pacing_bytes: u64,
    pub backend: BackendKind,
    /// Register the buffers as io_uring fixed buffers when allowed.
    pub register_buffers: bool,
    /// Cap on the file's write rate, bytes per second (`None`: as fast as it goes).
    pub max_write_rate: Option<u64>,
    /// Writer threads the child starts: 0 frames and writes on the encoding thread; 1
    /// (any value above 0) hands chunks to one thread that frames and writes them while
    /// the encoder goes on.
    pub workers: usize,
    /// Fault plan, for tests.
    pub faults: Faults,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            format: Format::Rdb,
            chunk_size: 1 << 20,
            queue_depth: 4,
            batch: 2,
            direct: None,
            pacing_bytes: 4 << 20,
            backend: BackendKind::Auto,
            register_buffers: true,
            max_write_rate: None,
            workers: 0,
            faults: Faults::default(),
        }
    }
}

/// Largest chunk accepted: the pipeline holds up to `queue_depth + 3` chunks at once.
pub const MAX_CHUNK_SIZE: usize = 64 << 20;
/// Most writes in flight accepted (the ring has twice as many entries).
pub const MAX_QUEUE_DEPTH: u32 = 1024;

impl WriteOptions {
    /// Refuses sizes that could not be allocated or set up, before anything is created.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::InvalidOption(format!(
                "chunk size {} B is above the {MAX_CHUNK_SIZE} B limit",
                self.chunk_size
            )));
        }
        if self.max_write_rate == Some(0) {
            return Err(Error::InvalidOption(
                "a write rate of 0 bytes/s would never finish: use None for no cap".into(),
            ));
        }
        if self.queue_depth > MAX_QUEUE_DEPTH {
            return Err(Error::InvalidOption(format!(
                "queue depth {} is above the limit of {MAX_QUEUE_DEPTH}",
                self.queue_depth
            )));
        }
        Ok(())
    }
}

/// What the pipeline did.
#[derive(Clone, Debug)]
pub struct WriteReport {
    pub summary: EncodeSummary,
    /// Bytes in the file.
    pub bytes_written: u64,
    /// The backend that wrote.
    pub backend: BackendKind,
    /// Why that backend (e.g. the io_uring setup error that forced pwrite).
    pub backend_reason: String,
    pub stats: BackendStats,
}

/// Progress seen by a pipeline observer: keys encoded, RDB bytes, file bytes written.
pub type ProgressFn<'a> = dyn FnMut(u64, u64, u64) + 'a;

/// Everything after the encoder: framing, packing, the backend, pacing, the tail.
struct Writer<'a> {
    backend: Box<dyn Backend + 'a>,
    io: &'a mut Io,
    fd_for_sync: OwnedFd,
    framer: Option<Framer>,
    /// Packing buffer for framed output (framed blocks vary in size).
    out: Option<ChunkBuf>,
    spare: Option<ChunkBuf>,
    offset: u64,
    synced: u64,
    prev_synced: u64,
    pacing: u64,
    direct: bool,
    /// Bytes preallocated with `fallocate` (O_DIRECT only; `None` once it failed).
    allocated: Option<u64>,
    /// File bytes submitted, for progress reports from any thread.
    written: &'a AtomicU64,
    /// The write-rate cap, if any.
    limit: Option<Box<Limit>>,
}

/// The write-rate cap, the clock it runs on and the time spent waiting for it.
struct Limit {
    bucket: TokenBucket,
    origin: Instant,
    waited: Duration,
}

impl<'a> Writer<'a> {
    fn submit(&mut self, buf: ChunkBuf) -> Result<ChunkBuf> {
        let len = buf.len() as u64;
        if let Some(l) = self.limit.as_deref_mut() {
            let wait = l.bucket.take(len, l.origin.elapsed().as_nanos() as u64);
            if !wait.is_zero() {
                // Reap what is in flight first (it is done at this rate), so that the
                // completion latencies do not include the wait; then sleep, never spin.
                self.backend.drain(self.io)?;
                std::thread::sleep(wait);
                l.waited += wait;
            }
        }
        self.preallocate(len);
        let free = self.backend.write(self.io, buf, self.offset)?;
        self.offset += len;
        self.written.store(self.offset, Ordering::Relaxed);
        if self.pacing > 0 && !self.direct {
            let done = self.backend.written_frontier();
            if done >= self.synced + self.pacing {
                self.backend
                    .range_sync(self.io, self.prev_synced, self.synced, done)?;
                self.prev_synced = self.synced;
                self.synced = done;
            }
        }
        Ok(free)
    }

    /// With O_DIRECT, keeps the file allocated ahead of the writes, in stretches of
    /// `PREALLOC` (ANCHORS.md: ext4 issues O_DIRECT writes into allocated blocks inline,
    /// and hands extending ones to kernel workers). Any failure (no support, no space
    /// for the stretch) only ends the preallocation; the writes report real errors.
    fn preallocate(&mut self, len: u64) {
        let Some(allocated) = self.allocated else {
            return;
        };
        if !self.direct || self.offset + len <= allocated {
            return;
        }
        let want = (self.offset + len).max(allocated + PREALLOC);
        self.allocated = self
            .io
            .fallocate(&self.fd_for_sync, allocated, want - allocated)
            .ok()
            .map(|()| want);
    }

    fn pack(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let out = self.out.as_mut().expect("packing buffer present");
            let n = out.push_some(bytes);
            bytes = &bytes[n..];
            if out.is_full() {
                let full = self.out.take().expect("packing buffer present");
                let free = self.submit(full)?;
                self.out = Some(free);
            }
        }
        Ok(())
    }

    /// Writes a final partial buffer; with O_DIRECT pads it to a page and returns the
    /// length the file must be truncated to.
    fn tail(&mut self, mut buf: ChunkBuf) -> Result<Option<u64>> {
        let real = buf.len();
        if real == 0 {
            return Ok(None);
        }
        let mut truncate_to = None;
        if self.direct && !real.is_multiple_of(CHUNK_ALIGN) {
            let padded = real.div_ceil(CHUNK_ALIGN) * CHUNK_ALIGN;
            buf.full_capacity_mut()[real..padded].fill(0);
            buf.set_len(padded);
            truncate_to = Some(self.offset + real as u64);
        }
        let free = self.submit(buf)?;
        self.spare.get_or_insert(free);
        Ok(truncate_to)
    }

    /// Takes a full chunk; leaves `chunk` empty.
    fn take(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        if let Some(mut framer) = self.framer.take() {
            let r = self.pack(framer.chunk(chunk.as_slice()));
            self.framer = Some(framer);
            chunk.clear();
            return r;
        }
        let spare = self.spare.take().expect("a spare buffer is always held");
        let full = std::mem::replace(chunk, spare);
        let free = self.submit(full)?;
        self.spare = Some(free);
        Ok(())
    }

    /// Writes the last chunk (and the frame trailer), waits for every write, truncates
    /// an O_DIRECT tail and fsyncs. Returns the I/O handle for the commit.
    fn finish(mut self, last: ChunkBuf) -> Result<(&'a mut Io, u64, BackendStats)> {
        let truncate_to = if let Some(mut framer) = self.framer.take() {
            self.pack(framer.finish(last.as_slice()))?;
            let rest = self.out.take().expect("packing buffer present");
            self.tail(rest)?
        } else {
            self.tail(last)?
        };
        self.backend.drain(self.io)?;
        let mut stats = self.backend.stats();
        stats.throttled_us = self.limit.as_ref().map_or(0, |l| l.waited.as_micros() as u64);
        stats.prealloc_stopped = self.allocated.is_none();
        let mut bytes_written = self.offset;
        // A preallocated stretch past the data is trimmed with the padded tail.
        let truncate_to = truncate_to.or_else(|| {
            self.allocated
                .filter(|&a| a > self.offset)
                .map(|_| self.offset)
        });
        if let Some(len) = truncate_to {
            self.io.truncate(&self.fd_for_sync, len)?;
            bytes_written = len;
        }
        self.io.fsync(&self.fd_for_sync)?;
        let Writer { io, backend, .. } = self;
        drop(backend);
        Ok((io, bytes_written, stats))
    }
}

/// How far ahead of the writes an O_DIRECT file is allocated.
const PREALLOC: u64 = 64 << 20;

const WRITER_STOPPED: &str = "writer thread stopped";

enum ToWriter {
    Chunk(ChunkBuf),
    Last(ChunkBuf),
}

/// The encoder's sink: the writer inline, or a channel to the writer thread (which sends
/// emptied buffers back, so memory stays bounded).
enum Stage<'a> {
    // Boxed: the writer is large and the threaded variant small (one allocation per
    // snapshot).
    Inline(Box<Writer<'a>>),
    Threaded {
        full: SyncSender<ToWriter>,
        free: Receiver<ChunkBuf>,
    },
}

impl ChunkSink for Stage<'_> {
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        match self {
            Stage::Inline(w) => w.take(chunk),
            Stage::Threaded { full, free } => {
                let stopped = || Error::WriterThread {
                    what: WRITER_STOPPED.into(),
                };
                let empty = free.recv().map_err(|_| stopped())?;
                let done = std::mem::replace(chunk, empty);
                full.send(ToWriter::Chunk(done)).map_err(|_| stopped())
            }
        }
    }
}

/// Encodes `ks` and writes it to `io.tmp`, then commits it over `io.target`. On error
/// the temp file is removed and the target is untouched.
pub fn write_snapshot(
    ks: &dyn Keyspace,
    enc: &EncodeOptions,
    opts: &WriteOptions,
    io: &mut Io,
    progress: &mut ProgressFn<'_>,
) -> Result<WriteReport> {
    let r = write_inner(ks, enc, opts, io, progress);
    if r.is_err() {
        io.remove_tmp();
    }
    r
}

fn write_inner(
    ks: &dyn Keyspace,
    enc: &EncodeOptions,
    opts: &WriteOptions,
    io: &mut Io,
    progress: &mut ProgressFn<'_>,
) -> Result<WriteReport> {
    enc.validate()?;
    opts.validate()?;
    let _xfsz = IgnoreSigxfsz::new();
    io.apply_limits();
    let chunk = opts.chunk_size.max(CHUNK_ALIGN);
    let block_max = BlockMax::for_chunk(chunk);
    let (fd, direct, direct_why) = io.create(opts.direct)?;
    let fd_for_sync = fd.try_clone().map_err(|e| Error::io("dup", &io.tmp, e))?;
    let mut first = ChunkBuf::new(chunk);
    let mut spare = ChunkBuf::new(chunk);
    let mut out = (opts.format == Format::Lz4).then(|| ChunkBuf::new(chunk));
    let depth = opts.queue_depth.max(1) as usize;
    let (backend, kind, reason): (Box<dyn Backend>, BackendKind, String) = match opts.backend {
        BackendKind::Pwrite => (
            Box::new(Pwrite::new(fd)),
            BackendKind::Pwrite,
            "forced by the caller".into(),
        ),
        // Measured (docs/PERFORMANCE.md: 10M populate keys, plain RDB, median of 3):
        // buffered io_uring 2.13 s, pwrite 1.50 s, io_uring + O_DIRECT 1.48 s. So Auto
        // uses io_uring only with O_DIRECT.
        BackendKind::Auto if !direct => (
            Box::new(Pwrite::new(fd)),
            BackendKind::Pwrite,
            "auto: pwrite for buffered writes (measured faster than buffered io_uring)".into(),
        ),
        want => {
            let pool: Vec<ChunkBuf> = (0..depth + 1).map(|_| ChunkBuf::new(chunk)).collect();
            let mut others = vec![&mut first, &mut spare];
            if let Some(o) = out.as_mut() {
                others.push(o);
            }
            let dup = fd.try_clone().map_err(|e| Error::io("dup", &io.tmp, e))?;
            match Uring::new(
                dup,
                (depth * 2) as u32,
                opts.batch,
                pool,
                &mut others,
                opts.register_buffers,
            ) {
                Ok(u) => {
                    let why = if u.stats().fixed_buffers {
                        "io_uring with registered buffers".to_string()
                    } else if opts.register_buffers {
                        "io_uring (buffer registration refused: RLIMIT_MEMLOCK or kernel)"
                            .to_string()
                    } else {
                        "io_uring".to_string()
                    };
                    (Box::new(u), BackendKind::Uring, why)
                }
                Err(e) if want == BackendKind::Auto => (
                    Box::new(Pwrite::new(fd)),
                    BackendKind::Pwrite,
                    format!("io_uring unavailable ({e}); pwrite fallback"),
                ),
                Err(e) => return Err(Error::io("io_uring setup", &io.tmp, e)),
            }
        }
    };
    let written = AtomicU64::new(0);
    let writer = Writer {
        backend,
        io,
        fd_for_sync,
        framer: out.as_ref().map(|_| Framer::new(block_max)),
        out,
        spare: Some(spare),
        offset: 0,
        synced: 0,
        prev_synced: 0,
        pacing: opts.pacing_bytes,
        direct,
        allocated: Some(0),
        written: &written,
        // A burst of two chunks or 50 ms of the rate, whichever is more.
        limit: opts.max_write_rate.map(|rate| {
            let burst = (2 * chunk as u64).max(rate / 20);
            Box::new(Limit {
                bucket: TokenBucket::new(rate, burst, 0),
                origin: Instant::now(),
                waited: Duration::ZERO,
            })
        }),
    };
    let mut report = |e: &crate::rdb::Encoder<Stage<'_>>, keys: u64| {
        progress(keys, e.bytes(), written.load(Ordering::Relaxed))
    };
    let (io, summary, bytes_written, stats) = if opts.workers == 0 {
        let (stage, last, summary) =
            encode_with(ks, enc, Stage::Inline(Box::new(writer)), first, &mut report)?;
        let Stage::Inline(w) = stage else {
            unreachable!("inline stage stays inline")
        };
        let (io, n, st) = (*w).finish(last)?;
        (io, summary, n, st)
    } else {
        // One writer thread, started here (after fork, in the child): it frames and
        // writes while this thread keeps encoding.
        std::thread::scope(|sc| {
            let (full_tx, full_rx) = sync_channel::<ToWriter>(2);
            let (free_tx, free_rx) = sync_channel::<ChunkBuf>(4);
            for _ in 0..2 {
                free_tx.send(ChunkBuf::new(chunk)).expect("receiver alive");
            }
            let worker = std::thread::Builder::new().spawn_scoped(sc, move || {
                let mut w = writer;
                loop {
                    match full_rx.recv() {
                        Ok(ToWriter::Chunk(mut c)) => {
                            w.take(&mut c)?;
                            let _ = free_tx.send(c);
                        }
                        Ok(ToWriter::Last(c)) => return w.finish(c),
                        Err(_) => {
                            return Err(Error::WriterThread {
                                what: "encoder stopped".into(),
                            })
                        }
                    }
                }
            });
            // Not started (no memory, a thread limit): an error, not a panic in the child.
            let worker = worker.map_err(|e| Error::WriterThread {
                what: format!("could not start: {e}"),
            })?;
            let stage = Stage::Threaded {
                full: full_tx,
                free: free_rx,
            };
            let encoded = encode_with(ks, enc, stage, first, &mut report);
            let encoded = match encoded {
                Ok((Stage::Threaded { full, free }, last, summary)) => {
                    let _ = full.send(ToWriter::Last(last));
                    drop(free);
                    Ok(summary)
                }
                Ok(_) => unreachable!("threaded stage stays threaded"),
                Err(e) => Err(e),
            };
            let written = worker.join().unwrap_or_else(|_| {
                Err(Error::WriterThread {
                    what: "panicked".into(),
                })
            });
            match (encoded, written) {
                (Ok(summary), Ok((io, n, st))) => Ok((io, summary, n, st)),
                // The writer's own error explains why the encoder saw it stop.
                (Err(Error::WriterThread { what }), Err(w)) if what == WRITER_STOPPED => Err(w),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })?
    };
    io.commit()?;
    progress(summary.keys(), summary.bytes, bytes_written);
    Ok(WriteReport {
        summary,
        bytes_written,
        backend: kind,
        backend_reason: format!("{reason}; {direct_why}"),
        stats,
    })
}
