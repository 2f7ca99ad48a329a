//! The append-only file, in Redis 7's multi-part layout: a base (an RDB with the
//! `aof-base` AUX field, or RESP commands), incr files of RESP commands, and a manifest
//! naming them, all in `dir/appenddirname`. Files move both ways between forksnap and
//! Redis ≥ 7.0 / Valkey.
//!
//! [`Aof::load`] replays a directory into the server; [`Aof::open`] starts appending;
//! [`Aof::append`] logs a write command and [`Aof::wait`] (or [`Aof::poll_wait`]) says
//! when it is safe to reply; [`Aof::start_rewrite`] compacts the AOF through the fork
//! pipeline (BGREWRITEAOF) and [`Aof::poll_rewrite`] commits it.
//!
//! **Invariants**: the manifest on disk always names files that exist and hold a loadable
//! AOF (a rewrite's new base is committed by the manifest's rename, never before); a
//! failed step leaves the previous manifest in place; under [`Fsync::Always`] a command
//! whose LSN [`Aof::wait`] returned for is on disk.

mod append;
mod load;
mod manifest;
pub(crate) mod resp;
mod rewrite;

pub use append::AppendStats;
pub use load::{AofLoadReport, AofVisitor};
pub use rewrite::RewriteReport;

use crate::error::{Error, Result};
use crate::sink::io::{Faults, Io};
use manifest::{FileInfo, Kind, Manifest};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// When appended commands reach the disk (`appendfsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Written and fdatasync'ed before [`Aof::wait`] returns: no acknowledged write is
    /// lost, even by a power cut. Concurrent clients share each fsync (group commit).
    Always,
    /// Written before [`Aof::wait`] returns (a process crash loses nothing), fsynced in
    /// the background about once a second (a power cut loses up to ~1 s). Redis's
    /// default.
    #[default]
    EverySec,
    /// Written before [`Aof::wait`] returns; the kernel decides when it reaches the disk.
    No,
}

impl std::str::FromStr for Fsync {
    type Err = Error;
    fn from_str(s: &str) -> Result<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "no" => Ok(Fsync::No),
            _ => Err(Error::InvalidOption(format!(
                "appendfsync {s:?}: expected always, everysec or no"
            ))),
        }
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        })
    }
}

/// Where the AOF lives and how it is written. Defaults as Redis 7's: `appendonlydir`,
/// `appendonly.aof`, `everysec`, RDB-preamble bases, truncated tails accepted, no
/// timestamps.
#[derive(Clone, Debug)]
pub struct AofOptions {
    dir: PathBuf,
    dirname: String,
    filename: String,
    fsync: Fsync,
    timestamps: bool,
    load_truncated: bool,
    rdb_preamble: bool,
    io_uring: bool,
    manifest_faults: Faults,
    append_faults: Faults,
}

