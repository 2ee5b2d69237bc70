//! `repo`: an encrypted, deduplicating snapshot store.
//!
//! Layers, each using only those below it: formats and pure functions
//! (`id`, `error`, `hash`, `chunker`, `codec`, `crypto`, `pack`, `index`,
//! `tree`, `snapshot`, `config`, `keyfile`, `manifest`), `storage`, `repo`, the engines
//! (`archive`, `restore`, `verify`, `diff`, `dump`, `stats`, `gc` with the
//! pure `retention` rules, `plain` for mirror and sync), `commands`, and the binary's CLI.

pub mod archive;
pub mod bounded;
pub mod chunker;
pub mod codec;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod dump;
pub mod error;
pub mod fence;
pub mod gc;
pub mod hash;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod manifest;
pub mod pack;
pub mod plain;
pub mod progress;
pub mod rawkey;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod stats;
pub mod storage;
pub mod testhooks;
pub mod tree;
pub mod verify;
pub mod warnings;

pub use error::{Error, Result};
