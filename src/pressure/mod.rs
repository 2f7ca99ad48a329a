//! Copy-on-write pressure, seen from the parent.
//!
//! The accurate figure is the child's `Private_Dirty` in `/proc/<pid>/smaps_rollup` (a
//! page the parent rewrote after fork stays only in the child), but reading it walks the
//! page tables (46–57 ms for a 2.0 GB child, `tools/smaps-cost.py`). So it is sampled under a duty cycle: after a read that
//! took `t`, the next read waits `t / duty`. Between reads, the parent's minor-fault count
//! (`getrusage`), which rises by one per page copied, extrapolates the last sample.
//!
//! **Invariant**: sampling never takes more than `duty` of one core on average.

use std::time::{Duration, Instant};

/// How often the CoW figure is measured.
#[derive(Clone, Copy, Debug)]
pub struct CowSampling {
    /// Fraction of one core the smaps reads may use (default 0.01 = 1%).
    pub duty: f64,
    /// Never read more often than this.
    pub min_interval: Duration,
}

impl Default for CowSampling {
    fn default() -> Self {
        CowSampling {
            duty: 0.01,
            min_interval: Duration::from_millis(20),
        }
    }
}

/// Current CoW figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CowFigures {
    /// Latest estimate of bytes copied since fork (sample + extrapolation).
    pub current_bytes: u64,
    /// The highest copy-on-write seen, bytes.
    pub peak_bytes: u64,
    /// Bytes per second between the last two samples.
    pub rate_bytes_per_s: f64,
    /// Last measured (not extrapolated) value.
    pub sampled_bytes: u64,
    /// `smaps_rollup` reads taken.
    pub samples: u64,
    /// Time spent reading smaps.
    pub sampling_cost: Duration,
}

/// Tracks one child's copy-on-write. See the module documentation.
#[derive(Debug)]
pub struct CowSampler {
    pid: i32,
    policy: CowSampling,
    started: Instant,
    next_due: Instant,
    last_sample_at: Instant,
    faults_at_sample: u64,
    figures: CowFigures,
}

fn minor_faults() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other effects.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_minflt as u64
    }
}

/// `Private_Dirty` of a process in bytes, from `/proc/<pid>/smaps_rollup`.
pub fn private_dirty(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Private_Dirty:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// What a `smaps_rollup` read costs per resident 4 KiB page: 90 and 112 ns in two runs of
/// `tools/smaps-cost.py` (10M-key child, RSS 2.04 GB); the higher figure, rounded, so the
/// first read is never scheduled too early for the duty cycle.
const SMAPS_COST_PER_PAGE: Duration = Duration::from_nanos(110);

fn resident_pages() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse().ok()))
        .unwrap_or(0)
}

impl CowSampler {
    pub fn new(pid: i32, policy: CowSampling) -> Self {
        let now = Instant::now();
        let f = minor_faults();
        // The child shares the parent's pages, so the first read costs about what the
        // parent's resident size predicts: schedule it as if it had already been paid,
        // so even a short snapshot stays within the duty cycle.
        let expected = SMAPS_COST_PER_PAGE * resident_pages().min(u32::MAX as u64) as u32;
        let first = expected
            .div_f64(policy.duty.clamp(1e-4, 1.0))
            .max(policy.min_interval);
        CowSampler {
            pid,
            policy,
            started: now,
            next_due: now + first,
            last_sample_at: now,
            faults_at_sample: f,
            figures: CowFigures::default(),
        }
    }

    /// Updates the figures: a real sample if one is due, else an extrapolation.
    pub fn tick(&mut self) -> CowFigures {
        let now = Instant::now();
        let faults = minor_faults();
        if now >= self.next_due {
            let t = Instant::now();
            if let Some(v) = private_dirty(self.pid) {
                let cost = t.elapsed();
                let dt = now.duration_since(self.last_sample_at).as_secs_f64();
                if self.figures.samples > 0 && dt > 0.0 {
                    self.figures.rate_bytes_per_s =
                        v.saturating_sub(self.figures.sampled_bytes) as f64 / dt;
                }
                self.figures.sampled_bytes = v;
                self.figures.current_bytes = v;
                self.figures.samples += 1;
                self.figures.sampling_cost += cost;
                self.last_sample_at = now;
                self.faults_at_sample = faults;
                let wait = cost
                    .div_f64(self.policy.duty.clamp(1e-4, 1.0))
                    .max(self.policy.min_interval);
                self.next_due = Instant::now() + wait;
            }
        } else {
            // Each parent minor fault since the sample is at most one 4 KiB page copied.
            let pages = faults.saturating_sub(self.faults_at_sample);
            self.figures.current_bytes = self.figures.sampled_bytes + pages * 4096;
        }
        self.figures.peak_bytes = self.figures.peak_bytes.max(self.figures.current_bytes);
        self.figures
    }

    pub fn figures(&self) -> CowFigures {
        self.figures
    }

    /// When the next real sample is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Fraction of wall time spent reading smaps so far.
    pub fn duty_used(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        if wall > 0.0 {
            self.figures.sampling_cost.as_secs_f64() / wall
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_private_dirty_of_a_live_process() {
        let mut v: Vec<u8> = Vec::with_capacity(8 << 20);
        v.resize(8 << 20, 1);
        std::hint::black_box(&mut v);
        let pid = std::process::id() as i32;
        let dirty = super::private_dirty(pid).expect("smaps_rollup readable");
        assert!(dirty >= 8 << 20, "{dirty}");
        assert_eq!(super::private_dirty(-5), None);
    }
}
