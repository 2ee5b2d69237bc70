#![no_main]
//! cargo-fuzz target `codec`; the checks live in `repo_fuzz::codec_target`.

#[global_allocator]
static ALLOC: repo_fuzz::CountingAlloc = repo_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| repo_fuzz::codec_target(data));
