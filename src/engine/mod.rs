//! The engines: each turns one kind of work into calls on the repository
//! or the local disk. Engines never import from each other or from
//! commands; what they share lives in `local` or `repository`.

pub mod archive;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod plain;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod stats;

#[cfg(test)]
mod tests;
