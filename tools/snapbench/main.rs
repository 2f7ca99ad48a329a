//! `snapbench`: what a snapshot costs. Builds a deterministic dataset, snapshots it through
//! the fork pipeline (and, for comparison, in-process `save` and a plain buffered
//! `std::fs::File` writer) across formats, backends, O_DIRECT and writer threads, loads the
//! parent with a write mutator, and reports per run. The flags and the `--json` fields are
//! a contract scripts rely on (docs/PERFORMANCE.md, `tools/compare-peers`).
//!
//! Rule of the command line: what a flag pins is run as given; every axis not pinned is
//! swept (so no flags at all runs the default suite).

#![recursion_limit = "256"]

mod datasets;
mod mutator;
mod svg;

use clap::{Parser, ValueEnum};
use datasets::{Dataset, Spec, Values};
use forksnap::buf::ChunkBuf;
use forksnap::rdb::{encode, ChunkSink, EncodeOptions};
use forksnap::{BackendKind, ChildPriority, Format, MemKeyspace, SnapshotOptions, SnapshotReport};
use indicatif::{ProgressBar, ProgressStyle};
use mutator::{Load, Mutator, Point};
use serde_json::{json, Value as Json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "snapbench",
    version,
    about = "Measure what a forksnap snapshot costs"
)]
struct Cli {
    /// Dataset shape (default suite: populate with DEBUG POPULATE's own values, then mixed
    /// with a fifth as many keys).
    #[arg(long, value_enum)]
    dataset: Option<Dataset>,
    /// Keys (populate, mixed) or elements in all (large). Default 1,000,000.
    #[arg(long)]
    keys: Option<u64>,
    /// String value size in bytes (populate: exact; mixed: the typical size).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Value content of populate (zero = DEBUG POPULATE's own).
    #[arg(long, value_enum)]
    values: Option<Values>,
    #[arg(long, value_enum)]
    format: Option<Fmt>,
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u8).range(9..=12))]
    rdb_version: u8,
    /// The write backend: `default` (the library's choice, nothing set), or `auto`,
    /// `uring`, `pwrite` with `--direct` as given; unset: the default and the explicit
    /// ones in turn.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Write with O_DIRECT.
    #[arg(long)]
    direct: bool,
    /// Writes in flight (io_uring).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    queue_depth: u32,
    /// Bytes per chunk (one write), rounded up to whole 4096-byte pages; at most 64 MiB.
    #[arg(long, default_value_t = 1 << 20)]
    chunk_size: usize,
    /// Cap the snapshot's write rate at this many bytes per second (the library's
    /// `max_write_rate`; default: no cap). outMB/s then shows the rate held.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_write_rate: Option<u64>,
    /// Writer threads in the child (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1))]
    workers: u64,
    /// Encoding threads in the child (the library's `threads`; 1: the encoding thread
    /// alone).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// The child's scheduling class: batch (the library's default), inherit, idle, or
    /// nice:N (0..=19).
    #[arg(long, default_value = "batch", value_parser = parse_priority)]
    child_priority: ChildPriority,
    /// fork (BGSAVE-like), inproc (`SnapshotOptions::save`), file (encode + buffered
    /// std::fs::File). Default: all three.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Timed runs per configuration; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Parent overwrites per second during the load run (0: no load runs).
    #[arg(long, default_value_t = 100_000)]
    mutate_rate: u64,
    /// Load runs (each a baseline, then a snapshot under the same load) per forked
    /// configuration; the table shows the one with the median p99 ratio.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    load_runs: u64,
    /// Skip the run that measures the child's own memory.
    #[arg(long)]
    no_probe: bool,
    /// Write the snapshot to PATH and keep it (one configuration only).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One JSON object per run on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Picture of CoW and parent write latency over time during the load runs.
    #[arg(long, default_value = "snapbench.svg")]
    svg: PathBuf,
    #[arg(long)]
    no_svg: bool,
    /// Seed of the dataset and the mutator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for snapshot files (default: a new directory in the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the dataset as Redis commands (RESP, for `redis-cli --pipe`) and exit.
    #[arg(long)]
    emit_commands: bool,
}

fn parse_priority(s: &str) -> Result<ChildPriority, String> {
    match s {
        "batch" => Ok(ChildPriority::Batch),
        "inherit" => Ok(ChildPriority::Inherit),
        "idle" => Ok(ChildPriority::Idle),
        _ => match s.strip_prefix("nice:").map(str::parse::<i32>) {
            Some(Ok(n)) if (0..=19).contains(&n) => Ok(ChildPriority::Nice(n)),
            _ => Err(format!(
                "`{s}`: expected batch, inherit, idle or nice:N with N in 0..=19"
            )),
        },
    }
}

