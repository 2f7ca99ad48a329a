//! The master's side: the replication ID and offset, the command stream and its backlog,
//! `PSYNC`'s answer, and what a replica says in `REPLCONF`.

use crate::aof::resp;
use std::collections::VecDeque;
use std::fmt;

/// A master's replication state: its ID, its offset, and the backlog of its command
/// stream, which is also every replica's output buffer.
///
/// The server feeds every write to it in its propagated form (the form an AOF holds),
/// in the order the writes change the data (under the key's lock, as for the AOF);
/// [`feed`](Self::feed) puts a `SELECT` before a command whose database differs from the
/// previous one's. Each replica link copies the stream from its own offset with
/// [`read_from`](Self::read_from); a replica that falls further behind than the backlog
/// holds must sync again ([`Lagged`]). So the backlog's size is both the room for a
/// partial resync and the most a replica may lag (Redis's `repl-backlog-size` and its
/// replica output-buffer limit in one).
///
/// ```
/// use forksnap::{Master, Psync};
/// let mut m = Master::new(1 << 20);
/// let full = m.full_resync();               // with the store frozen, then fork
/// assert!(full.starts_with("+FULLRESYNC "));
/// m.feed(0, &[b"SET", b"k", b"v"]);
/// let mut out = Vec::new();
/// m.read_from(0, &mut out, usize::MAX).unwrap();
/// assert!(out.starts_with(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET"));
/// // A replica that had everything up to offset 0 continues from there.
/// let id = m.replid().to_string();
/// assert!(matches!(m.psync(id.as_bytes(), b"1"), Psync::Continue { from: 0, .. }));
/// ```
pub struct Master {
    replid: String,
    /// Bytes ever fed under this ID (Redis's `master_repl_offset`).
    offset: u64,
    backlog: VecDeque<u8>,
    size: usize,
    /// The database of the last command fed; `None` forces a `SELECT` before the next.
    db: Option<u32>,
    scratch: Vec<u8>,
}

/// A replica asked for bytes the backlog no longer holds (it lagged by more than the
/// backlog's size): it must sync again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lagged {
    /// The offset the replica needed.
    pub wanted: u64,
    /// The oldest offset the backlog still holds.
    pub oldest: u64,
}

impl fmt::Display for Lagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica needs offset {} but the backlog starts at {}: it lagged by more than the backlog",
            self.wanted, self.oldest
        )
    }
}

impl std::error::Error for Lagged {}

/// `PSYNC`'s answer ([`Master::psync`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Psync {
    /// A partial resync: send `reply`, then the stream from offset `from`.
    Continue {
        /// `+CONTINUE <replid>\r\n`.
        reply: String,
        /// Where this replica's stream resumes ([`Master::read_from`]).
        from: u64,
    },
    /// The replica needs the whole dataset: freeze the store, call
    /// [`Master::full_resync`] and start the snapshot.
    Full,
}

impl Master {
    /// A new replication ID (40 random hex characters), offset 0, a backlog of
    /// `backlog_bytes` (at least 16 KiB), allocated as it fills. Size it for the writes
    /// of a whole full sync (fork to the replica's first ACK) as well as for a partial
    /// resync: it plays both Redis's `repl-backlog-size` (1 MiB by default) and its
    /// per-replica output buffer (a 256 MiB limit by default). A replica whose sync
    /// outlasts it is dropped with [`Lagged`] and must sync again.
    pub fn new(backlog_bytes: usize) -> Master {
        let mark = super::send::eof_mark();
        let replid = mark
            .iter()
            .map(|&c| char::from(b"0123456789abcdef"[c as usize % 16]))
            .collect();
        let size = backlog_bytes.max(16 << 10);
        Master {
            replid,
            offset: 0,
            backlog: VecDeque::new(),
            size,
            db: None,
            scratch: Vec::new(),
        }
    }

    /// The replication ID (`master_replid`).
    pub fn replid(&self) -> &str {
        &self.replid
    }

    /// Bytes fed so far (`master_repl_offset`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The oldest offset the backlog holds (`repl_backlog_first_byte_offset` is this + 1).
    pub fn backlog_start(&self) -> u64 {
        self.offset - self.backlog.len() as u64
    }

    /// The backlog's size in bytes.
    pub fn backlog_size(&self) -> usize {
        self.size
    }

