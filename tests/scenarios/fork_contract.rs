//! The fork contract, the library's side: what a real server (threads, a runtime, its own
//! sockets and signal handling, locks) can count on when it calls `start`.

use crate::common::{self, datasets, helper, helper_mode, say};
use forksnap::{
    DbInfo, Entry, Error, HashView, Keyspace, MemKeyspace, SeqView, SnapshotOptions, Value,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A keyspace whose child takes `delay` before walking (in `databases`, which runs in the
/// child), so the parent can act while the child is surely running.
struct Slow<'a> {
    inner: &'a MemKeyspace,
    delay: Duration,
}

impl Keyspace for Slow<'_> {
    fn databases(&self) -> Vec<DbInfo> {
        std::thread::sleep(self.delay);
        self.inner.databases()
    }
    fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        self.inner.walk(db, visit)
    }
}

fn loaded_keys(path: &std::path::Path) -> usize {
    let data = std::fs::read(path).unwrap();
    forksnap::rdb::load(&data, &Default::default())
        .unwrap()
        .0
        .len()
}

/// A tokio-style blocking pool retires the thread that called `start`; the child must not
/// die with that thread (PR_SET_PDEATHSIG would kill it).
#[test]
fn the_child_outlives_the_thread_that_started_it() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(10_000, 100);
    let slow = Slow {
        inner: &ks,
        delay: Duration::from_millis(500),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    let opts = SnapshotOptions::new(&path);
    let running = std::thread::scope(|s| {
        s.spawn(|| {
            let r = opts.start(&slow).unwrap();
            // Long enough for the child to be set up, well within its 500 ms delay.
            std::thread::sleep(Duration::from_millis(100));
            r
        })
        .join()
        .unwrap()
    });
    // The starting thread has exited; the child is still in its delay.
    let report = running.wait().expect("the child survived its thread");
    assert_eq!(report.keys(), 10_000);
    assert_eq!(loaded_keys(&path), 10_000);
}

/// Success is decided by the child's final report: a server that ignores SIGCHLD (the
/// kernel reaps for it) or reaps children itself still gets its report.
#[test]
fn sigchld_ignored_or_reaped_elsewhere_still_reports() {
    if let Some((mode, target)) = helper_mode() {
        let ks = datasets::populate(20_000, 100);
        let slow = Slow {
            inner: &ks,
            delay: Duration::from_millis(300),
        };
        match mode.as_str() {
            // SAFETY: this helper process is ours alone; SIG_IGN is a valid disposition.
            "sigign" => unsafe {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            },
            "reaper" => {
                std::thread::spawn(|| loop {
                    let mut st = 0;
                    // SAFETY: reaping any child of this helper process.
                    if unsafe { libc::waitpid(-1, &mut st, 0) } < 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
            }
            _ => unreachable!("unknown helper mode {mode}"),
        }
        match SnapshotOptions::new(&target)
            .start(&slow)
            .and_then(|r| r.wait())
        {
            Ok(r) => say(&format!("OK {}", r.keys())),
            Err(e) => say(&format!("ERR {e}")),
        }
        std::process::exit(0);
    }
    for mode in ["sigign", "reaper"] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dump.rdb");
        let (lines, code) = helper(
            "fork_contract::sigchld_ignored_or_reaped_elsewhere_still_reports",
            mode,
            &target,
        );
        assert_eq!(code, Some(0), "{mode}: helper {lines:?}");
        assert_eq!(lines, ["HELPER OK 20000"], "{mode}");
        assert_eq!(loaded_keys(&target), 20_000, "{mode}");
    }
}

/// The child closes the sockets it inherited: a client whose connection the parent
/// closes during a snapshot sees the end of it at once, and the closed listener refuses.
#[test]
fn sockets_the_parent_closes_close_for_their_peers() {
    let _serial = common::fork_lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let (served, _) = listener.accept().unwrap();
    let ks = datasets::populate(1000, 10);
    let slow = Slow {
        inner: &ks,
        delay: Duration::from_millis(1500),
    };
    let dir = tempfile::tempdir().unwrap();
    let running = SnapshotOptions::new(dir.path().join("dump.rdb"))
        .start(&slow)
        .unwrap();
    drop(served);
    drop(listener);
    client
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 16];
    let got = client.read(&mut buf);
    assert!(
        matches!(got, Ok(0)),
        "the client did not see the close while the child ran: {got:?}"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the closed listener still accepts (the child holds it)"
    );
    assert_eq!(running.wait().unwrap().keys(), 1000);
}

