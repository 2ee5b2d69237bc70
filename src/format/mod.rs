//! Every encoding that reaches storage or a plain copy, and the pure rules
//! over them: no I/O here, so each decoder can be tested and fuzzed alone.

pub mod bounded;
pub mod config;
pub mod error;
pub mod index;
pub mod keyfile;
pub mod manifest;
pub mod pack;
pub mod rawkey;
pub mod retention;
pub mod snapshot;
pub mod tree;
