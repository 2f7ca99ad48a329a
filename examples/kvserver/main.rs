//! kvserver: a small Redis-compatible server whose persistence is forksnap.
//!
//! ```text
//! cargo run --release --example kvserver -- --port 6380 --dir /tmp
//! redis-cli -p 6380 set greeting hello
//! redis-cli -p 6380 bgsave
//! ```
//!
//! Read it in this order: `store.rs` (the sharded keyspace, and the two small types that
//! connect it to forksnap: `Frozen`, a `Keyspace`, and `Loader`, a `LoadVisitor`),
//! `persist.rs` (SAVE, BGSAVE, save points, INFO persistence), `aof.rs` (the append-only
//! file: replay, logging under the key's lock, replies held until safe, rewrites),
//! `repl.rs` (replication both ways), then `commands.rs`.
//! Flags as redis-server's: `--port --bind --dir --dbfilename --save --appendonly`, and
//! forksnap's: `--format rdb|lz4 --lzf yes|no --direct yes|no --rdb-version N
//! --cow-budget BYTES --snapshot-threads N --thp`; for tests, `--digest-at-fork yes` (INFO
//! shows the DEBUG DIGEST taken with the store frozen for each BGSAVE's fork).
//!
//! What differs from Redis 7.0, on purpose (a reference kept small):
//! - RESP2 only: `HELLO 3` answers `-NOPROTO` (redis-py 8 needs `protocol=2`).
//! - `ZRANGE` takes index ranges with `REV` and `WITHSCORES`, not `BYSCORE`/`BYLEX`/`LIMIT`;
//!   `SCAN`'s cursor is a shard number (each call returns whole shards, so `COUNT` is a
//!   lower bound and every key present for the whole scan comes back exactly once).
//! - AOF (`--appendonly yes`, `--appendfsync`, `--appendfilename`, `--appenddirname`,
//!   `--auto-aof-rewrite-percentage`, `--auto-aof-rewrite-min-size`,
//!   `--aof-use-rdb-preamble`, `--aof-timestamp-enabled`, BGREWRITEAOF) as
//!   Redis 7's multi-part AOF; BGREWRITEAOF with AOF off is an error (Redis writes one).
//!   A failed AOF write drops the clients whose writes it held instead of `-MISCONF`.
//! - Replication (`REPLICAOF host port`, `--replicaof "host port"`, `REPLICAOF NO ONE`,
//!   `ROLE`, `INFO replication`, `--repl-diskless-sync yes|no`,
//!   `--repl-diskless-sync-delay SECS` (default 0: Redis's is 5), `--repl-backlog-size`
//!   (default 64 MiB: it is also every replica's buffer during its full sync, where Redis
//!   has a 1 MiB backlog and a 256 MiB output-buffer limit), `--repl-timeout`) with
//!   Redis 7 replicas and masters; no `WAIT`, no `AUTH` to a master, no chained
//!   replication's ID inheritance (a replica of this server re-syncs fully when this
//!   server changes master).
//! - No `MULTI`, no pub/sub.
//! - `INFO` has the sections clients use (server, clients, memory, persistence with
//!   Redis's field names plus `forksnap_*`, stats, replication, keyspace); `used_memory`
//!   is the RSS. `CONFIG` knows `save`, `appendonly`, `dir`, `dbfilename`, `databases`.
//! - Active expiry visits each shard once a second (at most 1000 expired keys a pass);
//!   expired keys are dropped at load, as a Redis master does.

mod aof;
mod commands;
mod persist;
mod repl;
mod resp;
mod store;

