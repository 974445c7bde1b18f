//! Replays the `serve_client` fuzz corpus kept in `fuzz/corpus/` through the same entry
//! point as the fuzz target (`binlogd_serve::fuzzing`), on the stable toolchain, so a
//! change that makes any of those inputs panic fails the normal test suite.

#[test]
fn serve_client_corpus_never_panics() {
    let corpus = binlogd_testkit::fuzz_corpus("serve_client");
    assert!(!corpus.is_empty(), "no serve_client corpus");
    for (path, data) in corpus {
        let outcome = std::panic::catch_unwind(|| binlogd_serve::fuzzing::client_packet(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
    }
}
