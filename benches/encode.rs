//! Encoder micro-benchmarks on DEBUG POPULATE-shaped data and the building blocks of the
//! hot path. `cargo bench --bench encode`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forksnap::buf::ChunkBuf;
use forksnap::keyspace::{Keyspace, MemKeyspace};
use forksnap::rdb::listpack::LpWriter;
use forksnap::rdb::{encode, lzf, ChunkSink, Crc64, EncodeOptions};
use forksnap::Result;
use std::ops::ControlFlow;

// The snapbench datasets (the `mixed` shape's values) and the reference LZF of the tests.
#[allow(dead_code)]
#[path = "../tools/snapbench/datasets.rs"]
mod datasets;
#[path = "../tests/common/lzf_ref.rs"]
mod lzf_ref;

const KEYS: u64 = 200_000;

struct Discard;
impl ChunkSink for Discard {
    fn chunk_full(&mut self, c: &mut ChunkBuf) -> Result<()> {
        black_box(c.as_slice());
        c.clear();
        Ok(())
    }
}

fn populate() -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    ks.populate(KEYS, 100);
    ks
}

fn encoded_len(ks: &MemKeyspace, lzf: bool) -> u64 {
    let opts = EncodeOptions {
        lzf,
        ..Default::default()
    };
    encode(ks, &opts, Discard, ChunkBuf::new(1 << 20))
        .unwrap()
        .2
        .bytes
}