    /// Appends a write command executed in database `db`, after a `SELECT` when the
    /// database differs from the previous command's (or after a full resync).
    pub fn feed(&mut self, db: u32, argv: &[&[u8]]) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        if self.db != Some(db) {
            resp::encode_select(&mut s, db);
            self.db = Some(db);
        }
        resp::encode(&mut s, argv);
        self.push(&s);
        self.scratch = s;
    }

    /// Appends raw, already encoded stream bytes (a `PING`, a `MULTI` … `EXEC` block).
    pub fn feed_raw(&mut self, bytes: &[u8]) {
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        let keep = bytes.len().min(self.size);
        let over = (self.backlog.len() + keep).saturating_sub(self.size);
        self.backlog.drain(..over);
        self.backlog.extend(&bytes[bytes.len() - keep..]);
    }

    /// The start of a full sync, called with the store frozen (no write between this and
    /// the fork): the `+FULLRESYNC <replid> <offset>\r\n` line the replica gets before
    /// the RDB. The snapshot holds every write fed before this call; the replica's
    /// stream starts at this offset, with a `SELECT`.
    pub fn full_resync(&mut self) -> String {
        self.db = None;
        format!("+FULLRESYNC {} {}\r\n", self.replid, self.offset)
    }

    /// Answers `PSYNC <replid> <offset>` (`PSYNC ? -1` asks for a full sync): a partial
    /// resync when the ID is ours and the offset is still in the backlog.
    pub fn psync(&self, replid: &[u8], offset: &[u8]) -> Psync {
        let wanted = std::str::from_utf8(offset)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        match wanted {
            Some(w) if replid == self.replid.as_bytes() && w >= 1 => {
                let from = w as u64 - 1;
                if from >= self.backlog_start() && from <= self.offset {
                    Psync::Continue {
                        reply: format!("+CONTINUE {}\r\n", self.replid),
                        from,
                    }
                } else {
                    Psync::Full
                }
            }
            _ => Psync::Full,
        }
    }

    /// Copies the stream from offset `from` (at most `max` bytes) to `out`; returns the
    /// bytes copied (0 when the replica is up to date).
    pub fn read_from(&self, from: u64, out: &mut Vec<u8>, max: usize) -> Result<usize, Lagged> {
        let start = self.backlog_start();
        if from < start || from > self.offset {
            return Err(Lagged {
                wanted: from,
                oldest: start,
            });
        }
        let skip = (from - start) as usize;
        let n = (self.offset - from).min(max as u64) as usize;
        let (a, b) = self.backlog.as_slices();
        if skip < a.len() {
            let k = n.min(a.len() - skip);
            out.extend_from_slice(&a[skip..skip + k]);
            out.extend_from_slice(&b[..n - k]);
        } else {
            out.extend_from_slice(&b[skip - a.len()..skip - a.len() + n]);
        }
        Ok(n)
    }
}

/// What a replica told the master in its handshake (`REPLCONF`), and the RDB version to
/// send it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// `listening-port`.
    pub listening_port: Option<u16>,
    /// `ip-address`.
    pub ip_address: Option<String>,
    /// `capa eof`: the replica takes the EOF-marked (diskless) transfer.
    pub capa_eof: bool,
    /// `capa psync2`.
    pub capa_psync2: bool,
    /// `version` (Valkey ≥ 8 announces its own).
    pub version: Option<String>,
    /// The last offset the replica acknowledged (`REPLCONF ACK`).
    pub ack: Option<u64>,
}

impl ReplicaInfo {
    /// Takes the arguments of one `REPLCONF` (without the command name). `Ok(true)`:
    /// answer `+OK`; `Ok(false)`: no answer (`ACK`); `Err`: the error to answer.
    pub fn replconf(&mut self, args: &[&[u8]]) -> Result<bool, String> {
        if !args.len().is_multiple_of(2) {
            return Err("ERR syntax error".into());
        }
        let mut reply = true;
        for pair in args.chunks(2) {
            let (key, val) = (pair[0].to_ascii_lowercase(), pair[1]);
            let text = || String::from_utf8_lossy(val).into_owned();
            match key.as_slice() {
                b"listening-port" => {
                    self.listening_port = Some(text().parse().map_err(|_| {
                        format!("ERR invalid listening-port {:?}", text())
                    })?)
                }
                b"ip-address" => self.ip_address = Some(text()),
                b"capa" => match val.to_ascii_lowercase().as_slice() {
                    b"eof" => self.capa_eof = true,
                    b"psync2" => self.capa_psync2 = true,
                    _ => {} // capabilities we do not know are ignored, as Redis does
                },
                b"version" => self.version = Some(text()),
                b"ack" => {
                    self.ack = Some(
                        text()
                            .parse()
                            .map_err(|_| format!("ERR invalid ack offset {:?}", text()))?,
                    );
                    reply = false;
                }
                // Valkey's `fack` rides with `ack`; `getack` is for replicas.
                b"fack" | b"getack" | b"rdb-only" | b"rdb-filter-only" => {}
                _ => {
                    return Err(format!(
                        "ERR Unrecognized REPLCONF option: {}",
                        String::from_utf8_lossy(pair[0])
                    ))
                }
            }
        }
        Ok(reply)
    }

