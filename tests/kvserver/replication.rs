//! Replication with stock servers on loopback: Redis 7.0 and Valkey 9.1 replicas of the
//! example (diskless and length-prefixed full syncs, the stream after them, a partial
//! resync), the example as a replica of Redis 7.0 and Valkey 9.1 masters under a write
//! load, and the faults: a replica that hangs up or stalls mid-transfer, a master killed
//! mid-sync.

use crate::common::{datasets, fill_by_commands, temp_files, Conn, Kind, Reply, Server};
use crate::persistence::writers;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms for up to `secs`: whether it came true.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn replica_of(kind: Kind, master: &Server, extra: &[&str]) -> Option<Server> {
    let (to, port) = (
        format!("127.0.0.1 {}", master.port),
        master.port.to_string(),
    );
    let mut args = if kind == Kind::KvServer {
        // The example takes "host port" as one value, as a config file line does.
        vec!["--replicaof", to.as_str()]
    } else {
        vec!["--replicaof", "127.0.0.1", port.as_str()]
    };
    args.extend_from_slice(extra);
    Server::start_args(kind, None, &args)
}

/// Waits until `replica` is linked and has processed everything `master` has fed.
fn caught_up(master: &mut Server, replica: &mut Server) {
    assert!(
        wait_for(120, || { replica.info("master_link_status") == "up" }),
        "replica link up\nreplica:\n{}\nmaster:\n{}",
        replica.log(),
        master.log()
    );
    assert!(
        wait_for(60, || {
            replica.info("slave_repl_offset") == master.info("master_repl_offset")
        }),
        "replica offset equal to the master's\nreplica:\n{}\nmaster:\n{}",
        replica.log(),
        master.log()
    );
}

/// The writes of the test load, with integer scores (every server digests them alike).
fn start_writers(
    port: u16,
) -> (
    Arc<AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
    Arc<AtomicU64>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t = writers(port, 2, stop.clone(), done.clone());
    (stop, t, done)
}

fn stop_writers(
    w: (
        Arc<AtomicBool>,
        Vec<std::thread::JoinHandle<()>>,
        Arc<AtomicU64>,
    ),
) -> u64 {
    w.0.store(true, Ordering::Relaxed);
    w.1.into_iter().for_each(|t| t.join().unwrap());
    w.2.load(Ordering::Relaxed)
}

/// What Valkey holds, as the example digests it (Valkey 9.1's DEBUG DIGEST hashes some
/// scores differently from Redis 7.0's): Valkey saves, the example loads that file.
fn valkey_digest_as_redis(v: &mut Server) -> String {
    let file = v.save_file();
    Server::start_with(Kind::KvServer, Some(&file))
        .unwrap()
        .digest()
}

