//! Replays the fuzz corpora of the archive readers kept in `fuzz/corpus/` through the same
//! entry points as the fuzz targets (`binlogd_storage::fuzzing`), on the stable toolchain,
//! so a change that makes any of those inputs panic fails the normal test suite.

fn replay(target: &str, run: fn(&[u8])) {
    for (path, data) in binlogd_testkit::fuzz_corpus(target) {
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
    }
}

#[test]
fn archive_json_corpus_never_panics() {
    replay("archive_json", binlogd_storage::fuzzing::archive_json);
}

#[test]
fn index_object_corpus_never_panics() {
    replay("index_object", binlogd_storage::fuzzing::index_object);
}

#[test]
fn segment_corpus_never_panics() {
    replay("segment", binlogd_storage::fuzzing::segment);
}
