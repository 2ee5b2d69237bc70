//! Sealing (zstd-3 + XChaCha20-Poly1305 + header) and opening one 1 MiB blob,
//! plus zstd-3 alone (`repo::codec::compress`) for comparison.

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use repo::crypto::MasterKey;
use repo::crypto::hash::blob_id;
use repo::format::pack::{BlobKind, open_entry, seal_entry};

fn bench(c: &mut Criterion) {
    let keys = MasterKey::generate().subkeys();
    let inputs = [
        ("text_1MiB", common::text_bytes(common::MIB, 4)),
        ("random_1MiB", common::random_bytes(common::MIB, 5)),
    ];
    let mut g = c.benchmark_group("codec");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(common::MIB as u64));
    for (name, data) in &inputs {
        let id = blob_id(&keys.blob_id, data);
        // The zstd part alone, to tell compression from encryption costs.
        g.bench_function(format!("compress_only/{name}"), |b| {
            b.iter(|| repo::codec::compress(std::hint::black_box(data), 3))
        });
        g.bench_function(format!("seal_entry/{name}"), |b| {
            b.iter(|| seal_entry(&keys, BlobKind::Data, id, std::hint::black_box(data), 3))
        });
        let entry = seal_entry(&keys, BlobKind::Data, id, data, 3);
        g.bench_function(format!("open_entry/{name}"), |b| {
            b.iter(|| {
                open_entry(
                    &keys,
                    std::hint::black_box(&entry),
                    0,
                    Some((BlobKind::Data, id)),
                )
                .expect("open")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
