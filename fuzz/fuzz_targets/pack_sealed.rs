#![no_main]
//! cargo-fuzz target `pack_sealed`; the checks live in `repo_fuzz::pack_sealed`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::pack_sealed(data));
