#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkclone_fuzz::files::sa_db(data));
