#![no_main]
//! cargo-fuzz target `index`; the checks live in `repo_fuzz::index`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::index(data));
