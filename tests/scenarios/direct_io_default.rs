//! O_DIRECT is the default where the target's file system accepts it (probed on the temp
//! file), buffered writes where it does not, and an error only when asked for.

use crate::common::{self, datasets, temp_files};
use forksnap::{BackendKind, Error, Faults, MemKeyspace, SnapshotOptions, SnapshotReport, Step};
use std::path::Path;

fn fs_type(dir: &Path) -> i64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs fills the zeroed struct from a valid NUL-terminated path.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0);
        st
    };
    st.f_type as i64
}

const EXT4: i64 = 0xEF53;
const XFS: i64 = 0x5846_5342;

/// Forks a snapshot with `opts`, checks that its backend reason says `why`, that the file
/// holds exactly the bytes reported (a preallocated stretch is trimmed), and that it
/// loads back equal to `ks`.
fn snapshot_says(opts: SnapshotOptions, ks: &MemKeyspace, why: &str) -> SnapshotReport {
    let r = opts.start(ks).unwrap().wait().unwrap();
    assert!(r.backend_reason.contains(why), "{}", r.backend_reason);
    assert_eq!(std::fs::metadata(&r.path).unwrap().len(), r.bytes_written);
    let (back, _) = forksnap::load_file(&r.path, &Default::default()).unwrap();
    common::assert_same_data(ks, &back);
    r
}

#[test]
fn the_default_takes_o_direct_where_the_file_system_accepts_it() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(50_000, 100);
    let dir = tempfile::tempdir().unwrap();
    let kind = fs_type(dir.path());
    assert!(
        kind == EXT4 || kind == XFS,
        "this test needs its temp dir on ext4 or XFS, found file system type {kind:#x}"
    );
    let r = snapshot_says(
        SnapshotOptions::new(dir.path().join("d.rdb")),
        &ks,
        "O_DIRECT (auto: the file system accepts it)",
    );
    assert_eq!(r.backend, Some(BackendKind::Uring), "{}", r.backend_reason);
    assert!(!r.stats.prealloc_stopped, "ext4 and XFS preallocate");
}

/// A failing `fallocate` (no support, or no room for the stretch ahead) only ends the
/// preallocation: the snapshot completes, exact to the byte.
#[test]
fn a_failed_preallocation_is_not_an_error() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(50_000, 100);
    let dir = tempfile::tempdir().unwrap();
    for (nth, errno) in [(1, libc::EOPNOTSUPP), (1, libc::ENOSPC)] {
        let opts = SnapshotOptions::new(dir.path().join(format!("f{errno}.rdb")))
            .chunk_size(1 << 20)
            .faults(Faults::default().fail(Step::Fallocate, nth, errno));
        let r = snapshot_says(opts, &ks, "O_DIRECT");
        assert!(r.stats.prealloc_stopped, "the fallocate fault did not fire");
    }
}

/// A file system that refuses O_DIRECT (the fault plan answers the `fcntl` with EINVAL,
/// as FUSE and some network file systems do): buffered writes by default, an error naming
/// the step when O_DIRECT is required, and the good file untouched.
#[test]
fn a_refusal_means_buffered_writes_by_default_and_an_error_when_required() {
    let _serial = common::fork_lock();
    let ks = datasets::populate(20_000, 100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.rdb");
    let refuse = || Faults::default().fail(Step::Direct, 1, libc::EINVAL);
    let r = snapshot_says(
        SnapshotOptions::new(&path).faults(refuse()),
        &ks,
        "buffered writes (auto: the file system refused O_DIRECT: Invalid argument",
    );
    assert_eq!(r.backend, Some(BackendKind::Pwrite), "{}", r.backend_reason);
    let before = std::fs::read(&path).unwrap();
    match SnapshotOptions::new(&path)
        .direct(true)
        .faults(refuse())
        .start(&ks)
        .and_then(|r| r.wait())
    {
        Err(Error::Io { op, source, .. }) => {
            assert_eq!(op, "O_DIRECT");
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }
        other => panic!("expected the O_DIRECT refusal, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the good file was replaced"
    );
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
}
