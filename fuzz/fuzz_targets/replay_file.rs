//! A whole journal file from arbitrary bytes: no panic, recovery is idempotent, and the
//! recovered records are a prefix of what was written.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    background_transfer::fuzzing::replay_file(data);
});