/// A descriptor the caller keeps stays open in the child.
#[test]
fn kept_descriptors_stay_open_in_the_child() {
    let _serial = common::fork_lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ks = datasets::populate(1000, 10);
    let slow = Slow {
        inner: &ks,
        delay: Duration::from_millis(1000),
    };
    let dir = tempfile::tempdir().unwrap();
    let running = SnapshotOptions::new(dir.path().join("dump.rdb"))
        .keep_fd(listener.as_raw_fd())
        .start(&slow)
        .unwrap();
    drop(listener);
    // The child's copy still listens (the kernel completes the handshake).
    assert!(std::net::TcpStream::connect(addr).is_ok());
    assert_eq!(running.wait().unwrap().keys(), 1000);
}

/// A set view that says it has more members than it yields.
struct LyingSet;

impl SeqView for LyingSet {
    fn len(&self) -> usize {
        3
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8])) {
        f(b"a");
        f(b"b");
    }
}

struct LyingHash;

impl HashView for LyingHash {
    fn len(&self) -> usize {
        1
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        f(b"f1", b"v");
        f(b"f2", b"v");
    }
}

struct Liar {
    hash: bool,
    big: Vec<Vec<u8>>,
}

impl Keyspace for Liar {
    fn databases(&self) -> Vec<DbInfo> {
        vec![DbInfo {
            index: 0,
            keys: 2,
            expires: 0,
        }]
    }
    fn walk(&self, _db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        let ok = Entry {
            key: b"fine",
            expire_ms: None,
            value: Value::Set(&self.big),
        };
        if visit(&ok).is_break() {
            return;
        }
        let value = if self.hash {
            Value::Hash(&LyingHash)
        } else {
            Value::Set(&LyingSet)
        };
        let _ = visit(&Entry {
            key: b"the-liar",
            expire_ms: None,
            value,
        });
    }
}

/// A view whose len() disagrees with its for_each fails the snapshot with an error that
/// names the key, forked or not, at every version; the target stays as it was.
#[test]
fn a_view_whose_len_lies_is_an_error_naming_the_key() {
    let _serial = common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous").unwrap();
    for hash in [false, true] {
        // 600 members: the plain (length-prefixed) encoding, not a listpack.
        let big: Vec<Vec<u8>> = (0..600).map(|i| format!("m{i}").into_bytes()).collect();
        let ks = Liar { hash, big };
        for version in [9u8, 10, 11] {
            for fork in [true, false] {
                let opts = SnapshotOptions::new(&target).rdb_version(version);
                let r = if fork {
                    opts.start(&ks).and_then(|r| r.wait())
                } else {
                    opts.save(&ks)
                };
                match r {
                    Err(Error::BadValue { key, what }) => {
                        assert_eq!(key, "the-liar");
                        assert!(what.contains("len()"), "{what}");
                    }
                    other => panic!("hash {hash} v{version} fork {fork}: {other:?}"),
                }
                assert_eq!(std::fs::read(&target).unwrap(), b"previous");
                assert!(common::temp_files(dir.path()).is_empty());
            }
        }
    }
}

/// A single-threaded server's data (`Rc<RefCell<…>>`, neither Send nor Sync) implements
/// Keyspace and snapshots.
#[test]
fn an_rc_refcell_keyspace_snapshots() {
    type Hashes = HashMap<Vec<u8>, HashMap<Vec<u8>, Vec<u8>>>;
    struct Single {
        data: Rc<RefCell<Hashes>>,
    }
    impl Keyspace for Single {
        fn databases(&self) -> Vec<DbInfo> {
            let keys = self.data.borrow().len() as u64;
            vec![DbInfo {
                index: 0,
                keys,
                expires: 0,
            }]
        }
        fn walk(&self, _db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
            for (k, h) in self.data.borrow().iter() {
                let e = Entry {
                    key: k,
                    expire_ms: None,
                    value: Value::Hash(h),
                };
                if visit(&e).is_break() {
                    return;
                }
            }
        }
    }
    let _serial = common::fork_lock();
    let data = Rc::new(RefCell::new(HashMap::new()));
    for i in 0..100 {
        let h: HashMap<Vec<u8>, Vec<u8>> = [(b"f".to_vec(), format!("{i}").into_bytes())].into();
        data.borrow_mut()
            .insert(format!("user:{i}").into_bytes(), h);
    }
    let ks = Single { data: data.clone() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    let report = SnapshotOptions::new(&path)
        .start(&ks)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.keys(), 100);
    assert_eq!(loaded_keys(&path), 100);
}