fn priority_name(p: ChildPriority) -> String {
    match p {
        ChildPriority::Batch => "batch".into(),
        ChildPriority::Inherit => "inherit".into(),
        ChildPriority::Idle => "idle".into(),
        ChildPriority::Nice(n) => format!("nice:{n}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Fmt {
    Rdb,
    RdbLzf,
    Lz4,
}

impl Fmt {
    fn name(self) -> &'static str {
        match self {
            Fmt::Rdb => "rdb",
            Fmt::RdbLzf => "rdb-lzf",
            Fmt::Lz4 => "lz4",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The library's default, nothing set (`--direct` ignored): what a user runs.
    Default,
    Auto,
    Uring,
    Pwrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Fork,
    Inproc,
    File,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Fork => "fork",
            Mode::Inproc => "inproc",
            Mode::File => "file",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    mode: Mode,
    format: Fmt,
    backend: Backend,
    /// O_DIRECT: `None` is the library's default (where the file system accepts it).
    direct: Option<bool>,
}

impl Config {
    fn backend_name(&self) -> String {
        let b = match (self.mode, self.backend, self.direct) {
            (Mode::File, _, _) => "std-file",
            (_, Backend::Auto, None) => "default",
            (_, Backend::Auto, _) => "auto",
            (_, Backend::Uring, _) => "uring",
            (_, Backend::Default, _) => unreachable!("configs() maps default to Auto"),
            (_, Backend::Pwrite, _) => "pwrite",
        };
        if self.direct == Some(true) {
            format!("{b}+direct")
        } else {
            b.to_string()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("snapbench: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

fn specs(cli: &Cli) -> Result<Vec<Spec>, String> {
    if cli.values.is_some() && cli.dataset.is_some_and(|d| d != Dataset::Populate) {
        return Err("--values applies to --dataset populate only".into());
    }
    let keys = cli.keys.unwrap_or(1_000_000);
    if keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if cli.value_size == 0 {
        return Err("--value-size must be at least 1".into());
    }
    let spec = |dataset, values| Spec {
        dataset,
        keys,
        value_size: cli.value_size,
        values,
        seed: cli.seed,
    };
    Ok(match (cli.dataset, cli.values) {
        (Some(Dataset::Populate) | None, Some(v)) => vec![spec(Dataset::Populate, v)],
        (Some(Dataset::Populate), None) => vec![spec(Dataset::Populate, Values::Zero)],
        (Some(d), None) => vec![spec(d, Values::Text)],
        // The default suite: DEBUG POPULATE's shape, then a fifth as many mixed keys
        // (with text and random content, so compression is measured honestly).
        (None, None) => vec![
            spec(Dataset::Populate, Values::Zero),
            Spec {
                keys: (keys / 5).max(1),
                ..spec(Dataset::Mixed, Values::Text)
            },
        ],
        (Some(_), Some(_)) => unreachable!("checked above"),
    })
}

fn configs(cli: &Cli) -> Vec<Config> {
    let formats = match cli.format {
        Some(f) => vec![f],
        None => vec![Fmt::Rdb, Fmt::RdbLzf, Fmt::Lz4],
    };
    let pinned_backend = cli.backend.is_some() || cli.direct;
    let modes = match cli.mode {
        Some(m) => vec![m],
        // A pinned backend means the fork pipeline is what is being measured.
        None if pinned_backend => vec![Mode::Fork],
        None => vec![Mode::Fork, Mode::Inproc, Mode::File],
    };
    let mut v = Vec::new();
    for mode in modes {
        for &format in &formats {
            // The library's default first, then the explicit configurations it chooses
            // between (buffered io_uring, measured slower than pwrite, only when pinned).
            let backends: Vec<(Backend, Option<bool>)> = match mode {
                Mode::File => vec![(Backend::Auto, None)],
                _ if cli.backend == Some(Backend::Default) => vec![(Backend::Auto, None)],
                _ if pinned_backend => {
                    vec![(cli.backend.unwrap_or(Backend::Auto), Some(cli.direct))]
                }
                Mode::Inproc => vec![(Backend::Auto, None)],
                Mode::Fork => vec![
                    (Backend::Auto, None),
                    (Backend::Pwrite, Some(false)),
                    (Backend::Uring, Some(true)),
                ],
            };
            for (backend, direct) in backends {
                v.push(Config {
                    mode,
                    format,
                    backend,
                    direct,
                });
            }
        }
    }
    v
}

/// One measured run.
struct RunOut {
    wall: Duration,
    raw_bytes: u64,
    bytes_written: u64,
    keys: u64,
    report: Option<SnapshotReport>,
    load: Option<Load>,
    baseline: Option<Load>,
}

fn run(cli: Cli) -> Result<(), String> {
    let specs = specs(&cli)?;
    if cli.emit_commands {
        let [spec] = &specs[..] else {
            return Err("--emit-commands writes one dataset: give --dataset".into());
        };
        let stdout = std::io::stdout().lock();
        let mut cmds = datasets::Commands::new(std::io::BufWriter::with_capacity(1 << 20, stdout));
        datasets::generate(spec, &mut cmds);
        return cmds
            .finish()
            .map_err(|e| format!("writing commands to stdout: {e}"));
    }
    let configs = configs(&cli);
    if cli.out.is_some() && (configs.len() != 1 || specs.len() != 1) {
        return Err(format!(
            "--out keeps one file, but {} configurations would run: pin --dataset, --format and --backend (or --mode)",
            configs.len() * specs.len()
        ));
    }
    let own_dir = cli.dir.is_none() && cli.out.is_none();
    let dir = match (&cli.out, &cli.dir) {
        (Some(p), _) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        (None, Some(d)) => d.clone(),
        (None, None) => std::env::temp_dir().join(format!("snapbench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = suite(&cli, &specs, &configs, &dir);
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn suite(cli: &Cli, specs: &[Spec], configs: &[Config], dir: &Path) -> Result<(), String> {
    let runs = cli.runs.max(1);
    let per_config = |c: &Config| {
        runs + if c.mode == Mode::Fork {
            usize::from(cli.mutate_rate > 0) * 2 * cli.load_runs as usize
                + usize::from(!cli.no_probe)
        } else {
            0
        }
    };
    let total: usize = specs.len() * configs.iter().map(per_config).sum::<usize>();
    let bar = progress(total as u64, !cli.json && std::io::stderr().is_terminal());
    if !cli.json {
        legend(cli);
    }
    let mut pictures = Vec::new();
    let mut overview = Vec::new();
    for spec in specs {
        bar.set_prefix(spec.dataset.name());
        bar.set_message(format!("building the dataset ({} keys)", spec.keys));
        let t = Instant::now();
        let mut ks = datasets::build(spec);
        let build_s = t.elapsed().as_secs_f64();
        let label = dataset_label(spec);
        let keys_total = ks.len() as u64;
        if !cli.json {
            bar.suspend(|| {
                out(&format!(
                    "\ndataset {label}: {keys_total} keys, built in {build_s:.1} s; median of {runs} run(s); RDB version {}; child scheduling {}",
                    cli.rdb_version,
                    priority_name(cli.child_priority)
                ));
                out(&format!(
                    "{:<7} {:<8} {:<13} {:>7} {:>9} {:>8} {:>8} {:>13} {:>7} {:>8} {:>7} {:>7} {:>8} {:>9} {:>10}",
                    "mode", "format", "backend", "wall_s", "Mkeys/s", "rawMB/s", "outMB/s", "file_bytes",
                    "x_plain", "fork_us", "cpu_s", "sqe/sub", "wr_p99us", "cow_MiB", "child_MiB"
                ));
            });
        }
        let mut load_rows = Vec::new();
        let mut summary = Summary::default();
        for c in configs {
            let name = format!(
                "{label} {} {} {}",
                c.mode.name(),
                c.format.name(),
                c.backend_name()
            );
            bar.set_prefix(name.clone());
            let path = match &cli.out {
                Some(p) => p.clone(),
                None => dir.join(format!(
                    "snapbench-{}-{}-{}.rdb",
                    c.mode.name(),
                    c.format.name(),
                    c.backend_name().replace('+', "-")
                )),
            };
            let opts = snapshot_options(cli, c, &path);
            let mut timed = Vec::new();
            for i in 0..runs {
                bar.set_message(format!("timed run {} of {runs}", i + 1));
                let r = one_run(&mut ks, c, &opts, &path, None, &bar)?;
                emit_json(cli, spec, c, "timed", i, &r, &path);
                timed.push(r);
                bar.inc(1);
            }
            timed.sort_by_key(|r| r.wall);
            let med = &timed[timed.len() / 2];
            let mut load_run = None;
            let mut child_own = None;
            if c.mode == Mode::Fork && cli.mutate_rate > 0 {
                let mut m = Mutator::new(spec.dataset, spec.keys, cli.seed, cli.mutate_rate as f64);
                let dur = med.wall.max(Duration::from_millis(500));
                let mut loads = Vec::new();
                for i in 0..cli.load_runs as usize {
                    bar.set_message("parent writes without a snapshot (baseline)".to_string());
                    let (base, _) = m.run(&mut ks, None, dur, &mut |_| {})?;
                    bar.inc(1);
                    bar.set_message("parent writes during a snapshot".to_string());
                    let mut r = one_run(&mut ks, c, &opts, &path, Some(&mut m), &bar)?;
                    r.baseline = Some(base);
                    emit_json(cli, spec, c, "load", i, &r, &path);
                    bar.inc(1);
                    loads.push(r);
                }
                loads.sort_by(|a, b| p99_ratio(a).total_cmp(&p99_ratio(b)));
                load_run = Some(loads.swap_remove(loads.len() / 2));
            }
            if c.mode == Mode::Fork && !cli.no_probe {
                bar.set_message("child memory probe".to_string());
                let r = one_run(
                    &mut ks,
                    c,
                    &opts.clone().probe_child_memory(true),
                    &path,
                    None,
                    &bar,
                )?;
                emit_json(cli, spec, c, "memory", 0, &r, &path);
                child_own = r.report.as_ref().and_then(|x| x.child_private_bytes);
                bar.inc(1);
            }
            if cli.out.is_none() {
                let _ = std::fs::remove_file(&path);
            }
            if c.format != Fmt::RdbLzf && summary.plain_bytes.is_none() {
                // The RDB before LZF or LZ4: what x_plain compares every file with.
                summary.plain_bytes = Some(med.raw_bytes);
            }
            if c.format == Fmt::RdbLzf && summary.plain_bytes.is_none() {
                summary.plain_bytes = Some(plain_rdb_bytes(&ks, &opts.encode_options())?);
            }
            summary.add(c, med, load_run.as_ref());
            overview.push(svg::Row {
                dataset: label.clone(),
                name: format!("{} {} {}", c.mode.name(), c.format.name(), c.backend_name()),
                wall_s: med.wall.as_secs_f64(),
                file_bytes: med.bytes_written,
                p99_ratio: load_run.as_ref().map(p99_ratio).filter(|x| x.is_finite()),
            });
            if !cli.json {
                let line = table_row(c, med, load_run.as_ref(), child_own, summary.plain_bytes);
                bar.suspend(|| out(&line));
            }
            if let Some(r) = load_run {
                if let (Some(load), Some(base)) = (&r.load, &r.baseline) {
                    load_rows.push(load_row(c, &r, load, base));
                    pictures.push(svg::Panel {
                        dataset: label.clone(),
                        title: format!(
                            "{} {} {}, {}k writes/s",
                            c.mode.name(),
                            c.format.name(),
                            c.backend_name(),
                            cli.mutate_rate / 1000
                        ),
                        series: load.series.clone(),
                        baseline_p99_ns: base.hist.value_at_quantile(0.99),
                        baseline_max_ns: base.hist.max(),
                        wall_s: r.wall.as_secs_f64(),
                    });
                }
            }
        }
        if !cli.json && !load_rows.is_empty() {
            bar.suspend(|| {
                out(&format!(
                    "parent overwrites at {} writes/s: write latency µs without -> with a snapshot (baseline run of the same length)",
                    cli.mutate_rate
                ));
                out(&format!(
                    "{:<7} {:<8} {:<13} {:>7} {:>15} {:>17} {:>17} {:>17} {:>9} {:>9} {:>8}",
                    "mode", "format", "backend", "wall_s", "p50", "p99", "p999", "max", "p99_x",
                    "cow_MiB", "writes/s"
                ));
                for l in &load_rows {
                    out(l);
                }
            });
        }
        if !cli.json {
            let lines = summary.lines(cli.mutate_rate);
            bar.suspend(|| lines.iter().for_each(|l| out(l)));
        }
    }
    bar.finish_and_clear();
    if !cli.no_svg && !overview.is_empty() {
        std::fs::write(&cli.svg, svg::render(&overview, &pictures))
            .map_err(|e| format!("cannot write {}: {e}", cli.svg.display()))?;
        if !cli.json {
            out(&format!(
                "\npicture (overview per dataset, then CoW and parent write latency over time): {}",
                cli.svg.display()
            ));
        }
    }
    Ok(())
}

/// Progress: a bar with an ETA on a terminal; otherwise a line on stderr every 15 s (CI
/// logs show where a long suite is instead of nothing for minutes).
fn progress(total: u64, tty: bool) -> ProgressBar {
    if tty {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} runs, ETA {eta}  {prefix}: {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        return b;
    }
    let b = ProgressBar::hidden();
    b.set_length(total);
    let watch = b.clone();
    std::thread::spawn(move || {
        let mut last = Instant::now();
        while !watch.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if last.elapsed() >= Duration::from_secs(15) && !watch.is_finished() {
                last = Instant::now();
                let (pos, len) = (watch.position(), watch.length().unwrap_or(0));
                let eta = if pos > 0 {
                    let left = watch.elapsed().as_secs_f64() / pos as f64 * (len - pos) as f64;
                    format!(", about {left:.0} s left")
                } else {
                    String::new()
                };
                eprintln!(
                    "snapbench: {pos}/{len} runs after {:.0} s{eta}; {}: {}",
                    watch.elapsed().as_secs_f64(),
                    watch.prefix(),
                    watch.message()
                );
            }
        }
    });
    b
}

/// What each column of the two tables means, printed once before them.
fn legend(cli: &Cli) {
    let lines = [
        "columns (each a median over the timed runs of one configuration):".to_string(),
        "  mode        fork: forked child, as BGSAVE; inproc: the same pipeline in this process; file: encode + buffered std::fs::File".into(),
        "  wall_s      from the call that forks until the file is in place and the child is reaped (BGSAVE's span)".into(),
        "  Mkeys/s     keys per second of wall_s".into(),
        "  rawMB/s     RDB bytes per second (the RDB before LZ4 framing; with LZF, after it)".into(),
        "  outMB/s     file bytes per second".into(),
        "  file_bytes  size of the file written".into(),
        "  x_plain     plain (uncompressed) RDB bytes / file bytes: what LZF or LZ4 saved; 1.00 for plain RDB".into(),
        "  fork_us     time fork() took in the parent, µs".into(),
        "  cpu_s       the child's CPU time (user + system)".into(),
        "  sqe/sub     io_uring writes submitted per io_uring_enter (batching); - for pwrite".into(),
        "  wr_p99us    p99 of one write's latency from submission to completion, µs".into(),
        format!("  cow_MiB     peak copy-on-write while the parent overwrote {} keys/s", cli.mutate_rate),
        "  child_MiB   the child's own memory (Private_Dirty) half-way through its walk".into(),
        "  load table: parent write latency µs, baseline (no snapshot) -> during a snapshot; p99_x = p99 ratio".into(),
    ];
    for l in lines {
        out(&l);
    }
}

/// The one-line verdicts printed after each dataset's tables.
#[derive(Default)]
struct Summary {
    plain_bytes: Option<u64>,
    fastest: Option<(String, f64)>,
    fastest_fork: Option<(String, f64)>,
    smallest: Option<(String, u64)>,
    best_p99: Option<(String, f64)>,
    /// Lowest rate the mutator reached in a load run.
    mutator_rate: Option<f64>,
}

impl Summary {
    fn add(&mut self, c: &Config, r: &RunOut, load: Option<&RunOut>) {
        let name = format!("{} {} {}", c.mode.name(), c.format.name(), c.backend_name());
        let wall = r.wall.as_secs_f64();
        if self.fastest.as_ref().is_none_or(|f| wall < f.1) {
            self.fastest = Some((name.clone(), wall));
        }
        if c.mode == Mode::Fork && self.fastest_fork.as_ref().is_none_or(|f| wall < f.1) {
            self.fastest_fork = Some((name.clone(), wall));
        }
        if self.smallest.as_ref().is_none_or(|f| r.bytes_written < f.1) {
            // Every backend writes the same bytes: the format decides the size.
            self.smallest = Some((c.format.name().to_string(), r.bytes_written));
        }
        if let Some(l) = load {
            let ratio = p99_ratio(l);
            if ratio.is_finite() && self.best_p99.as_ref().is_none_or(|f| ratio < f.1) {
                self.best_p99 = Some((name, ratio));
            }
            if let Some(rate) = l.load.as_ref().map(|x| x.rate()) {
                self.mutator_rate = Some(self.mutator_rate.map_or(rate, |m: f64| m.min(rate)));
            }
        }
    }

    fn lines(&self, target_rate: u64) -> Vec<String> {
        let mut v = Vec::new();
        let mut parts = Vec::new();
        if let Some((n, w)) = &self.fastest_fork {
            parts.push(format!("fastest forked snapshot {n} ({w:.3} s)"));
        }
        if let Some((n, w)) = &self.fastest {
            if self.fastest_fork.as_ref().is_none_or(|f| &f.0 != n) {
                parts.push(format!("fastest of all {n} ({w:.3} s)"));
            }
        }
        if let Some((n, b)) = &self.smallest {
            parts.push(format!("smallest file {n} ({b} bytes)"));
        }
        if let Some((n, x)) = &self.best_p99 {
            parts.push(format!("lowest parent p99 ratio {n} ({x:.2}x)"));
        }
        if !parts.is_empty() {
            v.push(format!("summary: {}", parts.join("; ")));
        }
        if let Some(rate) = self.mutator_rate {
            if rate < 0.95 * target_rate as f64 {
                v.push(format!(
                    "note: the parent's mutator reached {rate:.0} writes/s, short of the {target_rate} asked: \
                     this machine could not write faster while the child ran"
                ));
            }
        }
        v
    }
}

/// Bytes of the plain (uncompressed) RDB of `ks`, counted by encoding into a sink that
/// keeps nothing.
fn plain_rdb_bytes(ks: &MemKeyspace, enc: &EncodeOptions) -> Result<u64, String> {
    struct Count(u64);
    impl ChunkSink for Count {
        fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> forksnap::Result<()> {
            self.0 += chunk.len() as u64;
            chunk.clear();
            Ok(())
        }
    }
    let mut enc = enc.clone();
    enc.lzf = false;
    let (_, _, summary) =
        encode(ks, &enc, Count(0), ChunkBuf::new(1 << 20)).map_err(|e| e.to_string())?;
    Ok(summary.bytes)
}

fn dataset_label(spec: &Spec) -> String {
    match spec.dataset {
        Dataset::Populate => format!("populate-{}", spec.values.name()),
        d => d.name().to_string(),
    }
}

/// Parent write p99 during the snapshot over its p99 without one.
fn p99_ratio(r: &RunOut) -> f64 {
    match (&r.load, &r.baseline) {
        (Some(l), Some(b)) => l.pct_us(0.99) / b.pct_us(0.99).max(1e-9),
        _ => 0.0,
    }
}

fn snapshot_options(cli: &Cli, c: &Config, path: &Path) -> SnapshotOptions {
    let (format, lzf) = match c.format {
        Fmt::Rdb => (Format::Rdb, false),
        Fmt::RdbLzf => (Format::Rdb, true),
        Fmt::Lz4 => (Format::Lz4, false),
    };
    let opts = SnapshotOptions::new(path)
        .format(format)
        .lzf(lzf)
        .rdb_version(cli.rdb_version)
        .backend(match c.backend {
            Backend::Auto | Backend::Default => BackendKind::Auto,
            Backend::Uring => BackendKind::Uring,
            Backend::Pwrite => BackendKind::Pwrite,
        })
        .workers(cli.workers as usize)
        .threads(cli.threads as usize)
        .child_priority(cli.child_priority)
        .queue_depth(cli.queue_depth)
        .chunk_size(cli.chunk_size)
        .max_write_rate(cli.max_write_rate);
    match c.direct {
        Some(on) => opts.direct(on),
        None => opts,
    }
}

fn one_run(
    ks: &mut MemKeyspace,
    c: &Config,
    opts: &SnapshotOptions,
    path: &Path,
    mutator: Option<&mut Mutator>,
    bar: &ProgressBar,
) -> Result<RunOut, String> {
    let keys = ks.len() as u64;
    match c.mode {
        Mode::Fork => {
            let mut running = opts.start(ks).map_err(|e| e.to_string())?;
            let tick = &mut |s: &forksnap::RunningSnapshot| {
                let p = s.progress();
                bar.set_message(format!("child: {} / {keys} keys", p.keys));
            };
            let (report, load) = match mutator {
                Some(m) => {
                    let (load, rep) = m.run(ks, Some(&mut running), Duration::ZERO, tick)?;
                    (
                        rep.ok_or("the snapshot ended without a report")?,
                        Some(load),
                    )
                }
                // `wait` sleeps in poll(2) on the child's pipe and wakes when it closes, so
                // the measured wall does not include a polling interval.
                None => (running.wait().map_err(|e| e.to_string())?, None),
            };
            Ok(RunOut {
                wall: report.wall,
                raw_bytes: report.summary.bytes,
                bytes_written: report.bytes_written,
                keys: report.keys(),
                report: Some(report),
                load,
                baseline: None,
            })
        }
        Mode::Inproc => {
            let t = Instant::now();
            let report = opts.save(ks).map_err(|e| e.to_string())?;
            Ok(RunOut {
                wall: t.elapsed(),
                raw_bytes: report.summary.bytes,
                bytes_written: report.bytes_written,
                keys: report.keys(),
                report: Some(report),
                load: None,
                baseline: None,
            })
        }
        Mode::File => plain_file(ks, &opts.encode_options(), c.format == Fmt::Lz4, path),
    }
}

/// The comparison writer: encode into 1 MiB chunks, `write_all` them through a buffered
/// `std::fs::File`, fsync, rename. What a straightforward implementation would do.
fn plain_file(
    ks: &MemKeyspace,
    enc: &EncodeOptions,
    lz4: bool,
    path: &Path,
) -> Result<RunOut, String> {
    struct FileSink {
        w: std::io::BufWriter<std::fs::File>,
        framer: Option<forksnap::frame::Framer>,
        written: u64,
        path: PathBuf,
    }
    impl FileSink {
        fn put(&mut self, raw: &[u8], last: bool) -> forksnap::Result<()> {
            let bytes = match (&mut self.framer, last) {
                (Some(f), false) => f.chunk(raw),
                (Some(f), true) => f.finish(raw),
                (None, _) => raw,
            };
            self.written += bytes.len() as u64;
            self.w
                .write_all(bytes)
                .map_err(|source| forksnap::Error::Io {
                    op: "write",
                    path: self.path.clone(),
                    offset: Some(self.written - bytes.len() as u64),
                    source,
                })
        }
    }
    impl ChunkSink for FileSink {
        fn chunk_full(&mut self, chunk: &mut ChunkBuf) -> forksnap::Result<()> {
            self.put(chunk.as_slice(), false)?;
            chunk.clear();
            Ok(())
        }
    }
    let t = Instant::now();
    let tmp = path.with_extension("plain-tmp");
    let f =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let sink = FileSink {
        w: std::io::BufWriter::with_capacity(1 << 20, f),
        framer: lz4
            .then(|| forksnap::frame::Framer::new(forksnap::frame::BlockMax::for_chunk(1 << 20))),
        written: 0,
        path: tmp.clone(),
    };
    let res =
        encode(ks, enc, sink, ChunkBuf::new(1 << 20)).and_then(|(mut sink, last, summary)| {
            sink.put(last.as_slice(), true)?;
            Ok((sink, summary))
        });
    let (sink, summary) = match res {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.to_string());
        }
    };
    let written = sink.written;
    let f = sink
        .w
        .into_inner()
        .map_err(|e| format!("writing {}: {}", tmp.display(), e.error()))?;
    f.sync_all()
        .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), path.display()))?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(d)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync {}: {e}", d.display()))?;
    }
    Ok(RunOut {
        wall: t.elapsed(),
        raw_bytes: summary.bytes,
        bytes_written: written,
        keys: summary.keys(),
        report: None,
        load: None,
        baseline: None,
    })
}

fn mb(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

fn table_row(
    c: &Config,
    r: &RunOut,
    load: Option<&RunOut>,
    child_own: Option<u64>,
    plain_bytes: Option<u64>,
) -> String {
    let rep = r.report.as_ref();
    let cow = load
        .and_then(|l| l.report.as_ref())
        .map_or("-".to_string(), |x| {
            format!("{:.1}", x.cow.peak_bytes as f64 / 1048576.0)
        });
    format!(
        "{:<7} {:<8} {:<13} {:>7.3} {:>9.2} {:>8.0} {:>8.0} {:>13} {:>7} {:>8} {:>7} {:>7} {:>8} {:>9} {:>10}",
        c.mode.name(),
        c.format.name(),
        c.backend_name(),
        r.wall.as_secs_f64(),
        r.keys as f64 / r.wall.as_secs_f64() / 1e6,
        mb(r.raw_bytes, r.wall),
        mb(r.bytes_written, r.wall),
        r.bytes_written,
        plain_bytes.map_or("-".into(), |p| format!(
            "{:.2}",
            p as f64 / r.bytes_written.max(1) as f64
        )),
        rep.filter(|x| x.fork_us > 0).map_or("-".into(), |x| x.fork_us.to_string()),
        rep.filter(|x| x.child_cpu > Duration::ZERO)
            .map_or("-".into(), |x| format!("{:.3}", x.child_cpu.as_secs_f64())),
        rep.filter(|x| x.stats.submit_calls > 0)
            .map_or("-".into(), |x| format!("{:.2}", x.sqes_per_submit())),
        rep.filter(|x| x.stats.submit_calls > 0)
            .map_or("-".into(), |x| x.stats.p99_us.to_string()),
        cow,
        child_own.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
    )
}

fn load_row(c: &Config, r: &RunOut, load: &Load, base: &Load) -> String {
    let pair = |q: f64| format!("{:.2} -> {:.2}", base.pct_us(q), load.pct_us(q));
    format!(
        "{:<7} {:<8} {:<13} {:>7.3} {:>15} {:>17} {:>17} {:>17} {:>9.2} {:>9.1} {:>8.0}",
        c.mode.name(),
        c.format.name(),
        c.backend_name(),
        r.wall.as_secs_f64(),
        pair(0.5),
        pair(0.99),
        pair(0.999),
        format!("{:.1} -> {:.1}", base.max_us(), load.max_us()),
        p99_ratio(r),
        r.report
            .as_ref()
            .map_or(0.0, |x| x.cow.peak_bytes as f64 / 1048576.0),
        load.rate(),
    )
}

fn lat(l: Option<&Load>) -> Json {
    match l {
        None => Json::Null,
        Some(l) => json!({
            "p50_us": l.pct_us(0.5), "p99_us": l.pct_us(0.99), "p999_us": l.pct_us(0.999),
            "max_us": l.max_us(), "writes": l.writes, "writes_per_s": l.rate(),
        }),
    }
}

fn series(s: &[Point]) -> Json {
    s.iter()
        .map(|p| json!([p.t_s, p.cow_bytes, p.writes, p.p99_ns, p.max_ns]))
        .collect()
}

fn emit_json(cli: &Cli, spec: &Spec, c: &Config, kind: &str, run: usize, r: &RunOut, path: &Path) {
    if !cli.json {
        return;
    }
    let rep = r.report.as_ref();
    let wall = r.wall.as_secs_f64();
    let v = json!({
        "kind": kind,
        "run": run,
        "dataset": spec.dataset.name(),
        "values": if spec.dataset == Dataset::Populate { json!(spec.values.name()) } else { Json::Null },
        "keys": r.keys,
        "value_size": spec.value_size,
        "seed": spec.seed,
        "mode": c.mode.name(),
        "format": c.format.name(),
        "rdb_version": cli.rdb_version,
        "backend": c.backend_name(),
        "backend_used": rep.and_then(|x| x.backend).map(|b| format!("{b:?}").to_lowercase()),
        "direct": c.direct,
        "workers": cli.workers,
        "threads": cli.threads,
        "child_priority": priority_name(cli.child_priority),
        "path": path.display().to_string(),
        "wall_s": wall,
        "keys_per_s": r.keys as f64 / wall,
        "raw_mb_per_s": mb(r.raw_bytes, r.wall),
        "written_mb_per_s": mb(r.bytes_written, r.wall),
        "bytes_raw": r.raw_bytes,
        "bytes_written": r.bytes_written,
        "ratio": r.raw_bytes as f64 / r.bytes_written.max(1) as f64,
        "fork_us": rep.map(|x| x.fork_us),
        "child_wall_s": rep.map(|x| x.child_wall.as_secs_f64()),
        "child_cpu_s": rep.map(|x| x.child_cpu.as_secs_f64()),
        "sqes_per_submit": rep.map(|x| x.sqes_per_submit()),
        "submit_calls": rep.map(|x| x.stats.submit_calls),
        "fixed_buffers": rep.map(|x| x.stats.fixed_buffers),
        "write_p50_us": rep.map(|x| x.stats.p50_us),
        "write_p99_us": rep.map(|x| x.stats.p99_us),
        "write_p999_us": rep.map(|x| x.stats.p999_us),
        "write_max_us": rep.map(|x| x.stats.max_us),
        "cow_peak_bytes": rep.map(|x| x.cow.peak_bytes),
        "cow_samples": rep.map(|x| x.cow.samples),
        "cow_sampling_duty": rep.map(|x| x.cow_sampling_duty),
        "child_private_bytes": rep.and_then(|x| x.child_private_bytes),
        "child_probe_us": rep.and_then(|x| x.child_private_bytes.map(|_| x.child_probe.as_micros() as u64)),
        "mutate_rate": if r.load.is_some() { json!(cli.mutate_rate) } else { Json::Null },
        "parent_write": lat(r.load.as_ref()),
        "parent_write_baseline": lat(r.baseline.as_ref()),
        "series": r.load.as_ref().map_or(Json::Null, |l| series(&l.series)),
        "series_fields": if r.load.is_some() { json!(["t_s", "cow_bytes", "writes", "p99_ns", "max_ns"]) } else { Json::Null },
    });
    out(&v.to_string());
}
