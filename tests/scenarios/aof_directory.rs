//! forksnap's AOF directory on its own: what is appended and rewritten loads back as the
//! same data; a rewrite or manifest update failing at any I/O step (ENOSPC, EIO), or its
//! child failing, leaves a directory that loads the same data; truncated, damaged and
//! incomplete directories are refused (or cut back) as Redis does, deleting nothing;
//! Redis ≤ 6's single file is upgraded.

use forksnap::{
    Aof, AofOptions, AofVisitor, DbInfo, Error, Faults, Fsync, LoadValue, LoadVisitor, MemKeyspace,
    MemValue, SnapshotOptions, Step, VisitResult,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Loads into a keyspace: the base's keys as they are, commands through a tiny
/// interpreter (SET and DEL are all these tests write).
#[derive(Default)]
struct Replay {
    ks: MemKeyspace,
    commands: u64,
}

impl LoadVisitor for Replay {
    fn begin_db(&mut self, db: DbInfo) -> VisitResult {
        self.ks.begin_db(db)
    }
    fn key(&mut self, db: u32, key: &[u8], exp: Option<i64>, v: LoadValue<'_>) -> VisitResult {
        self.ks.key(db, key, exp, v)
    }
}

impl AofVisitor for Replay {
    fn command(&mut self, db: u32, argv: &[&[u8]]) -> VisitResult {
        self.commands += 1;
        apply(&mut self.ks, db, argv)
    }
}

fn apply(ks: &mut MemKeyspace, db: u32, argv: &[&[u8]]) -> VisitResult {
    match (argv[0].to_ascii_uppercase().as_slice(), argv.len()) {
        (b"SET", 3) => {
            ks.insert(db, argv[1], MemValue::str(argv[2]), None);
        }
        (b"DEL", 2) => {
            ks.db_mut(db).remove(argv[1]);
        }
        _ => return Err(format!("unknown command {:?}", String::from_utf8_lossy(argv[0])).into()),
    }
    Ok(())
}

fn load(opts: &AofOptions) -> forksnap::Result<Option<(MemKeyspace, forksnap::AofLoadReport)>> {
    let mut r = Replay::default();
    Ok(Aof::load(opts, &mut r)?.map(|rep| (r.ks, rep)))
}

fn loaded(opts: &AofOptions) -> MemKeyspace {
    load(opts).unwrap().expect("an AOF").0
}

/// Appends SETs (and a DEL) through `aof` and applies them to `state`.
fn write(aof: &Aof, state: &mut MemKeyspace, tag: &str, n: usize) -> u64 {
    let mut lsn = 0;
    for i in 0..n {
        let (db, k, v) = ((i % 3) as u32, format!("{tag}:{i}"), format!("v{i}"));
        let argv: [&[u8]; 3] = [b"SET", k.as_bytes(), v.as_bytes()];
        lsn = aof.append(db, &argv);
        apply(state, db, &argv).unwrap();
    }
    let k = format!("{tag}:0");
    lsn = lsn.max(aof.append(0, &[b"DEL", k.as_bytes()]));
    apply(state, 0, &[b"DEL", k.as_bytes()]).unwrap();
    lsn
}

fn rewrite(aof: &Aof, state: &MemKeyspace, tuning: &SnapshotOptions) -> forksnap::Result<()> {
    aof.start_rewrite(state, tuning)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = aof.poll_rewrite() {
            return r.map(|_| ());
        }
        assert!(
            Instant::now() < deadline,
            "rewrite still running after 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tuning() -> SnapshotOptions {
    SnapshotOptions::new("unused-the-aof-names-its-base")
}

fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A directory with a committed base and incr files: (dir guard, options, the data).
fn committed(fsync: Fsync) -> (tempfile::TempDir, AofOptions, MemKeyspace) {
    committed_with(fsync, true)
}

fn committed_with(fsync: Fsync, ring: bool) -> (tempfile::TempDir, AofOptions, MemKeyspace) {
    let _g = crate::common::fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let opts = AofOptions::new(dir.path()).fsync(fsync).io_uring(ring);
    let mut state = MemKeyspace::new();
    let aof = Aof::open(opts.clone()).unwrap();
    let backend = aof.stats().append.backend;
    assert_eq!(backend.starts_with("io_uring"), ring, "{backend}");
    assert!(aof.stats().needs_rewrite, "a new AOF needs its first base");
    // Written before the first rewrite: in its base, not replayed twice.
    write(&aof, &mut state, "early", 50);
    rewrite(&aof, &state, &tuning()).unwrap();
    let lsn = write(&aof, &mut state, "a", 300);
    aof.wait(lsn).unwrap();
    rewrite(&aof, &state, &tuning()).unwrap();
    write(&aof, &mut state, "b", 200);
    aof.close().unwrap();
    (dir, opts, state)
}

#[test]
fn appends_and_rewrites_load_back_as_the_same_data() {
    for (fsync, ring) in [
        (Fsync::Always, true),
        (Fsync::EverySec, true),
        (Fsync::No, true),
        (Fsync::Always, false),
        (Fsync::EverySec, false),
    ] {
        let (dir, opts, state) = committed_with(fsync, ring);
        let (ks, rep) = load(&opts).unwrap().unwrap();
        crate::common::assert_same_data(&ks, &state);
        assert_eq!(rep.files.len(), 2, "{:?}", rep.files);
        assert_eq!(rep.commands, 201, "the last incr's commands only");
        let rdb = rep.rdb.expect("an RDB preamble");
        assert!(
            rdb.aux.iter().any(|(k, v)| k == b"aof-base" && v == b"1"),
            "{:?}",
            rdb.aux
        );
        let names: Vec<String> = files(&opts.aof_dir()).into_iter().map(|f| f.0).collect();
        assert_eq!(
            names,
            [
                "appendonly.aof.2.base.rdb",
                "appendonly.aof.2.incr.aof",
                "appendonly.aof.manifest"
            ],
            "history deleted, nothing else left"
        );
        drop(dir);
    }
}

#[test]
fn a_failed_step_of_a_rewrite_or_manifest_update_keeps_the_data() {
    let mut failures = 0;
    for step in [
        Step::Create,
        Step::Write,
        Step::Fsync,
        Step::Rename,
        Step::DirSync,
    ] {
        for nth in 1..=3 {
            for errno in [libc::ENOSPC, libc::EIO] {
                let (_dir, opts, mut state) = committed(Fsync::EverySec);
                let _g = crate::common::fork_lock();
                let faulty = opts
                    .clone()
                    .faults(Faults::default().fail(step, nth, errno), Faults::default());
                let aof = Aof::open(faulty).unwrap();
                write(&aof, &mut state, "c", 100);
                let r = rewrite(&aof, &state, &tuning());
                if let Err(e) = &r {
                    failures += 1;
                    assert!(
                        matches!(e, Error::Io { op, .. } if *op == step.name()),
                        "{step:?} #{nth}: {e}"
                    );
                }
                write(&aof, &mut state, "d", 100);
                aof.close().unwrap();
                crate::common::assert_same_data(&loaded(&opts), &state);
                // And the next rewrite, without faults, works.
                let aof = Aof::open(opts.clone()).unwrap();
                rewrite(&aof, &state, &tuning()).unwrap();
                aof.close().unwrap();
                crate::common::assert_same_data(&loaded(&opts), &state);
            }
        }
    }
    eprintln!(
        "{failures} of 30 rewrites failed at their injected step; the data loaded every time"
    );
    assert!(
        failures >= 10,
        "only {failures} runs failed: the faults did not fire"
    );
}

#[test]
fn a_failed_rewrite_child_keeps_the_data() {
    for errno in [libc::ENOSPC, libc::EIO] {
        let (_dir, opts, mut state) = committed(Fsync::Always);
        let _g = crate::common::fork_lock();
        let aof = Aof::open(opts.clone()).unwrap();
        write(&aof, &mut state, "c", 100);
        let t = tuning().faults(Faults::default().fail(Step::Write, 1, errno));
        let e = rewrite(&aof, &state, &t).unwrap_err();
        assert!(matches!(e, Error::Io { op: "write", .. }), "{e}");
        assert!(aof.stats().last_rewrite.unwrap().is_err());
        write(&aof, &mut state, "d", 10);
        aof.close().unwrap();
        crate::common::assert_same_data(&loaded(&opts), &state);
    }
}

#[test]
fn a_cut_off_last_file_is_cut_back_and_elsewhere_refused() {
    let (_dir, opts, state) = committed(Fsync::Always);
    let aofdir = opts.aof_dir();
    let incr = aofdir.join("appendonly.aof.2.incr.aof");
    let whole = std::fs::read(&incr).unwrap();
    // A torn last command: cut back, reported, and the file truncated on disk.
    let mut torn = whole.clone();
    torn.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$5\r\nval");
    std::fs::write(&incr, &torn).unwrap();
    let (ks, rep) = load(&opts).unwrap().unwrap();
    crate::common::assert_same_data(&ks, &state);
    let (f, cut) = rep.truncated.unwrap();
    assert_eq!((f, cut), (incr.clone(), (torn.len() - whole.len()) as u64));
    assert_eq!(std::fs::read(&incr).unwrap(), whole);
    // A transaction without its EXEC at the end is cut back whole.
    let mut open_multi = whole.clone();
    open_multi.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n");
    std::fs::write(&incr, &open_multi).unwrap();
    let (ks, _) = load(&opts).unwrap().unwrap();
    assert!(ks.db(0).unwrap().get(b"x").is_none());
    // With aof-load-truncated off: an error naming the file and the byte; nothing cut.
    std::fs::write(&incr, &torn).unwrap();
    let e = load(&opts.clone().load_truncated(false)).unwrap_err();
    assert!(
        matches!(&e, Error::Aof { path, at, .. } if *path == incr && *at == format!("byte {}", whole.len())),
        "{e}"
    );
    assert_eq!(std::fs::read(&incr).unwrap(), torn);
    // A torn command in a file that is not the last: refused.
    std::fs::write(&incr, &whole).unwrap();
    let manifest = opts.aof_dir().join("appendonly.aof.manifest");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}file appendonly.aof.3.incr.aof seq 3 type i\n"),
    )
    .unwrap();
    std::fs::write(aofdir.join("appendonly.aof.3.incr.aof"), b"").unwrap();
    std::fs::write(&incr, &torn).unwrap();
    let e = load(&opts).unwrap_err();
    assert!(e.to_string().contains("only the last file"), "{e}");
    assert_eq!(std::fs::read(&incr).unwrap(), torn, "nothing cut");
}

