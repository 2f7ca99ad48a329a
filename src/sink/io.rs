//! The one I/O interface: every file operation of a snapshot goes through [`Io`], which
//! consults a [`Faults`] plan first so tests can make any step fail.
//!
//! **Invariants**: every error carries the step's name and the path; a step that the plan
//! fails has no effect on disk.

use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The I/O steps of a snapshot, as named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Creating the temp file.
    Create,
    /// Setting O_DIRECT on it (`fcntl`).
    Direct,
    /// Preallocating its next stretch (`fallocate`, with O_DIRECT; a failure only stops
    /// the preallocation).
    Fallocate,
    /// A write to it.
    Write,
    /// `sync_file_range` (writeback pacing).
    RangeSync,
    /// Its final `fsync`.
    Fsync,
    /// Truncating it to its length (after O_DIRECT's padded last write).
    Truncate,
    /// Renaming it over the target.
    Rename,
    /// `fsync` of the target's directory.
    DirSync,
}

impl Step {
    /// The step's name in errors (`Error::Io`'s `op`).
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Direct => "O_DIRECT",
            Step::Fallocate => "fallocate",
            Step::Write => "write",
            Step::RangeSync => "sync_file_range",
            Step::Fsync => "fsync",
            Step::Truncate => "truncate",
            Step::Rename => "rename",
            Step::DirSync => "fsync directory",
        }
    }

    const ALL: [Step; 9] = [
        Step::Create,
        Step::Direct,
        Step::Fallocate,
        Step::Write,
        Step::RangeSync,
        Step::Fsync,
        Step::Truncate,
        Step::Rename,
        Step::DirSync,
    ];

    fn index(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The step an error's `op` names.
    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(any(test, feature = "fault-injection")), allow(dead_code))]
enum Action {
    Fail(i32),
    Short,
}

/// A fault plan (for tests): fail the `nth` (1-based) occurrence of a step with an errno,
/// or make the `nth` write short. Empty by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    rules: Vec<(Step, u64, Action)>,
    /// RLIMIT_FSIZE applied in the writing process (with SIGXFSZ ignored), so writes past
    /// it fail with EFBIG as a full quota or a size-limited file system would.
    pub fsize_limit: Option<u64>,
}

#[cfg_attr(not(any(test, feature = "fault-injection")), allow(dead_code))]
impl Faults {
    /// Fail the `nth` (1-based) occurrence of `step` with `errno`.
    pub fn fail(mut self, step: Step, nth: u64, errno: i32) -> Self {
        self.rules.push((step, nth, Action::Fail(errno)));
        self
    }

    /// Make the `nth` write write half of what it was asked.
    pub fn short_write(mut self, nth: u64) -> Self {
        self.rules.push((Step::Write, nth, Action::Short));
        self
    }

}

/// `SIGXFSZ` ignored while a snapshot writes, in the child and in `save` alike: a file
/// size limit (`RLIMIT_FSIZE`, a quota) then fails the write with `EFBIG`, reported as
/// the write's error, instead of killing the process. The previous disposition comes
/// back on drop.
pub(crate) struct IgnoreSigxfsz(libc::sigaction);

impl IgnoreSigxfsz {
    pub(crate) fn new() -> Self {
        // SAFETY: an all-zero sigaction is valid; sigaction reads `ign` and writes the
        // previous disposition into `old`, both live locals.
        unsafe {
            let mut ign: libc::sigaction = std::mem::zeroed();
            ign.sa_sigaction = libc::SIG_IGN;
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGXFSZ, &ign, &mut old);
            IgnoreSigxfsz(old)
        }
    }
}

impl Drop for IgnoreSigxfsz {
    fn drop(&mut self) {
        // SAFETY: restores the disposition read in `new`.
        unsafe { libc::sigaction(libc::SIGXFSZ, &self.0, std::ptr::null_mut()) };
    }
}

/// File operations on one snapshot's temp file, counted against a fault plan.
#[derive(Debug)]
pub struct Io {
    faults: Faults,
    counts: [u64; Step::ALL.len()],
    pub tmp: PathBuf,
    pub target: PathBuf,
}

