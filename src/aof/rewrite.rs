//! BGREWRITEAOF in Redis 7's order: flush the buffer, start a new incr file and persist
//! the manifest naming it, fork; the child writes the new base through the snapshot
//! pipeline (an RDB with `aof-base` 1); on success the parent commits by persisting a
//! manifest with the new base and the older files as history, then deletes the history.

use super::manifest::{FileInfo, Kind};
use super::{name_path, open_for_append, persist_manifest, renamed, Aof};
use crate::error::{Error, Result};
use crate::fork::{RunningSnapshot, SnapshotOptions, SnapshotReport};
use crate::keyspace::Keyspace;
use crate::sink::Format;
use std::path::PathBuf;

/// A committed rewrite.
#[derive(Clone, Debug)]
pub struct RewriteReport {
    /// The new base file.
    pub base: PathBuf,
    /// The snapshot that wrote it (wall, fork, CoW, bytes, ...).
    pub snapshot: SnapshotReport,
    /// History files deleted after the commit.
    pub deleted: usize,
}

pub(super) struct Running {
    snap: RunningSnapshot,
    base: FileInfo,
    /// Incr files from this seq on stay (0: the temp incr of a first rewrite).
    first_kept: i64,
}

impl Running {
    pub(super) fn abort(self) {
        let _ = self.snap.abort();
    }

    pub(super) fn progress(&self) -> crate::fork::Progress {
        self.snap.progress()
    }
}

impl Aof {
    /// Starts a rewrite (BGREWRITEAOF): the child writes a new base from `ks` with the
    /// snapshot settings of `tuning` (backend, O_DIRECT, LZF, RDB version, CoW budget,
    /// child priority, ...; its path and format are replaced by the AOF's next base, an
    /// RDB with `aof-base` 1). Call it with the server frozen exactly as for
    /// [`SnapshotOptions::start`] (take the guards, call, drop them): every command
    /// appended before the call is in the files the new base replaces, every one after
    /// it goes to the new incr file. Only one child at a time: `Error::AlreadyRunning`
    /// while a snapshot or rewrite runs (Redis schedules the rewrite for after it).
    pub fn start_rewrite(&self, ks: &dyn Keyspace, tuning: &SnapshotOptions) -> Result<()> {
        let mut ctl = self.ctl();
        if ctl.rewrite.is_some() || crate::fork::snapshot_running() {
            return Err(Error::AlreadyRunning);
        }
        let dir = self.opts.aof_dir();
        let first_kept = if ctl.waiting {
            // No AOF yet: what was appended so far is in the base this rewrite writes, so
            // the temp incr starts again, empty, at the fork (a new file: the old one,
            // unlinked, takes the flusher's last write of it).
            let path = self.opts.temp_incr_path();
            let _ = std::fs::remove_file(&path);
            let (fd, _) = open_for_append(&path, true)?;
            self.app.switch(fd, path)?;
            0
        } else {
            let seq = ctl.manifest.last_incr_seq() + 1;
            let name = self.opts.incr_name(seq);
            let path = dir.join(&name);
            let (fd, _) = open_for_append(&path, true)?;
            let mut m = ctl.manifest.clone();
            m.incr.push(FileInfo {
                name: name.into_bytes(),
                seq,
                kind: Kind::Incr,
            });
            let persisted = persist_manifest(&mut ctl.io, &m);
            if let Err(e) = &persisted {
                if !renamed(e) {
                    let _ = std::fs::remove_file(&path);
                    return persisted.map(|_| ());
                }
                // The manifest naming the new incr is in place: follow it, but start
                // no child on a directory whose fsync failed.
            }
            let prev = ctl.manifest.incr.last().map(|f| name_path(&dir, &f.name));
            ctl.manifest = m;
            self.app.switch(fd, path)?;
            ctl.older_incr_size += prev.map_or(0, |p| super::file_len(&p));
            persisted?;
            seq
        };
        let base = FileInfo {
            name: self.opts.base_name(ctl.base_seq + 1).into_bytes(),
            seq: ctl.base_seq + 1,
            kind: Kind::Base,
        };
        let mut o = tuning.clone();
        o.path = name_path(&dir, &base.name);
        o.encode.aof_base = true;
        o.encode.resp = !self.opts.rdb_preamble;
        o.write.format = Format::Rdb;
        let snap = o.start(ks)?;
        ctl.rewrite = Some(Running {
            snap,
            base,
            first_kept,
        });
        Ok(())
    }

