//! The commands: Redis 7.0's replies and error messages for the subset this server has.

use crate::persist::{unix_secs, BgsaveError};
use crate::resp::Out;
use crate::store::{now_ms, Guard, Item, Val, ZSet, DATABASES, SHARDS};
use crate::Server;
use forksnap::{dataset_digest, format_score, value_digest, Digest, SavePoints};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

pub struct Client {
    pub db: usize,
    pub name: Option<Vec<u8>>,
    pub id: u64,
    /// What a replica said in `REPLCONF`.
    pub replica: forksnap::ReplicaInfo,
    /// `PSYNC`'s replication ID and offset: the connection becomes a replica's.
    pub psync: Option<(Vec<u8>, Vec<u8>)>,
}

impl Client {
    pub fn new(id: u64) -> Client {
        Client {
            db: 0,
            name: None,
            id,
            replica: Default::default(),
            psync: None,
        }
    }
}

/// What the connection does after a reply.
#[derive(PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
    Exit,
    /// `PSYNC`: the connection is handed to the replica link.
    Replica,
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";

/// (name, arity as Redis counts it: negative = at least), for arity errors and COMMAND.
const COMMANDS: &[(&str, i32)] = &[
    ("ping", -1),
    ("echo", 2),
    ("select", 2),
    ("dbsize", 1),
    ("flushdb", -1),
    ("flushall", -1),
    ("exists", -2),
    ("del", -2),
    ("unlink", -2),
    ("type", 2),
    ("keys", 2),
    ("scan", -2),
    ("expire", -3),
    ("pexpire", -3),
    ("expireat", -3),
    ("pexpireat", -3),
    ("ttl", 2),
    ("pttl", 2),
    ("persist", 2),
    ("get", 2),
    ("set", -3),
    ("mget", -2),
    ("mset", -3),
    ("incr", 2),
    ("incrby", 3),
    ("decr", 2),
    ("decrby", 3),
    ("append", 3),
    ("strlen", 2),
    ("lpush", -3),
    ("rpush", -3),
    ("lpop", -2),
    ("rpop", -2),
    ("llen", 2),
    ("lrange", 4),
    ("sadd", -3),
    ("srem", -3),
    ("smembers", 2),
    ("scard", 2),
    ("sismember", 3),
    ("zadd", -4),
    ("zrem", -3),
    ("zscore", 3),
    ("zcard", 2),
    ("zrange", -4),
    ("hset", -4),
    ("hmset", -4),
    ("hget", 3),
    ("hdel", -3),
    ("hlen", 2),
    ("hgetall", 2),
    ("info", -1),
    ("config", -2),
    ("command", -1),
    ("client", -2),
    ("quit", -1),
    ("debug", -2),
    ("save", 1),
    ("bgsave", -1),
    ("bgrewriteaof", 1),
    ("lastsave", 1),
    ("shutdown", -1),
    ("replconf", -1),
    ("psync", 3),
    ("replicaof", 3),
    ("slaveof", 3),
    ("role", 1),
];

/// The commands that change data: what an AOF may hold (SELECT, MULTI and EXEC are the
/// loader's).
pub fn is_write(name: &[u8]) -> bool {
    const WRITES: &[&str] = &[
        "set",
        "del",
        "unlink",
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "persist",
        "mset",
        "incr",
        "incrby",
        "decr",
        "decrby",
        "append",
        "lpush",
        "rpush",
        "lpop",
        "rpop",
        "sadd",
        "srem",
        "zadd",
        "zrem",
        "hset",
        "hmset",
        "hdel",
        "flushdb",
        "flushall",
    ];
    WRITES
        .iter()
        .any(|w| name.eq_ignore_ascii_case(w.as_bytes()))
}

fn int(a: &[u8]) -> Option<i64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

