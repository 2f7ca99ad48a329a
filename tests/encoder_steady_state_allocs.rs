//! The encoder makes no global-allocator call per key in steady state: per-key scratch
//! comes from its arena, reset between chunks. Counted with a counting global allocator.

use forksnap::buf::ChunkBuf;
use forksnap::rdb::{encode, ChunkSink, EncodeOptions};
use forksnap::{MemKeyspace, MemValue, Result};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every operation to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Discards chunks (a real sink reuses buffers the same way).
struct Discard(u64);
impl ChunkSink for Discard {
    fn chunk_full(&mut self, c: &mut ChunkBuf) -> Result<()> {
        self.0 += c.len() as u64;
        c.clear();
        Ok(())
    }
}

fn mixed(n: usize) -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    for i in 0..n {
        let k = format!("key:{i}");
        let v = match i % 8 {
            0..=2 => MemValue::str(
                format!("value:{i}")
                    .into_bytes()
                    .into_iter()
                    .chain(std::iter::repeat_n(0, 90))
                    .collect::<Vec<u8>>(),
            ),
            3 => MemValue::hash((0..10).map(|j| (format!("f{j}"), format!("v{}", i * j)))).unwrap(),
            4 => MemValue::zset((0..10).map(|j| (format!("m{j}"), (i % 97 + j) as f64 * 0.25)))
                .unwrap(),
            5 => MemValue::set((0..20).map(|j| (i * 31 + j).to_string())).unwrap(),
            6 => MemValue::list((0..30).map(|j| format!("item-{j}-{i}"))),
            _ => MemValue::set((0..10).map(|j| format!("s{j}"))).unwrap(),
        };
        ks.insert(
            (i % 3) as u32,
            k,
            v,
            (i % 5 == 0).then_some(1_900_000_000_000 + i as i64),
        );
    }
    ks
}

fn allocs_to_encode(ks: &MemKeyspace, lzf: bool) -> (u64, u64) {
    let opts = EncodeOptions {
        lzf,
        ..Default::default()
    };
    let before = ALLOCS.load(Ordering::Relaxed);
    let (sink, last, summary) = encode(ks, &opts, Discard(0), ChunkBuf::new(256 << 10)).unwrap();
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(summary.keys(), ks.len() as u64);
    drop((sink, last));
    (after - before, summary.bytes)
}

#[test]
fn allocations_do_not_grow_with_keys() {
    let small = mixed(20_000);
    let large = mixed(160_000);
    for lzf in [true, false] {
        let (a_small, bytes_small) = allocs_to_encode(&small, lzf);
        let (a_large, bytes_large) = allocs_to_encode(&large, lzf);
        eprintln!("lzf {lzf}: {a_small} allocations for 20k keys, {a_large} for 160k keys");
        assert!(
            bytes_large > 7 * bytes_small,
            "the large keyspace must produce many more chunks"
        );
        // 140,000 more keys over dozens more chunks: allow only a handful of allocations
        // more (arena growth to its high-water mark), never one per key or per chunk.
        assert!(
            a_large <= a_small + 8,
            "lzf {lzf}: {a_small} allocations for 20k keys but {a_large} for 160k"
        );
        assert!(
            a_small < 200,
            "lzf {lzf}: {a_small} allocations for 20k keys"
        );
    }
}
