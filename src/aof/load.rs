//! Loading an AOF directory: the manifest's base (an RDB preamble through the streaming
//! load visitor, then any RESP tail; or RESP only), then each incr file in manifest
//! order, handing each command to the server.

use super::manifest::Manifest;
use super::resp::{Next, Reader};
use super::{check_listed, name_path, read_manifest, upgrade_if_needed, Aof, AofOptions};
use crate::error::{Error, Result};
use crate::rdb::{load_into, LoadOptions, LoadReport, LoadVisitor, VisitResult};
use crate::sink::io::Io;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Receives a loading AOF: the base's keys as [`LoadVisitor`] receives an RDB's, then
/// the commands of the RESP parts.
pub trait AofVisitor: LoadVisitor {
    /// One command, for database `db` (the loader follows `SELECT` itself and strips
    /// `MULTI`/`EXEC`: a transaction's commands arrive one after another once its `EXEC`
    /// was read, and not at all when the file ends inside it). Return an error for a
    /// command the server does not know: the load stops there, as Redis's does.
    fn command(&mut self, db: u32, argv: &[&[u8]]) -> VisitResult;
}

/// What [`Aof::load`] found.
#[derive(Clone, Debug, Default)]
pub struct AofLoadReport {
    /// Files loaded (base and incr), in order.
    pub files: Vec<PathBuf>,
    /// The base's RDB preamble, when it has one.
    pub rdb: Option<LoadReport>,
    /// Commands handed over.
    pub commands: u64,
    /// The last file ended inside a command: (file, bytes cut off). The file was
    /// truncated back to the last whole command, as Redis does with
    /// `aof-load-truncated yes`.
    pub truncated: Option<(PathBuf, u64)>,
    /// A Redis ≤ 6 single-file AOF was moved into the directory first.
    pub upgraded: bool,
}

