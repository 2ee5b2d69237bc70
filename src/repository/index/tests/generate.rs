//! A generator of a repository with millions of indexed blobs, for
//! `bench/memory.sh` (issue 14): it adds to an existing local repository
//! index objects naming `REPO_GEN_BLOBS` synthetic data blobs in sparse pack
//! files of the indexed size, so `check` (without `--read-data`) finds every
//! pack where the index says, while backups and restores of the repository's
//! real snapshots look their blobs up among all of them. Run with
//! `REPO_GEN_REPO=DIR REPO_PASSWORD=... cargo test --release --lib
//! generate_indexed_repository -- --ignored`.

use std::path::PathBuf;

use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::pack::BlobKind;
use crate::id::{BlobId, PackId};
use crate::repository::objects::{ObjectKind, pack_key, save};
use crate::repository::{Credentials, Repository, lock};
use crate::storage::Location;

/// Synthetic blobs per pack and their length: 16 KiB blobs in 16 MiB packs.
const PER_PACK: u64 = 1024;
const BLOB_LEN: u32 = 16 * 1024;
/// Packs per index object, as a backup writes them.
const PACKS_PER_INDEX: u64 = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "generates gigabytes; run by bench/memory.sh"]
fn generate_indexed_repository() {
    let dir = PathBuf::from(std::env::var("REPO_GEN_REPO").expect("REPO_GEN_REPO"));
    let blobs = env_u64("REPO_GEN_BLOBS", 20_000_000);
    let password = std::env::var("REPO_PASSWORD").expect("REPO_PASSWORD");
    let repo = Repository::open(
        &Location::Local(dir.clone()),
        &Credentials::Password(password.into_bytes().into()),
    )
    .unwrap();
    let _lock = lock::lock(&repo, false, "generate").unwrap();
    let packs = blobs.div_ceil(PER_PACK);
    let mut pending = Vec::new();
    for p in 0..packs {
        let pack =
            PackId(*blake3::hash(&[b"pack".as_slice(), &p.to_le_bytes()].concat()).as_bytes());
        let n = (blobs - p * PER_PACK).min(PER_PACK);
        let size = n * u64::from(BLOB_LEN);
        let file = dir.join(pack_key(&pack));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::File::create(&file).unwrap().set_len(size).unwrap();
        pending.push(IndexPack {
            id: pack,
            size,
            blobs: (0..n)
                .map(|b| IndexBlob {
                    kind: BlobKind::Data,
                    id: BlobId(*blake3::hash(&(p * PER_PACK + b).to_le_bytes()).as_bytes()),
                    offset: (b as u32) * BLOB_LEN,
                    length: BLOB_LEN,
                    raw_length: BLOB_LEN - 40,
                })
                .collect(),
        });
        if pending.len() as u64 == PACKS_PER_INDEX || p + 1 == packs {
            let file = IndexFile::new(std::mem::take(&mut pending));
            save(&repo, ObjectKind::Index, &file.encode()).unwrap();
        }
    }
}
