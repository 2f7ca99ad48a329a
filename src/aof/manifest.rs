//! The multi-part AOF's manifest: which base, history and incr files make up the AOF, in
//! Redis 7's grammar, parsed and written as Redis parses and writes it (see
//! `../shared/AOF-REPL-NOTES.md` and `aof.c`'s manifest functions, whose messages the
//! errors reuse so an operator can search for them).
//!
//! Grammar: one line per file, `file <name> seq <n> type <b|h|i>\n`, in the order base,
//! history, incr. Keys are case-insensitive, unknown key/value pairs are ignored, lines
//! starting with `#` are comments. A name that needs it is written double-quoted with
//! C escapes.

/// A file's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Base,
    History,
    Incr,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Base => 'b',
            Kind::History => 'h',
            Kind::Incr => 'i',
        }
    }
}

/// One line of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub name: Vec<u8>,
    pub seq: i64,
    pub kind: Kind,
}

/// The parsed manifest. Incr files are in load order (strictly increasing seq).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub base: Option<FileInfo>,
    pub history: Vec<FileInfo>,
    pub incr: Vec<FileInfo>,
}

/// Why a manifest was refused: the 1-based line and Redis's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub line: usize,
    pub what: String,
}

/// Redis's line limit (`AOF_MANIFEST_MAX_LINE`, the `fgets` buffer).
const MAX_LINE: usize = 1024;

impl Manifest {
    /// Parses a manifest as Redis 7 does. Every fatal case of Redis's parser is an error.
    pub fn parse(data: &[u8]) -> Result<Manifest, ParseError> {
        let err = |line: usize, what: &str| ParseError {
            line,
            what: what.to_string(),
        };
        if data.is_empty() {
            return Err(err(0, "Found an empty AOF manifest"));
        }
        let mut m = Manifest::default();
        let mut max_incr: Option<i64> = None;
        let mut rest = data;
        let mut lineno = 0;
        while !rest.is_empty() {
            lineno += 1;
            // fgets: up to MAX_LINE bytes, through the first newline.
            let take = match rest.iter().take(MAX_LINE).position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest.len().min(MAX_LINE),
            };
            let (raw, tail) = rest.split_at(take);
            rest = tail;
            if raw[0] == b'#' {
                continue;
            }
            if raw.last() != Some(&b'\n') {
                return Err(err(lineno, "The AOF manifest file contains too long line"));
            }
            let line = trim(raw);
            if line.is_empty() {
                return Err(err(lineno, "Invalid AOF manifest file format"));
            }
            let argv = split_args(line)
                .filter(|a| a.len() >= 6 && a.len() % 2 == 0)
                .ok_or_else(|| err(lineno, "Invalid AOF manifest file format"))?;
            let (mut name, mut seq, mut kind) = (None, 0i64, 0u8);
            for kv in argv.chunks(2) {
                let key = &kv[0];
                if key.eq_ignore_ascii_case(b"file") {
                    if kv[1].iter().any(|&b| b == b'/' || b == b'\\') {
                        return Err(err(lineno, "File can't be a path, just a filename"));
                    }
                    name = Some(kv[1].clone());
                } else if key.eq_ignore_ascii_case(b"seq") {
                    seq = atoll(&kv[1]);
                } else if key.eq_ignore_ascii_case(b"type") {
                    kind = kv[1].first().copied().unwrap_or(0);
                }
            }
            let (Some(name), true, true) = (name, seq != 0, kind != 0) else {
                return Err(err(lineno, "Invalid AOF manifest file format"));
            };
            let kind = match kind {
                b'b' => Kind::Base,
                b'h' => Kind::History,
                b'i' => Kind::Incr,
                _ => return Err(err(lineno, "Unknown AOF file type")),
            };
            let info = FileInfo { name, seq, kind };
            match kind {
                Kind::Base if m.base.is_some() => {
                    return Err(err(lineno, "Found duplicate base file information"))
                }
                Kind::Base => m.base = Some(info),
                Kind::History => m.history.push(info),
                Kind::Incr => {
                    if max_incr.is_some_and(|s| seq <= s) {
                        return Err(err(lineno, "Found a non-monotonic sequence number"));
                    }
                    max_incr = Some(seq);
                    m.incr.push(info);
                }
            }
        }
        Ok(m)
    }

    /// The manifest's text, as Redis writes it: base, history, incr.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.base.iter().chain(&self.history).chain(&self.incr) {
            out.extend_from_slice(b"file ");
            write_name(&mut out, &f.name);
            out.extend_from_slice(format!(" seq {} type {}\n", f.seq, f.kind.letter()).as_bytes());
        }
        out
    }

    /// The highest incr seq (0 with none).
    pub fn last_incr_seq(&self) -> i64 {
        self.incr.last().map_or(0, |f| f.seq)
    }
}