/// An event loop waits on the report descriptor instead of a timer: every wake-up is a
/// report or the child's exit.
#[test]
fn an_event_loop_can_wait_on_the_report_descriptor() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(200_000, 100);
    let dir = tempfile::tempdir().unwrap();
    let mut running = SnapshotOptions::new(dir.path().join("dump.rdb"))
        .start(&ks)
        .unwrap();
    let mut wakes = 0;
    let report = loop {
        let mut p = libc::pollfd {
            fd: running.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 10_000) };
        assert_eq!(n, 1, "no report or exit within 10 s");
        wakes += 1;
        if let Some(r) = running.poll().unwrap() {
            break r;
        }
        if p.revents & libc::POLLHUP != 0 {
            // Exited; the status may lag the pipe's close by a moment.
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(wakes < 10_000, "the descriptor never settles");
    };
    assert_eq!(report.keys(), 200_000);
}

/// `ctime` is the time of `start`, not of building the options.
#[test]
fn ctime_is_taken_when_the_snapshot_starts() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(10, 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    let opts = SnapshotOptions::new(&path);
    let secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let built = secs();
    while secs() == built {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = secs();
    opts.start(&ks).unwrap().wait().unwrap();
    let (_, report) =
        forksnap::rdb::load(&std::fs::read(&path).unwrap(), &Default::default()).unwrap();
    let ctime: i64 = report
        .aux
        .iter()
        .find(|(k, _)| k == b"ctime")
        .map(|(_, v)| String::from_utf8_lossy(v).parse().unwrap())
        .unwrap();
    assert!(
        ctime >= started,
        "ctime {ctime} is from before start ({started})"
    );
}

/// Paths of hundreds of bytes: the child's reports carry no path, so nothing is cut or
/// overflows; a failure names the temp file under the long directory.
#[test]
fn long_paths_are_reported_whole() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(1000, 10);
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("d".repeat(200)).join("e".repeat(200));
    std::fs::create_dir_all(&long).unwrap();
    let path = long.join("dump.rdb");
    let r = SnapshotOptions::new(&path).start(&ks).unwrap().wait();
    assert_eq!(r.unwrap().keys(), 1000);
    let missing = long.join("f".repeat(200)).join("dump.rdb");
    match SnapshotOptions::new(&missing).start(&ks).unwrap().wait() {
        Err(Error::Io { op, path, .. }) => {
            assert_eq!(op, "create");
            assert_eq!(path.parent(), missing.parent(), "{}", path.display());
        }
        other => panic!("expected a create error, got {other:?}"),
    }
}

/// Under RLIMIT_FSIZE an in-process save fails with EFBIG naming the write, instead of
/// SIGXFSZ killing the process; the signal's disposition is restored afterwards.
#[test]
fn file_size_limit_in_process_is_an_error() {
    if let Some((_, target)) = helper_mode() {
        let ks = datasets::populate(100_000, 100);
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit on this helper process with a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) };
        match SnapshotOptions::new(&target).lzf(false).save(&ks) {
            Err(Error::Io {
                op, source, path, ..
            }) => say(&format!(
                "ERR {op} {} temp {}",
                source.raw_os_error().unwrap_or(0),
                path.exists()
            )),
            other => say(&format!("UNEXPECTED {other:?}")),
        }
        // SAFETY: reading the current disposition into a zeroed sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old) };
        say(&format!(
            "SIGXFSZ default {}",
            old.sa_sigaction == libc::SIG_DFL
        ));
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    let (lines, code) = helper(
        "fork_contract::file_size_limit_in_process_is_an_error",
        "fsize",
        &target,
    );
    assert_eq!(code, Some(0), "the helper died: {lines:?}");
    assert_eq!(
        lines,
        [
            format!("HELPER ERR write {} temp false", libc::EFBIG),
            "HELPER SIGXFSZ default true".to_string()
        ]
    );
    assert!(!target.exists());
    assert!(common::temp_files(dir.path()).is_empty());
}