    /// Checks the running rewrite: `None` when none runs or it is still running; its
    /// outcome once, when it ended (committed, or failed with the previous AOF intact).
    /// Call it from the server's periodic task (Redis's `serverCron`).
    pub fn poll_rewrite(&self) -> Option<Result<RewriteReport>> {
        let mut ctl = self.ctl();
        let run = ctl.rewrite.as_mut()?;
        let outcome = match run.snap.poll() {
            Ok(None) => return None,
            Ok(Some(rep)) => {
                let run = ctl.rewrite.take().expect("running");
                self.commit(&mut ctl, run, rep)
            }
            Err(e) => {
                ctl.rewrite = None;
                Err(e)
            }
        };
        ctl.last_rewrite = Some(match &outcome {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(e.to_string()),
        });
        Some(outcome)
    }

    /// Kills a running rewrite (FLUSHALL, SHUTDOWN, switching AOF off); the AOF stays as
    /// it was.
    pub fn abort_rewrite(&self) {
        if let Some(r) = self.ctl().rewrite.take() {
            r.abort();
        }
    }

    fn commit(
        &self,
        ctl: &mut super::Ctl,
        run: Running,
        rep: SnapshotReport,
    ) -> Result<RewriteReport> {
        let dir = self.opts.aof_dir();
        let base_path = name_path(&dir, &run.base.name);
        let mut m = ctl.manifest.clone();
        let mut moved_incr = None;
        if run.first_kept == 0 {
            // The first rewrite: the temp incr becomes a real one.
            let seq = m.last_incr_seq() + 1;
            let name = self.opts.incr_name(seq);
            let to = dir.join(&name);
            if let Err(e) = std::fs::rename(self.opts.temp_incr_path(), &to) {
                let _ = std::fs::remove_file(&base_path);
                return Err(Error::io("rename", to, e));
            }
            moved_incr = Some(to);
            m.history.extend(m.incr.drain(..).map(|mut f| {
                f.kind = Kind::History;
                f
            }));
            m.incr.push(FileInfo {
                name: name.into_bytes(),
                seq,
                kind: Kind::Incr,
            });
        } else {
            let (old, kept): (Vec<FileInfo>, Vec<FileInfo>) =
                m.incr.drain(..).partition(|f| f.seq < run.first_kept);
            m.incr = kept;
            m.history.extend(old.into_iter().map(|mut f| {
                f.kind = Kind::History;
                f
            }));
        }
        if let Some(mut b) = m.base.take() {
            b.kind = Kind::History;
            m.history.push(b);
        }
        m.base = Some(run.base.clone());
        // Only the directory's fsync failing means the commit is in effect (a reader
        // sees the new manifest); then nothing is deleted, in case a power cut brings the
        // old manifest back.
        let mut keep_history = false;
        if let Err(e) = persist_manifest(&mut ctl.io, &m) {
            if !super::renamed(&e) {
                let _ = std::fs::remove_file(&base_path);
                if let Some(to) = moved_incr {
                    let _ = std::fs::rename(to, self.opts.temp_incr_path());
                }
                return Err(e);
            }
            keep_history = true;
        }
        // Committed.
        ctl.waiting = false;
        ctl.base_seq = run.base.seq;
        ctl.base_size = rep.bytes_written;
        ctl.older_incr_size = 0;
        ctl.rewrites += 1;
        if keep_history {
            ctl.manifest = m;
            return Ok(RewriteReport {
                base: base_path,
                snapshot: rep,
                deleted: 0,
            });
        }
        let history = std::mem::take(&mut m.history);
        let mut deleted = 0;
        for h in &history {
            if h.name != run.base.name && std::fs::remove_file(name_path(&dir, &h.name)).is_ok() {
                deleted += 1;
            }
        }
        // A failure here only leaves history lines naming deleted files: history is not
        // loaded, and the next manifest write drops them.
        let _ = persist_manifest(&mut ctl.io, &m);
        ctl.manifest = m;
        Ok(RewriteReport {
            base: base_path,
            snapshot: rep,
            deleted,
        })
    }
}
