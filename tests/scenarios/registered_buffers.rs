//! io_uring with registered (fixed) buffers writes exactly what plain writes do, in every
//! format, with short writes resubmitted from the same fixed buffer; the report says the
//! buffers were registered (RLIMIT_MEMLOCK here is 8 MiB, so the chunks are small).

use crate::common::{self, datasets};
use forksnap::{BackendKind, Faults, Format, SnapshotOptions};

#[test]
fn fixed_buffers_write_the_same_bytes() {
    let _serial = common::fork_lock();
    let ks = datasets::edge_cases(true);
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Rdb, Format::Lz4] {
        for direct in [false, true] {
            let mut files = Vec::new();
            for (register, faults) in [
                (false, Faults::default()),
                (true, Faults::default()),
                (true, Faults::default().short_write(2).short_write(3)),
            ] {
                let p = dir
                    .path()
                    .join(format!("{format:?}-{direct}-{}.rdb", files.len()));
                let report = SnapshotOptions::new(&p)
                    .format(format)
                    .backend(BackendKind::Uring)
                    .direct(direct)
                    .chunk_size(64 << 10)
                    .register_buffers(register)
                    .faults(faults)
                    .ctime(Some(1))
                    .start(&ks)
                    .unwrap()
                    .wait()
                    .unwrap();
                assert_eq!(report.backend, Some(BackendKind::Uring));
                assert_eq!(
                    report.stats.fixed_buffers, register,
                    "{format:?} direct {direct}: {}",
                    report.backend_reason
                );
                files.push(std::fs::read(&p).unwrap());
            }
            assert!(
                files[0] == files[1],
                "{format:?} direct {direct}: fixed buffers differ"
            );
            assert!(
                files[0] == files[2],
                "{format:?} direct {direct}: short fixed writes differ"
            );
        }
    }
}
