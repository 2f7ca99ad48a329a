//! The parent's load during a snapshot: overwrites of existing keys at a target rate (the
//! copy-on-write worst case: every first write to a page after fork copies it), each
//! write's latency in an HDR histogram, and a time series of CoW and latency.

use crate::datasets::{mixed_name, Dataset, Rng};
use forksnap::{MemKeyspace, MemValue, RunningSnapshot, SnapshotReport};
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One point of the time series, per `BUCKET`.
#[derive(Clone, Debug)]
pub struct Point {
    pub t_s: f64,
    /// CoW estimate (sampled `Private_Dirty`, extrapolated by the parent's minor faults).
    pub cow_bytes: u64,
    pub writes: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

pub const BUCKET: Duration = Duration::from_millis(20);

impl Point {
    /// Closes a bucket at `t` (since the start): its figures, then an empty bucket.
    fn of(bucket: &mut Histogram<u64>, t: Duration, cow_bytes: u64) -> Point {
        let p = Point {
            t_s: t.as_secs_f64(),
            cow_bytes,
            writes: bucket.len(),
            p99_ns: bucket.value_at_quantile(0.99),
            max_ns: bucket.max(),
        };
        bucket.reset();
        p
    }
}

pub struct Load {
    pub hist: Histogram<u64>,
    pub series: Vec<Point>,
    pub writes: u64,
    pub elapsed: Duration,
}

impl Load {
    pub fn pct_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
    pub fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Mutator {
    dataset: Dataset,
    keys: u64,
    rng: Rng,
    key: Vec<u8>,
    /// Writes per second.
    rate: f64,
}

/// Writes to every 64th byte of `b` the value already there: one store per cache line,
/// which the compiler cannot drop (`black_box` hides the value), so the page is written
/// (and copied, if shared) without changing the data the next run snapshots.
fn rewrite(b: &mut [u8]) {
    let mut i = 0;
    while i < b.len() {
        b[i] = black_box(b[i]);
        i += 64;
    }
}

impl Mutator {
    pub fn new(dataset: Dataset, keys: u64, seed: u64, rate: f64) -> Mutator {
        Mutator {
            dataset,
            keys: keys.max(1),
            rng: Rng::new(seed ^ 0x006d_7574_6174_6f72),
            key: Vec::with_capacity(32),
            rate,
        }
    }

    /// Picks the next key (outside the timed part) and returns its database.
    fn next_key(&mut self) -> (u32, u64) {
        let j = self.rng.next() % self.keys;
        let r = self.rng.next();
        self.key.clear();
        match self.dataset {
            Dataset::Populate => {
                self.key.extend_from_slice(b"key:");
                self.key.extend_from_slice(j.to_string().as_bytes());
                (0, r)
            }
            Dataset::Mixed => {
                let (db, k) = mixed_name(j);
                self.key.extend_from_slice(&k);
                (db, r)
            }
            Dataset::Large => {
                let name: &[u8] = match j % 4 {
                    0 => b"large:list",
                    1 => b"large:set",
                    2 => b"large:zset",
                    _ => b"large:hash",
                };
                self.key.extend_from_slice(name);
                (0, r)
            }
        }
    }

    /// One overwrite, in place: a string's bytes, an element of a collection, a score.
    fn write(&self, ks: &mut MemKeyspace, db: u32, r: u64) -> bool {
        let Some(v) = ks.db_mut(db).get_mut(&self.key) else {
            return false;
        };
        match v {
            MemValue::Str(s) => rewrite(s),
            MemValue::Int(i) => *i = black_box(*i),
            MemValue::List(items) | MemValue::Set(items) => {
                let n = items.len() as u64;
                rewrite(&mut items[(r % n) as usize]);
            }
            MemValue::ZSet(items) => {
                let n = items.len() as u64;
                let e = &mut items[(r % n) as usize];
                e.1 = black_box(e.1);
            }
            MemValue::Hash(items) => {
                let n = items.len() as u64;
                rewrite(&mut items[(r % n) as usize].1);
            }
            // The datasets make no streams, field TTLs or module values.
            MemValue::Stream(_) | MemValue::HashTtl(_) | MemValue::Module(_) => return false,
        }
        true
    }

    /// Writes at the mutator's rate until `snapshot` completes (or, without one, for
    /// `duration`). Latency is each write's service time (lookup + in-place write,
    /// including any CoW fault it takes).
    pub fn run(
        &mut self,
        ks: &mut MemKeyspace,
        mut snapshot: Option<&mut RunningSnapshot>,
        duration: Duration,
        on_tick: &mut dyn FnMut(&RunningSnapshot),
    ) -> Result<(Load, Option<SnapshotReport>), String> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
        let mut bucket = hist.clone();
        let mut series = Vec::new();
        let start = Instant::now();
        let mut next_bucket = start + BUCKET;
        let mut done = 0u64;
        let report = loop {
            let now = Instant::now();
            let due = ((now - start).as_secs_f64() * self.rate) as u64;
            // At most 1000 writes between polls, so a slow phase cannot starve the poll.
            let mut burst = 0;
            while done < due && burst < 1000 {
                let (db, r) = self.next_key();
                let t = Instant::now();
                let ok = self.write(ks, db, r);
                let ns = t.elapsed().as_nanos() as u64;
                if ok {
                    let ns = ns.max(1);
                    hist.saturating_record(ns);
                    bucket.saturating_record(ns);
                }
                done += 1;
                burst += 1;
            }
            if Instant::now() >= next_bucket {
                let cow = snapshot.as_ref().map_or(0, |s| s.cow().current_bytes);
                series.push(Point::of(&mut bucket, next_bucket - start, cow));
                next_bucket += BUCKET;
            }
            match snapshot.as_deref_mut() {
                Some(s) => {
                    if let Some(rep) = s.poll().map_err(|e| e.to_string())? {
                        break Some(rep);
                    }
                    on_tick(s);
                }
                None => {
                    if start.elapsed() >= duration {
                        break None;
                    }
                }
            }
            if done >= due {
                std::thread::sleep(Duration::from_micros(50));
            }
        };
        // The last, partial bucket (a short snapshot may end inside the first one).
        if !bucket.is_empty() {
            let cow = snapshot.as_ref().map_or(0, |s| s.cow().current_bytes);
            series.push(Point::of(&mut bucket, start.elapsed(), cow));
        }
        Ok((
            Load {
                hist,
                series,
                writes: done,
                elapsed: start.elapsed(),
            },
            report,
        ))
    }
}
