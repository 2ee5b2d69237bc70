//! Pack writing: assembling ~16 MiB of sealed entries into one pack, and the
//! whole per-pack CPU path (blob id + seal + add + finish) from raw chunks.

mod common;

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use repo::crypto::MasterKey;
use repo::crypto::hash::blob_id;
use repo::format::pack::{BlobKind, PackBuilder, seal_entry};
use repo::id::BlobId;

fn bench(c: &mut Criterion) {
    let keys = MasterKey::generate().subkeys();
    // 16 chunks of 1 MiB, half text, half random: one default-size pack.
    let chunks: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            if i % 2 == 0 {
                common::text_bytes(common::MIB, 100 + i)
            } else {
                common::random_bytes(common::MIB, 100 + i)
            }
        })
        .collect();
    let raw_total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let sealed: Vec<(BlobId, u32, Vec<u8>)> = chunks
        .iter()
        .map(|d| {
            let id = blob_id(&keys.blob_id, d);
            (
                id,
                d.len() as u32,
                seal_entry(&keys, BlobKind::Data, id, d, 3),
            )
        })
        .collect();
    let sealed_total: u64 = sealed.iter().map(|e| e.2.len() as u64).sum();

    let mut g = c.benchmark_group("pack");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Bytes(sealed_total));
    g.bench_function("add_finish_16MiB", |b| {
        b.iter_batched(
            || sealed.clone(),
            |entries| {
                let mut p = PackBuilder::default();
                for (id, raw, e) in entries {
                    p.add(BlobKind::Data, id, raw, e);
                }
                p.finish()
            },
            BatchSize::PerIteration,
        )
    });

    g.throughput(Throughput::Bytes(raw_total));
    g.bench_function("hash_seal_add_finish_16MiB", |b| {
        b.iter(|| {
            let mut p = PackBuilder::default();
            for d in &chunks {
                let id = blob_id(&keys.blob_id, d);
                p.add(
                    BlobKind::Data,
                    id,
                    d.len() as u32,
                    seal_entry(&keys, BlobKind::Data, id, d, 3),
                );
            }
            p.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
