//! cowfault: what one copy-on-write fault costs on this machine, the floor under a forked
//! snapshot's effect on the parent's write latency.
//!
//! Maps and fills an anonymous region, then times single-byte writes to random pages in
//! three states: private (no fork: the baseline), shared with a forked child (each first
//! write copies the page), and after that child has exited (the page is the parent's
//! alone again but still write-protected: the kernel reuses it without copying). With
//! `--busy-child` the child streams through the region on another core meanwhile, as a
//! snapshot child does. Each write lands on a page not written since the fork.
//!
//!   cargo run --release --features cli --bin cowfault [-- --mib 1024 --writes 20000]

use clap::Parser;
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "cowfault",
    about = "Time a write that takes a copy-on-write fault"
)]
struct Cli {
    /// Size of the region, MiB.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Timed writes per state (each to a distinct page).
    #[arg(long, default_value_t = 20_000)]
    writes: usize,
    /// The child reads the whole region in a loop while the parent writes.
    #[arg(long)]
    busy_child: bool,
    /// Before forking, map, write and unmap this many MiB, so the pages the CoW faults
    /// take were written just before (in a VM a page the guest has not touched for a
    /// while may cost a hypervisor fault of its own on first write; 512 MiB cut the copy's
    /// p999 about 4× in our runs).
    #[arg(long, default_value_t = 0)]
    prewarm_mib: usize,
    /// One JSON object per state instead of the table.
    #[arg(long)]
    json: bool,
}

const PAGE: usize = 4096;

struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize) -> Result<Region, String> {
        // SAFETY: an anonymous private mapping with no address hint; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        let r = Region {
            ptr: ptr.cast(),
            len,
        };
        for p in 0..r.pages() {
            r.write(p);
        }
        Ok(r)
    }

    fn pages(&self) -> usize {
        self.len / PAGE
    }

    /// Increments one byte of page `p`.
    #[inline(always)]
    fn write(&self, p: usize) {
        // SAFETY: p < pages(), so the byte lies inside our live, writable mapping.
        unsafe {
            let b = self.ptr.add(p * PAGE + 8);
            b.write_volatile(b.read_volatile().wrapping_add(1));
        }
    }

    /// Sums every 64th byte (the child's reading stream).
    fn read_all(&self) -> u64 {
        let mut s = 0u64;
        for i in (0..self.len).step_by(64) {
            // SAFETY: i < len, inside the mapping.
            s = s.wrapping_add(u64::from(unsafe { self.ptr.add(i).read_volatile() }));
        }
        s
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping we created.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Times one write to each of `pages`, in the order given.
fn time_writes(r: &Region, pages: &[usize]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).expect("bounds");
    for &p in pages {
        let t = Instant::now();
        r.write(p);
        h.saturating_record((t.elapsed().as_nanos() as u64).max(1));
    }
    h
}

/// `n` distinct pages in a scattered order (a multiplicative walk over the region).
fn scattered(n: usize, pages: usize, salt: usize) -> Vec<usize> {
    let stride = (2_654_435_761usize % pages) | 1;
    (0..n)
        .map(|i| (i.wrapping_mul(stride).wrapping_add(salt)) % pages)
        .collect()
}

fn out(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cowfault: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let region = Region::new(cli.mib.max(1) << 20)?;
    let pages = region.pages();
    // Three disjoint sets of pages, so every timed write is a first write in its state.
    if cli.writes * 3 > pages {
        return Err(format!(
            "--writes {} needs {} pages, the region has {pages}: raise --mib",
            cli.writes,
            cli.writes * 3
        ));
    }
    let all = scattered(cli.writes * 3, pages, 7);
    let (private, rest) = all.split_at(cli.writes);
    let (shared, after) = rest.split_at(cli.writes);
    let mut rows = vec![("private (no fork)", time_writes(&region, private))];
    if cli.prewarm_mib > 0 {
        drop(Region::new(cli.prewarm_mib << 20)?);
    }

    // SAFETY: the child only reads the region or sleeps, then leaves with _exit; it takes
    // no lock (this program has no other thread).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if cli.busy_child {
                black_box(region.read_all());
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    std::thread::sleep(Duration::from_millis(50));
    rows.push((
        if cli.busy_child {
            "shared, child reading (CoW copy)"
        } else {
            "shared with child (CoW copy)"
        },
        time_writes(&region, shared),
    ));
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    rows.push(("child exited (reuse fault)", time_writes(&region, after)));

    if !cli.json {
        out(format_args!(
            "{} MiB region, {} writes per state, each to a page not written since fork",
            cli.mib, cli.writes
        ));
        out(format_args!(
            "{:<34} {:>8} {:>8} {:>8} {:>8}",
            "state", "p50_us", "p99_us", "p999_us", "max_us"
        ));
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (state, h) in &rows {
        if cli.json {
            out(format_args!(
                "{}",
                serde_json::json!({
                    "state": state, "writes": h.len(), "busy_child": cli.busy_child,
                    "p50_us": us(h, 0.5), "p99_us": us(h, 0.99), "p999_us": us(h, 0.999),
                    "max_us": h.max() as f64 / 1000.0,
                })
            ));
        } else {
            out(format_args!(
                "{state:<34} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                us(h, 0.5),
                us(h, 0.99),
                us(h, 0.999),
                h.max() as f64 / 1000.0
            ));
        }
    }
    Ok(())
}