    /// The newest RDB version this replica is known to load: 11 when it announced a
    /// version of 7.2 or later (Valkey announces one; Valkey 9 also loads `VALKEY080`,
    /// which only hash field TTLs need), else 10, which every Redis 7 loads (Redis 7.0
    /// announces nothing and refuses 11).
    pub fn rdb_version(&self) -> u8 {
        let parsed = self.version.as_deref().and_then(|v| {
            let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next().flatten().unwrap_or(0)))
        });
        match parsed {
            Some((major, minor)) if (major, minor) >= (7, 2) => 11,
            _ => 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(m: &Master, from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        m.read_from(from, &mut out, usize::MAX).unwrap();
        out
    }

    #[test]
    fn select_precedes_a_database_change_and_every_full_resync() {
        let mut m = Master::new(1 << 20);
        m.feed(0, &[b"SET", b"a", b"1"]);
        m.feed(0, &[b"SET", b"b", b"2"]);
        m.feed(3, &[b"DEL", b"a"]);
        let s = String::from_utf8(stream(&m, 0)).unwrap();
        assert_eq!(s.matches("SELECT").count(), 2, "{s}");
        let line = m.full_resync();
        let at = m.offset();
        assert_eq!(line, format!("+FULLRESYNC {} {at}\r\n", m.replid()));
        m.feed(3, &[b"DEL", b"b"]);
        assert!(stream(&m, at).starts_with(b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"));
        assert_eq!(m.offset(), at + stream(&m, at).len() as u64);
    }

    #[test]
    fn psync_continues_inside_the_backlog_only() {
        let mut m = Master::new(16 << 10);
        let id = m.replid().to_string();
        assert_eq!(id.len(), 40);
        assert_eq!(m.psync(b"?", b"-1"), Psync::Full);
        for i in 0..100u32 {
            m.feed(0, &[b"SET", b"key", i.to_string().as_bytes()]);
        }
        let off = m.offset();
        match m.psync(id.as_bytes(), (off + 1).to_string().as_bytes()) {
            Psync::Continue { from, reply } => {
                assert_eq!(from, off);
                assert_eq!(reply, format!("+CONTINUE {id}\r\n"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.psync(b"0000", (off + 1).to_string().as_bytes()), Psync::Full);
        assert_eq!(m.psync(id.as_bytes(), (off + 2).to_string().as_bytes()), Psync::Full);
        for _ in 0..1000 {
            m.feed(0, &[b"SET", b"key", &[b'x'; 100]]);
        }
        assert_eq!(m.psync(id.as_bytes(), b"5"), Psync::Full);
        let err = m.read_from(4, &mut Vec::new(), 10).unwrap_err();
        assert_eq!(err.oldest, m.backlog_start());
        assert_eq!(m.offset() - m.backlog_start(), 16 << 10);
    }

    #[test]
    fn read_from_spans_the_ring_and_honours_max() {
        let mut m = Master::new(16 << 10);
        let mut all = Vec::new();
        for i in 0..2000u32 {
            let v = i.to_string();
            m.feed(0, &[b"SET", b"k", v.as_bytes()]);
        }
        for i in 0..2000u32 {
            let mut s = Vec::new();
            if i == 0 {
                resp::encode_select(&mut s, 0);
            }
            resp::encode(&mut s, &[b"SET", b"k", i.to_string().as_bytes()]);
            all.extend_from_slice(&s);
        }
        let start = m.backlog_start();
        assert_eq!(stream(&m, start), &all[start as usize..]);
        let mut part = Vec::new();
        assert_eq!(m.read_from(start + 10, &mut part, 7).unwrap(), 7);
        assert_eq!(part, &all[start as usize + 10..start as usize + 17]);
        assert_eq!(m.read_from(m.offset(), &mut part, 7).unwrap(), 0);
    }

    #[test]
    fn replconf_as_a_redis_master_answers() {
        let mut r = ReplicaInfo::default();
        assert_eq!(r.replconf(&[b"listening-port", b"6380"]), Ok(true));
        assert_eq!(r.replconf(&[b"capa", b"eof", b"capa", b"psync2"]), Ok(true));
        assert_eq!(r.replconf(&[b"ACK", b"123"]), Ok(false));
        assert!(r.capa_eof && r.capa_psync2);
        assert_eq!((r.listening_port, r.ack), (Some(6380), Some(123)));
        assert!(r.replconf(&[b"bogus", b"1"]).unwrap_err().contains("bogus"));
        assert!(r.replconf(&[b"listening-port"]).is_err());
        assert!(r.replconf(&[b"listening-port", b"x"]).is_err());
        assert_eq!(r.rdb_version(), 10);
        r.replconf(&[b"version", b"9.1.0"]).unwrap();
        assert_eq!(r.rdb_version(), 11);
        r.replconf(&[b"version", b"7.0.15"]).unwrap();
        assert_eq!(r.rdb_version(), 10);
    }
}
