//! Clients nobody here wrote: redis-cli, redis-benchmark (Debian's redis-tools) and the
//! `redis` Python client; and hostile ones: random bytes, half requests, a 512 MB bulk
//! announced and never sent, 10,000 connections opened and dropped.

use crate::common::{require_tool, Conn, Kind, Reply, Server};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// Debian's tools by absolute path (pip packages put other versions first on PATH).
fn debian_tool(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin").join(name);
    if p.exists() {
        return Some(p);
    }
    require_tool(&format!("/usr/bin/{name}"))
}

#[test]
fn redis_cli_and_redis_benchmark_work_against_it() {
    let (Some(cli), Some(bench)) = (debian_tool("redis-cli"), debian_tool("redis-benchmark"))
    else {
        return;
    };
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    let port = kv.port.to_string();
    let run = |bin: &PathBuf, args: &[&str]| {
        let out = Command::new(bin)
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{} {args:?}: {out:?}", bin.display());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&cli, &["SET", "greeting", "hello"]).trim(), "OK");
    assert_eq!(run(&cli, &["GET", "greeting"]).trim(), "hello");
    assert_eq!(run(&cli, &["-n", "3", "RPUSH", "l", "a", "b"]).trim(), "2");
    assert_eq!(
        run(&cli, &["-n", "3", "LRANGE", "l", "0", "-1"]).trim(),
        "a\nb"
    );
    assert!(run(&cli, &["INFO", "persistence"]).contains("rdb_bgsave_in_progress:0"));
    // redis-cli --pipe: mass insertion with its own framing check at the end.
    let mut pipe = Command::new(&cli)
        .args(["-p", &port, "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\np:{i}\r\n$1\r\nx\r\n",
                2 + i.to_string().len()
            )
            .as_bytes(),
        );
    }
    pipe.stdin.take().unwrap().write_all(&input).unwrap();
    let out = pipe.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("errors: 0, replies: 10000"),
        "{text}"
    );

    let out = run(
        &bench,
        &["-t", "set,get", "-n", "20000", "-P", "16", "-c", "20", "-q"],
    );
    for t in ["SET:", "GET:"] {
        assert!(
            out.lines()
                .any(|l| l.contains(t) && l.contains("requests per second")),
            "{out}"
        );
    }
    assert!(
        kv.conn().int(&[b"DBSIZE"]) >= 10_001,
        "redis-benchmark's keys are missing"
    );
}

#[test]
fn the_python_redis_client_works_against_it() {
    let venv = std::env::var("FORKSNAP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/forksnap/venv")
        });
    let python = venv.join("bin/python");
    if !python.exists() {
        require_tool(&python.display().to_string());
        return;
    }
    let Some(kv) = Server::start(Kind::KvServer) else {
        return;
    };
    let script = format!(
        r#"
import redis
# RESP2: the example answers HELLO 3 with NOPROTO (redis-py 8 asks for RESP3).
r = redis.Redis(port={port}, db=2, protocol=2)
assert r.ping()
assert r.set("s", "v", ex=100) and r.get("s") == b"v" and 99 <= r.ttl("s") <= 100
assert r.incrby("n", 5) == 5 and r.decr("n") == 4
assert r.hset("h", mapping={{"a": "1", "b": "2"}}) == 2 and r.hgetall("h") == {{b"a": b"1", b"b": b"2"}}
assert r.zadd("z", {{"x": 1.5, "y": 0.5}}) == 2
assert r.zrange("z", 0, -1, withscores=True) == [(b"y", 0.5), (b"x", 1.5)]
assert r.sadd("set", "a", "b") == 2 and r.smembers("set") == {{b"a", b"b"}}
assert r.rpush("l", 1, 2, 3) == 3 and r.lrange("l", 0, -1) == [b"1", b"2", b"3"]
p = r.pipeline(transaction=False)
for i in range(100): p.set(f"k{{i}}", i)
assert all(p.execute())
assert sorted(r.scan_iter(match="k1*")) == sorted(f"k1{{i}}".encode() for i in [""] + list(range(10)))
try:
    r.lpush("s", "x"); raise SystemExit("no WRONGTYPE")
except redis.exceptions.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), e
assert r.dbsize() == 106, r.dbsize()
assert r.bgsave()
print("ok")
"#,
        port = kv.port
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

#[test]
fn hostile_clients_do_not_hurt_the_others() {
    let Some(mut kv) = Server::start(Kind::KvServer) else {
        return;
    };
    kv.conn().ok(&[b"SET", b"canary", b"alive"]);
    let base = rss_bytes(kv.pid());
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Random bytes: each client gets an error or is closed; the server goes on.
    for _ in 0..50 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", kv.port)).unwrap();
        let junk: Vec<u8> = (0..65536).map(|_| next() as u8).collect();
        let _ = c.write_all(&junk);
    }
    // Half requests, left hanging, and a 512 MB bulk announced with 1 MB sent.
    let mut hanging = Vec::new();
    for _ in 0..20 {
        let mut c = Conn::connect(kv.port).unwrap();
        c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk");
        hanging.push(c);
    }
    let mut big = Conn::connect(kv.port).unwrap();
    big.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n");
    big.send_raw(&vec![b'x'; 1 << 20]);
    // 10,000 connections opened and dropped, 500 at a time.
    for _ in 0..20 {
        let conns: Vec<_> = (0..500)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", kv.port)).unwrap())
            .collect();
        drop(conns);
    }
    assert_eq!(
        kv.conn().cmd(&[b"GET", b"canary"]),
        Reply::Bulk(Some(b"alive".to_vec()))
    );
    let mut fresh = Conn::connect(kv.port).unwrap();
    assert_eq!(fresh.cmd(&[b"PING"]), Reply::Status("PONG".into()));
    let grown = rss_bytes(kv.pid()).saturating_sub(base);
    eprintln!("RSS grew by {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "RSS grew by {} MiB", grown >> 20);
    // The hanging clients still get their reply once they finish their request.
    hanging[0].send_raw(b"\r\n$2\r\nok\r\n");
    assert_eq!(hanging[0].read(), Reply::Status("OK".into()));
}
