#![no_main]
//! cargo-fuzz target `tree`; the checks live in `repo_fuzz::tree`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::tree(data));
