//! `forksnap`: verify, inspect and convert RDB files (benchmarks: `snapbench`).
//! The exit-code and output contract is relied on by scripts: see README.md.

use clap::{Parser, Subcommand, ValueEnum};
use forksnap::rdb::reader::{load_observed, repeated_key, KeyInfo, Validator};
use forksnap::rdb::{load_into, types, LoadOptions, LoadValue, LoadVisitor, VisitResult};
use forksnap::{BackendKind, Format, SnapshotOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "forksnap",
    version,
    about = "Redis-compatible RDB snapshots: verify, inspect, convert"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compression {
    None,
    Lzf,
    Lz4,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Auto,
    Uring,
    Pwrite,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a file (plain RDB or LZ4-framed): exit 0 with a summary line, or 1 with the error.
    Verify { file: PathBuf },
    /// Keys per database, type and encoding; expiring keys; bytes per type; largest keys.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// How many of the largest keys to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Load a file into memory (a MemKeyspace) and say how long it took and the peak RSS:
    /// what a server loading it at start-up pays, at least.
    Load {
        file: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Read any RDB (plain or LZ4-framed) and write it again; OUT is replaced only when complete.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// 9 to 12, or 80 for Valkey 9's VALKEY080.
        #[arg(long, default_value_t = 11, value_parser = rdb_version)]
        rdb_version: u8,
        #[arg(long, value_enum, default_value_t = Compression::Lzf)]
        compression: Compression,
        /// Drop module values and module data outside the keyspace (MODULE_AUX), for a
        /// server that lacks the modules.
        #[arg(long)]
        skip_unsupported: bool,
        /// Write hashes with field TTLs without the TTLs at versions 9 to 11 instead of
        /// failing.
        #[arg(long)]
        drop_field_ttls: bool,
        /// Write in this process instead of a forked child.
        #[arg(long)]
        no_fork: bool,
        /// Write backend (auto: io_uring, falling back to pwrite).
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
        /// Require O_DIRECT (default: O_DIRECT where the file system accepts it).
        #[arg(long, conflicts_with = "no_direct")]
        direct: bool,
        /// Never O_DIRECT: buffered writes through the page cache.
        #[arg(long)]
        no_direct: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The contract is "exit 1 with one line", never a panic trace.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("error: internal error (a forksnap bug, please report): {msg}");
            ExitCode::from(1)
        }
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Verify { file } => verify(&file),
        Cmd::Inspect { file, json, top } => inspect(&file, json, top),
        Cmd::Load { file, json } => load_timed(&file, json),
        Cmd::Convert {
            input,
            output,
            rdb_version,
            compression,
            skip_unsupported,
            drop_field_ttls,
            no_fork,
            backend,
            direct,
            no_direct,
        } => convert(
            &input,
            &output,
            rdb_version,
            compression,
            skip_unsupported,
            drop_field_ttls,
            !no_fork,
            backend,
            // --direct requires it, --no-direct refuses it, neither: the library's default.
            (direct || no_direct).then_some(direct),
        ),
    }
}

/// Opens a file to stream from (loading never holds a whole file).
fn open(path: &Path) -> Result<std::fs::File, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len == 0 {
        return Err(format!("{}: file is empty (0 bytes)", path.display()));
    }
    Ok(f)
}

/// Takes nothing: values are still read and validated (the `inspect` tool).
struct Nothing;
impl LoadVisitor for Nothing {
    fn key(&mut self, _: u32, _: &[u8], _: Option<i64>, _: LoadValue<'_>) -> VisitResult {
        Ok(())
    }
}

/// Which servers load an RDB with this header. `None`: an unknown magic or version.
/// `--rdb-version`: what the library writes.
fn rdb_version(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(v @ (9..=12 | 80)) => Ok(v),
        _ => Err("9, 10, 11, 12 or 80 (VALKEY080)".into()),
    }
}

