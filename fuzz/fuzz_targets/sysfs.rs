#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkclone_fuzz::host::sysfs(data));