/// What a write may do, as decided by the fault plan.
pub(crate) enum WriteGate {
    Full,
    Short,
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::new("?").expect("no NUL"))
}

impl Io {
    pub fn new(tmp: PathBuf, target: PathBuf, faults: Faults) -> Io {
        Io {
            faults,
            counts: [0; Step::ALL.len()],
            tmp,
            target,
        }
    }

    fn err(&self, step: Step, errno: i32) -> Error {
        let path = if step == Step::Rename || step == Step::DirSync {
            &self.target
        } else {
            &self.tmp
        };
        Error::io(step.name(), path, std::io::Error::from_raw_os_error(errno))
    }

    /// Counts one occurrence of `step`; fails it if the plan says so. Writes go through
    /// [`Io::write_gate_at`] so their errors carry the offset.
    fn gate(&mut self, step: Step) -> Result<Option<Action>> {
        let i = step.index();
        self.counts[i] += 1;
        let n = self.counts[i];
        match self
            .faults
            .rules
            .iter()
            .find(|(s, nth, _)| *s == step && *nth == n)
        {
            Some((_, _, Action::Fail(errno))) => Err(self.err(step, *errno)),
            Some((_, _, a)) => Ok(Some(*a)),
            None => Ok(None),
        }
    }

    /// Applies the plan's RLIMIT_FSIZE to this process (call in the writing process).
    pub fn apply_limits(&self) {
        if let Some(limit) = self.faults.fsize_limit {
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: a plain syscall on this process with a valid rlimit.
            unsafe {
                libc::setrlimit(libc::RLIMIT_FSIZE, &r);
            }
        }
    }

