#![no_main]
//! cargo-fuzz target `snapshot`; the checks live in `repo_fuzz::snapshot`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::snapshot(data));