use commands::{Client, Flow};
use forksnap::{Format, SavePoints};
use persist::{unix_secs, Config, Persist};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use store::{now_ms, Store, DATABASES, SHARDS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Server {
    pub store: Store,
    pub persist: Persist,
    pub port: u16,
    pub started: i64,
    pub clients: AtomicUsize,
    pub connections: AtomicU64,
    pub commands: AtomicU64,
    pub expired: AtomicU64,
    pub repl: repl::Repl,
}

struct Args {
    port: u16,
    bind: String,
    cfg: Config,
    repl: repl::ReplConfig,
    replicaof: Option<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 6379,
        bind: "127.0.0.1".into(),
        cfg: Config {
            dir: ".".into(),
            dbfilename: "dump.rdb".into(),
            save: SavePoints::default(),
            format: Format::Rdb,
            lzf: true,
            direct: None,
            rdb_version: None,
            cow_budget: None,
            snapshot_threads: 1,
            appendonly: false,
            aof: aof::AofConfig::default(),
            digest_at_fork: false,
        },
        repl: repl::ReplConfig::default(),
        replicaof: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let yes = |v: String| match v.as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(format!("expected yes or no, got {v:?}")),
        };
        match flag.as_str() {
            "--port" => a.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--bind" => a.bind = val()?,
            "--dir" => a.cfg.dir = val()?.into(),
            "--dbfilename" => a.cfg.dbfilename = val()?,
            "--save" => a.cfg.save = val()?.parse().map_err(|e| format!("--save: {e}"))?,
            "--appendonly" => a.cfg.appendonly = yes(val()?)?,
            "--appendfsync" => {
                a.cfg.aof.fsync = val()?.parse().map_err(|e| format!("--appendfsync: {e}"))?
            }
            "--appendfilename" => a.cfg.aof.filename = val()?,
            "--aof-use-rdb-preamble" => a.cfg.aof.rdb_preamble = yes(val()?)?,
            "--aof-timestamp-enabled" => a.cfg.aof.timestamps = yes(val()?)?,
            "--appenddirname" => a.cfg.aof.dirname = val()?,
            "--auto-aof-rewrite-percentage" => {
                a.cfg.aof.auto_percentage = val()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--auto-aof-rewrite-min-size" => {
                a.cfg.aof.auto_min_size = val()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--format" => {
                a.cfg.format = match val()?.as_str() {
                    "rdb" => Format::Rdb,
                    "lz4" => Format::Lz4,
                    v => return Err(format!("--format: rdb or lz4, not {v:?}")),
                }
            }
            "--lzf" => a.cfg.lzf = yes(val()?)?,
            "--digest-at-fork" => a.cfg.digest_at_fork = yes(val()?)?,
            "--direct" => a.cfg.direct = Some(yes(val()?)?),
            "--rdb-version" => {
                a.cfg.rdb_version = Some(val()?.parse().map_err(|e| format!("--rdb-version: {e}"))?)
            }
            "--thp" => {} // read by exec_with_huge_pages
            "--replicaof" => {
                let v = val()?;
                let mut it = v.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(h), Some(p), None) => a.replicaof = Some((h.into(), p.into())),
                    _ => return Err(format!("--replicaof: \"host port\", not {v:?}")),
                }
            }
            "--repl-diskless-sync" => a.repl.diskless = yes(val()?)?,
            "--repl-diskless-sync-delay" => {
                let secs: u64 = val()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                a.repl.diskless_delay = Duration::from_secs(secs);
            }
            "--repl-backlog-size" => {
                a.repl.backlog_size = val()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--repl-timeout" => {
                let secs: u64 = val()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                a.repl.timeout = Duration::from_secs(secs.max(1));
            }
            "--snapshot-threads" => {
                a.cfg.snapshot_threads = val()?
                    .parse()
                    .map_err(|e| format!("--snapshot-threads: {e}"))?
            }
            "--cow-budget" => {
                a.cfg.cow_budget = Some(val()?.parse().map_err(|e| format!("--cow-budget: {e}"))?)
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok(a)
}

/// `--thp`: the heap in huge pages, through glibc's `glibc.malloc.hugetlb=1` tunable,
/// which glibc reads only at start-up, hence a re-exec of ourselves with it set. Fork
/// then copies one page-table entry per 2 MiB instead of one per 4 KiB, and the fork is
/// the time the store stays frozen for BGSAVE (10M keys: 38-46 ms instead of 86-89 ms),
/// but the start-up load of the same keys takes 7.6-8.4 s instead of 6.3-6.6 s
/// (docs/PERFORMANCE.md), so it is not the default. (On this kernel a write after fork
/// copies 4 KiB of a huge page, not 2 MiB, so Redis's advice against THP does not apply.)
fn exec_with_huge_pages() {
    use std::os::unix::process::CommandExt;
    const TUNABLE: &str = "glibc.malloc.hugetlb=1";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.hugetlb") || !std::env::args().any(|a| a == "--thp") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let value = if current.is_empty() {
        TUNABLE.to_string()
    } else {
        format!("{current}:{TUNABLE}")
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", value)
        .exec();
    eprintln!("kvserver: re-exec for huge pages failed ({err}); going on with 4 KiB pages");
}