fn float(a: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(a).ok()?;
    let v = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if s.is_empty() || s.trim() != s => return None,
        _ => s.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Redis's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let not = p.get(1) == Some(&b'^');
            if not {
                i += 1;
            }
            let mut hit = false;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    hit |= p[i + 1] == c;
                    i += 2;
                } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                    let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                    hit |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    hit |= p[i] == c;
                    i += 1;
                }
            }
            let rest = if i < p.len() { &p[i + 1..] } else { &p[i..] };
            hit != not && glob(rest, &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// A start/stop pair of LRANGE/ZRANGE resolved against `len`, or None when empty.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

impl Server {
    fn shard(&self, c: &Client, key: &[u8]) -> Guard<'_> {
        self.store.lock_key(c.db, key)
    }

    /// A write happened: counted for save points, and logged to the AOF as `name a…`
    /// (call with the key's shard still locked).
    fn wrote(&self, c: &Client, name: &str, a: &[Vec<u8>]) {
        self.store.touch(1);
        self.log(c, name, a);
    }

    fn log(&self, c: &Client, name: &str, a: &[Vec<u8>]) {
        let argv: Vec<&[u8]> = std::iter::once(name.as_bytes())
            .chain(a.iter().map(|x| &x[..]))
            .collect();
        crate::aof::propagate(c.db, &argv);
    }

    pub fn exec(&self, c: &mut Client, args: &[Vec<u8>], out: &mut Out) -> Flow {
        let name = String::from_utf8_lossy(&args[0]).to_lowercase();
        let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with: ",
                trunc(&args[0])
            );
            for a in &args[1..] {
                if msg.len() > 128 + 60 {
                    break;
                }
                msg.push_str(&format!("'{}' ", trunc(a)));
            }
            out.error(&msg);
            return Flow::Continue;
        };
        let n = args.len() as i32;
        if (arity > 0 && n != arity) || n < -arity {
            out.error(&format!(
                "ERR wrong number of arguments for '{name}' command"
            ));
            return Flow::Continue;
        }
        self.commands.fetch_add(1, Relaxed);
        if c.id != crate::repl::MASTER_CLIENT && is_write(&args[0]) && self.repl.is_replica() {
            out.error("READONLY You can't write against a read only replica.");
            return Flow::Continue;
        }
        let a = &args[1..];
        match name.as_str() {
            "ping" => match a {
                [] => out.status("PONG"),
                [m] => out.bulk(m),
                _ => out.error("ERR wrong number of arguments for 'ping' command"),
            },
            "echo" => out.bulk(&a[0]),
            "replconf" => match c
                .replica
                .replconf(&a.iter().map(|x| &x[..]).collect::<Vec<_>>())
            {
                Ok(true) => out.ok(),
                Ok(false) => {}
                Err(e) => out.error(&e),
            },
            "psync" => {
                c.psync = Some((a[0].clone(), a[1].clone()));
                return Flow::Replica;
            }
            "replicaof" | "slaveof" => match crate::repl::SERVER.get() {
                Some(s) => s.replicaof(&a[0], &a[1], out),
                None => out.error("ERR the server is not started"),
            },
            "role" => self.role(out),
            "quit" => {
                out.ok();
                return Flow::Close;
            }
            "select" => match int(&a[0]) {
                Some(i) if (0..DATABASES as i64).contains(&i) => {
                    c.db = i as usize;
                    out.ok()
                }
                Some(_) => out.error("ERR DB index is out of range"),
                None => out.error(NOT_INT),
            },
            "dbsize" => out.int(self.store.db_size(c.db).0 as i64),
            "flushdb" | "flushall" => {
                if a.len() > 1 || a.first().is_some_and(|m| !eq(m, "sync") && !eq(m, "async")) {
                    out.error(SYNTAX);
                    return Flow::Continue;
                }
                let all = name == "flushall";
                if all {
                    // As Redis: a running BGSAVE is killed, and with save points the
                    // (now empty) dataset is saved at once.
                    self.persist.abort();
                }
                {
                    // Emptied and logged with every guard held, so no write of another
                    // client falls between the two in the AOF.
                    let dbs = if all { 0..DATABASES } else { c.db..c.db + 1 };
                    let mut guards: Vec<_> = dbs.flat_map(|d| self.store.lock_db(d)).collect();
                    guards.iter_mut().for_each(|g| g.clear());
                    self.wrote(c, &name, a);
                }
                if all && !self.persist.config().save.is_empty() {
                    let _ = tokio::task::block_in_place(|| self.persist.save(&self.store));
                }
                out.ok()
            }
            "exists" | "del" | "unlink" => {
                let now = now_ms();
                let mut guards = self.store.lock_keys(c.db, a);
                let mut count = 0;
                for k in a {
                    let g = guards[self.store.shard_of(k)].as_mut().expect("locked");
                    let live = g.live(k, now).is_some();
                    count += (live && (name == "exists" || g.remove(k).is_some())) as i64;
                }
                if name != "exists" && count > 0 {
                    self.store.touch(count as u64);
                    self.log(c, &name, a);
                }
                out.int(count)
            }
            "type" => {
                let mut g = self.shard(c, &a[0]);
                out.status(
                    g.live(&a[0], now_ms())
                        .map_or("none", |i| i.val.type_name()),
                )
            }
            "keys" => {
                let now = now_ms();
                let mut keys = Vec::new();
                for mut g in self.store.lock_db(c.db) {
                    keys.extend(
                        g.map
                            .iter()
                            .filter(|(k, i)| !i.expired(now) && glob(&a[0], k))
                            .map(|(k, _)| k.clone()),
                    );
                    g.expire_some(now, usize::MAX);
                }
                out.bulks(keys.iter().map(|k| &k[..]))
            }
            "scan" => self.scan(c, a, out),
            "expire" | "pexpire" | "expireat" | "pexpireat" => self.expire(c, &name, a, out),
            "ttl" | "pttl" => {
                let now = now_ms();
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now) {
                    None => out.int(-2),
                    Some(Item { expire: None, .. }) => out.int(-1),
                    Some(Item {
                        expire: Some(t), ..
                    }) => {
                        let ms = (*t - now).max(0);
                        out.int(if name == "pttl" {
                            ms
                        } else {
                            (ms + 500) / 1000
                        })
                    }
                }
            }
            "persist" => {
                let mut g = self.shard(c, &a[0]);
                let had = g.live(&a[0], now_ms()).is_some_and(|i| i.expire.is_some());
                if had {
                    g.set_expire(&a[0], None);
                    self.wrote(c, &name, a);
                }
                out.int(had as i64)
            }
            "get" => {
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now_ms()) {
                    None => out.nil(),
                    Some(Item {
                        val: Val::Str(s), ..
                    }) => out.bulk(s),
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            "set" => self.set(c, a, out),
            "mget" => {
                let now = now_ms();
                let mut guards = self.store.lock_keys(c.db, a);
                out.array(a.len());
                for k in a {
                    let g = guards[self.store.shard_of(k)].as_mut().expect("locked");
                    match g.live(k, now) {
                        Some(Item {
                            val: Val::Str(s), ..
                        }) => out.bulk(s),
                        _ => out.nil(),
                    }
                }
            }
            "mset" => {
                if !a.len().is_multiple_of(2) {
                    out.error("ERR wrong number of arguments for 'mset' command");
                    return Flow::Continue;
                }
                let keys: Vec<&Vec<u8>> = a.iter().step_by(2).collect();
                let mut guards = self.store.lock_keys(c.db, &keys);
                for p in a.chunks(2) {
                    let g = guards[self.store.shard_of(&p[0])].as_mut().expect("locked");
                    g.insert(
                        p[0].clone(),
                        Item {
                            val: Val::Str(p[1].clone()),
                            expire: None,
                        },
                    );
                }
                self.store.touch(keys.len() as u64);
                self.log(c, &name, a);
                out.ok()
            }
            "incr" | "decr" | "incrby" | "decrby" => {
                let by = match name.as_str() {
                    "incr" => Some(1),
                    "decr" => Some(-1),
                    "incrby" => int(&a[1]),
                    _ => int(&a[1]).and_then(i64::checked_neg),
                };
                let Some(by) = by else {
                    out.error(NOT_INT);
                    return Flow::Continue;
                };
                let mut g = self.shard(c, &a[0]);
                let cur = match g.live(&a[0], now_ms()) {
                    None => 0,
                    Some(Item {
                        val: Val::Str(s), ..
                    }) => match int(s).filter(|_| s.len() <= 20) {
                        Some(v) => v,
                        None => {
                            out.error(NOT_INT);
                            return Flow::Continue;
                        }
                    },
                    Some(_) => {
                        out.error(WRONGTYPE);
                        return Flow::Continue;
                    }
                };
                let Some(v) = cur.checked_add(by) else {
                    out.error("ERR increment or decrement would overflow");
                    return Flow::Continue;
                };
                let s = v.to_string().into_bytes();
                match g.map.get_mut(a[0].as_slice()) {
                    Some(i) => i.val = Val::Str(s),
                    None => g.insert(
                        a[0].clone(),
                        Item {
                            val: Val::Str(s),
                            expire: None,
                        },
                    ),
                }
                self.wrote(c, &name, a);
                out.int(v)
            }
            "append" => {
                let mut g = self.shard(c, &a[0]);
                let len = match g.live(&a[0], now_ms()) {
                    Some(Item {
                        val: Val::Str(s), ..
                    }) => {
                        s.extend_from_slice(&a[1]);
                        s.len()
                    }
                    Some(_) => {
                        out.error(WRONGTYPE);
                        return Flow::Continue;
                    }
                    None => {
                        g.insert(
                            a[0].clone(),
                            Item {
                                val: Val::Str(a[1].clone()),
                                expire: None,
                            },
                        );
                        a[1].len()
                    }
                };
                self.wrote(c, &name, a);
                out.int(len as i64)
            }
            "strlen" => {
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now_ms()) {
                    None => out.int(0),
                    Some(Item {
                        val: Val::Str(s), ..
                    }) => out.int(s.len() as i64),
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            _ => return self.exec_collections(c, &name, a, out),
        }
        Flow::Continue
    }

    fn set(&self, c: &mut Client, a: &[Vec<u8>], out: &mut Out) {
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        let mut expire: Option<i64> = None;
        let now = now_ms();
        let mut i = 2;
        while i < a.len() {
            let o = &a[i];
            let val = a.get(i + 1);
            let unit = if eq(o, "ex") {
                Some((1000, false))
            } else if eq(o, "px") {
                Some((1, false))
            } else if eq(o, "exat") {
                Some((1000, true))
            } else if eq(o, "pxat") {
                Some((1, true))
            } else {
                None
            };
            if let Some((mul, abs)) = unit {
                let (Some(v), None, false) = (val, expire, keepttl) else {
                    return out.error(SYNTAX);
                };
                let Some(n) = int(v) else {
                    return out.error(NOT_INT);
                };
                let at =
                    n.checked_mul(mul)
                        .and_then(|ms| if abs { Some(ms) } else { ms.checked_add(now) });
                match at {
                    Some(at) if n > 0 => expire = Some(at),
                    _ => return out.error("ERR invalid expire time in 'set' command"),
                }
                i += 2;
                continue;
            }
            if eq(o, "nx") && !xx {
                nx = true
            } else if eq(o, "xx") && !nx {
                xx = true
            } else if eq(o, "get") {
                get = true
            } else if eq(o, "keepttl") && expire.is_none() {
                keepttl = true
            } else {
                return out.error(SYNTAX);
            }
            i += 1;
        }
        let mut g = self.shard(c, &a[0]);
        let old = g.live(&a[0], now);
        let old_ttl = old.as_ref().and_then(|i| i.expire);
        if get {
            match &old {
                Some(Item {
                    val: Val::Str(s), ..
                }) => out.bulk(s),
                Some(_) => return out.error(WRONGTYPE),
                None => out.nil(),
            }
        }
        let exists = old.is_some();
        if (nx && exists) || (xx && !exists) {
            if !get {
                out.nil()
            }
            return;
        }
        let expire = if keepttl { old_ttl } else { expire };
        g.insert(
            a[0].clone(),
            Item {
                val: Val::Str(a[1].clone()),
                expire,
            },
        );
        self.store.touch(1);
        // Logged in its propagated form: a relative expiry becomes PXAT, as Redis 7 logs it.
        let (k, v) = (&a[0][..], &a[1][..]);
        match (expire, keepttl) {
            (_, true) => crate::aof::propagate(c.db, &[b"SET", k, v, b"KEEPTTL"]),
            (Some(at), false) => {
                crate::aof::propagate(c.db, &[b"SET", k, v, b"PXAT", at.to_string().as_bytes()])
            }
            (None, false) => crate::aof::propagate(c.db, &[b"SET", k, v]),
        }
        if !get {
            out.ok()
        }
    }

    fn expire(&self, c: &mut Client, name: &str, a: &[Vec<u8>], out: &mut Out) {
        let now = now_ms();
        let Some(n) = int(&a[1]) else {
            return out.error(NOT_INT);
        };
        let (mul, base) = match name {
            "expire" => (1000, now),
            "pexpire" => (1, now),
            "expireat" => (1000, 0),
            _ => (1, 0),
        };
        let Some(at) = n.checked_mul(mul).and_then(|ms| ms.checked_add(base)) else {
            return out.error(&format!("ERR invalid expire time in '{name}' command"));
        };
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for o in &a[2..] {
            if eq(o, "nx") {
                nx = true
            } else if eq(o, "xx") {
                xx = true
            } else if eq(o, "gt") {
                gt = true
            } else if eq(o, "lt") {
                lt = true
            } else {
                return out.error(&format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(o)
                ));
            }
        }
        if nx && (xx || gt || lt) {
            return out
                .error("ERR NX and XX, GT or LT options at the same time are not compatible");
        }
        if gt && lt {
            return out.error("ERR GT and LT options at the same time are not compatible");
        }
        let mut g = self.shard(c, &a[0]);
        let Some(item) = g.live(&a[0], now) else {
            return out.int(0);
        };
        let cur = item.expire;
        let ok = match cur {
            None => !xx && !gt,
            Some(t) => !nx && (!gt || at > t) && (!lt || at < t),
        };
        if !ok {
            return out.int(0);
        }
        if at <= now {
            g.remove(&a[0]);
        } else {
            g.set_expire(&a[0], Some(at));
        }
        self.store.touch(1);
        if at <= now {
            crate::aof::propagate(c.db, &[b"DEL", &a[0]]);
        } else {
            crate::aof::propagate(c.db, &[b"PEXPIREAT", &a[0], at.to_string().as_bytes()]);
        }
        out.int(1)
    }

    /// SCAN's cursor is a shard number: each call returns whole shards (at least COUNT
    /// keys' worth), so every key present for the whole scan is returned once.
    fn scan(&self, c: &mut Client, a: &[Vec<u8>], out: &mut Out) {
        let Some(cursor) = std::str::from_utf8(&a[0])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return out.error("ERR invalid cursor");
        };
        let (mut pattern, mut count, mut ty) = (None, 10usize, None);
        let mut i = 1;
        while i < a.len() {
            let Some(v) = a.get(i + 1) else {
                return out.error(SYNTAX);
            };
            if eq(&a[i], "match") {
                pattern = Some(v)
            } else if eq(&a[i], "count") {
                match int(v) {
                    Some(n) if n >= 1 => count = n as usize,
                    Some(_) => return out.error(SYNTAX),
                    None => return out.error(NOT_INT),
                }
            } else if eq(&a[i], "type") {
                ty = Some(String::from_utf8_lossy(v).to_lowercase())
            } else {
                return out.error(SYNTAX);
            }
            i += 2;
        }
        let now = now_ms();
        let mut keys = Vec::new();
        let mut shard = cursor as usize;
        let (mut seen, mut next) = (0, 0);
        while shard < SHARDS {
            let g = self.store.lock(c.db, shard);
            seen += g.map.len();
            keys.extend(
                g.map
                    .iter()
                    .filter(|(k, i)| {
                        !i.expired(now)
                            && pattern.is_none_or(|p| glob(p, k))
                            && ty.as_deref().is_none_or(|t| t == i.val.type_name())
                    })
                    .map(|(k, _)| k.clone()),
            );
            shard += 1;
            if seen >= count && shard < SHARDS {
                next = shard;
                break;
            }
        }
        out.array(2);
        out.bulk(next.to_string().as_bytes());
        out.bulks(keys.iter().map(|k| &k[..]));
    }

    fn exec_collections(&self, c: &mut Client, name: &str, a: &[Vec<u8>], out: &mut Out) -> Flow {
        let now = now_ms();
        match name {
            "lpush" | "rpush" | "sadd" | "hset" | "zadd" | "lpop" | "rpop" | "srem" | "hdel"
            | "zrem" => self.mutate(c, name, a, out),
            // HMSET: HSET answering OK (what Redis's RESP AOF bases hold).
            "hmset" => {
                let mut r = Out::default();
                self.mutate(c, "hset", a, &mut r);
                if r.0.starts_with(b"-") {
                    out.0.extend_from_slice(&r.0)
                } else {
                    out.ok()
                }
            }
            "llen" | "scard" | "zcard" | "hlen" => {
                let mut g = self.shard(c, &a[0]);
                match (name, g.live(&a[0], now).map(|i| &i.val)) {
                    (_, None) => out.int(0),
                    ("llen", Some(Val::List(l))) => out.int(l.len() as i64),
                    ("scard", Some(Val::Set(s))) => out.int(s.len() as i64),
                    ("zcard", Some(Val::ZSet(z))) => out.int(z.scores.len() as i64),
                    ("hlen", Some(Val::Hash(h))) => out.int(h.len() as i64),
                    _ => out.error(WRONGTYPE),
                }
            }
            "lrange" => {
                let (Some(start), Some(stop)) = (int(&a[1]), int(&a[2])) else {
                    out.error(NOT_INT);
                    return Flow::Continue;
                };
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now).map(|i| &i.val) {
                    None => out.array(0),
                    Some(Val::List(l)) => match range(start, stop, l.len()) {
                        Some((s, e)) => out.bulks(l.range(s..=e).map(Vec::as_slice)),
                        None => out.array(0),
                    },
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            "smembers" | "hgetall" => {
                let mut g = self.shard(c, &a[0]);
                match (name, g.live(&a[0], now).map(|i| &i.val)) {
                    (_, None) => out.array(0),
                    ("smembers", Some(Val::Set(s))) => out.bulks(s.iter().map(Vec::as_slice)),
                    ("hgetall", Some(Val::Hash(h))) => {
                        out.array(h.len() * 2);
                        for (f, v) in h.iter() {
                            out.bulk(f);
                            out.bulk(v);
                        }
                    }
                    _ => out.error(WRONGTYPE),
                }
            }
            "sismember" => {
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now).map(|i| &i.val) {
                    None => out.int(0),
                    Some(Val::Set(s)) => out.int(s.contains(&a[1]) as i64),
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            "hget" => {
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now).map(|i| &i.val) {
                    Some(Val::Hash(h)) => match h.get(&a[1]) {
                        Some(v) => out.bulk(v),
                        None => out.nil(),
                    },
                    None => out.nil(),
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            "zscore" => {
                let mut g = self.shard(c, &a[0]);
                match g.live(&a[0], now).map(|i| &i.val) {
                    Some(Val::ZSet(z)) => match z.scores.get(&a[1]) {
                        Some(&s) => score(out, s),
                        None => out.nil(),
                    },
                    None => out.nil(),
                    Some(_) => out.error(WRONGTYPE),
                }
            }
            "zrange" => self.zrange(c, a, out),
            _ => self.exec_server(c, name, a, out),
        }
        Flow::Continue
    }

    /// The commands that add or remove elements (and delete a collection they empty).
    fn mutate(&self, c: &mut Client, name: &str, a: &[Vec<u8>], out: &mut Out) {
        let now = now_ms();
        let key = &a[0];
        let mut g = self.shard(c, key);
        let creates = matches!(name, "lpush" | "rpush" | "sadd" | "hset" | "zadd");
        // Arguments are checked before the key is created or its type looked at where
        // Redis does so.
        if name == "hset" && a.len().is_multiple_of(2) {
            return out.error("ERR wrong number of arguments for 'hset' command");
        }
        let zadd = if name == "zadd" {
            match ZaddArgs::parse(&a[1..]) {
                Ok(z) => Some(z),
                Err(e) => return out.error(e),
            }
        } else {
            None
        };
        let pop_count = if matches!(name, "lpop" | "rpop") && a.len() > 1 {
            if a.len() > 2 {
                return out.error(&format!(
                    "ERR wrong number of arguments for '{name}' command"
                ));
            }
            match int(&a[1]) {
                Some(n) if n >= 0 => Some(n as usize),
                _ => return out.error("ERR value is out of range, must be positive"),
            }
        } else {
            None
        };
        if g.live(key, now).is_none() {
            if !creates {
                return match (name, pop_count) {
                    ("lpop" | "rpop", Some(_)) => out.nil_array(),
                    ("lpop" | "rpop", None) => out.nil(),
                    _ => out.int(0),
                };
            }
            if zadd.as_ref().is_some_and(|z| z.xx) {
                return if zadd.as_ref().is_some_and(|z| z.incr) {
                    out.nil()
                } else {
                    out.int(0)
                };
            }
            let val = match name {
                "lpush" | "rpush" => Val::List(Box::default()),
                "sadd" => Val::Set(Box::default()),
                "hset" => Val::Hash(Box::default()),
                _ => Val::ZSet(Box::default()),
            };
            g.insert(key.clone(), Item { val, expire: None });
        }
        let item = g.map.get_mut(key.as_slice()).expect("present");
        let mut changed = 0usize;
        match (name, &mut item.val) {
            ("lpush", Val::List(l)) => {
                a[1..].iter().for_each(|e| l.push_front(e.clone()));
                changed = a.len() - 1;
                out.int(l.len() as i64)
            }
            ("rpush", Val::List(l)) => {
                a[1..].iter().for_each(|e| l.push_back(e.clone()));
                changed = a.len() - 1;
                out.int(l.len() as i64)
            }
            ("lpop" | "rpop", Val::List(l)) => {
                let pop = |l: &mut VecDeque<Vec<u8>>| {
                    if name == "lpop" {
                        l.pop_front()
                    } else {
                        l.pop_back()
                    }
                };
                match pop_count {
                    None => {
                        let e = pop(l).expect("non-empty");
                        changed = 1;
                        out.bulk(&e)
                    }
                    Some(n) => {
                        let items: Vec<Vec<u8>> = (0..n).map_while(|_| pop(l)).collect();
                        changed = items.len();
                        out.bulks(items.iter().map(Vec::as_slice))
                    }
                }
            }
            ("sadd", Val::Set(s)) => {
                changed = a[1..].iter().filter(|e| s.insert((*e).clone())).count();
                out.int(changed as i64)
            }
            ("srem", Val::Set(s)) => {
                changed = a[1..].iter().filter(|e| s.remove(*e)).count();
                out.int(changed as i64)
            }
            ("hset", Val::Hash(h)) => {
                let added = a[1..]
                    .chunks(2)
                    .filter(|p| h.insert(p[0].clone(), p[1].clone()).is_none())
                    .count();
                changed = a.len() / 2;
                out.int(added as i64)
            }
            ("hdel", Val::Hash(h)) => {
                changed = a[1..].iter().filter(|f| h.remove(*f).is_some()).count();
                out.int(changed as i64)
            }
            ("zrem", Val::ZSet(z)) => {
                changed = a[1..].iter().filter(|m| z.remove(m)).count();
                out.int(changed as i64)
            }
            ("zadd", Val::ZSet(z)) => changed = zadd.expect("parsed").apply(z, out),
            _ => out.error(WRONGTYPE),
        }
        if item.val.is_empty_collection() {
            g.remove(key);
        }
        if changed > 0 {
            self.store.touch(changed as u64);
            self.log(c, name, a);
        }
    }

    fn zrange(&self, c: &mut Client, a: &[Vec<u8>], out: &mut Out) {
        let (mut rev, mut withscores) = (false, false);
        for o in &a[3..] {
            if eq(o, "rev") {
                rev = true
            } else if eq(o, "withscores") {
                withscores = true
            } else {
                // BYSCORE, BYLEX and LIMIT are not in this server.
                return out.error(SYNTAX);
            }
        }
        let (Some(start), Some(stop)) = (int(&a[1]), int(&a[2])) else {
            return out.error(NOT_INT);
        };
        let mut g = self.shard(c, &a[0]);
        let z = match g.live(&a[0], now_ms()).map(|i| &i.val) {
            None => return out.array(0),
            Some(Val::ZSet(z)) => z,
            Some(_) => return out.error(WRONGTYPE),
        };
        let Some((s, e)) = range(start, stop, z.order.len()) else {
            return out.array(0);
        };
        let n = e - s + 1;
        let picked: Vec<_> = if rev {
            z.order.iter().rev().skip(s).take(n).collect()
        } else {
            z.order.iter().skip(s).take(n).collect()
        };
        out.array(if withscores { n * 2 } else { n });
        for (sc, m) in picked {
            out.bulk(m);
            if withscores {
                score(out, sc.0);
            }
        }
    }
}

fn score(out: &mut Out, s: f64) {
    let mut buf = String::new();
    format_score(s, &mut buf);
    out.bulk(buf.as_bytes())
}

fn trunc(a: &[u8]) -> String {
    String::from_utf8_lossy(&a[..a.len().min(128)]).into_owned()
}

struct ZaddArgs {
    xx: bool,
    nx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
    pairs: Vec<(f64, Vec<u8>)>,
}

impl ZaddArgs {
    fn parse(a: &[Vec<u8>]) -> Result<ZaddArgs, &'static str> {
        let mut z = ZaddArgs {
            xx: false,
            nx: false,
            gt: false,
            lt: false,
            ch: false,
            incr: false,
            pairs: vec![],
        };
        let mut i = 0;
        while i < a.len() {
            let o = &a[i];
            let flag = [
                ("nx", &mut z.nx),
                ("xx", &mut z.xx),
                ("gt", &mut z.gt),
                ("lt", &mut z.lt),
                ("ch", &mut z.ch),
                ("incr", &mut z.incr),
            ]
            .into_iter()
            .find(|(n, _)| eq(o, n));
            match flag {
                Some((_, f)) => *f = true,
                None => break,
            }
            i += 1;
        }
        let rest = &a[i..];
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(SYNTAX);
        }
        if z.nx && z.xx {
            return Err("ERR XX and NX options at the same time are not compatible");
        }
        if (z.nx && (z.gt || z.lt)) || (z.gt && z.lt) {
            return Err("ERR GT, LT, and/or NX options at the same time are not compatible");
        }
        if z.incr && rest.len() > 2 {
            return Err("ERR INCR option supports a single increment-element pair");
        }
        for p in rest.chunks(2) {
            z.pairs.push((float(&p[0]).ok_or(NOT_FLOAT)?, p[1].clone()));
        }
        Ok(z)
    }

    /// Applies to `set`, writes the reply; the number of elements changed.
    fn apply(self, set: &mut ZSet, out: &mut Out) -> usize {
        let (mut added, mut updated) = (0, 0);
        let mut incr_result = None;
        for (s, m) in self.pairs {
            let cur = set.scores.get(&m).copied();
            let new = match (cur, self.incr) {
                (Some(c), true) => c + s,
                _ => s,
            };
            if new.is_nan() {
                out.error("ERR resulting score is not a number (NaN)");
                return 0;
            }
            let allowed = match cur {
                None => !self.xx,
                Some(c) => !self.nx && (!self.gt || new > c) && (!self.lt || new < c),
            };
            if !allowed {
                continue;
            }
            incr_result = Some(new);
            match cur {
                None => added += 1,
                Some(c) if c != new => updated += 1,
                Some(_) => {}
            }
            set.insert(&m, new);
        }
        if self.incr {
            match incr_result {
                Some(v) => score(out, v),
                None => out.nil(),
            }
        } else {
            out.int(if self.ch { added + updated } else { added } as i64);
        }
        added as usize + updated as usize
    }
}