    /// Creates the temp file; then O_DIRECT as asked: `Some(true)` required (an error
    /// if the file system refuses it), `Some(false)` never, `None` where the file system
    /// accepts it (set with `fcntl`, so a refusal, tmpfs's `EINVAL`, costs nothing but
    /// the probe). Returns the descriptor, whether O_DIRECT is in effect, and why.
    pub fn create(&mut self, direct: Option<bool>) -> Result<(OwnedFd, bool, String)> {
        self.gate(Step::Create)?;
        let c = cpath(&self.tmp);
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated path; open has no other preconditions.
        let fd = unsafe { libc::open(c.as_ptr(), flags, 0o644) };
        if fd < 0 {
            return Err(self.err(Step::Create, errno()));
        }
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let set = |io: &mut Self| -> Result<()> {
            io.gate(Step::Direct)?;
            // SAFETY: fcntl on a descriptor this function owns; F_GETFL/F_SETFL take and
            // return plain integers.
            let r = unsafe {
                let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                if fl < 0 {
                    fl
                } else {
                    libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_DIRECT)
                }
            };
            if r < 0 {
                return Err(io.err(Step::Direct, errno()));
            }
            Ok(())
        };
        let (on, why) = match direct {
            Some(false) => (false, "buffered writes (asked)".to_string()),
            Some(true) => {
                set(self)?;
                (true, "O_DIRECT (asked)".to_string())
            }
            None => match set(self) {
                Ok(()) => (true, "O_DIRECT (auto: the file system accepts it)".to_string()),
                Err(e) => {
                    let why = match &e {
                        Error::Io { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    (
                        false,
                        format!("buffered writes (auto: the file system refused O_DIRECT: {why})"),
                    )
                }
            },
        };
        Ok((fd, on, why))
    }

    /// Decides how the next write goes (fail, short or full).
    pub(crate) fn write_gate_at(&mut self, offset: u64) -> Result<WriteGate> {
        match self.gate(Step::Write) {
            Ok(Some(Action::Short)) => Ok(WriteGate::Short),
            Ok(_) => Ok(WriteGate::Full),
            Err(Error::Io { source, .. }) => {
                Err(self.write_error(source.raw_os_error().unwrap_or(libc::EIO), offset))
            }
            Err(e) => Err(e),
        }
    }

    /// Counts one occurrence of `step` against the plan (the AOF's steps).
    pub(crate) fn gate_step(&mut self, step: Step) -> Result<()> {
        self.gate(step).map(|_| ())
    }

    /// The error of `step` failing with `errno` (named as the plan names it).
    pub(crate) fn step_error(&self, step: Step, errno: i32) -> Error {
        self.err(step, errno)
    }

    /// Writes all of `data` at `offset` with `pwrite`, each call counted as a write.
    pub(crate) fn pwrite_all(&mut self, fd: &OwnedFd, data: &[u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let mut len = data.len() - done;
            if matches!(self.write_gate_at(at)?, WriteGate::Short) {
                len = len.div_ceil(2);
            }
            // SAFETY: pwrite from a live slice into an open descriptor.
            let n = unsafe {
                libc::pwrite(fd.as_raw_fd(), data[done..].as_ptr().cast(), len, at as i64)
            };
            if n <= 0 {
                return Err(self.write_error(if n == 0 { libc::EIO } else { errno() }, at));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// A failed write at file offset `offset`.
    pub fn write_error(&self, errno: i32, offset: u64) -> Error {
        Error::Io {
            op: Step::Write.name(),
            path: self.tmp.clone(),
            offset: Some(offset),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// Starts writeback of `[from, to)` and waits for the writeback of `[prev, from)`, as
    /// Redis paces its BGSAVE so that the final fsync does not stall.
    pub fn range_sync(&mut self, fd: &OwnedFd, prev: u64, from: u64, to: u64) -> Result<()> {
        self.gate(Step::RangeSync)?;
        // SAFETY: sync_file_range on an open fd with in-range offsets; no memory is passed.
        let r = unsafe {
            let a = libc::sync_file_range(
                fd.as_raw_fd(),
                from as i64,
                (to - from) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            if a == 0 && from > prev {
                libc::sync_file_range(
                    fd.as_raw_fd(),
                    prev as i64,
                    (from - prev) as i64,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            } else {
                a
            }
        };
        if r != 0 {
            return Err(self.err(Step::RangeSync, errno()));
        }
        Ok(())
    }

    /// Counts a range sync against the fault plan, for a backend that issues it itself
    /// (through io_uring).
    pub(crate) fn range_sync_gate(&mut self) -> Result<()> {
        self.gate(Step::RangeSync).map(|_| ())
    }

    pub fn range_sync_error(&self, errno: i32) -> Error {
        self.err(Step::RangeSync, errno)
    }

    pub fn fsync(&mut self, fd: &OwnedFd) -> Result<()> {
        self.gate(Step::Fsync)?;
        // SAFETY: fsync on an open fd.
        if unsafe { libc::fsync(fd.as_raw_fd()) } != 0 {
            return Err(self.err(Step::Fsync, errno()));
        }
        Ok(())
    }

    /// Allocates `len` bytes at `offset` (the file's size grows with them; the final
    /// truncate trims it back).
    pub fn fallocate(&mut self, fd: &OwnedFd, offset: u64, len: u64) -> Result<()> {
        self.gate(Step::Fallocate)?;
        // SAFETY: fallocate on an open fd with plain integer arguments.
        if unsafe { libc::fallocate(fd.as_raw_fd(), 0, offset as i64, len as i64) } != 0 {
            return Err(self.err(Step::Fallocate, errno()));
        }
        Ok(())
    }

    pub fn truncate(&mut self, fd: &OwnedFd, len: u64) -> Result<()> {
        self.gate(Step::Truncate)?;
        // SAFETY: ftruncate on an open fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) } != 0 {
            return Err(self.err(Step::Truncate, errno()));
        }
        Ok(())
    }

    /// Renames the temp file over the target, then fsyncs the directory.
    pub fn commit(&mut self) -> Result<()> {
        self.gate(Step::Rename)?;
        std::fs::rename(&self.tmp, &self.target)
            .map_err(|e| Error::io("rename", &self.target, e))?;
        self.gate(Step::DirSync)?;
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", &dir, e))
    }

    pub fn remove_tmp(&self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
