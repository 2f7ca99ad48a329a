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

impl ChunkSink for Parts {
    /// Keeps the chunk for the fragment and goes on in a spare one.
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        while let Ok(v) = self.back.try_recv() {
            self.spare.extend(v);
        }
        let next = match self.spare.pop() {
            Some(mut c) if c.capacity() == chunk.capacity() => {
                c.clear();
                c
            }
            _ => ChunkBuf::new(chunk.capacity()),
        };
        self.done.push(std::mem::replace(chunk, next));
        Ok(())
    }
}

impl FragmentParts for Parts {
    fn take_parts(&mut self) -> Vec<ChunkBuf> {
        std::mem::take(&mut self.done)
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
    enc.module_aux(ks, true)?;
    enc.functions(ks)?;
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
            let mut handles = Vec::new();
            let mut outcome = Ok(());
            for t in 0..threads.min(n) {
                let (back_tx, back_rx) = channel();
                backs.push(back_tx);
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                let db = info.index;
                let spawned = std::thread::Builder::new().spawn_scoped(sc, move || {
                    if let Err(e) = encode_parts(t, db, n, parts, opts, next, stop, &tx, back_rx)
                    {
                        stop.store(true, Ordering::Relaxed);
                        let _ = tx.send(Msg::Failed(e));
                    }
                });
                match spawned {
                    Ok(h) => handles.push(h),
                    // Not started (no memory, a thread limit): the started ones stop.
                    Err(e) => {
                        outcome = Err(crate::Error::EncoderThread {
                            what: format!("could not start: {e}"),
                        });
                        break;
                    }
                }
            }
            drop(tx);
            // Until every thread's sender is dropped: all parts done, or a thread failed.
            if outcome.is_ok() {
                for msg in rx.iter() {
                    let (t, f) = match msg {
                        Msg::Fragment(t, f) => (t, f),
                        Msg::Failed(e) => {
                            outcome = Err(e);
                            break;
                        }
                    };
                    keys += f.keys;
                    match enc.append(f) {
                        Ok(chunks) => {
                            let _ = backs[t].send(chunks);
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                    if keys / super::encoder::PROGRESS_EVERY_KEYS
                        > reported / super::encoder::PROGRESS_EVERY_KEYS
                    {
                        progress(&enc, keys);
                        reported = keys;
                    }
                }
            }
            if outcome.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            // A thread blocked on a full channel sees it closed and stops.
            drop(rx);
            // Every thread joined here, so none panics the scope. One that panicked
            // dropped its sender without sending its parts: the file would miss keys.
            let mut panicked = false;
            for h in handles {
                panicked |= h.join().is_err();
            }
            if panicked && outcome.is_ok() {
                outcome = Err(crate::Error::EncoderThread {
                    what: "panicked".into(),
                });
            }
            outcome
        })?;
    }
    if keys != reported || keys == 0 {
        progress(&enc, keys);
    }
    enc.module_aux(ks, false)?;
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
    // Writes no header and no SELECTDB (the writer's encoder did); its counts go with
    // each fragment.
    let mut enc = Encoder::bare(sink, ChunkBuf::new(FRAGMENT_BYTES), opts)?;
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
                let f = match enc.cut() {
                    Ok(f) => f,
                    Err(x) => {
                        err = Some(x);
                        return ControlFlow::Break(());
                    }
                };
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
        let f = enc.cut()?;
        if f.keys + f.skipped_empty + f.skipped_unsupported > 0 {
            let _ = tx.send(Msg::Fragment(t, f));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{dataset_digest, DbInfo, Entry, MemKeyspace, MemValue, Value};
    use crate::rdb::encoder::{encode_with, VecSink};
    use crate::rdb::{load, LoadOptions};

    /// Three databases over several parts each; strings up to 300 KiB (fragments of
    /// more than one chunk), collections of every kind, expiries.
    fn sample() -> MemKeyspace {
        let mut ks = MemKeyspace::new();
        for i in 0..120_000u64 {
            let db = (i % 3) as u32;
            let key = format!("k:{i}").into_bytes();
            let v = match i % 7 {
                0 => MemValue::str(vec![b'a' + (i % 26) as u8; (i as usize * 37) % 700]),
                1 => MemValue::Int(i as i64 - 20_000),
                2 => MemValue::list((0..i % 9 + 1).map(|j| format!("e{j}").into_bytes())),
                3 => MemValue::set((0..i % 13 + 1).map(|j| format!("{}", j * 3).into_bytes()))
                    .unwrap(),
                4 => MemValue::hash((0..i % 11 + 1).map(|j| (format!("f{j}"), format!("v{i}"))))
                    .unwrap(),
                5 => MemValue::zset((0..i % 5 + 1).map(|j| (format!("m{j}"), j as f64 / 3.0)))
                    .unwrap(),
                _ if i % 15_000 == 6 => MemValue::str(
                    (0..300 * 1024).map(|j| (j * 7 + i as usize) as u8).collect::<Vec<u8>>(),
                ),
                _ => MemValue::str(format!("text value {i} ").repeat(5).into_bytes()),
            };
            ks.insert(db, key, v, (i % 4 == 0).then_some(4_102_444_800_000 + i as i64));
        }
        ks
    }

    fn encode(ks: &dyn Keyspace, threads: usize) -> Result<(Vec<u8>, EncodeSummary)> {
        let opts = EncodeOptions {
            threads,
            ctime: Some(1),
            ..EncodeOptions::default()
        };
        let (VecSink(mut v), last, summary) = encode_with(
            ks,
            &opts,
            VecSink(Vec::new()),
            ChunkBuf::new(64 * 1024),
            &mut |_, _| {},
        )?;
        v.extend_from_slice(last.as_slice());
        Ok((v, summary))
    }

    #[test]
    fn threads_write_the_same_data_with_a_valid_crc() {
        let ks = sample();
        assert!(Partitioned::partitions(&ks, 0) > 1, "several parts per database");
        let (one, s1) = encode(&ks, 1).unwrap();
        for threads in [2, 3, 8] {
            let (many, s) = encode(&ks, threads).unwrap();
            assert_eq!(s.keys_per_db, s1.keys_per_db, "{threads} threads");
            // Not the same bytes: keys come in another order, and LZF's reused table makes
            // a value's compressed form depend on the values before it (both valid).
            assert!(many.len().abs_diff(one.len()) < one.len() / 100, "{threads} threads");
            let (back, report) = load(&many, &LoadOptions::default()).unwrap();
            assert!(report.crc_checked);
            assert_eq!(s.crc, crate::rdb::Crc64::checksum(&many[..many.len() - 8]));
            assert_eq!(dataset_digest(&back), dataset_digest(&ks), "{threads} threads");
        }
    }

    /// A keyspace whose parts are a server's own: the last key of part 1 is a set of the
    /// `bad` members (a duplicate, in a test); or part 1's walk panics.
    struct Parts2 {
        good: Vec<Vec<u8>>,
        bad: Vec<Vec<u8>>,
        panics: bool,
    }

    impl Keyspace for Parts2 {
        fn databases(&self) -> Vec<DbInfo> {
            vec![DbInfo {
                index: 0,
                keys: 2_001,
                expires: 0,
            }]
        }
        fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
            for p in 0..2 {
                self.walk_partition(db, p, visit);
            }
        }
        fn partitioned(&self) -> Option<&dyn Partitioned> {
            Some(self)
        }
    }

