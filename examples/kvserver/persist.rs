//! Persistence, all through forksnap: start-up load, SAVE, BGSAVE (fork with the store
//! frozen by its guards), save points, and INFO persistence with Redis's field names.

use crate::aof::AofConfig;
use crate::store::{self, Store};
use forksnap::{Format, LoadOptions, RunningSnapshot, SavePoints, SnapshotOptions, SnapshotReport};
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What CONFIG GET/SET and the flags set.
pub struct Config {
    pub dir: PathBuf,
    pub dbfilename: String,
    pub save: SavePoints,
    pub format: Format,
    pub lzf: bool,
    /// `None`: forksnap's default (O_DIRECT where the file system takes it).
    pub direct: Option<bool>,
    pub rdb_version: Option<u8>,
    pub cow_budget: Option<u64>,
    /// Encoding threads in the child (`--snapshot-threads`, default 1).
    pub snapshot_threads: usize,
    pub appendonly: bool,
    pub aof: AofConfig,
    /// Tests: compute DEBUG DIGEST with the store frozen, just before each BGSAVE's
    /// fork, and show it in INFO (`forksnap_fork_digest`).
    pub digest_at_fork: bool,
}

impl Config {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }

    fn options(&self) -> SnapshotOptions {
        self.snapshot_options()
    }

    /// BGSAVE's tuning for a replica's full sync (plain RDB, whatever `--format` says;
    /// the version is the replica's; LZF as forksnap's default for the target: off for
    /// sockets, `--lzf` for the disk-based sync's file).
    pub fn sync_tuning(&self) -> impl Fn(SnapshotOptions) -> SnapshotOptions {
        let (threads, budget) = (self.snapshot_threads, self.cow_budget);
        move |o| o.threads(threads).cow_budget(budget)
    }

    /// The snapshot settings (BGSAVE's, and a rewrite's tuning).
    pub fn snapshot_options(&self) -> SnapshotOptions {
        let mut o = SnapshotOptions::new(self.path())
            .format(self.format)
            .lzf(self.lzf)
            .cow_budget(self.cow_budget)
            .threads(self.snapshot_threads);
        if let Some(d) = self.direct {
            o = o.direct(d);
        }
        if let Some(v) = self.rdb_version {
            o = o.rdb_version(v);
        }
        o
    }
}

#[derive(Default)]
struct State {
    running: Option<RunningSnapshot>,
    started: Option<Instant>,
    /// `dirty` when the running snapshot froze the store: what a success clears.
    dirty_at_fork: u64,
    last_progress_log: Option<Instant>,
    last_save: i64,
    last_try: i64,
    last_ok: bool,
    last_bgsave_secs: i64,
    saves: u64,
    fork_usec: u64,
    last: Option<SnapshotReport>,
    loaded_keys: u64,
    loaded_expired: u64,
    fork_digest: Option<forksnap::Digest>,
}

impl State {
    /// A save succeeded: the writes it holds (`dirty` when the store was frozen) are no
    /// longer changes since the last save.
    fn saved(&mut self, report: SnapshotReport, store: &Store, dirty: u64) {
        store.dirty.fetch_sub(dirty, Relaxed);
        self.last_save = unix_secs();
        self.last_ok = true;
        self.saves += 1;
        self.last = Some(report);
    }
}

pub struct Persist {
    pub cfg: Mutex<Config>,
    state: Mutex<State>,
}

pub enum BgsaveError {
    InProgress,
    Failed(forksnap::Error),
}

