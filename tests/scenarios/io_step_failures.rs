//! Each I/O step failing in turn gives a typed error naming the step, and the target is
//! untouched; short writes still produce identical bytes; EFBIG through RLIMIT_FSIZE.

use crate::common;

use common::datasets;
use forksnap::{BackendKind, Error, Faults, Format, SnapshotOptions, Step};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"previous snapshot").unwrap();
    (dir, target, b"previous snapshot".to_vec())
}

fn no_temp(dir: &std::path::Path) {
    let left = common::temp_files(dir);
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// One step failing in one configuration: a typed error naming the step (and, for a
/// write, its offset), the target untouched, no temp file left.
fn step_fails(
    step: Step,
    nth: u64,
    errno: i32,
    name: &str,
    backend: BackendKind,
    workers: usize,
    fork: bool,
) {
    let ks = datasets::populate(200_000, 100);
    let (dir, target, before) = setup();
    let opts = SnapshotOptions::new(&target)
        .workers(workers)
        .lzf(false)
        .chunk_size(256 << 10)
        .pacing_bytes(1 << 20)
        .backend(backend)
        .faults(Faults::default().fail(step, nth, errno));
    // Writeback pacing (sync_file_range) is a step of buffered writes only; the others
    // run on the default path (O_DIRECT where the file system accepts it).
    let opts = if step == Step::RangeSync {
        opts.direct(false)
    } else {
        opts
    };
    let r = if fork {
        let _serial = common::fork_lock();
        opts.start(&ks).and_then(|r| r.wait())
    } else {
        opts.save(&ks)
    };
    match r {
        Err(Error::Io {
            op, source, offset, ..
        }) => {
            assert_eq!(op, name);
            assert_eq!(source.raw_os_error(), Some(errno));
            // A failed write names its offset: the nth write of 256 KiB chunks.
            let want = (step == Step::Write).then(|| (nth - 1) * (256 << 10));
            assert_eq!(offset, want, "offset of the failed {name} #{nth}");
        }
        other => panic!("expected an I/O error in {name}, got {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    no_temp(dir.path());
}

/// The eight configurations (backend, writer thread or not, forked or in-process) of one
/// failing step, each its own test so that a failure names it and hides no other.
macro_rules! step_cases {
    ($($module:ident: $step:expr, $nth:expr, $errno:expr, $name:expr;)*) => {$(
        mod $module {
            use super::*;
            #[test] fn uring_fork() { step_fails($step, $nth, $errno, $name, BackendKind::Uring, 0, true) }
            #[test] fn uring_inproc() { step_fails($step, $nth, $errno, $name, BackendKind::Uring, 0, false) }
            #[test] fn pwrite_fork() { step_fails($step, $nth, $errno, $name, BackendKind::Pwrite, 0, true) }
            #[test] fn pwrite_inproc() { step_fails($step, $nth, $errno, $name, BackendKind::Pwrite, 0, false) }
            #[test] fn uring_worker_fork() { step_fails($step, $nth, $errno, $name, BackendKind::Uring, 1, true) }
            #[test] fn uring_worker_inproc() { step_fails($step, $nth, $errno, $name, BackendKind::Uring, 1, false) }
            #[test] fn pwrite_worker_fork() { step_fails($step, $nth, $errno, $name, BackendKind::Pwrite, 1, true) }
            #[test] fn pwrite_worker_inproc() { step_fails($step, $nth, $errno, $name, BackendKind::Pwrite, 1, false) }
        }
    )*};
}

step_cases! {
    create_eacces: Step::Create, 1, libc::EACCES, "create";
    first_write_enospc: Step::Write, 1, libc::ENOSPC, "write";
    fifth_write_eio: Step::Write, 5, libc::EIO, "write";
    range_sync_eio: Step::RangeSync, 1, libc::EIO, "sync_file_range";
    fsync_eio: Step::Fsync, 1, libc::EIO, "fsync";
    rename_exdev: Step::Rename, 1, libc::EXDEV, "rename";
}

#[test]
fn truncate_failure_with_direct_io() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(10_000, 100);
    let (dir, target, before) = setup();
    let r = SnapshotOptions::new(&target)
        .direct(true)
        .faults(Faults::default().fail(Step::Truncate, 1, libc::EIO))
        .start(&ks)
        .unwrap()
        .wait();
    assert!(matches!(r, Err(Error::Io { op: "truncate", .. })), "{r:?}");
    assert_eq!(std::fs::read(&target).unwrap(), before);
    no_temp(dir.path());
}

/// A failing directory fsync is reported; the rename already happened, so the target is
/// the new, complete snapshot (never a partial one).
#[test]
fn directory_fsync_failure_is_reported() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(10_000, 100);
    let (dir, target, _) = setup();
    let r = SnapshotOptions::new(&target)
        .faults(Faults::default().fail(Step::DirSync, 1, libc::EIO))
        .start(&ks)
        .unwrap()
        .wait();
    assert!(
        matches!(
            r,
            Err(Error::Io {
                op: "fsync directory",
                ..
            })
        ),
        "{r:?}"
    );
    let (loaded, _) =
        forksnap::rdb::load(&std::fs::read(&target).unwrap(), &Default::default()).unwrap();
    assert_eq!(loaded.len(), 10_000);
    no_temp(dir.path());
}

#[test]
fn file_size_limit_gives_efbig() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(100_000, 100);
    for backend in [BackendKind::Uring, BackendKind::Pwrite] {
        let (dir, target, before) = setup();
        let mut f = Faults::default();
        f.fsize_limit = Some(3 << 20);
        let r = SnapshotOptions::new(&target)
            .lzf(false)
            .backend(backend)
            .faults(f)
            .start(&ks)
            .unwrap()
            .wait();
        match r {
            Err(Error::Io {
                op: "write",
                source,
                ..
            }) => assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{backend:?}"),
            other => panic!("{backend:?}: expected EFBIG, got {other:?}"),
        }
        assert_eq!(std::fs::read(&target).unwrap(), before);
        no_temp(dir.path());
    }
}