#[test]
fn damaged_or_incomplete_directories_are_refused_and_nothing_is_deleted() {
    let (_dir, opts, _) = committed(Fsync::No);
    let aofdir = opts.aof_dir();
    let manifest = aofdir.join("appendonly.aof.manifest");
    let good = std::fs::read(&manifest).unwrap();
    let cases: &[(&[u8], &str)] = &[
        (
            b"file appendonly.aof.2.base.rdb seq 2 type b\nfile x seq 1 type q\n",
            "line 2: Unknown AOF file type",
        ),
        (b"", "empty AOF manifest"),
        (
            b"file ../etc/passwd seq 1 type b\n",
            "line 1: File can't be a path",
        ),
        (
            b"file appendonly.aof.2.base.rdb seq 2 type b\nfile missing.aof seq 9 type i\n",
            "missing",
        ),
    ];
    for (text, what) in cases {
        std::fs::write(&manifest, text).unwrap();
        let before = files(&aofdir);
        let e = load(&opts).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
        assert!(matches!(e, Error::Aof { .. }), "{e:?}");
        let e = Aof::open(opts.clone()).err().expect("open refuses it too");
        assert!(matches!(e, Error::Aof { .. }), "{e:?}");
        assert_eq!(files(&aofdir), before, "something changed on disk");
    }
    // A malformed command: refused with its byte offset.
    std::fs::write(&manifest, &good).unwrap();
    let incr = aofdir.join("appendonly.aof.2.incr.aof");
    let mut bad = std::fs::read(&incr).unwrap();
    let at = bad.len();
    bad.extend_from_slice(b"+OK\r\n");
    std::fs::write(&incr, &bad).unwrap();
    let e = load(&opts).unwrap_err();
    assert!(e.to_string().contains(&format!("byte {at}")), "{e}");
}

