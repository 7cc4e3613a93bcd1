#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arqon_fuzz::names(data));
