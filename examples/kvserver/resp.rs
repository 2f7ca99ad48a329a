//! RESP2: requests parsed from a connection's buffer (multibulk and inline, as Redis
//! accepts them), replies written into an output buffer.

/// Redis's limits: a request of at most 1M arguments, each at most 512 MB
/// (`proto-max-bulk-len`); an inline request at most 64 KiB.
const MAX_ARGS: i64 = 1024 * 1024;
const MAX_BULK: i64 = 512 * 1024 * 1024;
const MAX_INLINE: usize = 64 * 1024;

/// A request that cannot be parsed: the client gets the error and is closed (as Redis).
#[derive(Debug)]
pub struct ProtocolError(pub String);

/// Parses one request from the front of `buf`. `Ok(None)`: more bytes are needed;
/// `Ok(Some((args, used)))`: a request of `used` bytes (an empty `args` is a blank line).
/// A parsed request's arguments and its length in bytes.
pub type Request = (Vec<Vec<u8>>, usize);

pub fn parse(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let Some((n, mut at)) = line_int(buf, 1)? else {
        return Ok(None);
    };
    if n > MAX_ARGS {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    let mut args = Vec::with_capacity(n.clamp(0, 64) as usize);
    for _ in 0..n.max(0) {
        if at >= buf.len() {
            return Ok(None);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                buf[at] as char
            )));
        }
        let Some((len, start)) = line_int(buf, at + 1)? else {
            return Ok(None);
        };
        if !(0..=MAX_BULK).contains(&len) {
            return Err(ProtocolError("invalid bulk length".into()));
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        args.push(buf[start..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// The integer on a `\r\n`-terminated line starting at `from`, and where the next begins.
fn line_int(buf: &[u8], from: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(nl) = buf[from..].iter().position(|&b| b == b'\n') else {
        if buf.len() - from > 32 {
            return Err(ProtocolError("too big length line".into()));
        }
        return Ok(None);
    };
    let line = &buf[from..from + nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let n = std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError("invalid length".into()))?;
    Ok(Some((n, from + nl + 1)))
}

fn parse_inline(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Some((args, nl + 1)))
}

/// A reply being written (RESP2).
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn ok(&mut self) {
        self.0.extend_from_slice(b"+OK\r\n");
    }
    pub fn status(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }
    pub fn error(&mut self, s: &str) {
        // A reply line cannot hold a newline.
        let s = s.replace(['\r', '\n'], " ");
        self.line(b'-', s.as_bytes());
    }
    pub fn int(&mut self, i: i64) {
        self.line(b':', i.to_string().as_bytes());
    }
    pub fn bulk(&mut self, b: &[u8]) {
        self.line(b'$', b.len().to_string().as_bytes());
        self.0.extend_from_slice(b);
        self.0.extend_from_slice(b"\r\n");
    }
    pub fn nil(&mut self) {
        self.0.extend_from_slice(b"$-1\r\n");
    }
    pub fn nil_array(&mut self) {
        self.0.extend_from_slice(b"*-1\r\n");
    }
    pub fn array(&mut self, n: usize) {
        self.line(b'*', n.to_string().as_bytes());
    }
    pub fn bulks<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.array(items.len());
        for i in items {
            self.bulk(i);
        }
    }
    fn line(&mut self, tag: u8, s: &[u8]) {
        self.0.push(tag);
        self.0.extend_from_slice(s);
        self.0.extend_from_slice(b"\r\n");
    }
}
