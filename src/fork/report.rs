//! The child → parent report protocol over a pipe: `u32` tag, `u32` length, payload.
//! The child encodes on the stack and writes with `write(2)` directly (no stdio, no lock
//! a parent thread may hold).

pub const PROGRESS: u32 = 1;
pub const DB_KEYS: u32 = 2;
pub const FINAL: u32 = 3;
pub const IO_ERROR: u32 = 4;
pub const OTHER_ERROR: u32 = 5;
pub const BACKEND_REASON: u32 = 6;
/// The keyspace gave an invalid value: key, what.
pub const BAD_VALUE: u32 = 7;

const MAX: usize = 512;

/// A message under construction, on the stack.
pub struct Msg {
    buf: [u8; MAX],
    len: usize,
}

impl Msg {
    pub fn new(tag: u32) -> Msg {
        let mut m = Msg {
            buf: [0; MAX],
            len: 8,
        };
        m.buf[..4].copy_from_slice(&tag.to_le_bytes());
        m
    }

    pub fn u64(mut self, v: u64) -> Msg {
        if self.len + 8 <= MAX {
            self.buf[self.len..self.len + 8].copy_from_slice(&v.to_le_bytes());
            self.len += 8;
        }
        self
    }

    /// A length-prefixed string, truncated to fit (empty when not even its length fits).
    pub fn str(mut self, s: &str) -> Msg {
        let Some(room) = MAX.checked_sub(self.len + 2) else {
            return self;
        };
        let n = s.len().min(room);
        self.buf[self.len..self.len + 2].copy_from_slice(&(n as u16).to_le_bytes());
        self.buf[self.len + 2..self.len + 2 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += 2 + n;
        self
    }

    pub fn bytes(&mut self) -> &[u8] {
        let body = (self.len - 8) as u32;
        self.buf[4..8].copy_from_slice(&body.to_le_bytes());
        &self.buf[..self.len]
    }
}

/// Splits complete messages off the front of `pending`.
pub fn parse(pending: &mut Vec<u8>, mut f: impl FnMut(u32, &[u8])) {
    let mut at = 0;
    while pending.len() - at >= 8 {
        let tag = u32::from_le_bytes(pending[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(pending[at + 4..at + 8].try_into().unwrap()) as usize;
        if pending.len() - at - 8 < len {
            break;
        }
        f(tag, &pending[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    pending.drain(..at);
}

/// Reads payload fields in order.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    pub fn u64(&mut self) -> u64 {
        if self.0.len() < 8 {
            return 0;
        }
        let v = u64::from_le_bytes(self.0[..8].try_into().unwrap());
        self.0 = &self.0[8..];
        v
    }

    pub fn str(&mut self) -> String {
        if self.0.len() < 2 {
            return String::new();
        }
        let n = (u16::from_le_bytes([self.0[0], self.0[1]]) as usize).min(self.0.len() - 2);
        let s = String::from_utf8_lossy(&self.0[2..2 + n]).into_owned();
        self.0 = &self.0[2 + n..];
        s
    }
}

/// The name of an I/O step the child reported, as the `&'static str` its error carries.
/// Every step the child can fail in is listed; anything else is named as such.
pub fn op_name(op: &str) -> &'static str {
    const OPS: [&str; 10] = [
        "create",
        "write",
        "sync_file_range",
        "fsync",
        "truncate",
        "rename",
        "fsync directory",
        "dup",
        "io_uring setup",
        "io_uring_enter",
    ];
    OPS.into_iter()
        .find(|o| *o == op)
        .unwrap_or("an unnamed snapshot I/O step")
}
