//! Segment objects as a bucket could hold them: codecs, encryption metadata, claimed lengths.
//! The checks live in `binlogd_storage::fuzzing`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| binlogd_storage::fuzzing::segment(data));
