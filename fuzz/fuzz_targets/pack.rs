#![no_main]
//! cargo-fuzz target `pack`; the checks live in `repo_fuzz::pack_raw`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::pack_raw(data));
