//! A whole journal file through the whole open: recovery, the uploads' handles, the first
//! scheduling pass and the transfers it starts (to a closed loopback port), shutdown.
//! No panic in any thread.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    background_transfer::fuzzing::open_store(data);
});
