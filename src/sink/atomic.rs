//! `AtomicFile`: a temp file beside the target that replaces it only when complete.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temp file `temp-<pid>-<n>.rdb` in the target's directory. `commit` fsyncs it, renames
/// it over the target and fsyncs the directory; dropping it uncommitted removes it.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<Self> {
        let dir = parent_dir(target);
        let name = format!(
            "temp-{}-{}.rdb",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn file_mut(&mut self) -> (&mut File, &Path) {
        (
            self.file.as_mut().expect("AtomicFile used after commit"),
            &self.tmp,
        )
    }

    /// fsync, rename over the target, fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("AtomicFile committed twice");
        file.sync_all()
            .map_err(|e| Error::io("fsync", &self.tmp, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io("rename", &self.target, e))?;
        // The rename happened: from here on the temp name no longer exists.
        self.tmp = PathBuf::new();
        sync_dir(parent_dir(&self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}