impl Server {
    fn exec_server(&self, c: &mut Client, name: &str, a: &[Vec<u8>], out: &mut Out) {
        match name {
            "info" => {
                let mut s = String::new();
                self.info(
                    a.first().map(|x| String::from_utf8_lossy(x).to_lowercase()),
                    &mut s,
                );
                out.bulk(s.as_bytes())
            }
            "config" => self.config(a, out),
            "command" => match a
                .first()
                .map(|s| String::from_utf8_lossy(s).to_lowercase())
                .as_deref()
            {
                None => {
                    out.array(COMMANDS.len());
                    for (n, arity) in COMMANDS {
                        command_info(out, n, *arity)
                    }
                }
                Some("count") => out.int(COMMANDS.len() as i64),
                Some("docs") => out.array(0),
                Some("info") => {
                    out.array(a.len() - 1);
                    for q in &a[1..] {
                        let q = String::from_utf8_lossy(q).to_lowercase();
                        match COMMANDS.iter().find(|(n, _)| *n == q) {
                            Some((n, arity)) => command_info(out, n, *arity),
                            None => out.nil_array(),
                        }
                    }
                }
                Some(sub) => out.error(&format!(
                    "ERR unknown subcommand '{sub}'. Try COMMAND HELP."
                )),
            },
            "client" => {
                let sub = String::from_utf8_lossy(&a[0]).to_lowercase();
                match (sub.as_str(), &a[1..]) {
                    ("setname", [n]) => {
                        if n.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                            out.error("ERR Client names cannot contain spaces, newlines or special characters.")
                        } else {
                            c.name = (!n.is_empty()).then(|| n.clone());
                            out.ok()
                        }
                    }
                    ("getname", []) => match &c.name {
                        Some(n) => out.bulk(n),
                        None => out.nil(),
                    },
                    ("id", []) => out.int(c.id as i64),
                    ("setinfo", [_, _]) => out.ok(),
                    ("setname" | "getname" | "id" | "setinfo", _) => out.error(&format!(
                        "ERR wrong number of arguments for 'client|{sub}' command"
                    )),
                    _ => out.error(&format!(
                        "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                        trunc(&a[0])
                    )),
                }
            }
            "debug" => self.debug(c, a, out),
            // RESP2 only: HELLO 3 gets Redis's NOPROTO (clients then stay on RESP2 or
            // must be told to, e.g. redis-py's `protocol=2`).
            "hello" => match a.first().map(|v| int(v)) {
                None | Some(Some(2)) => {
                    out.array(14);
                    for (k, v) in [("server", "redis"), ("version", "7.0.0")] {
                        out.bulk(k.as_bytes());
                        out.bulk(v.as_bytes());
                    }
                    out.bulk(b"proto");
                    out.int(2);
                    out.bulk(b"id");
                    out.int(c.id as i64);
                    for (k, v) in [("mode", "standalone"), ("role", "master")] {
                        out.bulk(k.as_bytes());
                        out.bulk(v.as_bytes());
                    }
                    out.bulk(b"modules");
                    out.array(0);
                }
                Some(Some(_)) => {
                    out.error("NOPROTO sorry, this protocol version is not supported.")
                }
                Some(None) => out.error("ERR Protocol version is not an integer or out of range"),
            },
            "save" => match tokio::task::block_in_place(|| self.persist.save(&self.store)) {
                Ok(()) => out.ok(),
                Err(BgsaveError::InProgress) => {
                    out.error("ERR Background save already in progress")
                }
                Err(BgsaveError::Failed(_)) => out.error("ERR"),
            },
            "bgsave" => {
                if a.len() > 1 || a.first().is_some_and(|s| !eq(s, "schedule")) {
                    return out.error(SYNTAX);
                }
                match self.persist.bgsave(&self.store, "BGSAVE") {
                    Ok(()) => out.status("Background saving started"),
                    Err(BgsaveError::InProgress) => {
                        out.error("ERR Background save already in progress")
                    }
                    Err(BgsaveError::Failed(e)) => out.error(&format!("ERR {e}")),
                }
            }
            "lastsave" => out.int(self.persist.lastsave()),
            "bgrewriteaof" => {
                if crate::aof::current().is_some_and(|a| a.stats().rewrite_running) {
                    return out
                        .error("ERR Background append only file rewriting already in progress");
                }
                if self.persist.in_progress() {
                    crate::aof::REWRITE
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .scheduled = true;
                    return out.status("Background append only file rewriting scheduled");
                }
                match tokio::task::block_in_place(|| self.bgrewriteaof()) {
                    Ok(()) => out.status("Background append only file rewriting started"),
                    Err(e) => out.error(&format!("ERR {e}")),
                }
            }
            "shutdown" => {
                let (mut save, mut nosave) = (false, false);
                for o in a {
                    if eq(o, "save") {
                        save = true
                    } else if eq(o, "nosave") {
                        nosave = true
                    } else if !(eq(o, "now") || eq(o, "force")) {
                        return out.error(SYNTAX);
                    }
                }
                self.persist.abort();
                let save = save || (!nosave && !self.persist.config().save.is_empty());
                if save && tokio::task::block_in_place(|| self.persist.save(&self.store)).is_err() {
                    return out.error("ERR Errors trying to SHUTDOWN. Check logs.");
                }
                if let Err(e) = tokio::task::block_in_place(|| self.close_aof()) {
                    tracing::error!("Error flushing the AOF at shutdown: {e}");
                }
                tracing::info!("shutting down (save: {save})");
                std::process::exit(0);
            }
            _ => unreachable!("{name} is in COMMANDS"),
        }
    }

    fn config(&self, a: &[Vec<u8>], out: &mut Out) {
        let sub = String::from_utf8_lossy(&a[0]).to_lowercase();
        match (sub.as_str(), &a[1..]) {
            ("get", pats) if !pats.is_empty() => {
                let cfg = self.persist.config();
                let params = [
                    ("save", cfg.save.to_string()),
                    (
                        "appendonly",
                        if cfg.appendonly { "yes" } else { "no" }.to_string(),
                    ),
                    ("appendfsync", cfg.aof.fsync.to_string()),
                    ("appenddirname", cfg.aof.dirname.clone()),
                    ("appendfilename", cfg.aof.filename.clone()),
                    (
                        "auto-aof-rewrite-percentage",
                        cfg.aof.auto_percentage.to_string(),
                    ),
                    (
                        "auto-aof-rewrite-min-size",
                        cfg.aof.auto_min_size.to_string(),
                    ),
                    ("dir", cfg.dir.display().to_string()),
                    ("dbfilename", cfg.dbfilename.clone()),
                    ("databases", DATABASES.to_string()),
                ];
                let hits: Vec<&(&str, String)> = params
                    .iter()
                    .filter(|(n, _)| {
                        pats.iter()
                            .any(|p| glob(&p.to_ascii_lowercase(), n.as_bytes()))
                    })
                    .collect();
                out.array(hits.len() * 2);
                for (n, v) in hits {
                    out.bulk(n.as_bytes());
                    out.bulk(v.as_bytes());
                }
            }
            ("set", kv) if !kv.is_empty() && kv.len().is_multiple_of(2) => {
                let mut cfg = self.persist.config();
                for p in kv.chunks(2) {
                    let (n, v) = (
                        String::from_utf8_lossy(&p[0]).to_lowercase(),
                        String::from_utf8_lossy(&p[1]).to_string(),
                    );
                    let bad = |why: &str| {
                        format!(
                            "ERR CONFIG SET failed (possibly related to argument '{n}') - {why}"
                        )
                    };
                    match n.as_str() {
                        "save" => match v.parse::<SavePoints>() {
                            Ok(s) => cfg.save = s,
                            Err(_) => return out.error(&bad("Invalid save parameters")),
                        },
                        "appendonly" => match v.as_str() {
                            "yes" | "no" => {
                                let on = v == "yes";
                                if on != cfg.appendonly {
                                    drop(cfg);
                                    let r = if on {
                                        self.open_aof()
                                    } else {
                                        self.close_aof()
                                    };
                                    if let Err(e) = r {
                                        return out.error(&bad(&e));
                                    }
                                    cfg = self.persist.config();
                                    cfg.appendonly = on;
                                }
                            }
                            _ => return out.error(&bad("argument must be 'yes' or 'no'")),
                        },
                        "appendfsync" => match v.parse::<forksnap::Fsync>() {
                            Ok(f) if crate::aof::current().is_none() => cfg.aof.fsync = f,
                            Ok(_) => return out.error(&bad("set appendonly no first")),
                            Err(_) => return out.error(&bad(
                                "argument(s) must be one of the following: always, everysec, no",
                            )),
                        },
                        "auto-aof-rewrite-percentage" => match v.parse() {
                            Ok(p) => cfg.aof.auto_percentage = p,
                            Err(_) => {
                                return out
                                    .error(&bad("argument couldn't be parsed into an integer"))
                            }
                        },
                        "auto-aof-rewrite-min-size" => match v.parse() {
                            Ok(p) => cfg.aof.auto_min_size = p,
                            Err(_) => {
                                return out
                                    .error(&bad("argument couldn't be parsed into an integer"))
                            }
                        },
                        "dir" => {
                            if !std::path::Path::new(&v).is_dir() {
                                return out.error(&bad("No such file or directory"));
                            }
                            cfg.dir = v.into()
                        }
                        "dbfilename" => {
                            if v.contains('/') {
                                return out
                                    .error(&bad("dbfilename can't be a path, just a filename"));
                            }
                            cfg.dbfilename = v
                        }
                        _ => {
                            return out.error(&format!(
                                "ERR Unknown option or number of arguments for CONFIG SET - '{n}'"
                            ))
                        }
                    }
                }
                out.ok()
            }
            ("resetstat", []) => out.ok(),
            ("get" | "set" | "resetstat", _) => out.error(&format!(
                "ERR wrong number of arguments for 'config|{sub}' command"
            )),
            _ => out.error(&format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                trunc(&a[0])
            )),
        }
    }

    fn debug(&self, c: &mut Client, a: &[Vec<u8>], out: &mut Out) {
        let sub = String::from_utf8_lossy(&a[0]).to_lowercase();
        match sub.as_str() {
            // DEBUG POPULATE count [prefix] [size]: Redis's keys and values exactly.
            "populate" if (2..=4).contains(&a.len()) => {
                // Redis answers a count that is not a number as a negative one.
                let Some(count) = int(&a[1]).filter(|&n| n >= 0) else {
                    return out.error("ERR value is out of range, must be positive");
                };
                let prefix = a.get(2).map_or(&b"key"[..], |p| p.as_slice());
                let size = match a.get(3).map(|s| int(s)) {
                    None => None,
                    Some(Some(n)) if n >= 0 => Some(n as usize),
                    Some(_) => return out.error(NOT_INT),
                };
                tokio::task::block_in_place(|| self.populate(c.db, count as u64, prefix, size));
                out.ok()
            }
            "digest" if a.len() == 1 => {
                let frozen = self.store.freeze();
                out.status(&dataset_digest(&frozen).to_string())
            }
            "digest-value" => {
                out.array(a.len() - 1);
                for k in &a[1..] {
                    // As Redis: no lookup, so a logically expired key still counts.
                    let g = self.shard(c, k);
                    let d = g
                        .map
                        .get(k.as_slice())
                        .map_or(Digest::default(), |i| value_digest(&i.val.view(), i.expire));
                    out.status(&d.to_string())
                }
            }
            _ => out.error(&format!(
                "ERR unknown subcommand '{}'. Try DEBUG HELP.",
                trunc(&a[0])
            )),
        }
    }

    fn populate(&self, db: usize, count: u64, prefix: &[u8], size: Option<usize>) {
        let mut guards = self.store.lock_db(db);
        for j in 0..count {
            let mut key = prefix.to_vec();
            key.extend_from_slice(format!(":{j}").as_bytes());
            let g = &mut guards[self.store.shard_of(&key)];
            if g.map.contains_key(key.as_slice()) {
                continue;
            }
            let mut val = format!("value:{j}").into_bytes();
            if let Some(size) = size {
                val.resize(size, 0);
            }
            g.insert(
                key,
                Item {
                    val: Val::Str(val),
                    expire: None,
                },
            );
        }
    }

    fn info(&self, section: Option<String>, s: &mut String) {
        use std::fmt::Write;
        let want = |name: &str| match section.as_deref() {
            None | Some("default") | Some("all") | Some("everything") => true,
            Some(x) => x == name,
        };
        if want("server") {
            let _ = write!(
                s,
                "# Server\r\nredis_version:7.0.0\r\nforksnap_version:{}\r\nredis_mode:standalone\r\n\
                 os:Linux\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                self.port,
                unix_secs() - self.started,
            );
        }
        if want("clients") {
            let _ = write!(
                s,
                "# Clients\r\nconnected_clients:{}\r\n\r\n",
                self.clients.load(Relaxed)
            );
        }
        if want("memory") {
            let rss = std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map_or(0, |p| p * 4096);
            let _ = write!(
                s,
                "# Memory\r\nused_memory:{rss}\r\nused_memory_rss:{rss}\r\n\r\n"
            );
        }
        if want("persistence") {
            self.persist.info(s, &self.store);
            s.push_str("\r\n");
        }
        if want("stats") {
            let _ = write!(
                s,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 expired_keys:{}\r\nlatest_fork_usec:{}\r\n\r\n",
                self.connections.load(Relaxed),
                self.commands.load(Relaxed),
                self.expired.load(Relaxed),
                self.persist.fork_usec(),
            );
            // Redis has these in the stats section, before the empty line.
            s.truncate(s.len() - 2);
            self.repl_stats(s);
            s.push_str("\r\n");
        }
        if want("replication") {
            self.repl_info(s);
        }
        if want("keyspace") {
            s.push_str("# Keyspace\r\n");
            for db in 0..DATABASES {
                let (keys, expires) = self.store.db_size(db);
                if keys > 0 {
                    let _ = write!(s, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
                }
            }
        }
    }
}

fn command_info(out: &mut Out, name: &str, arity: i32) {
    out.array(6);
    out.bulk(name.as_bytes());
    out.int(arity as i64);
    out.array(0);
    let keyed = !matches!(
        name,
        "ping"
            | "echo"
            | "select"
            | "dbsize"
            | "flushdb"
            | "flushall"
            | "keys"
            | "scan"
            | "info"
            | "config"
            | "command"
            | "client"
            | "quit"
            | "debug"
            | "save"
            | "bgsave"
            | "bgrewriteaof"
            | "lastsave"
            | "shutdown"
            | "replconf"
            | "psync"
            | "replicaof"
            | "slaveof"
            | "role"
    );
    let last = if arity < 0 && matches!(name, "exists" | "del" | "unlink" | "mget" | "mset") {
        -1
    } else {
        keyed as i64
    };
    out.int(keyed as i64);
    out.int(last);
    out.int(if name == "mset" { 2 } else { keyed as i64 });
}