impl AofOptions {
    /// The AOF of the server whose working directory (`dir`) is `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AofOptions {
            dir: dir.into(),
            dirname: "appendonlydir".into(),
            filename: "appendonly.aof".into(),
            fsync: Fsync::EverySec,
            timestamps: false,
            load_truncated: true,
            rdb_preamble: true,
            io_uring: true,
            manifest_faults: Faults::default(),
            append_faults: Faults::default(),
        }
    }
    /// `appenddirname`: the directory under `dir` (a bare name).
    pub fn dirname(mut self, name: impl Into<String>) -> Self {
        self.dirname = name.into();
        self
    }
    /// `appendfilename`: the files' name stem (a bare name).
    pub fn filename(mut self, name: impl Into<String>) -> Self {
        self.filename = name.into();
        self
    }
    /// `appendfsync`.
    pub fn fsync(mut self, f: Fsync) -> Self {
        self.fsync = f;
        self
    }
    /// `aof-timestamp-enabled`: a `#TS:<unix seconds>` line before the first command of
    /// each second.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }
    /// `aof-load-truncated`: accept a last file that ends inside a command (cutting it
    /// back to the last whole one, as Redis does). On by default.
    pub fn load_truncated(mut self, on: bool) -> Self {
        self.load_truncated = on;
        self
    }
    /// `aof-use-rdb-preamble`: a rewrite's base is an RDB (`.base.rdb`, the default: the
    /// fastest to write and to load) or RESP commands (`.base.aof`).
    pub fn rdb_preamble(mut self, on: bool) -> Self {
        self.rdb_preamble = on;
        self
    }
    /// Write and fsync through an io_uring ring (the default) or with `pwrite` and
    /// `fdatasync` (also what happens when the kernel refuses a ring;
    /// [`AppendStats::backend`] says which and why).
    pub fn io_uring(mut self, on: bool) -> Self {
        self.io_uring = on;
        self
    }
    /// Fault plans for tests: `manifest` for the manifest's writes (create, write,
    /// fsync, rename, directory fsync), `append` for the incr files' writes and fsyncs.
    #[cfg(feature = "fault-injection")]
    pub fn faults(mut self, manifest: Faults, append: Faults) -> Self {
        self.manifest_faults = manifest;
        self.append_faults = append;
        self
    }

    /// `dir/appenddirname`.
    pub fn aof_dir(&self) -> PathBuf {
        self.dir.join(&self.dirname)
    }
    fn manifest_path(&self) -> PathBuf {
        self.aof_dir().join(format!("{}.manifest", self.filename))
    }
    fn temp_manifest_path(&self) -> PathBuf {
        self.aof_dir().join(format!("temp-{}.manifest", self.filename))
    }
    fn base_name(&self, seq: i64) -> String {
        let ext = if self.rdb_preamble { "rdb" } else { "aof" };
        format!("{}.{seq}.base.{ext}", self.filename)
    }
    fn incr_name(&self, seq: i64) -> String {
        format!("{}.{seq}.incr.aof", self.filename)
    }
    fn temp_incr_path(&self) -> PathBuf {
        self.aof_dir().join(format!("temp-{}.incr", self.filename))
    }

    fn validate(&self) -> Result<()> {
        for (what, n) in [("appenddirname", &self.dirname), ("appendfilename", &self.filename)] {
            if n.is_empty() || n.contains(['/', '\\']) || n == "." || n == ".." {
                return Err(Error::InvalidOption(format!(
                    "{what} {n:?} must be a bare file name"
                )));
            }
        }
        Ok(())
    }
}

