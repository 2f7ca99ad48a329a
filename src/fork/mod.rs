//! Background snapshots: fork, let the child encode and write the copy-on-write image of
//! the keyspace, keep serving in the parent.
//!
//! **Invariants**
//! - After fork the child takes no lock another parent thread may hold: it never logs,
//!   never touches stdio, reports only through `write(2)` on its pipe, builds its own
//!   io_uring ring and buffers (never inherited, never the parent's heap pages), and
//!   leaves with `_exit`.
//! - The child dies with the parent *process* (not with the thread that forked it: a
//!   runtime may retire that thread): a 250 ms timer signal checks `getppid()`, whatever
//!   the walk is doing (blocked for ever included), and a report written to the closed
//!   pipe kills it (`SIGPIPE`).
//! - The child closes every descriptor it inherited except its report pipe, stdin/out/err
//!   and those the caller keeps (`SnapshotOptions::keep_fd`): a socket the parent closes
//!   is closed for its peer at once, not when the child exits.
//! - The target is replaced only by the child's rename of a complete, fsynced temp file
//!   `temp-<child pid>.rdb` beside it; the parent removes that temp file whenever the
//!   child fails or is killed.
//! - One snapshot at a time per process (`AlreadyRunning`).
//! - Success is the child's final report followed by its exit: a parent that ignores
//!   `SIGCHLD` or reaps children itself (so `waitpid` finds nothing) still gets the
//!   outcome.
//! - The parent never blocks except in [`RunningSnapshot::wait`] (and in `abort` or a
//!   drop, which reap a killed child).
//!
//! Files: `options.rs` (the builder, `save`, `start` and the fork), `child.rs` (what runs
//! after fork), `running.rs` (the parent's handle), `report.rs` (the report types and the
//! pipe protocol that carries them), `savepoints.rs` (Redis's `save` rules).

mod child;
mod options;
pub(crate) mod report;
mod running;
mod savepoints;

pub use options::{ChildPriority, SnapshotOptions};
pub use report::{Progress, SnapshotReport};
pub use running::{snapshot_running, RunningSnapshot};
pub use savepoints::{SavePoints, SavePointsError};

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Whether a snapshot child of this process is running (one at a time).
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn temp_path(target: &Path, tag: &str) -> PathBuf {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(format!("temp-{tag}.rdb"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Format;

    #[test]
    fn option_order_does_not_matter() {
        let a = SnapshotOptions::new("x").format(Format::Lz4).lzf(true);
        let b = SnapshotOptions::new("x").lzf(true).format(Format::Lz4);
        assert!(!a.effective_encode().lzf && !b.effective_encode().lzf);
        let c = SnapshotOptions::new("x").lzf(false).format(Format::Rdb);
        let d = SnapshotOptions::new("x").format(Format::Rdb).lzf(false);
        assert!(!c.effective_encode().lzf && !d.effective_encode().lzf);
        assert!(SnapshotOptions::new("x").effective_encode().lzf);
    }

    #[test]
    fn every_child_io_step_keeps_its_name() {
        for op in [
            "create",
            "write",
            "fsync directory",
            "io_uring_enter",
            "dup",
        ] {
            assert_eq!(report::op_name(op), op);
        }
        assert_eq!(report::op_name("bogus"), "an unnamed snapshot I/O step");
    }
}

