//! Reader benchmarks: loading populate-shaped files. `cargo bench --bench read`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forksnap::rdb::{encode_to_vec, load, EncodeOptions, LoadOptions};
use forksnap::MemKeyspace;

fn bench_read(c: &mut Criterion) {
    let mut ks = MemKeyspace::new();
    ks.populate(200_000, 100);
    let mut g = c.benchmark_group("load_populate_200k_x100B");
    g.sample_size(10);
    for lzf in [false, true] {
        let (rdb, _) = encode_to_vec(
            &ks,
            &EncodeOptions {
                lzf,
                ..Default::default()
            },
        )
        .unwrap();
        g.throughput(Throughput::Bytes(rdb.len() as u64));
        g.bench_with_input(BenchmarkId::new("lzf", lzf), &rdb, |b, rdb| {
            b.iter(|| load(rdb, &LoadOptions::default()).unwrap().0.len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_read);
criterion_main!(benches);
