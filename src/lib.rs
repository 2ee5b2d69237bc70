//! `repo`: an encrypted, deduplicating snapshot store.
//!
//! The folders are the layers; each uses only those listed before it
//! (README's "Code map" says what each owns):
//! `id`, `error` (typed ids, one error enum, warnings) and `testhooks`;
//! `codec` and `crypto` (pure functions: chunking, framing, sealing, hashing);
//! `format` (every on-storage encoding, no I/O);
//! `storage` (moves bytes by key: local disk, S3, FTP);
//! `repository` (the one place where keys, packs and storage meet);
//! `local` (local-disk concerns shared by engines: path filter, metadata,
//! fencing, the plain control folder);
//! `engine` (archive, restore, plain, check, prune, diff, dump, stats);
//! `commands` (one per command, each returning a report); the binary's `cli`.

pub mod codec;
pub mod commands;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod format;
pub mod id;
pub mod local;
pub mod repository;
pub mod storage;
pub mod testhooks;

pub use error::{Error, Result};
