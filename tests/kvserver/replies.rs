//! The same scripted session against Redis 7.0 and the example: every reply must match
//! (wrong types, missing keys and bad arguments included). Replies whose order is a hash
//! table's (KEYS, SMEMBERS, HGETALL) are compared sorted.

use crate::common::{Conn, Kind, Reply, Server};

/// One command per line, arguments split on spaces; `\s` is a space and `\e` an empty
/// argument. A leading `~` compares the reply as an unordered array (of pairs for `~2`).
const SCRIPT: &str = r"
PING
PING hello
ECHO hi
SET k v
GET k
GET missing
SET k v2 NX
SET k v3 XX
GET k
SET k2 v XX
SET k3 v NX
SET k v EX 0
SET k v EX abc
SET k v EX 10 PX 100
SET k v KEEPTTL EX 10
SET k v NX XX
SET k v BOGUS
SET k
SET k v4 GET
SET nx1 v NX GET
TTL k
SET t v EX 100
TTL t
PTTL missing
PERSIST t
PERSIST t
TTL t
EXPIRE t 100
EXPIRE t abc
EXPIRE t 100 NX
EXPIRE t 200 XX
EXPIRE t 50 GT
EXPIRE t 300 GT
EXPIRE t 100 LT
EXPIRE t 100 NX XX
EXPIRE t 100 GT LT
EXPIRE t 100 BOGUS
EXPIRE missing 100
EXPIREAT t 4102444800
TTL t
PEXPIREAT t 4102444800000
EXPIRE t -1
EXISTS t
SET k v KEEPTTL
TTL k
MSET a 1 b 2 c 3
MSET a 1 b
MGET a b c missing
EXISTS a b missing a
DEL a b missing
EXISTS a b
INCR c
INCRBY c 10
DECR c
DECRBY c 5
INCRBY c abc
INCR k
SET big 9223372036854775807
INCR big
SET neg -9223372036854775808
DECR neg
SET sp \s12
INCR sp
APPEND c xyz
APPEND newk hello
STRLEN newk
STRLEN missing
LPUSH l a b c
RPUSH l d e
LLEN l
LRANGE l 0 -1
LRANGE l 1 2
LRANGE l -2 -1
LRANGE l 5 10
LRANGE l -100 100
LRANGE l a b
LPOP l
RPOP l
LPOP l 2
LPOP l 0
LPOP l -1
LPOP l 1 2
LPOP missing
LPOP missing 2
INCR l
RPOP l 10
EXISTS l
LPUSH k x
RPUSH k x
LLEN k
GET l
TYPE k
TYPE missing
SADD s a b c a
SREM s a z
SCARD s
SISMEMBER s b
SISMEMBER s a
~SMEMBERS s
SMEMBERS missing
TYPE s
SADD k x
SREM s b c
EXISTS s
ZADD z 1 a 2 b 3 c
ZADD z 1.5 a
ZADD z NX 10 a 4 d
ZADD z XX 10 a 5 e
ZADD z CH 11 a 6 f
ZADD z GT 1 a
ZADD z LT 1 a
ZADD z INCR 2 a
ZADD z INCR 2 a 3 b
ZADD z NX XX 1 a
ZADD z GT LT 1 a
ZADD z NX GT 1 a
ZADD z abc a
ZADD z 1
ZADD z 0.1 p
ZADD z 1e-7 q 12345678901234567890 r
ZSCORE z p
ZSCORE z q
ZSCORE z a
ZSCORE z missing
ZCARD z
ZRANGE z 0 -1
ZRANGE z 0 -1 WITHSCORES
ZRANGE z 0 1 REV WITHSCORES
ZRANGE z 2 1
ZRANGE z a b
ZRANGE missing 0 -1
ZREM z a b zz
ZADD z inf i -inf j
ZRANGE z 0 -1 WITHSCORES
ZADD z nan x
ZADD missingz XX 1 a
EXISTS missingz
ZSCORE k a
ZCARD k
TYPE z
HSET h f1 v1 f2 v2
HSET h f1 v9
HSET h f1
HGET h f1
HGET h missing
HGET missing f
HLEN h
~2HGETALL h
HGETALL missing
HDEL h f1 f3
TYPE h
HDEL h f2
EXISTS h
HGET k f
HSET k f v
DBSIZE
SELECT 1
SET indb1 x
DBSIZE
SELECT 16
SELECT -1
SELECT abc
SELECT 0
~KEYS *
~KEYS k?
~KEYS [kn]*
~KEYS *[^a-z]*
DEBUG DIGEST
DEBUG DIGEST-VALUE k z missing c
DEBUG POPULATE 100
DEBUG POPULATE 50 p 20
DEBUG POPULATE 10 q 3
DEBUG POPULATE abc
GET p:7
GET q:4
GET key:99
DBSIZE
DEBUG DIGEST
UNLINK k k2
DEL
FLUSHDB BOGUS
FOO bar baz
GET a b
CONFIG GET save
CONFIG GET appendonly
CONFIG GET dbfilename
CONFIG SET save 900\s1
CONFIG GET save
CONFIG SET save \e
CONFIG SET save 900
CONFIG SET bogus x
CONFIG BOGUS
CONFIG GET
CLIENT SETNAME myname
CLIENT GETNAME
CLIENT SETNAME my\sname
CLIENT BOGUS
ECHO
DEBUG DIGEST
FLUSHDB
SELECT 1
DBSIZE
FLUSHALL
DBSIZE
DEBUG DIGEST
";

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|w| {
            if w == r"\e" {
                vec![]
            } else {
                w.replace(r"\s", " ").into_bytes()
            }
        })
        .collect()
}