fn loads_in(magic: &str, version: u32) -> Option<&'static str> {
    Some(match (magic, version) {
        ("REDIS", 1..=5) => "Redis >= 2.4, Valkey",
        ("REDIS", 6) => "Redis >= 2.6, Valkey",
        ("REDIS", 7) => "Redis >= 3.2, Valkey",
        ("REDIS", 8) => "Redis >= 4.0, Valkey",
        ("REDIS", 9) => "Redis >= 5.0, Valkey",
        ("REDIS", 10) => "Redis >= 7.0, Valkey",
        ("REDIS", 11) => "Redis >= 7.2, Valkey",
        ("REDIS", 12) => "Redis >= 7.4 (not Valkey)",
        ("VALKEY", 80) => "Valkey >= 9.0 (not Redis)",
        _ => return None,
    })
}

fn verify(file: &Path) -> Result<(), String> {
    let mut check = Validator::default();
    let report = load_into(open(file)?, &LoadOptions::default(), &mut check)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let suspects = check.finish();
    if !suspects.is_empty() {
        let again = repeated_key(open(file)?, &LoadOptions::default(), &suspects)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some((db, key)) = again {
            return Err(format!(
                "{}: key {:?} appears twice in database {db} (Redis refuses such a file)",
                file.display(),
                String::from_utf8_lossy(&key)
            ));
        }
    }
    let per_db = check.per_db;
    let dbs: Vec<String> = per_db.iter().map(|(d, n)| format!("db{d}={n}")).collect();
    let crc = if report.crc_checked {
        format!("checksum ok ({:#018x})", report.crc)
    } else {
        "no checksum stored".to_string()
    };
    let header = format!("{}{:04}", report.magic, report.version);
    let servers = loads_in(report.magic, report.version).unwrap_or("no known server");
    let loads = if report.lz4_framed {
        format!("no server loads an LZ4 frame (after lz4 -d: {servers})")
    } else {
        format!("loads in {servers}")
    };
    out(&format!(
        "ok: {} {header} ({}), keys {} [{}], {crc}; {loads}",
        file.display(),
        if report.lz4_framed {
            "LZ4 frame"
        } else {
            "plain"
        },
        per_db.values().sum::<u64>(),
        dbs.join(" "),
    ));
    if report.lz4_framed {
        eprintln!(
            "warning: {} is an LZ4 frame, which no server loads directly: `lz4 -d {} dump.rdb` gives the plain RDB",
            file.display(),
            file.display()
        );
    }
    Ok(())
}

/// The process's peak resident set (VmHWM), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn load_timed(file: &Path, json: bool) -> Result<(), String> {
    let input = open(file)?;
    let before = peak_rss();
    let t = std::time::Instant::now();
    let mut ks = forksnap::MemKeyspace::new();
    let report = load_into(input, &LoadOptions::default(), &mut ks)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let secs = t.elapsed().as_secs_f64();
    let peak = peak_rss();
    let keys = ks.len() as u64;
    let rate = keys as f64 / secs.max(1e-9);
    if json {
        out(&serde_json::json!({
            "file": file.display().to_string(),
            "keys": keys,
            "seconds": secs,
            "keys_per_second": rate,
            "peak_rss_bytes": peak,
            "peak_rss_before_bytes": before,
            "rdb_bytes": report.rdb_bytes,
            "lz4_framed": report.lz4_framed,
        })
        .to_string());
    } else {
        out(&format!(
            "loaded {keys} keys from {} ({}) in {secs:.3} s: {:.0} keys/s, peak RSS {} MiB",
            file.display(),
            if report.lz4_framed {
                "LZ4 frame"
            } else {
                "plain RDB"
            },
            rate,
            peak >> 20
        ));
    }
    Ok(())
}

fn type_encoding(code: u8) -> (&'static str, &'static str) {
    match code {
        types::STRING => ("string", "string"),
        types::LIST => ("list", "linkedlist"),
        types::SET => ("set", "hashtable"),
        types::ZSET | types::ZSET_2 => ("zset", "skiplist"),
        types::HASH => ("hash", "hashtable"),
        types::HASH_ZIPMAP => ("hash", "zipmap"),
        types::LIST_ZIPLIST => ("list", "ziplist"),
        types::SET_INTSET => ("set", "intset"),
        types::ZSET_ZIPLIST => ("zset", "ziplist"),
        types::HASH_ZIPLIST => ("hash", "ziplist"),
        types::LIST_QUICKLIST => ("list", "quicklist"),
        types::LIST_QUICKLIST_2 => ("list", "quicklist2"),
        types::HASH_LISTPACK => ("hash", "listpack"),
        types::ZSET_LISTPACK => ("zset", "listpack"),
        types::SET_LISTPACK => ("set", "listpack"),
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            ("stream", "listpacks")
        }
        types::HASH_METADATA | types::HASH_METADATA_PRE_GA => ("hash", "hashtable-ttl"),
        types::HASH_LISTPACK_EX | types::HASH_LISTPACK_EX_PRE_GA => ("hash", "listpack-ex"),
        _ => ("module", "module"),
    }
}

