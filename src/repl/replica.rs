//! The replica's side: connect to a Redis-compatible master, handshake as a stock Redis 7
//! replica does, load the full sync's RDB straight from the socket into a
//! [`LoadVisitor`], then hand over the command stream, acknowledging the offset.

use crate::error::{Error, Result};
use crate::rdb::{load_into, LoadOptions, LoadReport, LoadVisitor};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How a replica links to its master. (No `AUTH` is sent: a master that requires a
/// password refuses the handshake, and the error says so.)
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    listening_port: u16,
    version: Option<String>,
    timeout: Duration,
    load: LoadOptions,
}

impl ReplicaOptions {
    /// `listening_port`: the port this server serves on (`REPLCONF listening-port`, shown
    /// in the master's `INFO replication`). Defaults: no version announced, a 60 s
    /// timeout (Redis's `repl-timeout`), [`LoadOptions::default`].
    pub fn new(listening_port: u16) -> ReplicaOptions {
        ReplicaOptions {
            listening_port,
            version: None,
            timeout: Duration::from_secs(60),
            load: LoadOptions::default(),
        }
    }
    /// Announce this version with `REPLCONF version` (Valkey 9 masters then send an RDB
    /// that version loads; without it they send `VALKEY080`, which forksnap loads too).
    pub fn announce_version(mut self, v: Option<String>) -> Self {
        self.version = v;
        self
    }
    /// How long the master may stay silent (handshake, transfer, stream: it pings every
    /// 10 s) before the link is given up.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// The options the full sync's RDB is loaded with.
    pub fn load_options(mut self, o: LoadOptions) -> Self {
        self.load = o;
        self
    }
}

/// How [`ReplicaLink::connect`]'s `PSYNC` was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// `+FULLRESYNC`: call [`ReplicaLink::load`] with an empty dataset.
    Full,
    /// `+CONTINUE`: the dataset stays; the stream resumes at the offset asked for.
    Partial,
}

/// One write from the master's command stream, to apply as the master did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplCommand {
    /// The database it applies to (the stream's last `SELECT`).
    pub db: u32,
    /// The command and its arguments.
    pub argv: Vec<Vec<u8>>,
    /// The replication offset after it.
    pub offset: u64,
}

/// A link to a master, blocking (run it on a thread of its own).
///
/// ```no_run
/// use forksnap::{MemKeyspace, ReplicaLink, ReplicaOptions, SyncKind};
/// # fn main() -> forksnap::Result<()> {
/// let opts = ReplicaOptions::new(6380);
/// let (mut link, kind) = ReplicaLink::connect("127.0.0.1:6379", &opts, None)?;
/// let mut data = MemKeyspace::new();
/// if kind == SyncKind::Full {
///     link.load(&mut data)?; // straight from the socket, no file
/// }
/// while let Some(cmd) = link.next_command()? {
///     println!("db {}: {:?}", cmd.db, cmd.argv); // apply it
/// }
/// # Ok(()) }
/// ```
pub struct ReplicaLink {
    sock: TcpStream,
    peer: String,
    buf: Vec<u8>,
    pos: usize,
    replid: String,
    /// The offset of the last byte of the stream processed.
    offset: u64,
    db: u32,
    timeout: Duration,
    load: LoadOptions,
    last_ack: Instant,
    last_heard: Instant,
    loaded: bool,
}

const READ_TICK: Duration = Duration::from_millis(100);
const MAX_LINE: usize = 64 << 10;

