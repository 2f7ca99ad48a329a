//! Commands as the AOF holds them: RESP multi-bulk (`*<argc>\r\n` then `$<len>\r\n<bytes>\r\n`
//! per argument), with `#` annotation lines between commands. The encoder is shared by
//! the appender (and, later, the replication stream); the reader is the loader's, with
//! Redis's rules: a command cut off by the end of the file is *truncated* (the caller
//! decides whether that is allowed), anything else malformed is a format error at an
//! offset.

use std::io::{BufRead, ErrorKind};

use crate::rdb::num::format_u64;

/// Appends one command in RESP.
pub(crate) fn encode(out: &mut Vec<u8>, argv: &[&[u8]]) {
    header(out, argv.len());
    for a in argv {
        arg(out, a);
    }
}

/// Appends a command's header, `*<argc>\r\n` (its arguments follow with [`arg`]).
pub(crate) fn header(out: &mut Vec<u8>, argc: usize) {
    let mut num = [0u8; 20];
    out.push(b'*');
    out.extend_from_slice(format_u64(argc as u64, &mut num));
    out.extend_from_slice(b"\r\n");
}

/// Appends one argument, `$<len>\r\n<bytes>\r\n`.
pub(crate) fn arg(out: &mut Vec<u8>, a: &[u8]) {
    let mut num = [0u8; 20];
    out.push(b'$');
    out.extend_from_slice(format_u64(a.len() as u64, &mut num));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

/// Appends `SELECT <db>`.
pub(crate) fn encode_select(out: &mut Vec<u8>, db: u32) {
    let mut num = [0u8; 20];
    encode(out, &[b"SELECT", format_u64(u64::from(db), &mut num)]);
}

/// What the reader found next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A whole command; its arguments are in the reader's `args`.
    Command,
    /// The clean end of the input.
    End,
    /// The input ends inside the command that starts at this offset.
    Truncated(u64),
}

/// A malformed command: where and what.
#[derive(Debug)]
pub(crate) struct FormatError {
    pub offset: u64,
    pub what: String,
}

/// The largest argument accepted: Redis's `proto-max-bulk-len`, 512 MiB.
const MAX_BULK: u64 = 512 << 20;

/// Reads commands from a buffered input. Argument bytes are kept in one buffer reused
/// from command to command.
pub(crate) struct Reader<R> {
    input: R,
    /// Offset of the next unread byte.
    pub offset: u64,
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
    line: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, offset: u64) -> Self {
        Reader {
            input,
            offset,
            data: Vec::new(),
            spans: Vec::new(),
            line: Vec::new(),
        }
    }

    /// The last command's arguments.
    pub fn args(&self) -> Vec<&[u8]> {
        self.spans.iter().map(|&(a, b)| &self.data[a..b]).collect()
    }

    /// The last command's first argument (its name).
    pub fn name(&self) -> &[u8] {
        self.spans.first().map_or(&[], |&(a, b)| &self.data[a..b])
    }

    /// Reads a line through `\n` into `self.line` (without it). `Ok(false)`: the input
    /// ended before the newline.
    fn read_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        let n = read_until_limited(&mut self.input, &mut self.line, 64 << 10)?;
        self.offset += n as u64;
        if self.line.last() != Some(&b'\n') {
            return Ok(false);
        }
        self.line.pop();
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    /// The next command (annotation lines skipped).
    pub fn next(&mut self) -> Result<Next, FormatError> {
        let io = |offset: u64, e: std::io::Error| FormatError {
            offset,
            what: format!("read error: {e}"),
        };
        loop {
            let start = self.offset;
            if !self.read_line().map_err(|e| io(start, e))? {
                return Ok(if self.line.is_empty() {
                    Next::End
                } else {
                    Next::Truncated(start)
                });
            }
            match self.line.first() {
                Some(b'#') => continue,
                Some(b'*') => {}
                _ => {
                    return Err(FormatError {
                        offset: start,
                        what: format!(
                            "expected a command ('*<count>'), found {:?}",
                            String::from_utf8_lossy(&self.line[..self.line.len().min(40)])
                        ),
                    })
                }
            }
            let argc = parse_num(&self.line[1..]).filter(|&n| n >= 1).ok_or_else(|| FormatError {
                offset: start,
                what: format!(
                    "bad argument count {:?}",
                    String::from_utf8_lossy(&self.line[1..self.line.len().min(40)])
                ),
            })?;
            self.data.clear();
            self.spans.clear();
            for _ in 0..argc {
                let at = self.offset;
                if !self.read_line().map_err(|e| io(at, e))? {
                    return Ok(Next::Truncated(start));
                }
                let len = match (self.line.first(), parse_num(self.line.get(1..).unwrap_or(&[]))) {
                    (Some(b'$'), Some(len)) if len <= MAX_BULK => len as usize,
                    _ => {
                        return Err(FormatError {
                            offset: at,
                            what: format!(
                                "expected an argument ('$<length>', at most 512 MiB), found {:?}",
                                String::from_utf8_lossy(&self.line[..self.line.len().min(40)])
                            ),
                        })
                    }
                };
                let from = self.data.len();
                self.data.try_reserve(len + 2).map_err(|_| FormatError {
                    offset: at,
                    what: format!("no memory for a {len}-byte argument"),
                })?;
                let got = (&mut self.input)
                    .take(len as u64 + 2)
                    .read_to_end(&mut self.data)
                    .map_err(|e| io(at, e))?;
                self.offset += got as u64;
                if got < len + 2 {
                    return Ok(Next::Truncated(start));
                }
                self.data.truncate(from + len);
                self.spans.push((from, from + len));
            }
            return Ok(Next::Command);
        }
    }
}

