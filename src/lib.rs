//! `repo`: an encrypted, deduplicating snapshot store.
//!
//! Layers, each using only those below it: formats and pure functions
//! (`id`, `error`, `hash`, `chunker`, `codec`, `crypto`, `pack`, `index`,
//! `tree`, `snapshot`, `config`, `keyfile`), `storage`, `repo`, the engines
//! (`archive`, `restore`, `verify`), `commands`, and the binary's CLI.

pub mod archive;
pub mod chunker;
pub mod codec;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod error;
pub mod hash;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod pack;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod snapshot;
pub mod storage;
pub mod tree;
pub mod verify;

pub use error::{Error, Result};