#[test]
fn a_redis_6_single_file_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let old = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    std::fs::write(dir.path().join("appendonly.aof"), old).unwrap();
    let opts = AofOptions::new(dir.path());
    let (ks, rep) = load(&opts).unwrap().unwrap();
    assert!(rep.upgraded);
    assert_eq!(ks.db(0).unwrap().get(b"k").unwrap().0, &MemValue::str("v"));
    assert!(!dir.path().join("appendonly.aof").exists());
    assert_eq!(
        std::fs::read_to_string(opts.aof_dir().join("appendonly.aof.manifest")).unwrap(),
        "file appendonly.aof seq 1 type b\n"
    );
    // Opening for appends adds Redis's first incr file.
    let aof = Aof::open(opts.clone()).unwrap();
    aof.wait(aof.append(0, &[b"SET", b"k2", b"v2"])).unwrap();
    aof.close().unwrap();
    assert_eq!(
        std::fs::read_to_string(opts.aof_dir().join("appendonly.aof.manifest")).unwrap(),
        "file appendonly.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    );
    let ks = loaded(&opts);
    assert_eq!(
        ks.db(0).unwrap().get(b"k2").unwrap().0,
        &MemValue::str("v2")
    );
    // No AOF at all: None.
    assert!(load(&AofOptions::new(tempfile::tempdir().unwrap().path()))
        .unwrap()
        .is_none());
}

#[test]
fn a_failed_append_write_or_fsync_is_reported_then_retried() {
    for (step, op) in [(Step::Write, "write"), (Step::Fsync, "fsync")] {
        let (_dir, opts, mut state) = committed(Fsync::Always);
        let faulty = opts.clone().faults(
            Faults::default(),
            Faults::default().fail(step, 1, libc::EIO),
        );
        let aof = Aof::open(faulty).unwrap();
        let lsn = write(&aof, &mut state, "c", 10);
        let e = aof.wait(lsn).unwrap_err();
        assert!(matches!(&e, Error::Io { op: o, .. } if *o == op), "{e}");
        assert!(aof.stats().append.error.is_some());
        // The writer keeps the bytes and tries again on its next tick.
        let deadline = Instant::now() + Duration::from_secs(5);
        while aof.wait(lsn).is_err() {
            assert!(Instant::now() < deadline, "the write was not retried");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(aof.stats().append.error.is_none());
        aof.close().unwrap();
        crate::common::assert_same_data(&loaded(&opts), &state);
    }
}