/// An unordered array, sorted (pairs kept together for `~2`).
fn sorted(r: Reply, pairs: bool) -> Reply {
    let Reply::Array(Some(items)) = r else {
        return r;
    };
    let mut groups: Vec<Vec<Reply>> = if pairs {
        items.chunks(2).map(<[Reply]>::to_vec).collect()
    } else {
        items.into_iter().map(|i| vec![i]).collect()
    };
    groups.sort_by_key(|g| format!("{g:?}"));
    Reply::Array(Some(groups.into_iter().flatten().collect()))
}

fn run(conn: &mut Conn, line: &str) -> Reply {
    let (line, unordered) = match line.strip_prefix('~') {
        Some(rest) => match rest.strip_prefix('2') {
            Some(r) => (r, Some(true)),
            None => (rest, Some(false)),
        },
        None => (line, None),
    };
    let args = words(line);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = conn.cmd(&refs);
    match unordered {
        Some(pairs) => sorted(reply, pairs),
        None => reply,
    }
}

#[test]
fn scripted_session_replies_match_redis_7_0() {
    let Some(mut redis) = Server::start(Kind::Redis70) else {
        return;
    };
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    let mut diffs = Vec::new();
    let mut compared = 0;
    for line in SCRIPT.lines().filter(|l| !l.is_empty()) {
        let want = run(redis.conn(), line);
        let got = run(kv.conn(), line);
        compared += 1;
        if want != got {
            diffs.push(format!(
                "{line}\n  redis 7.0: {want:?}\n  kvserver:  {got:?}"
            ));
        }
    }
    // Inline requests (what telnet and old clients send) and a blank line.
    for raw in [
        &b"PING\r\n"[..],
        b"\r\nECHO  inline\r\n",
        b"SET inl 5\r\nINCR inl\r\n",
    ] {
        let mut r = Conn::connect(redis.port).unwrap();
        let mut k = Conn::connect(kv.port).unwrap();
        let n = raw.split(|&b| b == b'\n').filter(|l| l.len() > 1).count();
        for c in [&mut r, &mut k] {
            c.send_raw(raw);
        }
        for _ in 0..n {
            let (want, got) = (r.read(), k.read());
            compared += 1;
            if want != got {
                diffs.push(format!(
                    "{raw:?}\n  redis 7.0: {want:?}\n  kvserver:  {got:?}"
                ));
            }
        }
    }
    eprintln!("{compared} replies compared, {} differ", diffs.len());
    assert!(
        diffs.is_empty(),
        "{} of {compared} replies differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(compared >= 200, "only {compared} replies compared");
}

/// A malformed request gets Redis's protocol error and closes that client only.
#[test]
fn malformed_requests_close_only_that_client() {
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    for bad in [
        &b"*1\r\n$abc\r\n"[..],
        b"*1\r\nx\r\n",
        b"*99999999999\r\n",
        b"*1\r\n$99999999999\r\n",
    ] {
        let mut c = Conn::connect(kv.port).unwrap();
        c.send_raw(bad);
        match c.read() {
            Reply::Error(e) => assert!(e.starts_with("ERR Protocol error"), "{bad:?}: {e}"),
            r => panic!("{bad:?} answered {r:?}"),
        }
        assert!(c.closed(), "{bad:?}: the connection stays open");
    }
    assert_eq!(kv.conn().cmd(&[b"PING"]), Reply::Status("PONG".into()));
}

/// An expired key reads as missing at once (lazy expiry, whatever the active expiry has
/// done yet), and keys nobody touches leave the tables within seconds (active expiry).
#[test]
fn keys_expire_actively_and_lazily() {
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    for i in 0..100 {
        kv.conn()
            .ok(&[b"SET", format!("t{i}").as_bytes(), b"v", b"PX", b"50"]);
    }
    kv.conn().ok(&[b"SET", b"lazy", b"v", b"PX", b"50"]);
    kv.conn().ok(&[b"SET", b"keep", b"v"]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        kv.conn().cmd(&[b"GET", b"lazy"]),
        Reply::Bulk(None),
        "lazy expiry"
    );
    // DBSIZE counts what the tables hold: only active expiry empties them untouched.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kv.conn().int(&[b"DBSIZE"]) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "active expiry left keys for 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        kv.conn().cmd(&[b"GET", b"keep"]),
        Reply::Bulk(Some(b"v".to_vec()))
    );
}

/// A request cut anywhere (sent a byte at a time) is answered once it is complete, and
/// pipelined requests in one write are answered in order.
#[test]
fn requests_split_anywhere_are_answered_once_complete() {
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    kv.conn().ok(&[b"SET", b"k", b"v"]);
    let mut c = Conn::connect(kv.port).unwrap();
    for b in b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" {
        c.send_raw(&[*b]);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(c.read(), Reply::Bulk(Some(b"v".to_vec())));
    c.send_raw(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n");
    assert_eq!(c.read(), Reply::Status("PONG".into()));
    assert_eq!(c.read(), Reply::Bulk(Some(b"hi".to_vec())));
    assert_eq!(c.read(), Reply::Status("PONG".into()));
}
