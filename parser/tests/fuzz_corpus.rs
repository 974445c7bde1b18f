//! Replays the fuzz corpora kept in `fuzz/corpus/` (what cargo-fuzz found interesting,
//! minimised) through the same calls as the fuzz targets, on the stable toolchain, so a
//! change that makes any of those inputs panic fails the normal test suite.

use std::path::PathBuf;

use binlogd_parser::events::Event;
use binlogd_parser::{EventReader, MariadbGtidPos, MysqlGtidSet, TransactionTracker, decode_event};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    binlogd_testkit::fuzz_corpus(target)
}

#[test]
fn event_reader_corpus_never_panics() {
    for (path, data) in corpus("event_reader") {
        let mut reader = EventReader::new(&data);
        let mut tracker = TransactionTracker::new();
        while let Some(Ok(raw)) = reader.next() {
            let Some(format) = reader.format().cloned() else {
                break;
            };
            let Ok(event) = decode_event(&raw, &format) else {
                continue;
            };
            if let Event::TransactionPayload(payload) = &event
                && payload.uncompressed_size <= 1 << 20
                && let Ok(inner) = payload.decompress()
            {
                let mut events = EventReader::payload(&inner, &format);
                while let Some(Ok(e)) = events.next() {
                    if let Some(inner_format) = events.format() {
                        let _ = decode_event(&e, inner_format);
                    }
                }
            }
            if let Some(t) = tracker.push(&raw, &event) {
                assert!(
                    t.start < t.end && t.end <= data.len() as u64,
                    "{}",
                    path.display()
                );
                let _ = t.ddl_text();
            }
        }
        let _ = reader.finish();
    }
}

#[test]
fn gtid_text_corpora_round_trip() {
    for (_, data) in corpus("mysql_gtid_set") {
        if let Ok(text) = std::str::from_utf8(&data)
            && let Ok(set) = text.parse::<MysqlGtidSet>()
        {
            assert_eq!(set.to_string().parse::<MysqlGtidSet>().as_ref(), Ok(&set));
        }
        if let Ok(set) = MysqlGtidSet::decode(&data) {
            assert_eq!(MysqlGtidSet::decode(&set.encode()).as_ref(), Ok(&set));
        }
    }
    for (_, data) in corpus("mariadb_gtid_pos") {
        if let Ok(text) = std::str::from_utf8(&data)
            && let Ok(pos) = text.parse::<MariadbGtidPos>()
        {
            assert_eq!(pos.to_string().parse::<MariadbGtidPos>().as_ref(), Ok(&pos));
        }
    }
}