impl Aof {
    /// Loads the AOF directory into `visitor`; `Ok(None)` when there is no AOF (no
    /// manifest, or one naming neither base nor incr). A lone Redis ≤ 6 `appendonly.aof`
    /// is upgraded first, as Redis 7 does. Errors name the file and the line or byte: a
    /// malformed manifest, a listed file missing, a malformed command, a command cut off
    /// anywhere but at the end of the last file (or there, with
    /// [`load_truncated`](AofOptions::load_truncated) off).
    pub fn load(opts: &AofOptions, visitor: &mut dyn AofVisitor) -> Result<Option<AofLoadReport>> {
        opts.validate()?;
        let mut io = Io::new(
            opts.temp_manifest_path(),
            opts.manifest_path(),
            opts.manifest_faults.clone(),
        );
        let upgraded = upgrade_if_needed(opts, &mut io)?;
        let Some(m) = read_manifest(opts)? else {
            return Ok(None);
        };
        let Manifest { base, incr, .. } = m;
        if base.is_none() && incr.is_empty() {
            return Ok(None);
        }
        let dir = opts.aof_dir();
        let files: Vec<PathBuf> = base
            .iter()
            .chain(&incr)
            .map(|f| name_path(&dir, &f.name))
            .collect();
        check_listed(opts, &Manifest { base: base.clone(), incr: incr.clone(), history: Vec::new() })?;
        let mut report = AofLoadReport {
            upgraded,
            ..AofLoadReport::default()
        };
        for (i, f) in files.iter().enumerate() {
            let last = i + 1 == files.len();
            let (rdb, cut) = load_file(f, i == 0 && base.is_some(), visitor, &mut report.commands)?;
            if rdb.is_some() {
                report.rdb = rdb;
            }
            if let Some((valid, len)) = cut {
                if !last || !opts.load_truncated {
                    return Err(Error::Aof {
                        path: f.clone(),
                        at: format!("byte {valid}"),
                        what: if last {
                            "the file ends inside a command (aof-load-truncated is off)".into()
                        } else {
                            "the file ends inside a command, and only the last file may".into()
                        },
                    });
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .and_then(|h| {
                        h.set_len(valid)?;
                        h.sync_all()
                    })
                    .map_err(|e| Error::io("truncate", f, e))?;
                report.truncated = Some((f.clone(), len - valid));
            }
            report.files.push(f.clone());
        }
        Ok(Some(report))
    }
}

/// A file that ends inside a command: (the end of its last whole command, its length).
type Cut = (u64, u64);

/// Loads one file. Returns its RDB preamble's report and, when it ends inside a
/// command, (the offset of the last whole command's end, the file's length).
fn load_file(
    path: &Path,
    may_be_rdb: bool,
    visitor: &mut dyn AofVisitor,
    commands: &mut u64,
) -> Result<(Option<LoadReport>, Option<Cut>)> {
    let open = || std::fs::File::open(path).map_err(|e| Error::io("open", path, e));
    let mut f = open()?;
    let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let mut head = [0u8; 6];
    let n = (&mut f).take(6).read(&mut head).map_err(|e| Error::io("read", path, e))?;
    let is_rdb = n >= 5 && (head.starts_with(b"REDIS") || head.starts_with(b"VALKEY"));
    let mut rdb = None;
    let mut offset = 0;
    if is_rdb {
        if !may_be_rdb {
            // Redis loads an RDB only as a base; an incr starting with one is malformed.
            return Err(Error::Aof {
                path: path.to_path_buf(),
                at: "byte 0".into(),
                what: "an RDB where RESP commands are expected (only the base may hold one)".into(),
            });
        }
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io("seek", path, e))?;
        let rep = load_into(&mut f, &LoadOptions::default(), visitor as &mut dyn LoadVisitor)
            .map_err(|e| match e {
                Error::Io { op, source, offset, .. } => Error::Io {
                    op,
                    path: path.to_path_buf(),
                    offset,
                    source,
                },
                other => other,
            })?;
        offset = rep.rdb_bytes;
        rdb = Some(rep);
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", path, e))?;
    let mut r = Reader::new(BufReader::with_capacity(1 << 20, f), offset);
    let mut db = 0u32;
    // A transaction being read: the offset of its MULTI and its commands.
    let mut multi: Option<(u64, Vec<Vec<Vec<u8>>>)> = None;
    let bad = |at: u64, what: String| Error::Aof {
        path: path.to_path_buf(),
        at: format!("byte {at}"),
        what,
    };
    loop {
        let start = r.offset;
        match r.next().map_err(|e| bad(e.offset, e.what))? {
            Next::End => {
                return Ok((rdb, multi.map(|(at, _)| (at, len))));
            }
            Next::Truncated(at) => {
                let valid = multi.map_or(at, |(m, _)| m);
                return Ok((rdb, Some((valid, len))));
            }
            Next::Command => {}
        }
        let name = r.name().to_ascii_lowercase();
        match name.as_slice() {
            b"multi" if multi.is_none() => multi = Some((start, Vec::new())),
            b"exec" if multi.is_some() => {
                let (_, cmds) = multi.take().expect("in a transaction");
                for c in cmds {
                    let argv: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                    deliver(visitor, &mut db, &argv, commands).map_err(|w| bad(start, w))?;
                }
            }
            _ => {
                if let Some((_, cmds)) = &mut multi {
                    cmds.push(r.args().iter().map(|a| a.to_vec()).collect());
                } else {
                    let argv = r.args();
                    deliver(visitor, &mut db, &argv, commands).map_err(|w| bad(start, w))?;
                }
            }
        }
    }
}

/// Hands one command over (following `SELECT` here).
fn deliver(
    visitor: &mut dyn AofVisitor,
    db: &mut u32,
    argv: &[&[u8]],
    commands: &mut u64,
) -> std::result::Result<(), String> {
    if argv[0].eq_ignore_ascii_case(b"select") {
        *db = argv
            .get(1)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
            .filter(|_| argv.len() == 2)
            .ok_or_else(|| format!("bad SELECT {:?}", argv.get(1).map(|d| String::from_utf8_lossy(d))))?;
        return Ok(());
    }
    *commands += 1;
    visitor.command(*db, argv).map_err(|e| {
        format!(
            "the server refused {}: {e}",
            String::from_utf8_lossy(&argv[0][..argv[0].len().min(64)])
        )
    })
}
