//! The one integration test binary (`cargo test --test cli`): every group
//! is a module, selected by its path, e.g. `cargo test --test cli lifecycle::`
//! or `cargo test --test cli adversarial::`. One binary links the crate and
//! the helpers once instead of once per group, and `support` is the single
//! home of every shared helper.

mod adversarial;
mod append_only;
mod backends;
mod basics;
mod cache;
mod code_map;
mod copy;
mod faults;
mod ftp;
mod fuzz_regressions;
mod hostile;
mod jobs;
mod lifecycle;
mod mirror_sync;
mod object_lock;
mod rest;
mod spec_vectors;
mod stdin;
mod support;
