//! Blob id (keyed BLAKE3) throughput.

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let key = [9u8; 32];
    let data = common::random_bytes(common::MIB, 3);
    let mut g = c.benchmark_group("hashing");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blob_id_1MiB", |b| {
        b.iter(|| repo::crypto::hash::blob_id(&key, std::hint::black_box(&data)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
