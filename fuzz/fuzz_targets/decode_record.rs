//! One journal frame from arbitrary bytes: no panic, and encode→decode round trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    background_transfer::fuzzing::decode_record(data);
});