impl ReplicaLink {
    /// Connects and handshakes (`PING`, `REPLCONF listening-port`, `REPLCONF capa eof
    /// capa psync2`, `REPLCONF version` if set, `PSYNC`). `cached`: the replication ID
    /// and offset of the data this server already holds from that master, to ask for a
    /// partial resync (`None`: `PSYNC ? -1`, a full sync).
    pub fn connect(
        addr: impl ToSocketAddrs,
        opts: &ReplicaOptions,
        cached: Option<(&str, u64)>,
    ) -> Result<(ReplicaLink, SyncKind)> {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("resolve", "", e))?
            .next()
            .ok_or_else(|| Error::InvalidOption("master address resolves to nothing".into()))?;
        let peer = addr.to_string();
        let sock = TcpStream::connect_timeout(&addr, opts.timeout)
            .map_err(|e| Error::io("connect", &peer, e))?;
        let _ = sock.set_nodelay(true);
        let mut link = ReplicaLink {
            sock,
            peer,
            buf: Vec::with_capacity(64 << 10),
            pos: 0,
            replid: String::new(),
            offset: 0,
            db: 0,
            timeout: opts.timeout,
            load: opts.load.clone(),
            last_ack: Instant::now(),
            last_heard: Instant::now(),
            loaded: false,
        };
        link.set_read_timeout(opts.timeout)?;
        link.send(&[b"PING"])?;
        let pong = link.line("handshake")?;
        // A master that wants AUTH says so here (-NOAUTH); that is an error for us.
        if !pong.starts_with('+') && !pong.starts_with("-NOPERM") {
            return Err(link.fail("handshake", format!("PING answered {pong:?}")));
        }
        let port = opts.listening_port.to_string();
        link.send(&[b"REPLCONF", b"listening-port", port.as_bytes()])?;
        link.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])?;
        let mut replies = 2;
        if let Some(v) = &opts.version {
            link.send(&[b"REPLCONF", b"version", v.as_bytes()])?;
            replies += 1;
        }
        // REPLCONF errors are tolerated, as a Redis replica does (an old master).
        for _ in 0..replies {
            link.line("handshake")?;
        }
        let (id, off) = match cached {
            Some((id, off)) => (id.to_string(), (off + 1).to_string()),
            None => ("?".to_string(), "-1".to_string()),
        };
        link.send(&[b"PSYNC", id.as_bytes(), off.as_bytes()])?;
        // A master may send newlines to keep the link alive before it answers.
        let answer = loop {
            let l = link.line("handshake")?;
            if !l.is_empty() {
                break l;
            }
        };
        let words: Vec<&str> = answer.split(' ').collect();
        let kind = match words.as_slice() {
            ["+FULLRESYNC", id, off] if id.len() == 40 => {
                link.replid = id.to_string();
                link.offset = off
                    .parse()
                    .map_err(|_| link.fail("handshake", format!("bad offset in {answer:?}")))?;
                SyncKind::Full
            }
            ["+CONTINUE", rest @ ..] if cached.is_some() => {
                let (id, off) = cached.expect("checked");
                link.replid = rest.first().map_or(id, |s| s).to_string();
                link.offset = off;
                link.loaded = true;
                SyncKind::Partial
            }
            _ => return Err(link.fail("handshake", format!("PSYNC answered {answer:?}"))),
        };
        Ok((link, kind))
    }

    /// The master's replication ID (the new one after a full sync).
    pub fn replid(&self) -> &str {
        &self.replid
    }

    /// The offset of the stream processed so far (what `REPLCONF ACK` reports).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The master's address.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// After a full sync's `+FULLRESYNC`: loads the RDB from the socket into `visitor`
    /// as it arrives (EOF-marked or length-prefixed; no file), then acknowledges, which
    /// tells the master to start the command stream. The visitor should start from an
    /// empty dataset; on an error it holds part of the master's.
    pub fn load(&mut self, visitor: &mut dyn LoadVisitor) -> Result<LoadReport> {
        if self.loaded {
            return Err(Error::InvalidOption(
                "load: the link has no RDB to load (partial resync, or loaded already)".into(),
            ));
        }
        // Newlines are the master's keep-alives while it prepares the RDB.
        let header = loop {
            let l = self.line("transfer")?;
            if !l.is_empty() {
                break l;
            }
        };
        let opts = self.load.clone();
        let report = if let Some(mark) = header.strip_prefix("$EOF:") {
            let mark: [u8; 40] = mark
                .as_bytes()
                .try_into()
                .map_err(|_| self.fail("transfer", format!("bad EOF mark in {header:?}")))?;
            let mut body = Body::Eof {
                link: self,
                mark,
                held: Vec::with_capacity(80),
                done: false,
            };
            let r = load_into(&mut body, &opts, visitor);
            let ended = body.finished();
            let r = r?;
            if !ended {
                // The RDB ended before the mark: read on to it, or fail.
                let mut rest = [0u8; 4096];
                while body.read(&mut rest).map_err(Error::from_read)? > 0 {}
            }
            r
        } else if let Some(len) = header.strip_prefix('$') {
            let len: u64 = len
                .parse()
                .map_err(|_| self.fail("transfer", format!("bad length in {header:?}")))?;
            let mut body = Body::Len { link: self, left: len };
            let r = load_into(&mut body, &opts, visitor)?;
            if let Body::Len { left, .. } = body {
                if left > 0 {
                    return Err(self.fail(
                        "transfer",
                        format!("{left} bytes of the announced length follow the RDB's end"),
                    ));
                }
            }
            r
        } else {
            return Err(self.fail("transfer", format!("expected the RDB, got {header:?}")));
        };
        self.loaded = true;
        self.set_read_timeout(READ_TICK)?;
        self.ack()?;
        Ok(report)
    }

    /// The next write of the command stream. `PING`, `SELECT` and `REPLCONF GETACK` are
    /// handled here (the offset counts them); `REPLCONF ACK` goes out every second.
    /// `Ok(None)` after 100 ms without a command, so the caller can check whether it
    /// should stop (drop the link) and poll again.
    pub fn next_command(&mut self) -> Result<Option<ReplCommand>> {
        if !self.loaded {
            return Err(Error::InvalidOption(
                "next_command before the full sync's load".into(),
            ));
        }
        loop {
            if self.last_ack.elapsed() >= Duration::from_secs(1) {
                self.ack()?;
            }
            match parse_command(&self.buf[self.pos..]) {
                Err(what) => {
                    let at = format!("stream at offset {}", self.offset);
                    return Err(self.fail(&at, what));
                }
                Ok(Some((argv, used))) => {
                    self.pos += used;
                    let before = self.offset;
                    self.offset += used as u64;
                    let Some(name) = argv.first() else { continue };
                    let name = name.to_ascii_lowercase();
                    match name.as_slice() {
                        b"ping" => continue,
                        b"select" => {
                            let db = argv
                                .get(1)
                                .and_then(|d| std::str::from_utf8(d).ok())
                                .and_then(|d| d.parse().ok());
                            match db {
                                Some(d) => self.db = d,
                                None => {
                                    let at = format!("stream at offset {before}");
                                    return Err(self.fail(&at, format!("bad SELECT {argv:?}")));
                                }
                            }
                            continue;
                        }
                        b"replconf" => {
                            let getack = argv
                                .get(1)
                                .is_some_and(|a| a.eq_ignore_ascii_case(b"getack"));
                            if getack {
                                // Redis acknowledges the offset before the GETACK itself.
                                let off = before.to_string();
                                self.send(&[b"REPLCONF", b"ACK", off.as_bytes()])?;
                                self.last_ack = Instant::now();
                            }
                            continue;
                        }
                        _ => {}
                    }
                    return Ok(Some(ReplCommand {
                        db: self.db,
                        argv,
                        offset: self.offset,
                    }));
                }
                Ok(None) => {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn ack(&mut self) -> Result<()> {
        let off = self.offset.to_string();
        self.send(&[b"REPLCONF", b"ACK", off.as_bytes()])?;
        self.last_ack = Instant::now();
        Ok(())
    }

    fn fail(&self, at: &str, what: impl Into<String>) -> Error {
        Error::Replication {
            peer: self.peer.clone(),
            at: at.into(),
            what: what.into(),
        }
    }

    fn set_read_timeout(&self, t: Duration) -> Result<()> {
        self.sock
            .set_read_timeout(Some(t))
            .map_err(|e| Error::io("setsockopt", &self.peer, e))
    }

    fn send(&mut self, argv: &[&[u8]]) -> Result<()> {
        let mut out = Vec::new();
        crate::aof::resp::encode(&mut out, argv);
        self.sock
            .write_all(&out)
            .map_err(|e| Error::io("send", &self.peer, e))
    }

    /// Reads more into the buffer. `Ok(false)`: nothing came within the read timeout
    /// (and the master has not been silent for the link's timeout yet).
    fn fill(&mut self) -> Result<bool> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 << 10 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + (64 << 10), 0);
        let r = self.sock.read(&mut self.buf[start..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        match r {
            Ok(0) => Err(self.fail("stream", "the master closed the connection")),
            Ok(_) => {
                self.last_heard = Instant::now();
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if self.last_heard.elapsed() >= self.timeout {
                    Err(self.fail(
                        "stream",
                        format!("the master was silent for {:?}", self.timeout),
                    ))
                } else {
                    Ok(false)
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(Error::io("read", &self.peer, e)),
        }
    }

    /// One `\r\n`- or `\n`-terminated line (without it), for the handshake's replies.
    fn line(&mut self, at: &str) -> Result<String> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.pos..self.pos + i];
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let l = String::from_utf8_lossy(raw).into_owned();
                self.pos += i + 1;
                return Ok(l);
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(self.fail(at, "a reply line longer than 64 KiB"));
            }
            if !self.fill_blocking(at)? {
                return Err(self.fail(at, format!("the master was silent for {:?}", self.timeout)));
            }
        }
    }

    /// As `fill`, but a timeout is the link's (the handshake and transfer wait long).
    fn fill_blocking(&mut self, at: &str) -> Result<bool> {
        self.fill().map_err(|e| match e {
            Error::Replication { peer, what, .. } => Error::Replication {
                peer,
                at: at.into(),
                what,
            },
            other => other,
        })
    }
}

/// The RDB body of a full sync, as a `Read` for the loader.
enum Body<'a> {
    /// `$<len>`: exactly `left` more bytes.
    Len { link: &'a mut ReplicaLink, left: u64 },
    /// `$EOF:<mark>`: the last 40 bytes are held back until more arrive or they are the
    /// mark (the master sends nothing after it until our first ACK).
    Eof {
        link: &'a mut ReplicaLink,
        mark: [u8; 40],
        held: Vec<u8>,
        done: bool,
    },
}

impl Body<'_> {
    fn finished(&self) -> bool {
        match self {
            Body::Len { left, .. } => *left == 0,
            Body::Eof { done, .. } => *done,
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let to_io = |e: Error| e.into_read();
        match self {
            Body::Len { link, left } => {
                if *left == 0 || out.is_empty() {
                    return Ok(0);
                }
                while link.pos == link.buf.len() {
                    link.fill_blocking("transfer").map_err(to_io)?;
                }
                let n = (link.buf.len() - link.pos).min(out.len()).min(*left as usize);
                out[..n].copy_from_slice(&link.buf[link.pos..link.pos + n]);
                link.pos += n;
                *left -= n as u64;
                Ok(n)
            }
            Body::Eof {
                link,
                mark,
                held,
                done,
            } => loop {
                if out.is_empty() {
                    return Ok(0);
                }
                // Release what is surely not the mark: all but the last 40 bytes seen
                // (everything, once the mark is found).
                let keep = if *done { 0 } else { 40 };
                if held.len() > keep {
                    let n = (held.len() - keep).min(out.len());
                    out[..n].copy_from_slice(&held[..n]);
                    held.drain(..n);
                    return Ok(n);
                }
                if *done {
                    return Ok(0);
                }
                if link.pos == link.buf.len() {
                    // All that arrived is held: the master sends nothing after the mark
                    // until our ACK, so a held tail equal to it is the end.
                    if held.len() == 40 && held[..] == mark[..] {
                        held.clear();
                        *done = true;
                        continue;
                    }
                    link.fill_blocking("transfer").map_err(to_io)?;
                }
                held.extend_from_slice(&link.buf[link.pos..]);
                link.pos = link.buf.len();
            },
        }
    }
}

/// One RESP multibulk command from the start of `b`: `Ok(None)` when incomplete.
/// A parsed command and the bytes it took.
type Parsed = Option<(Vec<Vec<u8>>, usize)>;

fn parse_command(b: &[u8]) -> std::result::Result<Parsed, String> {
    fn line(b: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let i = b[from..].windows(2).position(|w| w == b"\r\n")?;
        Some((&b[from..from + i], from + i + 2))
    }
    fn num(s: &[u8], what: &str) -> std::result::Result<usize, String> {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| format!("bad {what} {:?}", String::from_utf8_lossy(s)))
    }
    if b.is_empty() {
        return Ok(None);
    }
    if b[0] == b'\n' {
        return Ok(Some((Vec::new(), 1))); // a keep-alive newline
    }
    if b[0] != b'*' {
        return Err(format!("expected a multibulk command, got byte {:?}", b[0] as char));
    }
    let Some((head, mut at)) = line(b, 1) else {
        return if b.len() > MAX_LINE { Err("a header line longer than 64 KiB".into()) } else { Ok(None) };
    };
    let argc = num(head, "argument count")?;
    if argc > 1 << 20 {
        return Err(format!("argument count {argc} over 1048576"));
    }
    let mut argv = Vec::with_capacity(argc.min(64));
    for _ in 0..argc {
        if at >= b.len() {
            return Ok(None);
        }
        if b[at] != b'$' {
            return Err(format!("expected a bulk string, got byte {:?}", b[at] as char));
        }
        let Some((len, next)) = line(b, at + 1) else {
            return Ok(None);
        };
        let len = num(len, "bulk length")?;
        if len > 512 << 20 {
            return Err(format!("bulk length {len} over 512 MiB"));
        }
        if b.len() < next + len + 2 {
            return Ok(None);
        }
        if &b[next + len..next + len + 2] != b"\r\n" {
            return Err("a bulk string not followed by CRLF".into());
        }
        argv.push(b[next..next + len].to_vec());
        at = next + len + 2;
    }
    Ok(Some((argv, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_whole_or_not_at_all() {
        let mut s = Vec::new();
        crate::aof::resp::encode(&mut s, &[b"SET", b"k", b"v\r\n"]);
        for cut in 0..s.len() {
            assert_eq!(parse_command(&s[..cut]), Ok(None), "cut at {cut}");
        }
        let (argv, n) = parse_command(&s).unwrap().unwrap();
        assert_eq!((argv, n), (vec![b"SET".to_vec(), b"k".to_vec(), b"v\r\n".to_vec()], s.len()));
        assert!(parse_command(b"+OK\r\n").is_err());
        assert!(parse_command(b"*1\r\n$3\r\nabcX\r\n").is_err());
        assert!(parse_command(b"*x\r\n").unwrap_err().contains("argument count"));
    }
}
