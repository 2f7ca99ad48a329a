//! Replication through forksnap, both ways.
//!
//! As a master: every write is fed to forksnap's `Master` (its backlog is also each
//! replica's buffer) under the key's lock, next to the AOF; `REPLCONF` fills the client's
//! `ReplicaInfo`; `PSYNC` turns the connection into a replica link: a partial resync
//! streams from the backlog, a full sync forks a snapshot straight to the socket
//! (`repl-diskless-sync yes`, the default) or to a file that is then sent with its
//! length, and the command stream follows.
//! As a replica (`REPLICAOF host port`): forksnap's `ReplicaLink` on a blocking thread
//! loads the master's RDB from the socket into the store and applies its command stream
//! as a client would, then reconnects with a partial resync if the link drops.

use crate::commands::Client;
use crate::resp::Out;
use crate::store::{self, DATABASES};
use crate::Server;
use forksnap::{
    Master, Psync, ReplicaInfo, ReplicaLink, ReplicaOptions, SnapshotOptions, SyncKind,
};
use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The settings (flags and CONFIG).
pub struct ReplConfig {
    pub diskless: bool,
    /// How long a diskless sync waits for more replicas to share its child.
    pub diskless_delay: Duration,
    pub backlog_size: usize,
    pub timeout: Duration,
}

