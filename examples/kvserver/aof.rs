//! The append-only file, through forksnap's `Aof`: start-up load, logging each write in
//! its propagated form while the key's shard is still locked (so the file's order is the
//! data's), replies held until the policy says the write is safe, BGREWRITEAOF, the
//! automatic rewrite, and INFO's `aof_*` fields.

use crate::commands::Client;
use crate::resp::Out;
use crate::store::{self, Loader};
use crate::Server;
use forksnap::{
    Aof, AofOptions, AofVisitor, DbInfo, Fsync, LoadValue, LoadVisitor, SnapshotOptions,
    VisitResult,
};
use std::cell::Cell;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// The open AOF, when `appendonly` is on. Read on every write command (an uncontended
/// read lock); written only when AOF is switched on or off.
static AOF: RwLock<Option<Arc<Aof>>> = RwLock::new(None);
/// Wakes connections waiting for their writes to be safe.
pub static SAFE: tokio::sync::Notify = tokio::sync::Notify::const_new();

thread_local! {
    /// The LSN of the last command this thread logged: a connection executes its
    /// pipelined batch without awaiting, so this is the batch's last write.
    static LAST: Cell<u64> = const { Cell::new(0) };
}

pub fn current() -> Option<Arc<Aof>> {
    AOF.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Logs a write to the AOF and feeds it to the replicas' stream, in its propagated form
/// (call with the key's shard locked, so both orders are the data's).
pub fn propagate(db: usize, argv: &[&[u8]]) {
    if let Some(s) = crate::repl::SERVER.get() {
        s.repl.feed(db, argv);
    }
    if let Some(aof) = &*AOF.read().unwrap_or_else(|e| e.into_inner()) {
        LAST.set(aof.append(db as u32, argv));
    }
}

/// The LSN this thread's last batch must wait for (0: it wrote nothing), reset.
pub fn take_last() -> u64 {
    LAST.replace(0)
}

/// Waits until `lsn` is safe by the fsync policy, without blocking the runtime.
pub async fn safe(lsn: u64) -> Result<(), String> {
    let Some(aof) = current() else {
        return Ok(());
    };
    loop {
        let notified = SAFE.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match aof.poll_wait(lsn) {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            None => notified.await,
        }
    }
}

/// The AOF's settings (CONFIG and the flags).
pub struct AofConfig {
    pub fsync: Fsync,
    pub dirname: String,
    pub filename: String,
    pub auto_percentage: u64,
    pub auto_min_size: u64,
    pub rdb_preamble: bool,
    pub timestamps: bool,
}

impl Default for AofConfig {
    fn default() -> Self {
        AofConfig {
            fsync: Fsync::EverySec,
            dirname: "appendonlydir".into(),
            filename: "appendonly.aof".into(),
            auto_percentage: 100,
            auto_min_size: 64 << 20,
            rdb_preamble: true,
            timestamps: false,
        }
    }
}

/// Rewrite bookkeeping for INFO and the cron.
#[derive(Default)]
pub struct RewriteState {
    pub scheduled: bool,
    started: Option<Instant>,
    last_secs: i64,
    last_ok: bool,
    /// Failed rewrites in a row; from the third on, automatic rewrites back off (1, 2,
    /// 4 … 60 minutes), as Redis's do.
    failures: u32,
    retry_after: Option<Instant>,
    last_cow: u64,
    /// `aof_current_size` right after the last rewrite (the growth base).
    base_size: u64,
}

pub static REWRITE: Mutex<RewriteState> = Mutex::new(RewriteState {
    scheduled: false,
    started: None,
    last_secs: -1,
    last_ok: true,
    failures: 0,
    retry_after: None,
    last_cow: 0,
    base_size: 0,
});

fn rewrite_state() -> std::sync::MutexGuard<'static, RewriteState> {
    REWRITE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    pub fn aof_options(&self) -> AofOptions {
        let cfg = self.persist.config();
        let a = &cfg.aof;
        AofOptions::new(&cfg.dir)
            .dirname(&a.dirname)
            .filename(&a.filename)
            .fsync(a.fsync)
            .rdb_preamble(a.rdb_preamble)
            .timestamps(a.timestamps)
    }

    /// Start-up with `appendonly yes`: replay the AOF (Redis loads it instead of the RDB).
    /// True when there was one.
    pub fn load_aof(&self) -> Result<bool, String> {
        let t = Instant::now();
        let opts = self.aof_options();
        let rep = std::thread::scope(|s| {
            // The base's keys go through the RDB loader's two threads (decode here,
            // insert there); the first command waits for the inserter to finish.
            let (tx, rx) = std::sync::mpsc::sync_channel(4);
            let mut v = Replay {
                server: self,
                base: Some((
                    Loader::new(u64::MAX, tx),
                    s.spawn(|| store::insert_all(&self.store, rx)),
                )),
                client: Client::new(0),
                out: Out::default(),
            };
            let rep = Aof::load(&opts, &mut v).map_err(|e| e.to_string());
            let done = v.finish_base().map_err(|e| e.to_string());
            rep.and_then(|r| done.map(|()| r))
        })?;
        let Some(rep) = rep else {
            return Ok(false);
        };
        if let Some((f, cut)) = &rep.truncated {
            tracing::warn!(
                "AOF {} was truncated: {cut} bytes cut off at its end",
                f.display()
            );
        }
        tracing::info!(
            "DB loaded from append only file: {} files, {} keys from the base, {} commands, {:.3} seconds",
            rep.files.len(),
            rep.rdb.as_ref().map_or(0, |r| r.keys),
            rep.commands,
            t.elapsed().as_secs_f64()
        );
        Ok(true)
    }

    /// Opens the AOF for appending; with nothing on disk yet, writes its first base by a
    /// rewrite at once (as Redis does when AOF is switched on).
    pub fn open_aof(&self) -> Result<(), String> {
        let aof = Arc::new(Aof::open(self.aof_options()).map_err(|e| e.to_string())?);
        aof.set_waker(|| SAFE.notify_waiters());
        let needs = aof.stats().needs_rewrite;
        *AOF.write().unwrap_or_else(|e| e.into_inner()) = Some(aof);
        rewrite_state().base_size = current().map_or(0, |a| a.stats().current_size);
        if needs {
            if let Err(e) = self.bgrewriteaof() {
                tracing::warn!("first AOF rewrite not started yet: {e}");
                rewrite_state().scheduled = true;
            }
        }
        Ok(())
    }

    /// Switches AOF off: flushes, fsyncs and closes.
    pub fn close_aof(&self) -> Result<(), String> {
        let Some(aof) = AOF.write().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        match Arc::try_unwrap(aof) {
            Ok(a) => a.close().map_err(|e| e.to_string()),
            Err(a) => {
                // A connection still holds it (a waiter): wait for everything instead.
                a.abort_rewrite();
                a.wait(a.lsn()).map_err(|e| e.to_string())
            }
        }
    }

    /// BGREWRITEAOF: freeze, start, thaw.
    pub fn bgrewriteaof(&self) -> Result<(), String> {
        let Some(aof) = current() else {
            return Err("AOF is off (appendonly no)".into());
        };
        let tuning: SnapshotOptions = self.persist.config().snapshot_options();
        let frozen = self.store.freeze();
        let r = aof.start_rewrite(&frozen, &tuning);
        drop(frozen);
        match r {
            Ok(()) => {
                let mut st = rewrite_state();
                st.started = Some(Instant::now());
                st.scheduled = false;
                tracing::info!("Background append only file rewriting started");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every 100 ms: a finished rewrite, a scheduled or automatic one.
    pub fn aof_cron(&self) {
        let Some(aof) = current() else { return };
        if let Some(r) = aof.poll_rewrite() {
            let mut st = rewrite_state();
            st.last_secs = st
                .started
                .take()
                .map_or(-1, |t| t.elapsed().as_secs() as i64);
            match r {
                Ok(rep) => {
                    st.last_ok = true;
                    st.failures = 0;
                    st.retry_after = None;
                    st.last_cow = rep.snapshot.cow.peak_bytes;
                    self.persist.note_fork(rep.snapshot.fork_us);
                    st.base_size = aof.stats().current_size;
                    tracing::info!(
                        "Background AOF rewrite finished successfully: {} ({} bytes)",
                        rep.base.display(),
                        rep.snapshot.bytes_written
                    );
                }
                Err(e) => {
                    st.last_ok = false;
                    st.failures += 1;
                    if st.failures >= 3 {
                        let minutes = 1u64 << (st.failures - 3).min(6);
                        let wait = std::time::Duration::from_secs(60 * minutes.min(60));
                        st.retry_after = Some(Instant::now() + wait);
                        tracing::warn!(
                            "{} AOF rewrites failed in a row: the next automatic one waits {} minutes",
                            st.failures,
                            wait.as_secs() / 60
                        );
                    }
                    tracing::warn!("Background AOF rewrite failed: {e}");
                    if aof.stats().needs_rewrite {
                        st.scheduled = true;
                    }
                }
            }
        }
        let s = aof.stats();
        if s.rewrite_running || forksnap::snapshot_running() {
            return;
        }
        let (scheduled, base, backoff) = {
            let st = rewrite_state();
            let backoff = st.retry_after.is_some_and(|t| Instant::now() < t);
            (st.scheduled, st.base_size, backoff)
        };
        let (pct, min) = {
            let cfg = self.persist.config();
            (cfg.aof.auto_percentage, cfg.aof.auto_min_size)
        };
        let grown = !backoff
            && pct > 0
            && s.current_size > min
            && s.current_size.saturating_sub(base) * 100 / base.max(1) >= pct;
        if (scheduled && !backoff) || grown {
            if grown {
                tracing::info!(
                    "Starting automatic rewriting of AOF on {}% growth",
                    s.current_size.saturating_sub(base) * 100 / base.max(1)
                );
            }
            if let Err(e) = self.bgrewriteaof() {
                tracing::warn!("AOF rewrite not started: {e}");
            }
        }
    }

    /// INFO persistence's AOF fields, Redis's names.
    pub fn aof_info(out: &mut String) {
        let aof = current();
        let st = rewrite_state();
        let s = aof.as_ref().map(|a| a.stats());
        let running = s.as_ref().is_some_and(|s| s.rewrite_running);
        let _ = write!(
            out,
            "aof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\n\
             aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\n\
             aof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\n\
             aof_rewrites_consecutive_failures:{}\r\naof_last_write_status:{}\r\n\
             aof_last_cow_size:{}\r\n",
            aof.is_some() as u8,
            running as u8,
            st.scheduled as u8,
            st.last_secs,
            st.started.map_or(-1, |t| t.elapsed().as_secs() as i64),
            if st.last_ok { "ok" } else { "err" },
            s.as_ref().map_or(0, |s| s.rewrites),
            st.failures,
            if s.as_ref().is_some_and(|s| s.append.error.is_some()) {
                "err"
            } else {
                "ok"
            },
            st.last_cow,
        );
        if let Some(s) = s {
            let _ = write!(
                out,
                "aof_current_size:{}\r\naof_base_size:{}\r\naof_pending_rewrite:{}\r\n\
                 aof_buffer_length:{}\r\naof_pending_bio_fsync:0\r\naof_delayed_fsync:{}\r\n\
                 forksnap_aof_fsyncs:{}\r\nforksnap_aof_backend:{}\r\n",
                s.current_size,
                st.base_size,
                st.scheduled as u8,
                s.append.buffered,
                s.append.delayed_fsyncs,
                s.append.fsyncs,
                s.append.backend,
            );
        }
    }
}

/// Replays an AOF into the store: the base's keys through the RDB `Loader`, each command
/// through the server's own `exec` (AOF is not open yet, so nothing is logged again).
struct Replay<'a, 's> {
    server: &'a Server,
    base: Option<(
        Loader,
        std::thread::ScopedJoinHandle<'s, Result<(), String>>,
    )>,
    client: Client,
    out: Out,
}

impl Replay<'_, '_> {
    /// Hands the last keys over and waits for the inserting thread.
    fn finish_base(&mut self) -> VisitResult {
        let Some((mut loader, inserter)) = self.base.take() else {
            return Ok(());
        };
        let flushed = loader.flush();
        drop(loader); // closes the channel: the inserter finishes
        inserter
            .join()
            .unwrap_or_else(|_| Err("the inserting thread panicked".into()))?;
        flushed
    }

    fn loader(&mut self) -> Result<&mut Loader, Box<dyn std::error::Error + Send + Sync>> {
        match &mut self.base {
            Some((l, _)) => Ok(l),
            None => Err("RDB keys after the AOF's commands".into()),
        }
    }
}

impl LoadVisitor for Replay<'_, '_> {
    fn begin_db(&mut self, db: DbInfo) -> VisitResult {
        self.loader()?.begin_db(db)
    }
    fn key(&mut self, db: u32, key: &[u8], exp: Option<i64>, value: LoadValue<'_>) -> VisitResult {
        self.loader()?.key(db, key, exp, value)
    }
}

impl AofVisitor for Replay<'_, '_> {
    fn command(&mut self, db: u32, argv: &[&[u8]]) -> VisitResult {
        if !crate::commands::is_write(argv[0]) {
            return Err(format!(
                "Unknown command '{}' reading the append only file",
                String::from_utf8_lossy(argv[0])
            )
            .into());
        }
        // The base's keys first: commands act on them.
        self.finish_base()?;
        self.client.db = db as usize;
        let args: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
        self.server.exec(&mut self.client, &args, &mut self.out);
        self.out.0.clear();
        self.server.commands.fetch_sub(1, Relaxed);
        Ok(())
    }
}