    impl Partitioned for Parts2 {
        fn partitions(&self, _db: u32) -> usize {
            2
        }
        fn walk_partition(
            &self,
            _db: u32,
            part: usize,
            visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>,
        ) {
            assert!(!(self.panics && part == 1), "the server's walk panics (test)");
            let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("p{part}:{i}").into_bytes()).collect();
            for k in &keys {
                let e = Entry {
                    key: k,
                    expire_ms: None,
                    value: Value::Set(&self.good),
                };
                if visit(&e).is_break() {
                    return;
                }
            }
            if part == 1 {
                let e = Entry {
                    key: b"the-bad-one",
                    expire_ms: None,
                    value: Value::Set(&self.bad),
                };
                let _ = visit(&e);
            }
        }
    }

    #[test]
    fn a_threads_error_is_the_encodes_and_stops_the_others() {
        let ks = Parts2 {
            good: vec![b"x".to_vec(), b"y".to_vec()],
            bad: vec![b"x".to_vec(), b"x".to_vec()],
            panics: false,
        };
        let e = encode(&ks, 2).unwrap_err().to_string();
        assert!(e.contains("the-bad-one") && e.contains("appears twice"), "{e}");
        let fine = Parts2 {
            good: vec![b"x".to_vec(), b"y".to_vec()],
            bad: vec![b"x".to_vec(), b"z".to_vec()],
            panics: false,
        };
        let (rdb, s) = encode(&fine, 2).unwrap();
        assert_eq!(s.keys(), 2_001);
        let (back, _) = load(&rdb, &LoadOptions::default()).unwrap();
        assert_eq!(back.len(), 2_001);
    }

    #[test]
    fn a_panicking_walk_is_an_error_not_a_file_missing_keys() {
        let ks = Parts2 {
            good: vec![b"x".to_vec()],
            bad: vec![b"y".to_vec()],
            panics: true,
        };
        let e = encode(&ks, 2).unwrap_err();
        assert!(
            matches!(&e, crate::Error::EncoderThread { what } if what == "panicked"),
            "{e}"
        );
    }

    /// A sink that fails after `left` chunks (a write error in the child).
    struct Failing {
        left: usize,
    }

    impl ChunkSink for Failing {
        fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
            if self.left == 0 {
                return Err(crate::Error::InvalidOption("disk full (test)".into()));
            }
            self.left -= 1;
            chunk.clear();
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_stops_every_thread() {
        let ks = sample();
        let opts = EncodeOptions {
            threads: 2,
            ..EncodeOptions::default()
        };
        for left in [0, 3, 40] {
            let r = encode_with(
                &ks,
                &opts,
                Failing { left },
                ChunkBuf::new(64 * 1024),
                &mut |_, _| {},
            );
            let e = r.err().unwrap_or_else(|| panic!("{left}: no error")).to_string();
            assert!(e.contains("disk full (test)"), "{e}");
        }
    }
}
