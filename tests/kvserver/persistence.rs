//! The example's persistence, all through forksnap: BGSAVE under a write load saves the
//! moment of the fork (Redis 7.0 and Valkey 9.1 load it with that digest), files written
//! by Redis 6.2, 7.0 and Valkey 9.1 load at start-up, a SIGKILL during BGSAVE loses
//! nothing, save points and SHUTDOWN save.

use crate::common::{datasets, fill_by_commands, Conn, Kind, Reply, Server};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits for the running BGSAVE to end; its status.
fn bgsave_done(s: &mut Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.info("rdb_bgsave_in_progress") == "1" {
        assert!(
            Instant::now() < deadline,
            "BGSAVE still running after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.info("rdb_last_bgsave_status")
}

/// Writers on their own connections: strings, counters, lists, sets, hashes and zsets
/// (integer scores, which every server's digest prints alike), and deletions.
pub(crate) fn writers(
    port: u16,
    n: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|w| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("w{w}:{}", i % 5000).into_bytes();
                    let v = i.to_string().into_bytes();
                    let cmds: [&[&[u8]]; 7] = [
                        &[b"SET", &k, &v],
                        &[b"INCR", b"counter"],
                        &[b"RPUSH", b"list", &v],
                        &[b"SADD", b"set", &k],
                        &[b"HSET", b"hash", &k, &v],
                        &[b"ZADD", b"zset", &v, &k],
                        &[b"DEL", &k],
                    ];
                    for c2 in cmds {
                        c.send(c2);
                    }
                    for _ in 0..cmds.len() {
                        if let Reply::Error(e) = c.read() {
                            panic!("writer: {e}");
                        }
                    }
                    i += 1;
                    done.fetch_add(cmds.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[test]
fn bgsave_under_write_load_saves_the_moment_of_the_fork() {
    bgsave_under_write_load("1");
}

/// The same with the parallel child: the store's shards encoded two at a time.
#[test]
fn bgsave_with_two_encoding_threads_saves_the_moment_of_the_fork() {
    bgsave_under_write_load("2");
}

fn bgsave_under_write_load(encoders: &str) {
    let Some(mut kv) = Server::start_args(
        Kind::KvServer,
        None,
        &[
            "--rdb-version",
            "10",
            "--digest-at-fork",
            "yes",
            "--snapshot-threads",
            encoders,
        ],
    ) else {
        return;
    };
    fill_by_commands(kv.conn(), &datasets::edge_cases(false));
    kv.conn().ok(&[b"SELECT", b"0"]);
    kv.conn()
        .ok(&[b"DEBUG", b"POPULATE", b"300000", b"pop", b"64"]);
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let threads = writers(kv.port, 4, stop.clone(), done.clone());
    while done.load(Ordering::Relaxed) < 20_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = done.load(Ordering::Relaxed);
    kv.bgsave();
    assert_eq!(
        kv.conn().cmd(&[b"BGSAVE"]),
        Reply::Error("ERR Background save already in progress".into()),
        "a second BGSAVE answers as Redis's"
    );
    let want = kv.info("forksnap_fork_digest");
    assert_eq!(bgsave_done(&mut kv), "ok", "log:\n{}", kv.log());
    let during = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert!(during > 0, "no write ran during the BGSAVE");
    assert_ne!(
        kv.digest(),
        want,
        "the writes after the fork changed nothing?"
    );
    let file = std::fs::read(kv.path("dump.rdb")).unwrap();
    eprintln!(
        "{during} writes during the BGSAVE ({encoders} encoding threads); fork digest {want}"
    );

    let mut again = Server::start_with(Kind::KvServer, Some(&file)).unwrap();
    assert_eq!(again.digest(), want, "kvserver restarted from its file");
    let Some(mut redis) = Server::start_with(Kind::Redis70, Some(&file)) else {
        return;
    };
    assert_eq!(redis.digest(), want, "Redis 7.0 loading the example's file");
    // Valkey 9.1 digests a sorted-set score by its shortest text ("0.1"), Redis 7.0 by
    // %.17g ("0.10000000000000001"), so their DEBUG DIGESTs differ for such scores:
    // Valkey proves what it loaded by saving it again for the example to load.
    let Some(mut valkey) = Server::start_with(Kind::Valkey91, Some(&file)) else {
        return;
    };
    let resaved = valkey.save_file();
    let mut back = Server::start_with(Kind::KvServer, Some(&resaved)).unwrap();
    assert_eq!(back.digest(), want, "Valkey 9.1 loaded and saved again");
}

#[test]
fn files_of_redis_and_valkey_load_at_start_up() {
    let ks = datasets::edge_cases(true);
    // Valkey 9.1 digests a sorted-set score by its shortest text ("0.1"), Redis 7.0 by
    // %.17g: the example (Redis 7.0's digest) is compared with Redis 7.0's digest of
    // the same data.
    let mut redis_digest = String::new();
    for kind in [Kind::Redis62, Kind::Redis70, Kind::Valkey91] {
        let Some(mut s) = Server::start(kind) else {
            return;
        };
        fill_by_commands(s.conn(), &ks);
        let want = match kind {
            Kind::Valkey91 => redis_digest.clone(),
            _ => s.digest(),
        };
        if kind == Kind::Redis70 {
            redis_digest = want.clone();
        }
        let file = s.save_file();
        drop(s);
        let mut kv = Server::start_with(Kind::KvServer, Some(&file)).unwrap();
        assert_eq!(
            kv.digest(),
            want,
            "{kind:?}'s file loaded into the example; log:\n{}",
            kv.log()
        );
        assert!(kv.log().contains("DB loaded from disk"), "{}", kv.log());
    }
}

#[test]
fn a_sigkill_during_bgsave_keeps_the_previous_file() {
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    kv.conn().ok(&[b"DEBUG", b"POPULATE", b"1000"]);
    kv.conn().ok(&[b"SAVE"]);
    let saved = std::fs::read(kv.path("dump.rdb")).unwrap();
    let want = kv.digest();
    kv.conn()
        .ok(&[b"DEBUG", b"POPULATE", b"3000000", b"big", b"100"]);
    kv.bgsave();
    assert_eq!(
        kv.info("rdb_bgsave_in_progress"),
        "1",
        "the BGSAVE ended before the kill"
    );
    kv.kill9();
    // The child notices its parent's death within 250 ms and leaves without renaming.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read(kv.path("dump.rdb")).unwrap(),
        saved,
        "the previous file changed"
    );
    let mut again = Server::start_with(Kind::KvServer, Some(&saved)).unwrap();
    assert_eq!(again.digest(), want);
    assert_eq!(again.conn().int(&[b"DBSIZE"]), 1000);
}

#[test]
fn save_points_and_shutdown_save() {
    let Some(mut kv) = Server::start_args(Kind::KvServer, None, &["--save", "1 1"]) else {
        return;
    };
    assert_eq!(
        kv.conn().cmd(&[b"CONFIG", b"GET", b"save"]),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"save".to_vec())),
            Reply::Bulk(Some(b"1 1".to_vec())),
        ]))
    );
    kv.conn().ok(&[b"SET", b"a", b"1"]);
    assert_eq!(kv.info("rdb_changes_since_last_save"), "1");
    let deadline = Instant::now() + Duration::from_secs(15);
    while kv.info("rdb_saves") == "0" || kv.info("rdb_bgsave_in_progress") == "1" {
        assert!(
            Instant::now() < deadline,
            "the save point did not start a BGSAVE in 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(kv.info("rdb_changes_since_last_save"), "0");
    let lastsave = kv.conn().int(&[b"LASTSAVE"]).to_string();
    assert_eq!(kv.info("rdb_last_save_time"), lastsave);
    assert!(
        kv.log().contains("background saving started"),
        "{}",
        kv.log()
    );

    // SHUTDOWN with save points configured saves first, then exits.
    kv.conn().ok(&[b"SET", b"b", b"2"]);
    kv.conn().send(&[b"SHUTDOWN"]);
    assert!(kv.conn().closed(), "SHUTDOWN did not close the connection");
    let file = std::fs::read(kv.path("dump.rdb")).unwrap();
    let mut again = Server::start_with(Kind::KvServer, Some(&file)).unwrap();
    assert_eq!(
        again.conn().cmd(&[b"GET", b"b"]),
        Reply::Bulk(Some(b"2".to_vec()))
    );
    // SHUTDOWN NOSAVE does not.
    again.conn().ok(&[b"SET", b"c", b"3"]);
    again.conn().send(&[b"SHUTDOWN", b"NOSAVE"]);
    assert!(again.conn().closed());
    assert!(
        !again.path("dump.rdb").exists() || std::fs::read(again.path("dump.rdb")).unwrap() == file
    );
}

/// `--format lz4`: SAVE writes a standard LZ4 frame, and the next start loads it.
#[test]
fn an_lz4_framed_save_loads_at_start_up() {
    let Some(mut kv) = Server::start_args(Kind::KvServer, None, &["--format", "lz4"]) else {
        return;
    };
    fill_by_commands(kv.conn(), &datasets::edge_cases(false));
    kv.conn().ok(&[b"SELECT", b"0"]);
    kv.conn().ok(&[b"DEBUG", b"POPULATE", b"20000"]);
    let want = kv.digest();
    kv.conn().ok(&[b"SAVE"]);
    let file = std::fs::read(kv.path("dump.rdb")).unwrap();
    assert_eq!(&file[..4], &[0x04, 0x22, 0x4D, 0x18], "not an LZ4 frame");
    let mut again = Server::start_with(Kind::KvServer, Some(&file)).unwrap();
    assert_eq!(again.digest(), want, "log:\n{}", again.log());
}

/// A file holding what this server cannot keep (a stream, a hash whose fields expire, a
/// module value) stops its start-up with the key and the reason named, and the file stays
/// as it was: loading without them would lose them at the next save.
#[test]
fn values_it_cannot_keep_stop_the_start_up() {
    use forksnap::rdb::{encode_to_vec, EncodeOptions};
    use forksnap::{
        MemKeyspace, MemStream, MemValue, ModuleItem, ModuleValue, StreamId, StreamMeta,
    };
    let Some(bin) = crate::common::require(Kind::KvServer) else {
        return;
    };
    let stream = MemStream::new(
        vec![(
            StreamId::new(1, 1),
            vec![b"f".to_vec().into(), b"v".to_vec().into()],
        )],
        StreamMeta {
            last_id: StreamId::new(1, 1),
            ..StreamMeta::default()
        },
        vec![],
    )
    .unwrap();
    let module = ModuleValue {
        type_id: 1 << 10,
        items: vec![ModuleItem::Unsigned(7)],
    };
    let cases = [
        (MemValue::Stream(Box::new(stream)), "no streams"),
        (
            MemValue::hash_ttl([("f", "v", Some(4_000_000_000_000))]).unwrap(),
            "no hash field expiry",
        ),
        (MemValue::Module(Box::new(module)), "no modules"),
    ];
    for (value, says) in cases {
        let mut ks = MemKeyspace::new();
        ks.insert(0, "plain", MemValue::str("v"), None);
        ks.insert(0, "the-key", value, None);
        let opts = EncodeOptions {
            version: 12,
            ..EncodeOptions::default()
        };
        let rdb = encode_to_vec(&ks, &opts).unwrap().0;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dump.rdb");
        std::fs::write(&file, &rdb).unwrap();
        let out = std::process::Command::new(&bin)
            .args(["--port", "0", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{says}: {err}");
        assert!(
            err.contains(says) && err.contains("the-key"),
            "{says}: {err}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            rdb,
            "{says}: the file changed"
        );
    }
}
