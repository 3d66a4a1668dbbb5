#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkclone_fuzz::hostlib::hostlib_answers(data));
