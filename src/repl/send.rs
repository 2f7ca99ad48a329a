//! The child's side of a diskless full sync: the RDB streamed to every replica's socket
//! at once, in Redis's EOF-marked framing (`$EOF:<mark>\r\n`, the RDB, the mark).
//!
//! The sockets are the parent's: their file descriptions (and so `O_NONBLOCK`, which an
//! event loop sets) are shared with it, and the child must not change them. So every
//! send is `MSG_DONTWAIT | MSG_NOSIGNAL` (whatever the socket's flags; a closed peer is
//! `EPIPE`, never a signal) and the child waits in `poll(2)` for whichever socket can take
//! more. Each replica has its own deadline: one that takes nothing for `timeout` is
//! dropped (`ETIMEDOUT`), the others go on; the snapshot fails only when none is left.
//! A chunk is kept until every live replica has it, so the slowest live one sets the pace
//! (as with Redis's pipe relay), but never for longer than the timeout.

use crate::buf::ChunkBuf;
use crate::error::{Error, Result};
use crate::rdb::ChunkSink;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One replica's socket and how its transfer went.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub fd: RawFd,
    /// Bytes this replica took (framing included).
    pub sent: u64,
    /// `errno` of the step that dropped it (`ETIMEDOUT` for a stalled one), and the step.
    pub failed: Option<(i32, &'static str)>,
}

/// Sends every chunk to every live peer; a [`ChunkSink`] for the encoder.
pub(crate) struct Fanout {
    pub peers: Vec<Peer>,
    timeout: Duration,
    /// RDB bytes handed over (framing excluded).
    pub rdb_bytes: u64,
    /// `poll` calls that waited for a socket (back-pressure from the replicas).
    pub waits: u64,
    done: Vec<usize>,
    last_progress: Vec<Instant>,
    waiting: Vec<libc::pollfd>,
    who: Vec<usize>,
}

impl Fanout {
    pub fn new(fds: &[RawFd], timeout: Duration) -> Fanout {
        Fanout {
            peers: fds
                .iter()
                .map(|&fd| Peer {
                    fd,
                    sent: 0,
                    failed: None,
                })
                .collect(),
            timeout,
            rdb_bytes: 0,
            waits: 0,
            done: Vec::new(),
            last_progress: Vec::new(),
            waiting: Vec::new(),
            who: Vec::new(),
        }
    }

    /// Whether any replica is still being fed.
    pub fn live(&self) -> bool {
        self.peers.iter().any(|p| p.failed.is_none())
    }

