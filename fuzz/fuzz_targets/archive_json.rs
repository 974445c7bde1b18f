//! The catalogue and manifests as a bucket could hold them; what parses must round-trip.
//! The checks live in `binlogd_storage::fuzzing`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| binlogd_storage::fuzzing::archive_json(data));