fn bench_encode(c: &mut Criterion) {
    let ks = populate();
    let plain_bytes = encoded_len(&ks, false);
    let mut g = c.benchmark_group("encode_populate_200k_x100B");
    g.sample_size(15);
    // Throughput is the uncompressed RDB size in both cases, so the two compare directly.
    g.throughput(Throughput::Bytes(plain_bytes));
    for lzf in [false, true] {
        g.bench_with_input(BenchmarkId::new("lzf", lzf), &lzf, |b, &lzf| {
            let opts = EncodeOptions {
                lzf,
                ..Default::default()
            };
            b.iter(|| {
                encode(&ks, &opts, Discard, ChunkBuf::new(1 << 20))
                    .unwrap()
                    .2
                    .bytes
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("keyspace_walk_200k");
    g.sample_size(20);
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("memkeyspace", |b| {
        b.iter(|| {
            let mut n = 0usize;
            // Touch the key's and the value's bytes, as an encoder must (pointer chase).
            ks.walk(0, &mut |e| {
                n += usize::from(e.key[e.key.len() - 1]);
                if let forksnap::Value::Str(v) = e.value {
                    n += usize::from(v[0]);
                }
                ControlFlow::Continue(())
            });
            n
        })
    });
    g.finish();
}

/// forksnap's LZF against the reference (liblzf's algorithm, tests/common/lzf_ref.rs) on
/// the `mixed` dataset's string values that LZF is tried on (over 20 bytes): the same
/// 100k keys snapbench makes by default. Prints each one's compressed size once.
fn bench_lzf_reference(c: &mut Criterion) {
    let spec = datasets::Spec {
        dataset: datasets::Dataset::Mixed,
        keys: 100_000,
        value_size: 100,
        values: datasets::Values::Zero,
        seed: 1,
    };
    let ks = datasets::build(&spec);
    let mut values: Vec<Vec<u8>> = Vec::new();
    for db in ks.databases() {
        ks.walk(db.index, &mut |e| {
            if let forksnap::Value::Str(s) = e.value {
                if s.len() > 20 {
                    values.push(s.to_vec());
                }
            }
            ControlFlow::Continue(())
        });
    }
    let total: usize = values.iter().map(|v| v.len()).sum();
    let mut out = vec![0u8; values.iter().map(|v| v.len()).max().unwrap_or(0)];
    let mut table = Box::new([0u32; lzf::HASH_SIZE]);
    let mut ref_table = vec![0u32; 1 << 16];
    // Redis stores a value compressed only if it saves at least 4 bytes.
    let ours = |out: &mut [u8], table: &mut [u32; lzf::HASH_SIZE]| -> usize {
        values
            .iter()
            .map(|v| lzf::compress(v, &mut out[..v.len() - 4], table).unwrap_or(v.len()))
            .sum()
    };
    let reference = |out: &mut [u8], table: &mut [u32]| -> usize {
        values
            .iter()
            .map(|v| lzf_ref::compress(v, &mut out[..v.len() - 4], table).unwrap_or(v.len()))
            .sum()
    };
    let (a, b) = (
        ours(&mut out, &mut table),
        reference(&mut out, &mut ref_table),
    );
    eprintln!(
        "lzf-vs-reference: {} values, {total} bytes; forksnap {a} bytes, reference {b} bytes \
         ({:+.2}%)",
        values.len(),
        (a as f64 / b as f64 - 1.0) * 100.0
    );
    let mut g = c.benchmark_group("lzf-vs-reference");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("forksnap_mixed_strings", |bch| {
        bch.iter(|| ours(&mut out, &mut table))
    });
    g.bench_function("reference_mixed_strings", |bch| {
        bch.iter(|| reference(&mut out, &mut ref_table))
    });
    g.finish();
}

fn bench_blocks(c: &mut Criterion) {
    let mut value = b"value:123456".to_vec();
    value.resize(100, 0);
    let mut table = Box::new([0u32; lzf::HASH_SIZE]);
    let mut out = vec![0u8; 96];
    let mut g = c.benchmark_group("lzf");
    g.throughput(Throughput::Bytes(100));
    g.bench_function("compress_100B_populate_value", |b| {
        b.iter(|| lzf::compress(black_box(&value), &mut out, &mut table))
    });
    let text: Vec<u8> = (0..65536u32)
        .map(|i| {
            b"the quick brown fox jumps over the lazy dog "[(i % 44) as usize]
                ^ ((i / 997) as u8 & 1)
        })
        .collect();
    let mut out = vec![0u8; text.len()];
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("compress_64KiB_text", |b| {
        b.iter(|| lzf::compress(black_box(&text), &mut out, &mut table))
    });
    g.finish();

    let mib: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut g = c.benchmark_group("checksums_1MiB");
    g.throughput(Throughput::Bytes(mib.len() as u64));
    // The crc crate's slice-by-16 table (what the encoder used before) against crc-fast's
    // carry-less-multiply folding (what it uses now).
    let slice16 = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);
    g.bench_function("crc64_redis_slice16", |b| {
        b.iter(|| slice16.checksum(black_box(&mib)))
    });
    g.bench_function("crc64_redis_clmul", |b| {
        b.iter(|| Crc64::checksum(black_box(&mib)))
    });
    g.bench_function("xxh32", |b| {
        b.iter(|| xxhash_rust::xxh32::xxh32(black_box(&mib), 0))
    });
    g.finish();

    let ks = populate();
    let mut raw = Vec::new();
    let opts = EncodeOptions {
        lzf: false,
        ..Default::default()
    };
    let (s, last, _) = encode(
        &ks,
        &opts,
        forksnap::rdb::encoder::VecSink(Vec::new()),
        ChunkBuf::new(1 << 20),
    )
    .unwrap();
    raw.extend_from_slice(&s.0[..1 << 20]);
    drop(last);
    let mut g = c.benchmark_group("lz4_chunk_1MiB_rdb");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    // A reused output buffer, as the Framer keeps one.
    let mut out = Vec::new();
    g.bench_function("frame_blocks", |b| {
        b.iter(|| {
            forksnap::frame::compress_blocks(
                black_box(&raw),
                forksnap::frame::BlockMax::M1,
                &mut out,
                0,
            )
        })
    });
    g.finish();

    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..128)
        .map(|i| {
            (
                format!("field:{i}").into_bytes(),
                format!("{}", i * 1000).into_bytes(),
            )
        })
        .collect();
    let mut g = c.benchmark_group("listpack");
    g.throughput(Throughput::Elements(256));
    let mut buf = Vec::with_capacity(8192);
    g.bench_function("build_hash_128_fields", |b| {
        b.iter(|| {
            buf.clear();
            let mut w = LpWriter::begin(&mut buf);
            for (f, v) in &fields {
                w.push(&mut buf, f);
                w.push(&mut buf, v);
            }
            w.finish(&mut buf);
            buf.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode, bench_blocks, bench_lzf_reference);
criterion_main!(benches);