fn inspect(file: &Path, json: bool, top: usize) -> Result<(), String> {
    let input = open(file)?;
    let mut per_db: BTreeMap<u32, u64> = BTreeMap::new();
    // (type, encoding) -> (keys, elements, bytes in the file)
    let mut per_enc: BTreeMap<(&str, &str), (u64, u64, u64)> = BTreeMap::new();
    let mut expiring = 0u64;
    let mut largest: Vec<(u64, u32, Vec<u8>, &str, u64)> = Vec::new();
    let mut record = |info: &KeyInfo<'_>| {
        let (t, e) = type_encoding(info.type_code);
        *per_db.entry(info.db).or_default() += 1;
        let row = per_enc.entry((t, e)).or_default();
        row.0 += 1;
        row.1 += info.elements;
        row.2 += info.bytes;
        expiring += u64::from(info.expire_ms.is_some());
        if top > 0 && (largest.len() < top || info.bytes > largest.last().map_or(0, |l| l.0)) {
            largest.push((info.bytes, info.db, info.key.to_vec(), t, info.elements));
            largest.sort_by_key(|l| std::cmp::Reverse(l.0));
            largest.truncate(top);
        }
    };
    let report = load_observed(input, &LoadOptions::default(), &mut Nothing, &mut record)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if json {
        let mut bytes_per_type: BTreeMap<&str, u64> = BTreeMap::new();
        for ((t, _), (_, _, b)) in &per_enc {
            *bytes_per_type.entry(t).or_default() += b;
        }
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "magic": report.magic,
            "version": report.version,
            "lz4_framed": report.lz4_framed,
            "rdb_bytes": report.rdb_bytes,
            "crc_checked": report.crc_checked,
            "keys": per_db.values().sum::<u64>(),
            "keys_per_db": per_db.iter().map(|(d, n)| (d.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "expiring_keys": expiring,
            "encodings": per_enc.iter().map(|((t, e), (n, el, b))| serde_json::json!({"type": t, "encoding": e, "keys": n, "elements": el, "bytes": b})).collect::<Vec<_>>(),
            "bytes_per_type": bytes_per_type,
            "largest_keys": largest.iter().map(|(b, d, k, t, n)| serde_json::json!({
                "db": d, "key": String::from_utf8_lossy(k), "type": t, "bytes": b, "elements": n})).collect::<Vec<_>>(),
            "aux": report.aux.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())).collect::<BTreeMap<_, _>>(),
            "skipped_values": report.values_skipped,
            "functions": report.functions,
        });
        out(&v.to_string());
        return Ok(());
    }
    out(&format!(
        "{}: {}{:04}{}, {} bytes of RDB, checksum {}",
        file.display(),
        report.magic,
        report.version,
        if report.lz4_framed {
            " in an LZ4 frame"
        } else {
            ""
        },
        report.rdb_bytes,
        if report.crc_checked {
            "ok"
        } else {
            "not stored"
        }
    ));
    out(&format!(
        "keys: {} ({expiring} with expiry)",
        per_db.values().sum::<u64>()
    ));
    for (d, n) in &per_db {
        out(&format!("  db{d:<6}{n:>12} keys"));
    }
    out(&format!(
        "  {:<8}{:<12}{:>12}{:>14}{:>16}",
        "type", "encoding", "keys", "elements", "bytes in file"
    ));
    let mut last_type = "";
    for ((t, e), (n, el, b)) in &per_enc {
        let shown = if *t == last_type { "" } else { t };
        last_type = t;
        out(&format!("  {shown:<8}{e:<12}{n:>12}{el:>14}{b:>16}"));
    }
    if per_enc.len() > 1 {
        let (n, el, b) = per_enc
            .values()
            .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
        out(&format!("  {:<8}{:<12}{n:>12}{el:>14}{b:>16}", "all", ""));
    }
    if !largest.is_empty() {
        out("largest keys (bytes in file):");
        for (b, d, k, t, n) in &largest {
            let el = if *n == 1 { "element" } else { "elements" };
            out(&format!(
                "  {b:>12}  db{d} {t:<6} {n:>9} {el:<8}  {:?}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    if report.functions > 0 {
        out(&format!("function libraries: {}", report.functions));
    }
    if report.module_aux > 0 {
        out(&format!(
            "module data outside the keyspace (MODULE_AUX records): {}",
            report.module_aux
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn convert(
    input: &Path,
    output: &Path,
    version: u8,
    compression: Compression,
    skip: bool,
    drop_field_ttls: bool,
    fork: bool,
    backend: Backend,
    direct: Option<bool>,
) -> Result<(), String> {
    if output.is_dir() {
        return Err(format!(
            "{} is a directory: give the file to write, e.g. {}",
            output.display(),
            output.join("dump.rdb").display()
        ));
    }
    let mut ks = forksnap::MemKeyspace::new();
    let report = load_into(
        open(input)?,
        &LoadOptions {
            skip_unsupported: skip,
            ..Default::default()
        },
        &mut ks,
    )
    .map_err(|e| match e {
        forksnap::Error::Unsupported { .. } => format!(
            "{}: {e}; run again with --skip-unsupported to drop such values",
            input.display()
        ),
        e => format!("{}: {e}", input.display()),
    })?;
    let opts = SnapshotOptions::new(output)
        .rdb_version(version)
        .drop_field_ttls(drop_field_ttls)
        .format(if matches!(compression, Compression::Lz4) {
            Format::Lz4
        } else {
            Format::Rdb
        })
        .lzf(matches!(compression, Compression::Lzf))
        .backend(match backend {
            Backend::Auto => BackendKind::Auto,
            Backend::Uring => BackendKind::Uring,
            Backend::Pwrite => BackendKind::Pwrite,
        });
    let opts = match direct {
        Some(on) => opts.direct(on),
        None => opts,
    };
    let r = if fork {
        opts.start(&ks).and_then(|r| r.wait())
    } else {
        opts.save(&ks)
    }
    .map_err(|e| match e {
        // The library names the temp file it wrote; the user typed OUT.
        forksnap::Error::Io {
            op, source, offset, ..
        } => format!(
            "cannot write {}: {op} failed{}: {source} (nothing replaced)",
            output.display(),
            offset.map_or(String::new(), |o| format!(" at byte {o}"))
        ),
        e @ forksnap::Error::BadValue { .. } if e.to_string().contains("TTLs") => format!(
            "{}: {e}; run again with --rdb-version 12 (Redis >= 7.4) or 80 (Valkey >= 9), or --drop-field-ttls (nothing replaced)",
            output.display()
        ),
        e => format!("{}: {e}", output.display()),
    })?;
    let mut dropped = Vec::new();
    if r.summary.field_ttls_dropped > 0 {
        dropped.push(format!(
            "the field TTLs of {} hashes",
            r.summary.field_ttls_dropped
        ));
    }
    if report.values_skipped > 0 {
        dropped.push(format!("{} module values", report.values_skipped));
    }
    if report.module_aux_skipped > 0 {
        dropped.push(format!("{} MODULE_AUX records", report.module_aux_skipped));
    }
    let empty = report.empty_skipped + r.summary.skipped_empty;
    if empty > 0 {
        dropped.push(format!("{empty} empty collections"));
    }
    out(&format!(
        "wrote {}: {} keys, {} bytes, {}{}",
        output.display(),
        r.keys(),
        r.bytes_written,
        loads_in("REDIS", u32::from(version))
            .map(|s| match compression {
                Compression::Lz4 => format!("an LZ4 frame (after lz4 -d: {s})"),
                _ => format!("loads in {s}"),
            })
            .unwrap_or_default(),
        if dropped.is_empty() {
            String::new()
        } else {
            format!("; dropped {}", dropped.join(", "))
        }
    ));
    Ok(())
}
