#![no_main]
//! cargo-fuzz target `manifest`; the checks live in `repo_fuzz::manifest`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::manifest(data));
