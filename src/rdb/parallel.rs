//! The parallel child: several threads encode one database's parts at once.
//!
//! The thread that writes the file (the caller's, in the child) writes the header and
//! each database's `SELECTDB`/`RESIZEDB`, then starts `threads` encoding threads for the
//! database. Each takes the next part ([`Partitioned::walk_partition`]), encodes its keys
//! with an encoder of its own (arena, LZF table, duplicate check) into chunks of
//! [`FRAGMENT_BYTES`], and every [`FRAGMENT_BYTES`] of whole keys cuts a fragment: the
//! chunks and their CRC-64. The writing thread appends fragments in the order they
//! arrive (keys of a database may come in any order; a fragment holds whole keys, so the
//! file stays a valid RDB), combining each fragment's CRC with the file's instead of
//! reading the bytes again, and hands the chunks back to their thread for reuse.
//!
//! Memory: at most `2 × threads` fragments wait for the writer, and each thread keeps
//! the chunks of one fragment in progress. An error in any thread (a duplicate member,
//! a view's wrong `len()`) stops the others at their next key and is the encode's
//! error; a failed write stops them as well.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

use super::encoder::{ChunkSink, EncodeOptions, EncodeSummary, Encoder, Fragment, FragmentParts};
use crate::buf::ChunkBuf;
use crate::error::Result;
use crate::keyspace::{Keyspace, Partitioned};

/// Whole keys per fragment, about: a thread cuts once it has encoded this many bytes.
pub(crate) const FRAGMENT_BYTES: usize = 256 * 1024;

/// An encoding thread's sink: keeps the fragment's full chunks until the cut, and takes
/// back chunks the writer has copied.
struct Parts {
    done: Vec<ChunkBuf>,
    back: Receiver<Vec<ChunkBuf>>,
    spare: Vec<ChunkBuf>,
}

impl Parts {
    fn spare_chunk(&mut self, cap: usize) -> ChunkBuf {
        while let Ok(v) = self.back.try_recv() {
            self.spare.extend(v);
        }
        match self.spare.pop() {
            Some(mut c) if c.capacity() == cap => {
                c.clear();
                c
            }
            _ => ChunkBuf::new(cap),
        }
    }
}

impl ChunkSink for Parts {
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        let next = self.spare_chunk(chunk.capacity());
        self.done.push(std::mem::replace(chunk, next));
        Ok(())
    }
}

impl FragmentParts for Parts {
    fn take_parts(&mut self) -> Vec<ChunkBuf> {
        std::mem::take(&mut self.done)
    }
    fn spare(&mut self, cap: usize) -> ChunkBuf {
        self.spare_chunk(cap)
    }
}

/// What an encoding thread sends the writer.
enum Msg {
    Fragment(usize, Fragment),
    Failed(crate::Error),
}

/// [`super::encoder::encode_with`] with `threads` encoding threads over `parts`.
pub(crate) fn encode_parallel<S: ChunkSink>(
    ks: &dyn Keyspace,
    parts: &dyn Partitioned,
    opts: &EncodeOptions,
    sink: S,
    chunk: ChunkBuf,
    progress: &mut dyn FnMut(&Encoder<S>, u64),
) -> Result<(S, ChunkBuf, EncodeSummary)> {
    let threads = opts.threads.max(1);
    let mut enc = Encoder::new(sink, chunk, opts)?;
    let mut keys = 0u64;
    let mut reported = 0u64;
    for info in ks.databases() {
        enc.begin_db(&info)?;
        let n = parts.partitions(info.index);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| -> Result<()> {
            let (tx, rx) = sync_channel::<Msg>(2 * threads);
            let mut backs: Vec<Sender<Vec<ChunkBuf>>> = Vec::new();
            for t in 0..threads.min(n) {
                let (back_tx, back_rx) = channel();
                backs.push(back_tx);
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                let db = info.index;
                sc.spawn(move || {
                    if let Err(e) = encode_parts(t, db, n, parts, opts, next, stop, &tx, back_rx)
                    {
                        stop.store(true, Ordering::Relaxed);
                        let _ = tx.send(Msg::Failed(e));
                    }
                });
            }
            drop(tx);
            let stopping = |e| {
                stop.store(true, Ordering::Relaxed);
                Err(e)
            };
            // Every thread's sender dropped: all parts done (or a thread failed).
            for msg in rx.iter() {
                match msg {
                    Msg::Fragment(t, f) => {
                        keys += f.keys;
                        match enc.append(f) {
                            Ok(chunks) => {
                                let _ = backs[t].send(chunks);
                            }
                            Err(e) => return stopping(e),
                        }
                        if keys / super::encoder::PROGRESS_EVERY_KEYS
                            > reported / super::encoder::PROGRESS_EVERY_KEYS
                        {
                            progress(&enc, keys);
                            reported = keys;
                        }
                    }
                    Msg::Failed(e) => return stopping(e),
                }
            }
            Ok(())
        })?;
    }
    if keys != reported || keys == 0 {
        progress(&enc, keys);
    }
    enc.finish()
}

/// One encoding thread: parts until none is left, a fragment every [`FRAGMENT_BYTES`].
#[allow(clippy::too_many_arguments)]
fn encode_parts(
    t: usize,
    db: u32,
    n: usize,
    parts: &dyn Partitioned,
    opts: &EncodeOptions,
    next: &AtomicUsize,
    stop: &AtomicBool,
    tx: &std::sync::mpsc::SyncSender<Msg>,
    back: Receiver<Vec<ChunkBuf>>,
) -> Result<()> {
    let sink = Parts {
        done: Vec::new(),
        back,
        spare: Vec::new(),
    };
    let mut enc = Encoder::bare(sink, ChunkBuf::new(FRAGMENT_BYTES), opts)?;
    // A nonzero database for the encoder's per-database counts; the writer's encoder
    // wrote SELECTDB.
    enc.enter_db(db);
    loop {
        let part = next.fetch_add(1, Ordering::Relaxed);
        if part >= n || stop.load(Ordering::Relaxed) {
            break;
        }
        let mut err = None;
        parts.walk_partition(db, part, &mut |e| {
            if stop.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            if let Err(x) = enc.write_entry(e) {
                err = Some(x);
                return ControlFlow::Break(());
            }
            if enc.bytes() >= FRAGMENT_BYTES as u64 {
                let f = enc.cut();
                if tx.send(Msg::Fragment(t, f)).is_err() {
                    // The writer stopped; its error is the encode's.
                    stop.store(true, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    if !stop.load(Ordering::Relaxed) {
        let f = enc.cut();
        if f.keys + f.skipped > 0 {
            let _ = tx.send(Msg::Fragment(t, f));
        }
    }
    Ok(())
}