impl Persist {
    pub fn new(cfg: Config) -> Persist {
        let state = State {
            last_save: unix_secs(),
            last_ok: true,
            last_bgsave_secs: -1,
            ..Default::default()
        };
        Persist {
            cfg: Mutex::new(cfg),
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start-up: load `dir/dbfilename` (plain or LZ4-framed) straight into the shards.
    pub fn load(&self, store: &Store) -> Result<(), String> {
        let path = self.config().path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no RDB file: starting empty");
                return Ok(());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let t = Instant::now();
        let bytes = file.metadata().map_or(0, |m| m.len());
        let (report, expired) = store::load(store, bytes, false, |loader| {
            forksnap::load_into(file, &LoadOptions::default(), loader)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(
            path = %path.display(),
            keys = report.keys - expired,
            expired_skipped = expired,
            rdb_version = report.version,
            secs = t.elapsed().as_secs_f64(),
            "DB loaded from disk"
        );
        let mut st = self.state();
        st.loaded_keys = report.keys - expired;
        st.loaded_expired = expired;
        Ok(())
    }

    /// SAVE: in the foreground, the store frozen for its whole length (as Redis's SAVE).
    pub fn save(&self, store: &Store) -> Result<(), BgsaveError> {
        let mut st = self.state();
        if st.running.is_some() {
            return Err(BgsaveError::InProgress);
        }
        let opts = self.config().options();
        let frozen = store.freeze();
        let dirty = store.dirty.load(Relaxed);
        let r = opts.save(&frozen);
        drop(frozen);
        st.last_try = unix_secs();
        match r {
            Ok(report) => {
                tracing::info!(keys = report.keys(), "DB saved on disk");
                st.saved(report, store, dirty);
                Ok(())
            }
            Err(e) => {
                st.last_ok = false;
                tracing::warn!(error = %e, "SAVE failed");
                Err(BgsaveError::Failed(e))
            }
        }
    }

    /// BGSAVE: freeze the store by taking every shard's guard, fork, release.
    pub fn bgsave(&self, store: &Store, why: &str) -> Result<(), BgsaveError> {
        let mut st = self.state();
        if st.running.is_some() {
            return Err(BgsaveError::InProgress);
        }
        let (opts, digest) = {
            let cfg = self.config();
            (cfg.options(), cfg.digest_at_fork)
        };
        let frozen = store.freeze();
        st.dirty_at_fork = store.dirty.load(Relaxed);
        if digest {
            st.fork_digest = Some(forksnap::dataset_digest(&frozen));
        }
        let started = opts.start(&frozen);
        drop(frozen); // serving again; the child keeps the frozen image
        st.last_try = unix_secs();
        match started {
            Ok(running) => {
                tracing::info!(pid = running.pid(), why, "background saving started");
                st.running = Some(running);
                st.started = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                st.last_ok = false;
                tracing::warn!(error = %e, "can't start background save");
                Err(BgsaveError::Failed(e))
            }
        }
    }

    pub fn in_progress(&self) -> bool {
        self.state().running.is_some()
    }

    /// Drives a running BGSAVE (reports, CoW sampling, reaping); starts one when a save
    /// point is due. Called by the server's cron every 100 ms.
    pub fn cron(&self, store: &Store) {
        let mut st = self.state();
        if let Some(running) = st.running.as_mut() {
            let polled = running.poll();
            let progress = running.progress();
            match polled {
                Ok(None) => {
                    if st
                        .last_progress_log
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                    {
                        st.last_progress_log = Some(Instant::now());
                        tracing::info!(
                            keys = progress.keys,
                            bytes = progress.bytes_written,
                            "background saving"
                        );
                    }
                    return;
                }
                Ok(Some(report)) => {
                    st.fork_usec = report.fork_us;
                    st.last_bgsave_secs = report.wall.as_secs() as i64;
                    tracing::info!(
                        keys = report.keys(),
                        bytes = report.bytes_written,
                        wall_secs = report.wall.as_secs_f64(),
                        cow_peak = report.cow.peak_bytes,
                        "background saving terminated with success"
                    );
                    let dirty = st.dirty_at_fork;
                    st.saved(report, store, dirty);
                }
                Err(e) => {
                    st.last_ok = false;
                    if let Some(t) = st.started {
                        st.last_bgsave_secs = t.elapsed().as_secs() as i64;
                    }
                    tracing::warn!(error = %e, "background saving error");
                }
            }
            st.running = None;
            st.started = None;
            return;
        }
        let (changes, now) = (store.dirty.load(Relaxed), unix_secs());
        let due = self.config().save.due(
            changes,
            (now - st.last_save).max(0) as u64,
            (now - st.last_try).max(0) as u64,
            st.last_ok,
        );
        drop(st);
        // A replica's full sync may hold the process's one snapshot: wait for it.
        if let Some((secs, n)) = due.filter(|_| !forksnap::snapshot_running()) {
            let _ = self.bgsave(store, &format!("{n} changes in {secs} seconds"));
        }
    }

    /// Kills a running BGSAVE (SHUTDOWN, FLUSHALL): its temp file goes, the target stays.
    pub fn abort(&self) {
        if let Some(r) = self.state().running.take() {
            let _ = r.abort();
            tracing::info!("background saving killed");
        }
    }

    pub fn lastsave(&self) -> i64 {
        self.state().last_save
    }

    /// INFO persistence, Redis 7.0's fields, then forksnap's own.
    pub fn info(&self, out: &mut String, store: &Store) {
        let st = self.state();
        let cfg = self.config();
        let running = st.running.as_ref();
        let last = st.last.as_ref();
        let cow_now = running.map(|r| r.cow()).unwrap_or_default();
        let progress = running.map(|r| r.progress()).unwrap_or_default();
        let total: u64 = (0..crate::store::DATABASES)
            .map(|d| store.db_size(d).0)
            .sum();
        let _ = write!(
            out,
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:{}\r\n\
             current_cow_size:{}\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:{:.2}\r\n\
             current_save_keys_processed:{}\r\ncurrent_save_keys_total:{}\r\n\
             rdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\n\
             rdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\n\
             rdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:{}\r\n\
             rdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\n",
            cow_now.peak_bytes,
            cow_now.current_bytes,
            if total > 0 {
                progress.keys as f64 * 100.0 / total as f64
            } else {
                0.0
            },
            progress.keys,
            if running.is_some() { total } else { 0 },
            store.dirty.load(Relaxed),
            running.is_some() as u8,
            st.last_save,
            if st.last_ok { "ok" } else { "err" },
            st.last_bgsave_secs,
            st.started.map_or(-1, |t| t.elapsed().as_secs() as i64),
            st.saves,
            last.map_or(0, |r| r.cow.peak_bytes),
            st.loaded_expired,
            st.loaded_keys,
        );
        crate::Server::aof_info(out);
        out.push_str("module_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n");
        let _ = write!(
            out,
            "forksnap_current_bytes_written:{}\r\nforksnap_last_bytes_written:{}\r\n\
             forksnap_last_wall_ms:{}\r\nforksnap_last_child_cpu_ms:{}\r\n\
             forksnap_last_cow_peak:{}\r\nforksnap_last_write_p99_us:{}\r\n\
             forksnap_last_backend:{}\r\nforksnap_format:{}\r\nforksnap_lzf:{}\r\n\
             forksnap_fork_digest:{}\r\n",
            progress.bytes_written,
            last.map_or(0, |r| r.bytes_written),
            last.map_or(0, |r| r.wall.as_millis()),
            last.map_or(0, |r| r.child_cpu.as_millis()),
            last.map_or(0, |r| r.cow.peak_bytes),
            last.map_or(0, |r| r.stats.p99_us),
            last.and_then(|r| r.backend)
                .map_or("none".to_string(), |b| format!("{b:?}").to_lowercase()),
            match cfg.format {
                Format::Rdb => "rdb",
                Format::Lz4 => "lz4",
            },
            cfg.lzf as u8,
            st.fork_digest.map_or(String::new(), |d| d.to_string()),
        );
    }

    /// A rewrite's fork (INFO's `latest_fork_usec` is the last fork of either kind).
    pub fn note_fork(&self, us: u64) {
        self.state().fork_usec = us;
    }

    pub fn fork_usec(&self) -> u64 {
        self.state().fork_usec
    }
}