    /// Sends all of `data` to every live peer, dropping those that fail or stall.
    /// Fails only when no peer is left.
    pub fn send_all(&mut self, data: &[u8]) -> Result<()> {
        let mut done = std::mem::take(&mut self.done);
        let mut last_progress = std::mem::take(&mut self.last_progress);
        let mut waiting = std::mem::take(&mut self.waiting);
        let mut who = std::mem::take(&mut self.who);
        done.clear();
        done.resize(self.peers.len(), 0);
        last_progress.clear();
        last_progress.resize(self.peers.len(), Instant::now());
        let r = loop {
            waiting.clear();
            who.clear();
            for (i, p) in self.peers.iter_mut().enumerate() {
                if p.failed.is_some() {
                    continue;
                }
                while done[i] < data.len() {
                    let rest = &data[done[i]..];
                    // SAFETY: `rest` is a live slice; `send` reads at most its length.
                    let n = unsafe {
                        libc::send(
                            p.fd,
                            rest.as_ptr().cast(),
                            rest.len(),
                            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                        )
                    };
                    if n > 0 {
                        done[i] += n as usize;
                        p.sent += n as u64;
                        last_progress[i] = Instant::now();
                        continue;
                    }
                    let e = crate::sink::io::errno();
                    if e == libc::EINTR {
                        continue;
                    }
                    if e == libc::EAGAIN {
                        if last_progress[i].elapsed() >= self.timeout {
                            p.failed = Some((libc::ETIMEDOUT, "send"));
                        } else {
                            waiting.push(libc::pollfd {
                                fd: p.fd,
                                events: libc::POLLOUT,
                                revents: 0,
                            });
                            who.push(i);
                        }
                    } else {
                        p.failed = Some((if n == 0 { libc::EPIPE } else { e }, "send"));
                    }
                    break;
                }
            }
            if !self.live() {
                let (errno, _) = self
                    .peers
                    .iter()
                    .rev()
                    .find_map(|p| p.failed)
                    .unwrap_or((libc::EPIPE, "send"));
                break Err(Error::io(
                    "send to replicas",
                    PathBuf::from("replica sockets"),
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            if waiting.is_empty() {
                break Ok(());
            }
            // Wake for the first writable socket, or the nearest deadline.
            let now = Instant::now();
            let nearest = who
                .iter()
                .map(|&i| (last_progress[i] + self.timeout).saturating_duration_since(now))
                .min()
                .unwrap_or_default();
            let ms = nearest.as_millis().clamp(1, 1000) as i32;
            self.waits += 1;
            // SAFETY: poll on a live vector of valid pollfds.
            unsafe { libc::poll(waiting.as_mut_ptr(), waiting.len() as libc::nfds_t, ms) };
        };
        // The scratch is kept: no allocation per chunk.
        (self.done, self.last_progress, self.waiting, self.who) = (done, last_progress, waiting, who);
        r
    }
}

impl ChunkSink for Fanout {
    fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> Result<()> {
        self.rdb_bytes += chunk.len() as u64;
        let r = self.send_all(chunk.as_slice());
        chunk.clear();
        r
    }
}

/// A random 40-character mark of `[0-9a-z]`, as Redis's (from `getrandom(2)`).
pub(crate) fn eof_mark() -> [u8; 40] {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 40];
    let mut got = 0;
    while got < raw.len() {
        // SAFETY: getrandom writes at most the given length into our live buffer.
        let n = unsafe {
            libc::getrandom(raw[got..].as_mut_ptr().cast(), raw.len() - got, 0)
        };
        if n > 0 {
            got += n as usize;
        } else if crate::sink::io::errno() != libc::EINTR {
            // No entropy source: the clock, mixed. The mark need only be unlikely in
            // the RDB, not secret.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let h = xxhash_rust::xxh3::xxh3_128(&t.to_le_bytes()).to_le_bytes();
            for (i, b) in raw.iter_mut().enumerate().skip(got) {
                *b = h[i % 16] ^ (i as u8);
            }
            break;
        }
    }
    raw.map(|b| ALPHABET[b as usize % ALPHABET.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn every_peer_gets_every_byte_and_a_closed_one_is_dropped() {
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, b_peer) = UnixStream::pair().unwrap();
        drop(b_peer);
        let mut f = Fanout::new(&[a.as_raw_fd(), b.as_raw_fd()], Duration::from_secs(5));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            a_peer.read_to_end(&mut got).unwrap();
            got
        });
        f.send_all(&data).unwrap();
        assert_eq!(f.peers[0].failed, None);
        assert_eq!(f.peers[1].failed.map(|x| x.0), Some(libc::EPIPE));
        drop(f);
        drop(a);
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn a_stalled_peer_times_out_and_the_last_failure_is_the_error() {
        let (a, _a_peer) = UnixStream::pair().unwrap(); // never read
        let mut f = Fanout::new(&[a.as_raw_fd()], Duration::from_millis(200));
        let data = vec![7u8; 8 << 20];
        let e = f.send_all(&data).unwrap_err().to_string();
        assert!(e.contains("send to replicas"), "{e}");
        assert_eq!(f.peers[0].failed.map(|x| x.0), Some(libc::ETIMEDOUT));
        assert!(f.peers[0].sent > 0 && f.peers[0].sent < data.len() as u64);
    }

    #[test]
    fn marks_differ_and_use_the_alphabet() {
        let (a, b) = (eof_mark(), eof_mark());
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
}
