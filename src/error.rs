//! The crate's one error type. Every variant says what happened and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout forksnap.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in forksnap.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O step failed. `op` names the step (`"create"`, `"write"`, `"fsync"`,
    /// `"rename"`, `"io_uring_enter"`, ...).
    Io {
        /// The step.
        op: &'static str,
        /// The file or directory it acted on (a snapshot's temp file, its target or the
        /// target's directory).
        path: PathBuf,
        /// File offset of the failed write, when the step is a write.
        offset: Option<u64>,
        /// The operating system's error.
        source: io::Error,
    },
    /// The input is not a valid RDB (or LZ4 frame).
    Corrupt {
        /// Byte offset in the (decompressed) RDB stream where the problem was found.
        offset: u64,
        /// What is wrong there.
        what: String,
    },
    /// A checksum did not match.
    ChecksumMismatch {
        /// The checksum (RDB CRC-64, LZ4 block, ...).
        what: &'static str,
        /// Where the stored checksum is.
        offset: u64,
        /// The stored value.
        expected: u64,
        /// The value computed over the data.
        got: u64,
    },
    /// The file holds something forksnap cannot hand over (a pre-release module value or
    /// function record, a hash whose field TTLs a visitor reads without them).
    Unsupported {
        /// Byte offset of the value's entry.
        offset: u64,
        /// What the value is.
        what: String,
    },
    /// The caller asked for something invalid (an RDB version we cannot write, ...).
    InvalidOption(String),
    /// A snapshot is already running in this process.
    AlreadyRunning,
    /// Copy-on-write crossed the budget; the snapshot was aborted.
    CowLimitExceeded {
        /// The budget, bytes.
        budget: u64,
        /// The copy-on-write measured when it was crossed, bytes.
        observed: u64,
    },
    /// The snapshot child failed without a more specific error (killed by a signal, ...).
    Child {
        /// How it ended.
        status: String,
    },
    /// The writer thread of a snapshot (`SnapshotOptions::workers(1)`) stopped or
    /// panicked, in the child or in this process.
    WriterThread {
        /// What happened to it.
        what: String,
    },
    /// An encoding thread of the parallel child (`SnapshotOptions::threads`) could not
    /// start or panicked; nothing was written in place of the target.
    EncoderThread {
        /// What happened to it.
        what: String,
    },
    /// The keyspace handed out a value no server would load (a view whose `len()`
    /// disagrees with what its `for_each` yields, ...). Nothing was written in place of
    /// the target.
    BadValue {
        /// The key, as text (bytes that are not UTF-8 replaced).
        key: String,
        /// What is wrong with its value.
        what: String,
    },
    /// A [`LoadVisitor`](crate::LoadVisitor) refused a key (or an AUX field, a function
    /// library, a database): the load stopped there.
    Rejected {
        /// Byte offset of the key's entry in the RDB stream.
        offset: u64,
        /// The key, as text (bytes that are not UTF-8 replaced).
        key: String,
        /// The visitor's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An append-only file or its manifest is malformed, or the AOF directory is not in a
    /// state that can be loaded (a listed file missing, a cut-off command before the last
    /// file's end). Nothing was changed on disk.
    Aof {
        /// The file.
        path: PathBuf,
        /// Where in it: `line N` (a manifest) or `byte N` (an AOF file); empty when the
        /// whole file is meant.
        at: String,
        /// What is wrong.
        what: String,
    },
    /// A replication peer broke the protocol or refused the link (a master's bad
    /// handshake reply, a malformed command stream, a master that went silent).
    Replication {
        /// The peer (`host:port`).
        peer: String,
        /// Where in the link: `handshake`, `transfer`, `stream at offset N`.
        at: String,
        /// What happened.
        what: String,
    },
    /// The child made no progress (no report, no CPU time, no disk wait) for `seconds`
    /// and was killed; see `SnapshotOptions::stall_timeout`.
    Stalled {
        /// How long it was idle.
        seconds: u64,
        /// Keys it had encoded.
        keys: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            offset: None,
            source,
        }
    }

    /// The error a `Read` gave: a forksnap error carried through `io::Error` (the LZ4
    /// frame reader's) comes back out as itself; any other is a failed `read`.
    pub(crate) fn from_read(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::io("read", PathBuf::new(), e);
        }
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::io("read", PathBuf::new(), io::Error::other(other)),
            None => Error::io("read", PathBuf::new(), io::Error::other("unknown read error")),
        }
    }

    /// Carries this error through an `io::Error` (for `Read` implementations).
    pub(crate) fn into_read(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            offset,
            what: what.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                op,
                path,
                offset: Some(off),
                source,
            } => write!(f, "{op} failed on {} at byte {off}: {source}", path.display()),
            Error::Io {
                op, path, source, ..
            } if path.as_os_str().is_empty() => write!(f, "{op} failed: {source}"),
            Error::Io {
                op, path, source, ..
            } => write!(f, "{op} failed on {}: {source}", path.display()),
            Error::Corrupt { offset, what } => write!(f, "corrupt input at byte {offset}: {what}"),
            Error::ChecksumMismatch {
                what,
                offset,
                expected,
                got,
            } => write!(
                f,
                "{what} checksum mismatch at byte {offset}: stored {expected:#x}, computed {got:#x}"
            ),
            Error::Unsupported { offset, what } => {
                write!(f, "unsupported value at byte {offset}: {what}")
            }
            Error::InvalidOption(msg) => write!(f, "invalid option: {msg}"),
            Error::AlreadyRunning => write!(f, "a snapshot is already running in this process"),
            Error::CowLimitExceeded { budget, observed } => write!(
                f,
                "snapshot aborted: copy-on-write reached {observed} bytes, over the budget of {budget}"
            ),
            Error::Child { status } => write!(f, "snapshot child failed: {status}"),
            Error::WriterThread { what } => write!(f, "snapshot writer thread failed: {what}"),
            Error::EncoderThread { what } => write!(f, "snapshot encoding thread failed: {what}"),
            Error::BadValue { key, what } => {
                write!(f, "the keyspace gave an invalid value for key {key:?}: {what}")
            }
            Error::Rejected {
                offset,
                key,
                source,
            } => write!(f, "key {key:?} at byte {offset} was refused: {source}"),
            Error::Aof { path, at, what } if at.is_empty() => {
                write!(f, "AOF {}: {what}", path.display())
            }
            Error::Aof { path, at, what } => write!(f, "AOF {} at {at}: {what}", path.display()),
            Error::Replication { peer, at, what } => {
                write!(f, "replication with {peer} failed in the {at}: {what}")
            }
            Error::Stalled { seconds, keys } => write!(
                f,
                "snapshot child made no progress for {seconds} s after {keys} keys and was killed: \
                 its walk is probably waiting for a lock that another thread held when the \
                 server forked (take the keyspace's locks before start() and read through them \
                 in walk), or its disk stopped responding"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Rejected { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
