//! Content-defined chunking throughput (FastCDC with the keyed gear table).

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use repo::codec::chunker::{Chunker, ChunkerParams};

fn bench(c: &mut Criterion) {
    let key = [7u8; 32];
    let chunker = Chunker::new(&key, ChunkerParams::default()).expect("chunker");
    let len = 64 * common::MIB;
    let inputs = [
        ("random_64MiB", common::random_bytes(len, 1)),
        ("text_64MiB", common::text_bytes(len, 2)),
    ];
    let mut g = c.benchmark_group("chunker");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(len as u64));
    for (name, data) in &inputs {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                for r in chunker.chunks(std::hint::black_box(data)) {
                    n += r.len();
                }
                assert_eq!(n, data.len());
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
