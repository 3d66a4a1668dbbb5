#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkclone_fuzz::formats::pka_token(data));
