//! The snapshot's write-rate cap (`SnapshotOptions::max_write_rate`): a token bucket in
//! the child's writer. It never spins: a write that would pass the rate waits (sleeps)
//! for its deficit, and the encoder runs ahead into the pipeline's buffers meanwhile.

use std::time::Duration;

/// Bytes per second with a burst allowance. The clock is passed in (nanoseconds from
/// any origin), so the arithmetic is tested without sleeping.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Bytes that may go now; negative while a write that passed the rate is paid off.
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s, full at start, holding at most `burst` bytes.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last_ns: now_ns,
        }
    }

    /// Takes `bytes` at `now_ns`; how long the caller must wait before writing them
    /// (zero while the rate allows it). Over any stretch of writes the bytes written
    /// are at most `burst + rate × time`.
    pub fn take(&mut self, bytes: u64, now_ns: u64) -> Duration {
        let elapsed = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that sleeps what the bucket says, on a fake clock: 100 MiB at 10 MiB/s
    /// in 1 MiB chunks takes 10 s less the burst, and never runs ahead of the rate.
    #[test]
    fn the_rate_holds_on_a_fake_clock() {
        let (rate, burst, chunk) = (10u64 << 20, 1u64 << 20, 1u64 << 20);
        let mut now = 0u64;
        let mut b = TokenBucket::new(rate, burst, now);
        let mut sent = 0u64;
        let mut waited = Duration::ZERO;
        for _ in 0..100 {
            let wait = b.take(chunk, now);
            waited += wait;
            now += wait.as_nanos() as u64;
            // Never more than the burst plus what the rate allows so far.
            assert!((sent + chunk) as f64 <= burst as f64 + rate as f64 * now as f64 / 1e9 + 1.0);
            sent += chunk;
            now += 50_000; // the write itself takes 50 µs
        }
        let secs = now as f64 / 1e9;
        let want = (sent - burst) as f64 / rate as f64;
        assert!((secs - want).abs() / want < 0.01, "{secs} s for {want} s");
        assert!(waited > Duration::from_secs(9), "{waited:?}");
    }

    /// Writes slower than the rate never wait, and an idle stretch refills only up to the
    /// burst.
    #[test]
    fn slow_writers_never_wait_and_idle_time_is_not_banked() {
        let mut b = TokenBucket::new(1 << 20, 1 << 20, 0);
        let mut now = 0;
        for _ in 0..50 {
            now += 1_000_000_000; // one 512 KiB write a second, half the rate
            assert_eq!(b.take(512 << 10, now), Duration::ZERO);
        }
        // After 100 s idle, only the burst (1 MiB) is there: a 3 MiB write waits 2 s.
        now += 100_000_000_000;
        let wait = b.take(3 << 20, now);
        assert!((wait.as_secs_f64() - 2.0).abs() < 0.01, "{wait:?}");
    }
}