impl Default for ReplConfig {
    fn default() -> Self {
        ReplConfig {
            diskless: true,
            diskless_delay: Duration::ZERO,
            // Also every replica's buffer during its full sync (forksnap's `Master`):
            // Redis's 1 MiB backlog would drop a replica whose sync sees more writes.
            backlog_size: 64 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A connected replica, for INFO and ROLE.
struct Downstream {
    id: u64,
    ip: String,
    port: u16,
    state: &'static str,
    ack: Arc<AtomicU64>,
}

/// A replica waiting for a diskless full sync.
struct Waiting {
    id: u64,
    fd: std::os::fd::RawFd,
    version: u8,
    done: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// The link to our master, when we are a replica.
struct Upstream {
    host: String,
    port: u16,
    stop: Arc<AtomicBool>,
    link: Arc<Mutex<LinkState>>,
}

#[derive(Default)]
struct LinkState {
    up: bool,
    syncing: bool,
    offset: u64,
    replid: String,
    last_io: Option<Instant>,
}

#[derive(Default)]
struct Stats {
    full: u64,
    partial_ok: u64,
    partial_err: u64,
    /// The last full sync's child: copy-on-write peak, bytes sent.
    last_cow: u64,
    last_bytes: u64,
    /// Sync children forked (diskless: one may feed several replicas).
    children: u64,
}

pub struct Repl {
    pub cfg: Mutex<ReplConfig>,
    master: Mutex<Master>,
    /// Set once a replica has asked for a sync: from then on every write is fed.
    feeding: AtomicBool,
    fed: tokio::sync::Notify,
    replicas: Mutex<Vec<Downstream>>,
    pending: Mutex<Vec<Waiting>>,
    /// When the stream last got a PING.
    last_ping: Mutex<Option<Instant>>,
    upstream: Mutex<Option<Upstream>>,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client id of the master's stream applied on a replica (never a real client's).
pub const MASTER_CLIENT: u64 = u64::MAX;

/// The server, for `REPLICAOF` (its link runs on a thread of its own).
pub static SERVER: std::sync::OnceLock<Arc<Server>> = std::sync::OnceLock::new();

impl Repl {
    pub fn new(cfg: ReplConfig) -> Repl {
        let size = cfg.backlog_size;
        Repl {
            cfg: Mutex::new(cfg),
            master: Mutex::new(Master::new(size)),
            feeding: AtomicBool::new(false),
            fed: tokio::sync::Notify::new(),
            replicas: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            last_ping: Mutex::new(None),
            upstream: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// Feeds a write (call with the key's shard locked, as the AOF's `propagate`).
    pub fn feed(&self, db: usize, argv: &[&[u8]]) {
        if self.feeding.load(Relaxed) {
            lock(&self.master).feed(db as u32, argv);
            self.fed.notify_waiters();
        }
    }

    pub fn is_replica(&self) -> bool {
        lock(&self.upstream).is_some()
    }
}

impl Server {
    /// `REPLICAOF host port` / `REPLICAOF NO ONE`.
    pub fn replicaof(self: &Arc<Self>, host: &[u8], port: &[u8], out: &mut Out) {
        let mut up = lock(&self.repl.upstream);
        if host.eq_ignore_ascii_case(b"no") && port.eq_ignore_ascii_case(b"one") {
            if let Some(u) = up.take() {
                u.stop.store(true, Relaxed);
                tracing::info!("MASTER MODE enabled");
            }
            return out.ok();
        }
        let Some(port) = std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
        else {
            return out.error("ERR Invalid master port");
        };
        let host = String::from_utf8_lossy(host).into_owned();
        if up
            .as_ref()
            .is_some_and(|u| u.host == host && u.port == port)
        {
            return out.status("OK Already connected to specified master");
        }
        if let Some(u) = up.take() {
            u.stop.store(true, Relaxed);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let link = Arc::new(Mutex::new(LinkState::default()));
        *up = Some(Upstream {
            host: host.clone(),
            port,
            stop: stop.clone(),
            link: link.clone(),
        });
        drop(up);
        tracing::info!(host, port, "connecting to MASTER");
        let server = self.clone();
        tokio::task::spawn_blocking(move || server.follow(&host, port, &stop, &link));
        out.ok()
    }

    /// The replica's link, on a blocking thread: connect, sync, apply; on a drop,
    /// reconnect (asking for a partial resync) until `stop`.
    fn follow(&self, host: &str, port: u16, stop: &AtomicBool, state: &Mutex<LinkState>) {
        let mut cached: Option<(String, u64)> = None;
        while !stop.load(Relaxed) {
            let timeout = lock(&self.repl.cfg).timeout;
            let opts = ReplicaOptions::new(self.port).timeout(timeout);
            let connected = ReplicaLink::connect(
                (host, port),
                &opts,
                cached.as_ref().map(|(id, off)| (id.as_str(), *off)),
            );
            let (mut link, kind) = match connected {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "MASTER link failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if kind == SyncKind::Full {
                lock(state).syncing = true;
                // A new history: this server's own replicas must sync again.
                let size = lock(&self.repl.cfg).backlog_size;
                *lock(&self.repl.master) = Master::new(size);
                tracing::info!(replid = link.replid(), "full resync from master");
                self.flush_all();
                let t = Instant::now();
                let loaded = store::load(&self.store, 64 << 20, true, |loader| link.load(loader));
                lock(state).syncing = false;
                match loaded {
                    Ok((r, _)) => tracing::info!(
                        keys = r.keys,
                        secs = t.elapsed().as_secs_f64(),
                        "MASTER <-> REPLICA sync: finished with success"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "MASTER <-> REPLICA sync failed");
                        self.flush_all();
                        cached = None;
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            } else {
                tracing::info!("partial resync from master accepted");
            }
            {
                let mut s = lock(state);
                s.up = true;
                s.replid = link.replid().to_string();
                s.offset = link.offset();
                s.last_io = Some(Instant::now());
            }
            let mut client = Client::new(MASTER_CLIENT);
            let mut out = Out::default();
            let err = loop {
                if stop.load(Relaxed) {
                    break None;
                }
                match link.next_command() {
                    Ok(Some(cmd)) => {
                        // A transaction's commands apply one by one (no MULTI here).
                        let name = &cmd.argv[0];
                        if !name.eq_ignore_ascii_case(b"multi")
                            && !name.eq_ignore_ascii_case(b"exec")
                        {
                            client.db = cmd.db as usize;
                            self.exec(&mut client, &cmd.argv, &mut out);
                            if out.0.first() == Some(&b'-') {
                                // The data now differs from the master's: say so.
                                tracing::warn!(
                                    command = %String::from_utf8_lossy(name),
                                    reply = %String::from_utf8_lossy(&out.0).trim_end(),
                                    "a command from the master failed here"
                                );
                            }
                            out.0.clear();
                        }
                        let mut s = lock(state);
                        s.offset = cmd.offset;
                        s.last_io = Some(Instant::now());
                    }
                    Ok(None) => lock(state).offset = link.offset(),
                    Err(e) => break Some(e),
                }
            };
            lock(state).up = false;
            if let Some(e) = err {
                tracing::warn!(error = %e, "connection with master lost");
            }
            cached = Some((link.replid().to_string(), link.offset()));
        }
    }

    /// Empties every database (a full sync's start), as FLUSHALL without logging.
    fn flush_all(&self) {
        let mut guards: Vec<_> = (0..DATABASES).flat_map(|d| self.store.lock_db(d)).collect();
        guards.iter_mut().for_each(|g| g.clear());
    }

    /// `PSYNC` on connection `c`: the connection is now a replica's. Returns when the
    /// replica goes away or falls behind the backlog.
    pub async fn serve_replica(
        &self,
        sock: TcpStream,
        c: &Client,
        info: ReplicaInfo,
        replid: &[u8],
        offset: &[u8],
    ) {
        let ack = Arc::new(AtomicU64::new(0));
        let ip = sock
            .peer_addr()
            .map_or(String::new(), |a| a.ip().to_string());
        lock(&self.repl.replicas).push(Downstream {
            id: c.id,
            ip,
            port: info.listening_port.unwrap_or(0),
            state: "wait_bgsave",
            ack: ack.clone(),
        });
        let r = self
            .replica_session(sock, c.id, &info, replid, offset, &ack)
            .await;
        if let Err(e) = r {
            tracing::warn!(replica = c.id, error = %e, "replica link closed");
        }
        lock(&self.repl.replicas).retain(|d| d.id != c.id);
    }

    fn set_state(&self, id: u64, state: &'static str) {
        if let Some(d) = lock(&self.repl.replicas).iter_mut().find(|d| d.id == id) {
            d.state = state;
        }
    }

    async fn replica_session(
        &self,
        mut sock: TcpStream,
        id: u64,
        info: &ReplicaInfo,
        replid: &[u8],
        offset: &[u8],
        ack: &AtomicU64,
    ) -> Result<(), String> {
        let decision = lock(&self.repl.master).psync(replid, offset);
        let from = match decision {
            Psync::Continue { reply, from } => {
                lock(&self.repl.stats).partial_ok += 1;
                sock.write_all(reply.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                from
            }
            Psync::Full => {
                {
                    let mut st = lock(&self.repl.stats);
                    st.full += 1;
                    if replid != b"?" {
                        st.partial_err += 1;
                    }
                }
                let diskless = lock(&self.repl.cfg).diskless && info.capa_eof;
                let from = if diskless {
                    self.sync_diskless(&mut sock, id, info).await?
                } else {
                    self.sync_disk(&mut sock, id, info).await?
                };
                if diskless {
                    // Nothing may follow the EOF mark until the replica has loaded it.
                    wait_first_ack(&mut sock, ack).await?;
                }
                from
            }
        };
        self.set_state(id, "online");
        self.stream(sock, from, ack).await
    }

    /// Starts a snapshot with the store frozen, when the process's one snapshot is free
    /// (a BGSAVE or rewrite may hold it: wait, as Redis delays a sync during a BGSAVE).
    async fn start_sync_snapshot(
        &self,
        make: impl Fn(&str) -> SnapshotOptions,
    ) -> Result<(forksnap::RunningSnapshot, String, u64), String> {
        loop {
            let started = {
                let frozen = self.store.freeze();
                let mut m = lock(&self.repl.master);
                self.repl.feeding.store(true, Relaxed);
                let line = m.full_resync();
                let at = m.offset();
                drop(m);
                make(&line).start(&frozen).map(|r| (r, line, at))
            };
            match started {
                Ok(s) => return Ok(s),
                Err(forksnap::Error::AlreadyRunning) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(format!("can't start the sync's snapshot: {e}")),
            }
        }
    }

    /// A diskless full sync: the replica joins the pending ones; the first of them
    /// leads: after `repl-diskless-sync-delay` it forks one child for every replica
    /// waiting by then (one walk, several sockets, the oldest RDB version any of them
    /// needs). The stream starts at the returned offset.
    async fn sync_diskless(
        &self,
        sock: &mut TcpStream,
        id: u64,
        info: &ReplicaInfo,
    ) -> Result<u64, String> {
        let (done, result) = tokio::sync::oneshot::channel();
        let leader = {
            let mut p = lock(&self.repl.pending);
            p.push(Waiting {
                id,
                fd: sock.as_raw_fd(),
                version: info.rdb_version(),
                done,
            });
            p.len() == 1
        };
        if leader {
            self.lead_diskless_sync().await;
        }
        result
            .await
            .map_err(|_| "the sync ended without a result".to_string())?
    }

    async fn lead_diskless_sync(&self) {
        let (delay, timeout) = {
            let c = lock(&self.repl.cfg);
            (c.diskless_delay, c.timeout)
        };
        tokio::time::sleep(delay).await;
        let tuning = self.persist.config().sync_tuning();
        let (mut running, batch, at) = loop {
            let (started, batch, at) = {
                let frozen = self.store.freeze();
                let batch = std::mem::take(&mut *lock(&self.repl.pending));
                if batch.is_empty() {
                    return; // another leader took them
                }
                let fds: Vec<_> = batch.iter().map(|w| w.fd).collect();
                let version = batch.iter().map(|w| w.version).min().unwrap_or(10);
                let mut m = lock(&self.repl.master);
                self.repl.feeding.store(true, Relaxed);
                let line = m.full_resync();
                let at = m.offset();
                drop(m);
                let opts = tuning(SnapshotOptions::for_replicas(&fds, line.as_bytes()))
                    .rdb_version(version)
                    .replica_timeout(timeout);
                (opts.start(&frozen), batch, at)
            };
            match started {
                Ok(r) => break (r, batch, at),
                Err(forksnap::Error::AlreadyRunning) => {
                    // A BGSAVE or rewrite holds the process's one snapshot: wait (and let
                    // later replicas join), as Redis delays a sync during a BGSAVE.
                    lock(&self.repl.pending).splice(0..0, batch);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    for w in batch {
                        let _ = w
                            .done
                            .send(Err(format!("can't start the sync's snapshot: {e}")));
                    }
                    return;
                }
            }
        };
        lock(&self.repl.stats).children += 1;
        for w in &batch {
            self.set_state(w.id, "send_bulk");
        }
        tracing::info!(
            replicas = batch.len(),
            pid = running.pid(),
            "starting diskless full sync"
        );
        let report = loop {
            match running.poll() {
                Ok(Some(r)) => break r,
                Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => {
                    for w in batch {
                        let _ = w.done.send(Err(format!("full sync failed: {e}")));
                    }
                    return;
                }
            }
        };
        tracing::info!(
            replicas = batch.len(),
            keys = report.keys(),
            bytes = report.bytes_written,
            cow_peak = report.cow.peak_bytes,
            "diskless full sync sent"
        );
        {
            let mut st = lock(&self.repl.stats);
            st.last_cow = report.cow.peak_bytes;
            st.last_bytes = report.bytes_written;
        }
        for (w, r) in batch.into_iter().zip(&report.replicas) {
            let _ = w.done.send(match &r.error {
                None => Ok(at),
                Some(e) => Err(format!("full sync to the replica failed: {e}")),
            });
        }
    }

    /// `repl-diskless-sync no`: a snapshot to a file, then `$<len>` and the file.
    async fn sync_disk(
        &self,
        sock: &mut TcpStream,
        id: u64,
        info: &ReplicaInfo,
    ) -> Result<u64, String> {
        let cfg = self.persist.config().sync_tuning();
        let (dir, lzf) = {
            let c = self.persist.config();
            (c.dir.clone(), c.lzf)
        };
        let path = dir.join(format!("temp-sync-{}-{id}.rdb", std::process::id()));
        let version = info.rdb_version();
        let (mut running, line, at) = self
            .start_sync_snapshot(|_| cfg(SnapshotOptions::new(&path).lzf(lzf)).rdb_version(version))
            .await?;
        lock(&self.repl.stats).children += 1;
        sock.write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut ping = Instant::now();
        let polled = loop {
            match running.poll() {
                Ok(Some(r)) => break Ok(r),
                Ok(None) => {
                    if ping.elapsed() >= Duration::from_secs(1) {
                        // Redis's keep-alive while the replica waits for the RDB.
                        sock.write_all(b"\n").await.map_err(|e| e.to_string())?;
                        ping = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => break Err(format!("full sync's snapshot failed: {e}")),
            }
        };
        let sent = async {
            let report = polled?;
            {
                let mut st = lock(&self.repl.stats);
                st.last_cow = report.cow.peak_bytes;
                st.last_bytes = report.bytes_written;
            }
            self.set_state(id, "send_bulk");
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| e.to_string())?;
            let len = f.metadata().await.map_err(|e| e.to_string())?.len();
            sock.write_all(format!("${len}\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            tokio::io::copy(&mut f, sock)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let _ = std::fs::remove_file(&path);
        sent.map(|()| at)
    }

    /// The command stream from `from` on, while the replica's ACKs are read.
    async fn stream(&self, sock: TcpStream, mut from: u64, ack: &AtomicU64) -> Result<(), String> {
        let (mut rd, mut wr) = sock.into_split();
        let acks = async {
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 4096];
                let n = rd.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err::<(), String>("the replica closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
                read_acks(&mut buf, ack);
            }
        };
        let replid = lock(&self.repl.master).replid().to_string();
        let send = async {
            let mut out = Vec::with_capacity(64 << 10);
            loop {
                let notified = self.repl.fed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                out.clear();
                let n = {
                    let m = lock(&self.repl.master);
                    if m.replid() != replid {
                        return Err(
                            "this server's history changed (it synced from its own master)".into(),
                        );
                    }
                    m.read_from(from, &mut out, 1 << 20)
                        .map_err(|e| e.to_string())?
                };
                if n == 0 {
                    // Woken by a write, or once a second for Redis's PING.
                    let tick = tokio::time::timeout(Duration::from_secs(1), notified).await;
                    if tick.is_err() {
                        self.ping_replicas();
                    }
                    continue;
                }
                wr.write_all(&out).await.map_err(|e| e.to_string())?;
                from += n as u64;
            }
        };
        tokio::select! {
            r = acks => r,
            r = send => r,
        }
    }

    /// A `PING` in the stream every 10 s, as Redis's `repl-ping-replica-period`.
    fn ping_replicas(&self) {
        let mut last = lock(&self.repl.last_ping);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            lock(&self.repl.master).feed_raw(b"*1\r\n$4\r\nPING\r\n");
            self.repl.fed.notify_waiters();
        }
    }

    /// INFO replication, Redis 7.0's fields.
    pub fn repl_info(&self, s: &mut String) {
        let m = lock(&self.repl.master);
        let up = lock(&self.repl.upstream);
        s.push_str("# Replication\r\n");
        if let Some(u) = up.as_ref() {
            let l = lock(&u.link);
            let _ = write!(
                s,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\n\
                 master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\n\
                 slave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\n\
                 slave_read_only:1\r\nreplica_announced:1\r\n",
                u.host,
                u.port,
                if l.up { "up" } else { "down" },
                l.last_io.map_or(-1, |t| t.elapsed().as_secs() as i64),
                l.syncing as u8,
                l.offset,
                l.offset,
            );
        } else {
            s.push_str("role:master\r\n");
        }
        let reps = lock(&self.repl.replicas);
        let _ = write!(s, "connected_slaves:{}\r\n", reps.len());
        for (i, d) in reps.iter().enumerate() {
            let _ = write!(
                s,
                "slave{i}:ip={},port={},state={},offset={},lag=0\r\n",
                d.ip,
                d.port,
                d.state,
                d.ack.load(Relaxed)
            );
        }
        let (replid, offset) = match up.as_ref().map(|u| lock(&u.link)) {
            Some(l) if !l.replid.is_empty() => (l.replid.clone(), l.offset),
            _ => (m.replid().to_string(), m.offset()),
        };
        let active = self.repl.feeding.load(Relaxed);
        let _ = write!(
            s,
            "master_failover_state:no-failover\r\nmaster_replid:{replid}\r\n\
             master_replid2:0000000000000000000000000000000000000000\r\n\
             master_repl_offset:{offset}\r\nsecond_repl_offset:-1\r\n\
             repl_backlog_active:{}\r\nrepl_backlog_size:{}\r\n\
             repl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n\r\n",
            active as u8,
            m.backlog_size(),
            m.backlog_start() + 1,
            m.offset() - m.backlog_start(),
        );
    }

    /// `sync_full`, `sync_partial_ok`, `sync_partial_err` (INFO stats).
    pub fn repl_stats(&self, s: &mut String) {
        let st = lock(&self.repl.stats);
        let _ = write!(
            s,
            "sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n\
             forksnap_last_sync_cow_peak:{}\r\nforksnap_last_sync_bytes:{}\r\n\
             forksnap_sync_children:{}\r\n",
            st.full, st.partial_ok, st.partial_err, st.last_cow, st.last_bytes, st.children
        );
    }

    /// ROLE.
    pub fn role(&self, out: &mut Out) {
        if let Some(u) = lock(&self.repl.upstream).as_ref() {
            let l = lock(&u.link);
            out.array(5);
            out.bulk(b"slave");
            out.bulk(u.host.as_bytes());
            out.int(u.port as i64);
            out.bulk(if l.up {
                b"connected".as_slice()
            } else if l.syncing {
                b"sync"
            } else {
                b"connect"
            });
            out.int(l.offset as i64);
            return;
        }
        let offset = lock(&self.repl.master).offset();
        let reps = lock(&self.repl.replicas);
        out.array(3);
        out.bulk(b"master");
        out.int(offset as i64);
        out.array(reps.len());
        for d in reps.iter() {
            out.array(3);
            out.bulk(d.ip.as_bytes());
            out.bulk(d.port.to_string().as_bytes());
            out.bulk(d.ack.load(Relaxed).to_string().as_bytes());
        }
    }
}

/// Reads until the replica's first `REPLCONF ACK` (sent once it has loaded the RDB).
async fn wait_first_ack(sock: &mut TcpStream, ack: &AtomicU64) -> Result<(), String> {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the replica closed the connection while loading".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if read_acks(&mut buf, ack) {
            return Ok(());
        }
    }
}

/// Takes the complete commands from `buf`, recording `REPLCONF ACK <offset>`; true when
/// an ACK was seen.
fn read_acks(buf: &mut Vec<u8>, ack: &AtomicU64) -> bool {
    let mut seen = false;
    let mut used = 0;
    while let Ok(Some((args, n))) = crate::resp::parse(&buf[used..]) {
        used += n;
        if args.len() >= 3
            && args[0].eq_ignore_ascii_case(b"replconf")
            && args[1].eq_ignore_ascii_case(b"ack")
        {
            if let Some(off) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                ack.store(off, Relaxed);
                seen = true;
            }
        }
    }
    buf.drain(..used);
    seen
}