/// Reads the manifest: `None` when there is none.
fn read_manifest(opts: &AofOptions) -> Result<Option<Manifest>> {
    let path = opts.manifest_path();
    match std::fs::read(&path) {
        Ok(data) => Manifest::parse(&data).map(Some).map_err(|e| Error::Aof {
            path,
            at: if e.line > 0 {
                format!("line {}", e.line)
            } else {
                String::new()
            },
            what: e.what,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Writes the manifest as Redis does: temp file, fdatasync, rename, directory fsync.
/// Every step goes through `io` (its fault plan); a failure leaves the old manifest.
fn persist_manifest(io: &mut Io, m: &Manifest) -> Result<()> {
    io.remove_tmp();
    let r = (|| {
        let (fd, _, _) = io.create(Some(false))?;
        io.pwrite_all(&fd, &m.render(), 0)?;
        io.fsync(&fd)?;
        drop(fd);
        io.commit()
    })();
    if r.is_err() {
        io.remove_tmp();
    }
    r
}

/// True when a failed [`persist_manifest`] had already renamed the new manifest into
/// place (only the directory's fsync failed): the change is in effect, and no file it
/// names may be removed.
fn renamed(e: &Error) -> bool {
    matches!(e, Error::Io { op, .. } if *op == crate::sink::io::Step::DirSync.name())
}

/// Every base and incr file the manifest names exists (history is not checked, as in
/// Redis).
fn check_listed(opts: &AofOptions, m: &Manifest) -> Result<()> {
    let dir = opts.aof_dir();
    for f in m.base.iter().chain(&m.incr) {
        let p = name_path(&dir, &f.name);
        if !p.is_file() {
            return Err(Error::Aof {
                path: p,
                at: String::new(),
                what: format!(
                    "listed in the manifest {} but missing",
                    opts.manifest_path().display()
                ),
            });
        }
    }
    Ok(())
}

/// Redis 7's upgrade of a lone `dir/appendfilename` (Redis ≤ 6's single file): it moves
/// into the AOF directory unrenamed and becomes the base of a new manifest. True when it
/// happened.
fn upgrade_if_needed(opts: &AofOptions, io: &mut Io) -> Result<bool> {
    let old = opts.dir.join(&opts.filename);
    if opts.manifest_path().exists() || !old.is_file() {
        return Ok(false);
    }
    let dir = opts.aof_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    let m = Manifest {
        base: Some(FileInfo {
            name: opts.filename.as_bytes().to_vec(),
            seq: 1,
            kind: Kind::Base,
        }),
        ..Manifest::default()
    };
    // The file first: a manifest must never name a file that is not there.
    let moved = dir.join(&opts.filename);
    std::fs::rename(&old, &moved).map_err(|e| Error::io("rename", &moved, e))?;
    if let Err(e) = persist_manifest(io, &m) {
        let _ = std::fs::rename(&moved, &old);
        return Err(e);
    }
    sync_dir(&opts.dir)?;
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn name_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(std::ffi::OsStr::from_bytes(name))
}

/// Opens (creating or truncating) a file for appending at offsets.
fn open_for_append(path: &Path, truncate: bool) -> Result<(OwnedFd, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidOption(format!("{} holds a NUL byte", path.display())))?;
    let mut flags = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC;
    if truncate {
        flags |= libc::O_TRUNC;
    }
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o644) };
    if fd < 0 {
        return Err(Error::io("open", path, std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, file_len(path)))
}

/// The parent's side of the AOF: the manifest, the appender, a running rewrite.
struct Ctl {
    manifest: Manifest,
    io: Io,
    /// No base and no incr yet: appends go to the temp incr file until the first rewrite
    /// commits (Redis's `AOF_WAIT_REWRITE`).
    waiting: bool,
    /// The highest base seq used.
    base_seq: i64,
    /// Sizes of the base and of the incr files before the current one.
    base_size: u64,
    older_incr_size: u64,
    rewrite: Option<rewrite::Running>,
    last_rewrite: Option<Result<RewriteReport, String>>,
    rewrites: u64,
}

/// An open AOF: appends, waits and rewrites. Every method takes `&self` (internal locks),
/// so a multi-threaded server shares it in an `Arc`.
///
/// A server's life with it: at start-up [`Aof::load`] replays the directory into the
/// server's structures (the base's keys through [`LoadVisitor`](crate::LoadVisitor), the
/// commands through [`AofVisitor::command`]); [`Aof::open`] starts appending; each write
/// command is [`append`](Aof::append)ed while its key is still locked, and the reply
/// waits for [`wait`](Aof::wait) (or [`poll_wait`](Aof::poll_wait)); BGREWRITEAOF is
/// [`start_rewrite`](Aof::start_rewrite) with the data frozen, then
/// [`poll_rewrite`](Aof::poll_rewrite) from the server's periodic task.
///
/// ```
/// use forksnap::{Aof, AofOptions, AofVisitor, Fsync, LoadValue, LoadVisitor, MemKeyspace,
///                MemValue, SnapshotOptions, VisitResult};
///
/// let dir = std::env::temp_dir().join(format!("forksnap-aof-doc-{}", std::process::id()));
/// let opts = AofOptions::new(&dir).fsync(Fsync::Always);
/// let mut data = MemKeyspace::new();
///
/// let aof = Aof::open(opts.clone())?;
/// // A new AOF has no base yet: its first rewrite writes one (of the data so far).
/// aof.start_rewrite(&data, &SnapshotOptions::new("unused"))?;
/// while aof.poll_rewrite().is_none() {
///     std::thread::sleep(std::time::Duration::from_millis(5));
/// }
/// // SET greeting hello, in database 0: change the data, log the command, then reply.
/// data.insert(0, "greeting", MemValue::str("hello"), None);
/// let lsn = aof.append(0, &[b"SET", b"greeting", b"hello"]);
/// aof.wait(lsn)?; // on disk (fdatasync'ed): the client may be told OK
/// aof.close()?;
///
/// // At the next start: replay.
/// struct Replay(Vec<Vec<Vec<u8>>>);
/// impl LoadVisitor for Replay {
///     fn key(&mut self, _: u32, _: &[u8], _: Option<i64>, _: LoadValue<'_>) -> VisitResult {
///         Ok(()) // the base's keys (none here)
///     }
/// }
/// impl AofVisitor for Replay {
///     fn command(&mut self, _db: u32, argv: &[&[u8]]) -> VisitResult {
///         self.0.push(argv.iter().map(|a| a.to_vec()).collect());
///         Ok(())
///     }
/// }
/// let mut replay = Replay(Vec::new());
/// let report = Aof::load(&opts, &mut replay)?.expect("an AOF");
/// assert_eq!(replay.0, [[b"SET".to_vec(), b"greeting".to_vec(), b"hello".to_vec()]]);
/// assert_eq!(report.files.len(), 2); // the base and one incr file
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), forksnap::Error>(())
/// ```
pub struct Aof {
    opts: AofOptions,
    ctl: Mutex<Ctl>,
    app: append::Appender,
}

/// Sizes and states for `INFO persistence`.
#[derive(Clone, Debug)]
pub struct AofStats {
    /// The appender's counters.
    pub append: AppendStats,
    /// Base plus incr files, bytes (`aof_current_size`).
    pub current_size: u64,
    /// The base's size (`aof_base_size`).
    pub base_size: u64,
    /// A rewrite is running (`aof_rewrite_in_progress`).
    pub rewrite_running: bool,
    /// The running rewrite's child: keys and bytes so far.
    pub rewrite_progress: Option<crate::fork::Progress>,
    /// No base yet: a rewrite must run before the AOF can be loaded.
    pub needs_rewrite: bool,
    /// Rewrites committed since open.
    pub rewrites: u64,
    /// How the last rewrite ended: `Ok` or the error's text.
    pub last_rewrite: Option<Result<RewriteReport, String>>,
}

impl Aof {
    /// Opens the AOF for appending, after [`Aof::load`] (or on an empty dataset): upgrades
    /// a Redis ≤ 6 single file, creates the directory, continues the last incr file (or
    /// starts one), persists the manifest and deletes history files. With no base and no
    /// incr yet, [`stats`](Aof::stats)`.needs_rewrite` is true: appends are kept in a
    /// temp file, and the server must run [`start_rewrite`](Aof::start_rewrite) (as
    /// Redis does when AOF is switched on) before the directory holds a loadable AOF.
    pub fn open(opts: AofOptions) -> Result<Aof> {
        opts.validate()?;
        let dir = opts.aof_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let mut io = Io::new(
            opts.temp_manifest_path(),
            opts.manifest_path(),
            opts.manifest_faults.clone(),
        );
        upgrade_if_needed(&opts, &mut io)?;
        let mut manifest = read_manifest(&opts)?.unwrap_or_default();
        check_listed(&opts, &manifest)?;
        let waiting = manifest.base.is_none() && manifest.incr.is_empty();
        let (fd, path, len) = if waiting {
            let p = opts.temp_incr_path();
            let (fd, len) = open_for_append(&p, true)?;
            (fd, p, len)
        } else {
            let before = manifest.clone();
            if manifest.incr.is_empty() {
                manifest.incr.push(FileInfo {
                    name: opts.incr_name(1).into_bytes(),
                    seq: 1,
                    kind: Kind::Incr,
                });
            }
            let last = manifest.incr.last().expect("one incr").clone();
            let p = name_path(&dir, &last.name);
            let (fd, len) = open_for_append(&p, false)?;
            let history: Vec<FileInfo> = std::mem::take(&mut manifest.history);
            if manifest != before || !history.is_empty() {
                if let Err(e) = persist_manifest(&mut io, &manifest) {
                    manifest.history = history;
                    return Err(e);
                }
                for h in &history {
                    let _ = std::fs::remove_file(name_path(&dir, &h.name));
                }
            }
            (fd, p, len)
        };
        let base_size = manifest
            .base
            .as_ref()
            .map_or(0, |b| file_len(&name_path(&dir, &b.name)));
        let older_incr_size = manifest
            .incr
            .iter()
            .rev()
            .skip(1)
            .map(|f| file_len(&name_path(&dir, &f.name)))
            .sum();
        let base_seq = manifest.base.as_ref().map_or(0, |b| b.seq);
        let app = append::Appender::start(
            fd,
            path,
            len,
            opts.fsync,
            opts.timestamps,
            opts.io_uring,
            opts.append_faults.clone(),
        )?;
        Ok(Aof {
            ctl: Mutex::new(Ctl {
                manifest,
                io,
                waiting,
                base_seq,
                base_size,
                older_incr_size,
                rewrite: None,
                last_rewrite: None,
                rewrites: 0,
            }),
            opts,
            app,
        })
    }

    fn ctl(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs one write command, in its propagated form (absolute expiries, as Redis 7
    /// logs them), for database `db`; a `SELECT` goes first when the database changes.
    /// Call it while the change is still invisible to other clients (under the key's
    /// lock), so the AOF's order is the order the data changed in. Returns the command's
    /// LSN for [`wait`](Aof::wait). Never blocks on I/O.
    pub fn append(&self, db: u32, argv: &[&[u8]]) -> u64 {
        self.app.append(db, argv)
    }

    /// Several commands applied as one unit, logged inside `MULTI` … `EXEC` so that a
    /// load applies all or none of them.
    pub fn append_multi(&self, db: u32, commands: &[&[&[u8]]]) -> u64 {
        self.app.append_multi(db, commands)
    }

    /// Blocks until the command with LSN `lsn` is safe by the fsync policy (written; and
    /// fsynced under [`Fsync::Always`]): reply to the client after this. An error when a
    /// write or fsync failed (it stays failed until a later write succeeds).
    pub fn wait(&self, lsn: u64) -> Result<()> {
        self.app.wait(lsn)
    }

    /// [`wait`](Aof::wait) without blocking: `None` while pending (the writer is asked
    /// to write it now; the function given to [`set_waker`](Aof::set_waker) is called
    /// when there is news).
    pub fn poll_wait(&self, lsn: u64) -> Option<Result<()>> {
        self.app.poll(lsn)
    }

    /// A function the writer thread calls after each write, fsync or error, for an event
    /// loop that waits with [`poll_wait`](Aof::poll_wait) (e.g. a tokio `Notify`). It
    /// must not block.
    pub fn set_waker(&self, f: impl Fn() + Send + Sync + 'static) {
        self.app.set_waker(Box::new(f))
    }

    /// The LSN of the last command appended.
    pub fn lsn(&self) -> u64 {
        self.app.lsn()
    }

    /// Sizes, counters and the rewrite's state.
    pub fn stats(&self) -> AofStats {
        let append = self.app.stats();
        let ctl = self.ctl();
        AofStats {
            current_size: ctl.base_size + ctl.older_incr_size + append.incr_size + append.buffered,
            base_size: ctl.base_size,
            append,
            rewrite_running: ctl.rewrite.is_some(),
            rewrite_progress: ctl.rewrite.as_ref().map(|r| r.progress()),
            needs_rewrite: ctl.waiting,
            rewrites: ctl.rewrites,
            last_rewrite: ctl.last_rewrite.clone(),
        }
    }

    /// The AOF directory.
    pub fn dir(&self) -> PathBuf {
        self.opts.aof_dir()
    }

    /// Writes and fsyncs everything appended, aborts a running rewrite, and stops the
    /// writer thread (SHUTDOWN, or switching AOF off).
    pub fn close(self) -> Result<()> {
        if let Some(r) = self.ctl().rewrite.take() {
            r.abort();
        }
        self.app.close()
    }
}