use std::io::Read;

/// `read_until(b'\n')` that stops after `limit` bytes (a line that long is malformed).
fn read_until_limited<R: BufRead>(r: &mut R, out: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (n, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let n = n.min(limit - total);
        out.extend_from_slice(&buf[..n]);
        r.consume(n);
        total += n;
        if done || total >= limit {
            return Ok(total);
        }
    }
}

/// A decimal count or length (no sign, no spaces).
fn parse_num(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> (Vec<Vec<Vec<u8>>>, Result<Next, FormatError>) {
        let mut r = Reader::new(data, 0);
        let mut cmds = Vec::new();
        loop {
            match r.next() {
                Ok(Next::Command) => cmds.push(r.args().iter().map(|a| a.to_vec()).collect()),
                other => return (cmds, other),
            }
        }
    }

    #[test]
    fn round_trip_with_annotations() {
        let mut out = Vec::new();
        encode_select(&mut out, 3);
        out.extend_from_slice(b"#TS:1700000000\r\n");
        encode(&mut out, &[b"SET", b"k\r\nx", b""]);
        let (cmds, end) = all(&out);
        assert_eq!(end.unwrap(), Next::End);
        assert_eq!(cmds[0], vec![b"SELECT".to_vec(), b"3".to_vec()]);
        assert_eq!(cmds[1], vec![b"SET".to_vec(), b"k\r\nx".to_vec(), Vec::new()]);
    }

    #[test]
    fn a_cut_off_command_is_truncated_at_its_start() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"a", b"1"]);
        let whole = out.len() as u64;
        encode(&mut out, &[b"SET", b"b", b"2"]);
        for cut in whole as usize + 1..out.len() {
            let (cmds, end) = all(&out[..cut]);
            assert_eq!(cmds.len(), 1);
            assert_eq!(end.unwrap(), Next::Truncated(whole), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_input_is_an_error_with_its_offset() {
        let mut ok = Vec::new();
        encode(&mut ok, &[b"PING"]);
        for bad in [&b"+OK\r\n"[..], b"*0\r\n", b"*x\r\n", b"*1\r\n:5\r\n", b"*1\r\n$-1\r\n", b"*1\r\n$999999999999\r\n"] {
            let data = [&ok[..], bad].concat();
            let (cmds, end) = all(&data);
            assert_eq!(cmds.len(), 1);
            let e = end.expect_err(&String::from_utf8_lossy(bad));
            assert!(e.offset >= ok.len() as u64, "{e:?}");
        }
    }
}