/// A walk that blocks on a lock held (by another thread) at fork never returns; the
/// parent kills the child after the stall timeout and says what probably happened.
#[test]
fn a_walk_blocked_on_a_lock_is_a_stall_error() {
    struct Locked<'a> {
        lock: &'a Mutex<MemKeyspace>,
    }
    impl Keyspace for Locked<'_> {
        fn databases(&self) -> Vec<DbInfo> {
            self.lock.lock().unwrap().databases()
        }
        fn walk(&self, db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
            self.lock.lock().unwrap().walk(db, visit)
        }
    }
    let _serial = common::fork_lock();
    let lock = Mutex::new(datasets::populate(100, 10));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous").unwrap();
    let ks = Locked { lock: &lock };
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let lock = &lock;
        s.spawn(move || {
            let _guard = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = go_rx.recv();
        });
        held_rx.recv().unwrap();
        // Another thread holds the lock at fork: in the child it stays held for ever.
        let t = Instant::now();
        let running = SnapshotOptions::new(&target)
            .stall_timeout(Some(Duration::from_secs(1)))
            .start(&ks)
            .unwrap();
        go_tx.send(()).unwrap();
        match running.wait() {
            Err(Error::Stalled { seconds, keys }) => {
                assert!(seconds >= 1 && keys == 0, "{seconds} s, {keys} keys");
                let msg = Error::Stalled { seconds, keys }.to_string();
                assert!(msg.contains("lock"), "{msg}");
            }
            other => panic!("expected a stall, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(30));
    });
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");
    assert!(common::temp_files(dir.path()).is_empty());
}

/// A keyspace holding one collection with a repeated member, for every encoding.
#[derive(Clone, Copy)]
enum Shape {
    Set,
    IntSet,
    Hash,
    ZSet,
}

struct WithDuplicate {
    shape: Shape,
    members: Vec<Vec<u8>>,
    ints: Vec<Vec<u8>>,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    scored: Vec<(Vec<u8>, f64)>,
}

impl Keyspace for WithDuplicate {
    fn databases(&self) -> Vec<DbInfo> {
        vec![DbInfo {
            index: 0,
            keys: 1,
            expires: 0,
        }]
    }
    fn walk(&self, _db: u32, visit: &mut dyn FnMut(&Entry<'_>) -> ControlFlow<()>) {
        let value = match self.shape {
            Shape::Set => Value::Set(&self.members),
            Shape::IntSet => Value::Set(&self.ints),
            Shape::Hash => Value::Hash(&self.fields),
            Shape::ZSet => Value::ZSet(&self.scored),
        };
        let _ = visit(&Entry {
            key: b"dup-key",
            expire_ms: None,
            value,
        });
    }
}

/// Duplicate set members, hash fields or sorted-set members from a server's views fail
/// the snapshot with an error naming the key and the member, in every encoding, forked or
/// not: never a file with a valid CRC that Redis refuses.
#[test]
fn duplicate_members_are_an_error_naming_the_key() {
    let _serial = common::fork_lock();
    let with_dup = |n: usize, long: bool| -> Vec<Vec<u8>> {
        let pad = if long { "x".repeat(100) } else { String::new() };
        let mut v: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}{pad}").into_bytes()).collect();
        v.push(v[n / 2].clone());
        v
    };
    let cases: Vec<(&str, WithDuplicate)> = vec![
        ("small set", Shape::Set, with_dup(5, false)),
        ("large set", Shape::Set, with_dup(1000, false)),
        ("long-member set", Shape::Set, with_dup(5, true)),
        ("intset", Shape::IntSet, Vec::new()),
        ("small hash", Shape::Hash, with_dup(5, false)),
        ("large hash", Shape::Hash, with_dup(1000, false)),
        ("small zset", Shape::ZSet, with_dup(5, false)),
        ("large zset", Shape::ZSet, with_dup(1000, false)),
    ]
    .into_iter()
    .map(|(name, shape, members)| {
        let ks = WithDuplicate {
            shape,
            ints: vec![b"1".to_vec(), b"7".to_vec(), b"3".to_vec(), b"7".to_vec()],
            fields: members.iter().map(|m| (m.clone(), b"v".to_vec())).collect(),
            scored: members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), i as f64))
                .collect(),
            members,
        };
        (name, ks)
    })
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous").unwrap();
    for (name, ks) in &cases {
        for version in [9u8, 10, 11] {
            for fork in [true, false] {
                let opts = SnapshotOptions::new(&target).rdb_version(version);
                let r = if fork {
                    opts.start(ks).and_then(|r| r.wait())
                } else {
                    opts.save(ks)
                };
                match r {
                    Err(Error::BadValue { key, what }) => {
                        assert_eq!(key, "dup-key", "{name}");
                        assert!(what.contains("appears twice"), "{name}: {what}");
                    }
                    other => panic!("{name} v{version} fork {fork}: {other:?}"),
                }
                assert_eq!(std::fs::read(&target).unwrap(), b"previous");
                assert!(common::temp_files(dir.path()).is_empty());
            }
        }
    }
}