fn main() {
    exec_with_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("kvserver: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kvserver: {e}");
            std::process::exit(2);
        }
    };
    let server = Arc::new(Server {
        store: Store::new(),
        persist: Persist::new(args.cfg),
        port: args.port,
        started: unix_secs(),
        clients: AtomicUsize::new(0),
        connections: AtomicU64::new(0),
        commands: AtomicU64::new(0),
        expired: AtomicU64::new(0),
        repl: repl::Repl::new(args.repl),
    });
    let _ = repl::SERVER.set(server.clone());
    // As Redis: with appendonly yes the AOF is loaded (an RDB file is not), else the RDB.
    let appendonly = server.persist.config().appendonly;
    let loaded = tokio::task::block_in_place(|| {
        if appendonly {
            server.load_aof()?;
            server.open_aof()
        } else {
            server.persist.load(&server.store)
        }
    });
    if let Err(e) = loaded {
        tracing::error!("fatal error loading the DB: {e}. Exiting.");
        std::process::exit(1);
    }
    let listener = match TcpListener::bind((args.bind.as_str(), args.port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("can't listen on {}:{}: {e}", args.bind, args.port);
            std::process::exit(1);
        }
    };
    tracing::info!("ready to accept connections on {}:{}", args.bind, args.port);
    tokio::spawn(cron(server.clone()));
    if let Some((host, port)) = &args.replicaof {
        let mut out = resp::Out::default();
        server.replicaof(host.as_bytes(), port.as_bytes(), &mut out);
    }
    tokio::spawn(signals(server.clone()));
    let mut next_id = 0;
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        next_id += 1;
        let s = server.clone();
        tokio::spawn(async move {
            s.clients.fetch_add(1, Relaxed);
            s.connections.fetch_add(1, Relaxed);
            serve(&s, sock, next_id).await;
            s.clients.fetch_sub(1, Relaxed);
        });
    }
}

/// One client: parse every complete request in the buffer, reply to all of them at
/// once (pipelining), read more. A malformed request closes this client only.
async fn serve(server: &Server, mut sock: TcpStream, id: u64) {
    let _ = sock.set_nodelay(true);
    let mut client = Client::new(id);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut out = resp::Out::default();
    loop {
        let mut used = 0;
        let mut flow = Flow::Continue;
        aof::take_last(); // another task's, on this thread
        while flow == Flow::Continue {
            match resp::parse(&buf[used..]) {
                Ok(Some((args, n))) => {
                    used += n;
                    if !args.is_empty() {
                        flow = server.exec(&mut client, &args, &mut out);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.error(&format!("ERR Protocol error: {}", e.0));
                    flow = Flow::Close;
                }
            }
        }
        buf.drain(..used);
        // The batch's writes must be safe by the AOF's policy before any reply goes out
        // (under `always`, on disk). A failed AOF write: no reply, the client is dropped.
        let lsn = aof::take_last();
        if lsn > 0 {
            if let Err(e) = aof::safe(lsn).await {
                tracing::error!("AOF write failed, replies withheld: {e}");
                return;
            }
        }
        if !out.0.is_empty() {
            if sock.write_all(&out.0).await.is_err() {
                return;
            }
            out.0.clear();
        }
        if flow == Flow::Replica {
            let (id, off) = client.psync.take().expect("PSYNC sets it");
            let info = std::mem::take(&mut client.replica);
            server.serve_replica(sock, &client, info, &id, &off).await;
            return;
        }
        if flow != Flow::Continue {
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity().max(16 * 1024));
        }
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Every 100 ms: drive a running BGSAVE or start one a save point asks for, and expire
/// keys actively (each shard once a second, at most 1000 keys per shard per pass).
async fn cron(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0usize;
    loop {
        tick.tick().await;
        server.persist.cron(&server.store);
        server.aof_cron();
        if server.repl.is_replica() {
            n += 1;
            continue; // a replica's keys expire when its master says (DEL)
        }
        let now = now_ms();
        for db in 0..DATABASES {
            for shard in (0..SHARDS).filter(|s| (db * SHARDS + s) % 10 == n % 10) {
                let gone = server.store.lock(db, shard).expire_some(now, 1000);
                server.expired.fetch_add(gone as u64, Relaxed);
            }
        }
        n += 1;
    }
}

/// SIGTERM and SIGINT: as redis-server, save if save points are set, then exit.
async fn signals(server: Arc<Server>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("received a signal: shutting down");
    let mut out = resp::Out::default();
    let mut c = Client::new(0);
    server.exec(&mut c, &[b"SHUTDOWN".to_vec()], &mut out);
    tracing::error!("{}", String::from_utf8_lossy(&out.0).trim());
    std::process::exit(1);
}