#[test]
fn short_writes_still_write_every_byte() {
    let _serial = common::fork_lock();
    let ks = datasets::edge_cases(true);
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (i, (backend, format)) in [
        (BackendKind::Pwrite, Format::Rdb),
        (BackendKind::Uring, Format::Rdb),
        (BackendKind::Uring, Format::Lz4),
        (BackendKind::Pwrite, Format::Lz4),
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = Vec::new();
        for faults in [
            Faults::default(),
            Faults::default()
                .short_write(1)
                .short_write(2)
                .short_write(7),
        ] {
            let p = dir.path().join(format!("{i}-{}.rdb", row.len()));
            let opts = SnapshotOptions::new(&p)
                .format(format)
                .backend(backend)
                .chunk_size(64 << 10)
                .faults(faults)
                .ctime(Some(1));
            let report = opts.start(&ks).unwrap().wait().unwrap();
            // The plan's 1st and 2nd writes are short, so the rest of the first buffer
            // takes two more calls: at least two short writes, none without the plan.
            let shorts = report.stats.short_writes;
            if row.is_empty() {
                assert_eq!(
                    shorts, 0,
                    "{backend:?} {format:?}: short writes without a plan"
                );
            } else {
                assert!(
                    shorts >= 2,
                    "{backend:?} {format:?}: {shorts} short writes happened"
                );
            }
            row.push(std::fs::read(&p).unwrap());
        }
        assert!(
            row[0] == row[1],
            "{backend:?} {format:?}: short writes changed the file"
        );
        outputs.push(row.remove(0));
    }
    assert!(outputs[0] == outputs[1], "pwrite and io_uring differ");
    assert!(
        outputs[2] == outputs[3],
        "framed pwrite and io_uring differ"
    );
}