#[test]
fn stock_replicas_sync_from_the_example_and_follow_its_writes() {
    // Replicas arriving within 3 s share one child (one walk, two sockets).
    let Some(mut kv) =
        Server::start_args(Kind::KvServer, None, &["--repl-diskless-sync-delay", "3"])
    else {
        return;
    };
    fill_by_commands(kv.conn(), &datasets::edge_cases(false));
    kv.conn().ok(&[b"SELECT", b"0"]);
    kv.conn()
        .ok(&[b"DEBUG", b"POPULATE", b"200000", b"pop", b"32"]);
    let load = start_writers(kv.port);
    let mut redis = replica_of(Kind::Redis70, &kv, &[]).unwrap();
    let mut valkey = replica_of(Kind::Valkey91, &kv, &[]).unwrap();
    assert!(
        wait_for(120, || {
            redis.info("master_link_status") == "up" && valkey.info("master_link_status") == "up"
        }),
        "both replicas linked\nkv:\n{}\nredis:\n{}\nvalkey:\n{}",
        kv.log(),
        redis.log(),
        valkey.log()
    );
    let writes = stop_writers(load);
    assert!(writes > 0);
    caught_up(&mut kv, &mut redis);
    caught_up(&mut kv, &mut valkey);
    let want = kv.digest();
    assert_eq!(
        redis.digest(),
        want,
        "Redis 7.0 replica after the full sync and {writes} writes"
    );
    assert_eq!(
        valkey_digest_as_redis(&mut valkey),
        want,
        "Valkey 9.1 replica"
    );
    assert!(
        redis.log().contains("receiving streamed RDB from master"),
        "Redis took an EOF-marked (diskless) transfer:\n{}",
        redis.log()
    );
    assert_eq!(kv.info("connected_slaves"), "2");
    assert_eq!(
        kv.info("sync_full"),
        "2",
        "one full sync each:\n{}",
        kv.log()
    );
    assert_eq!(
        kv.info("forksnap_sync_children"),
        "1",
        "one child fed both:\n{}",
        kv.log()
    );

    // More writes after the sync reach both.
    let load = start_writers(kv.port);
    std::thread::sleep(Duration::from_millis(500));
    stop_writers(load);
    kv.conn().ok(&[b"SELECT", b"5"]);
    kv.conn().ok(&[b"SET", b"in-db-5", b"x"]);
    caught_up(&mut kv, &mut redis);
    caught_up(&mut kv, &mut valkey);
    let want = kv.digest();
    assert_eq!(redis.digest(), want, "Redis 7.0 replica after more writes");
    assert_eq!(
        valkey_digest_as_redis(&mut valkey),
        want,
        "Valkey 9.1 after more writes"
    );

    // A replica that reconnects within the backlog resyncs partially.
    redis.conn().cmd(&[b"CLIENT", b"KILL", b"TYPE", b"master"]);
    kv.conn().ok(&[b"SET", b"while-away", b"1"]);
    assert!(
        wait_for(30, || { kv.info("sync_partial_ok") == "1" }),
        "a partial resync\nkv:\n{}\nredis:\n{}",
        kv.log(),
        redis.log()
    );
    caught_up(&mut kv, &mut redis);
    assert_eq!(redis.digest(), kv.digest(), "after the partial resync");
    assert_eq!(kv.info("sync_full"), "2", "no second full sync");
    assert!(
        redis.log().contains("Successful partial resynchronization"),
        "{}",
        redis.log()
    );
    // The example served clients throughout.
    assert_eq!(kv.conn().cmd(&[b"PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_disk_based_sync_sends_the_rdb_with_its_length() {
    let Some(mut kv) = Server::start_args(Kind::KvServer, None, &["--repl-diskless-sync", "no"])
    else {
        return;
    };
    fill_by_commands(kv.conn(), &datasets::edge_cases(false));
    kv.conn().ok(&[b"SELECT", b"0"]);
    kv.conn()
        .ok(&[b"DEBUG", b"POPULATE", b"50000", b"d", b"16"]);
    let mut redis = replica_of(Kind::Redis70, &kv, &[]).unwrap();
    caught_up(&mut kv, &mut redis);
    kv.conn().ok(&[b"SET", b"after", b"1"]);
    caught_up(&mut kv, &mut redis);
    assert_eq!(redis.digest(), kv.digest());
    assert!(
        redis.log().contains("bytes from master to disk"),
        "Redis took a length-prefixed transfer:\n{}",
        redis.log()
    );
    assert_eq!(
        temp_files(kv.dir.path()),
        Vec::<String>::new(),
        "the sync's file is gone"
    );
}

/// The example as the replica: the master holds 1M keys (populate and the writers'
/// collections) and a client writes to it during and after the sync.
/// `transfer`: what the master's log says of the sync's target (`disk`: a
/// length-prefixed RDB; `replicas sockets`: EOF-marked).
fn example_follows(kind: Kind, extra: &[&str], transfer: &str) {
    let Some(mut master) = Server::start_args(kind, None, extra) else {
        return;
    };
    if kind == Kind::Redis70 {
        // Scores with long %.17g texts digest alike in Redis and the example.
        fill_by_commands(master.conn(), &datasets::edge_cases(false));
        master.conn().ok(&[b"SELECT", b"0"]);
    }
    master
        .conn()
        .ok(&[b"DEBUG", b"POPULATE", b"1000000", b"big", b"24"]);
    let load = start_writers(master.port);
    std::thread::sleep(Duration::from_millis(200));
    let mut kv = replica_of(Kind::KvServer, &master, &[]).unwrap();
    assert!(
        wait_for(180, || { kv.info("master_link_status") == "up" }),
        "the example linked\nkv:\n{}",
        kv.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let writes = stop_writers(load);
    assert!(
        wait_for(60, || {
            kv.info("slave_repl_offset") == master.info("master_repl_offset")
        }),
        "the example caught up\nkv:\n{}",
        kv.log()
    );
    assert!(writes > 0);
    let want = if kind == Kind::Valkey91 {
        valkey_digest_as_redis(&mut master)
    } else {
        master.digest()
    };
    assert_eq!(
        kv.digest(),
        want,
        "the example replica of {kind:?} after {writes} writes"
    );
    assert!(kv.dbsize_all() >= 1_000_000);
    assert!(
        master.log().contains(transfer),
        "the master's sync was not {transfer:?}:\n{}",
        master.log()
    );
    // A replica refuses clients' writes, as Redis's.
    assert!(
        matches!(kv.conn().cmd(&[b"SET", b"x", b"1"]), Reply::Error(e) if e.starts_with("READONLY"))
    );
    let Reply::Array(Some(role)) = kv.conn().cmd(&[b"ROLE"]) else {
        panic!("ROLE")
    };
    assert_eq!(role[0], Reply::Bulk(Some(b"slave".to_vec())));
    // REPLICAOF NO ONE: a master again, writable, with the data.
    kv.conn().ok(&[b"REPLICAOF", b"NO", b"ONE"]);
    kv.conn().ok(&[b"SET", b"x", b"1"]);
    assert_eq!(kv.info("role"), "master");
}

/// With `repl-diskless-sync no`: the RDB comes length-prefixed, the stream right after.
#[test]
fn the_example_replicates_a_redis_70_master_under_writes() {
    example_follows(
        Kind::Redis70,
        &["--repl-diskless-sync", "no"],
        "target: disk",
    );
}

#[test]
fn the_example_replicates_a_valkey_91_master_under_writes() {
    example_follows(
        Kind::Valkey91,
        &["--repl-diskless-sync-delay", "0"],
        "target: replicas sockets",
    );
}

/// A hand-driven replica: the handshake of a Redis 7 replica, then raw socket access.
fn fake_replica(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n*3\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
        .unwrap();
    s
}

#[test]
fn a_replica_that_hangs_up_or_stalls_mid_transfer_is_dropped_and_the_example_serves_on() {
    let Some(mut kv) = Server::start_args(Kind::KvServer, None, &["--repl-timeout", "2"]) else {
        return;
    };
    kv.conn()
        .ok(&[b"DEBUG", b"POPULATE", b"1000000", b"k", b"64"]);
    // Hangs up after 1 MiB of the RDB.
    let mut s = fake_replica(kv.port);
    let mut got = vec![0u8; 1 << 20];
    s.read_exact(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("+FULLRESYNC "));
    assert!(String::from_utf8_lossy(&got).contains("$EOF:"));
    drop(s);
    assert!(
        wait_for(30, || { kv.info("connected_slaves") == "0" }),
        "the hung-up replica dropped\nkv:\n{}",
        kv.log()
    );
    assert!(
        kv.log().contains("full sync failed")
            || kv.log().contains("full sync to the replica failed"),
        "{}",
        kv.log()
    );
    assert_eq!(kv.conn().cmd(&[b"PING"]), Reply::Status("PONG".into()));

    // Stalls: reads nothing. The child drops it after --repl-timeout; the example
    // serves meanwhile.
    let t = Instant::now();
    let stalled = fake_replica(kv.port);
    assert!(
        wait_for(30, || { kv.info("connected_slaves") == "1" }),
        "the stalled replica registered\nkv:\n{}",
        kv.log()
    );
    let mut c = Conn::connect(kv.port).unwrap();
    c.ok(&[b"SET", b"during", b"stall"]);
    assert!(
        wait_for(30, || { kv.info("connected_slaves") == "0" }),
        "the stalled replica dropped\nkv:\n{}",
        kv.log()
    );
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "dropped before its timeout"
    );
    assert!(kv.log().contains("timed out"), "{}", kv.log());
    drop(stalled);
    assert_eq!(temp_files(kv.dir.path()), Vec::<String>::new());
    assert_eq!(kv.info("rdb_bgsave_in_progress"), "0");
    // The next replica syncs normally.
    let mut redis = replica_of(Kind::Redis70, &kv, &[]).unwrap();
    caught_up(&mut kv, &mut redis);
    assert_eq!(redis.digest(), kv.digest());
}

#[test]
fn a_master_killed_mid_sync_leaves_the_example_serving_and_retrying() {
    let Some(mut master) =
        Server::start_args(Kind::Redis70, None, &["--repl-diskless-sync-delay", "0"])
    else {
        return;
    };
    master
        .conn()
        .ok(&[b"DEBUG", b"POPULATE", b"2000000", b"k", b"256"]);
    let mut kv = replica_of(Kind::KvServer, &master, &[]).unwrap();
    assert!(
        wait_for(60, || { kv.info("master_sync_in_progress") == "1" }),
        "the sync under way\nkv:\n{}",
        kv.log()
    );
    master.kill9();
    assert!(
        wait_for(60, || { kv.log().contains("sync failed") }),
        "the sync's failure\nkv:\n{}",
        kv.log()
    );
    assert_eq!(kv.conn().cmd(&[b"PING"]), Reply::Status("PONG".into()));
    assert_eq!(kv.info("master_link_status"), "down");
    assert_eq!(
        kv.dbsize_all(),
        0,
        "a failed sync leaves no partial dataset"
    );
    assert_eq!(temp_files(kv.dir.path()), Vec::<String>::new());
    assert!(
        kv.log().contains("replication with 127.0.0.1"),
        "the error names the master:\n{}",
        kv.log()
    );
}
