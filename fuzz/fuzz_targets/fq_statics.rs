#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkclone_fuzz::cca::fq_statics(data));