/// `sdstrim(line, " \t\r\n")`.
fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// `atoll`: optional leading white space and sign, then digits up to the first
/// non-digit (none: 0).
fn atoll(s: &[u8]) -> i64 {
    let mut i = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    for &b in s[i..].iter().take_while(|b| b.is_ascii_digit()) {
        v = v.wrapping_mul(10).wrapping_add(i64::from(b - b'0'));
    }
    if neg {
        v.wrapping_neg()
    } else {
        v
    }
}

/// Splits a line into arguments the way Redis's `sdssplitargs` does: white space
/// separates; `"…"` takes C escapes (`\n \r \t \b \a \\ \"`, `\xHH`); `'…'` takes only
/// `\'`; a closing quote must be followed by white space or the end. `None` for
/// unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' && hex(line[i + 2]).is_some() && hex(line[i + 3]).is_some() {
                    cur.push(hex(line[i + 2])? * 16 + hex(line[i + 3])?);
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    i = after_quote(line, i)?;
                    break;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    i = after_quote(line, i)?;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

/// Past the closing quote at `i`, which must end the argument (`None` otherwise).
fn after_quote(line: &[u8], i: usize) -> Option<usize> {
    match line.get(i + 1) {
        Some(b) if !b.is_ascii_whitespace() => None,
        _ => Some(i + 1),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Writes a file name as Redis does: bare, or quoted with escapes when it holds white
/// space, quotes (single ones too, which Redis leaves bare), backslashes or bytes that are
/// not printable.
fn write_name(out: &mut Vec<u8>, name: &[u8]) {
    // Redis quotes for the same bytes except `'`, which its own parser then takes for
    // an unbalanced quote (a name starting with one cannot be read back): quoted here.
    let needs = name.iter().any(|&b| {
        matches!(b, b'\\' | b'"' | b'\'' | b'\n' | b'\r' | b'\t' | 7 | 8)
            || !(0x20..0x7f).contains(&b)
            || b == b' '
    });
    if !needs {
        out.extend_from_slice(name);
        return;
    }
    out.push(b'"');
    for &b in name {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, seq: i64, kind: Kind) -> FileInfo {
        FileInfo {
            name: name.as_bytes().to_vec(),
            seq,
            kind,
        }
    }

    #[test]
    fn parses_redis_own_manifest() {
        let text = b"file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\nfile appendonly.aof.2.incr.aof seq 2 type i\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.base, Some(info("appendonly.aof.1.base.rdb", 1, Kind::Base)));
        assert_eq!(m.incr.len(), 2);
        assert_eq!(m.render(), text.to_vec());
    }

    #[test]
    fn comments_unknown_keys_order_and_case() {
        let text = b"# written by hand\nFILE a.incr SEQ 3 TYPE i extra stuff\nfile b.base seq 9 type b\n  file h seq 2 type h  \r\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.base, Some(info("b.base", 9, Kind::Base)));
        assert_eq!(m.history, vec![info("h", 2, Kind::History)]);
        assert_eq!(m.incr, vec![info("a.incr", 3, Kind::Incr)]);
        // Rendered in Redis's order: base, history, incr.
        assert_eq!(
            m.render(),
            b"file b.base seq 9 type b\nfile h seq 2 type h\nfile a.incr seq 3 type i\n".to_vec()
        );
    }

    #[test]
    fn odd_names_round_trip_quoted() {
        for name in ["with space", "q\"uote", "'", "a'b", "tab\there", "nl\nx", "\x01ctl", "é"] {
            let m = Manifest {
                base: Some(info(name, 1, Kind::Base)),
                ..Manifest::default()
            };
            let text = m.render();
            assert!(text.starts_with(b"file \""), "{text:?}");
            assert_eq!(Manifest::parse(&text).unwrap(), m, "{name:?}");
        }
        let plain = Manifest {
            base: Some(info("plain.rdb", 1, Kind::Base)),
            ..Manifest::default()
        };
        assert_eq!(plain.render(), b"file plain.rdb seq 1 type b\n".to_vec());
    }

    #[test]
    fn every_fatal_case_is_refused_with_its_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 0, "empty AOF manifest"),
            (b"file a seq 1 type b\n\n", 2, "Invalid AOF manifest file format"),
            (b"file a seq 1 type b", 1, "too long line"),
            (b"file a seq 1 type\n", 1, "Invalid AOF manifest file format"),
            (b"file a seq 1\n", 1, "Invalid AOF manifest file format"),
            (b"file a seq 1 kind b\n", 1, "Invalid AOF manifest file format"),
            (b"name a seq 1 type b\n", 1, "Invalid AOF manifest file format"),
            (b"file a seq 0 type b\n", 1, "Invalid AOF manifest file format"),
            (b"file a seq x type b\n", 1, "Invalid AOF manifest file format"),
            (b"file dir/a seq 1 type b\n", 1, "just a filename"),
            (b"file a\\\\b seq 1 type b\n", 1, "just a filename"),
            (b"file a seq 1 type b\nfile c seq 2 type b\n", 2, "duplicate base"),
            (b"file a seq 2 type i\nfile c seq 2 type i\n", 2, "non-monotonic"),
            (b"file a seq 3 type i\nfile c seq 1 type i\n", 2, "non-monotonic"),
            (b"file a seq 1 type x\n", 1, "Unknown AOF file type"),
            (b"file \"a seq 1 type b\n", 1, "Invalid AOF manifest file format"),
            (b"file \"a\"b seq 1 type b\n", 1, "Invalid AOF manifest file format"),
        ];
        for (text, line, what) in cases {
            let e = Manifest::parse(text).expect_err(&String::from_utf8_lossy(text));
            assert_eq!(e.line, *line, "{:?}: {e:?}", String::from_utf8_lossy(text));
            assert!(e.what.contains(what), "{:?}: {e:?}", String::from_utf8_lossy(text));
        }
        let long = [b"file ".as_slice(), &[b'a'; 1100], b" seq 1 type b\n"].concat();
        assert!(Manifest::parse(&long).unwrap_err().what.contains("too long"));
    }

    #[test]
    fn redis_quirks_are_kept() {
        // The type is its first letter; seq is atoll's.
        let m = Manifest::parse(b"file a seq 12abc type base\n").unwrap();
        assert_eq!(m.base, Some(info("a", 12, Kind::Base)));
        // Gaps in seq are fine; history is not checked for order.
        let m = Manifest::parse(b"file h seq 9 type h\nfile h2 seq 1 type h\nfile i seq 1 type i\nfile j seq 7 type i\n").unwrap();
        assert_eq!(m.history.len(), 2);
        assert_eq!(m.last_incr_seq(), 7);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A manifest that lists something (an empty one renders as the empty text Redis
    /// refuses; forksnap never writes it).
    fn non_empty(m: Manifest) -> Manifest {
        if m == Manifest::default() {
            Manifest {
                history: vec![FileInfo { name: b"h".to_vec(), seq: 1, kind: Kind::History }],
                ..m
            }
        } else {
            m
        }
    }

    fn arb_info(kind: Kind) -> impl Strategy<Value = FileInfo> {
        // Any bytes but the path separators (and NUL, which no file name holds).
        (prop::collection::vec(any::<u8>().prop_filter("sep", |b| !matches!(b, b'/' | b'\\' | 0)), 1..40), 1i64..i64::MAX)
            .prop_map(move |(name, seq)| FileInfo { name, seq, kind })
    }

    proptest! {
        /// Whatever the bytes, the parser answers (no panic), and what it accepts
        /// renders to text that parses back to the same manifest (a manifest of comments
        /// alone parses as empty, which is never written).
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = Manifest::parse(&data).map(non_empty) {
                prop_assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
            }
        }

        /// Lines made of the grammar's own words, shuffled and damaged.
        #[test]
        fn grammar_like_lines_never_panic(words in prop::collection::vec(
            prop::sample::select(vec!["file", "seq", "type", "b", "h", "i", "x", "1", "2", "0", "-3",
                "\"q\"", "\"a b\"", "'s'", "\"\\x41\"", "\"", "#", "\n", "\r\n", " ", "\t"]), 0..40)) {
            let text = words.concat();
            if let Ok(m) = Manifest::parse(text.as_bytes()).map(non_empty) {
                prop_assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
            }
        }

        /// Every manifest Redis could write round-trips, whatever its names.
        #[test]
        fn any_manifest_round_trips(
            base in prop::option::of(arb_info(Kind::Base)),
            history in prop::collection::vec(arb_info(Kind::History), 0..4),
            incr_seqs in prop::collection::btree_set(1i64..1000, 0..5),
            names in prop::collection::vec(arb_info(Kind::Incr), 5),
        ) {
            let incr: Vec<FileInfo> = incr_seqs.into_iter().zip(names).map(|(seq, f)| FileInfo { seq, ..f }).collect();
            let m = Manifest { base, history, incr };
            prop_assume!(m.base.is_some() || !m.history.is_empty() || !m.incr.is_empty());
            let text = m.render();
            prop_assume!(text.split(|&b| b == b'\n').all(|l| l.len() < MAX_LINE));
            prop_assert_eq!(Manifest::parse(&text).unwrap(), m);
        }
    }
}
