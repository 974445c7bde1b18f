//! Walks every real MySQL-written binlog in `../shared/testdata/mysql-corpus/` (see its
//! README): every event frames, passes its CRC32 and decodes, the per-type counts equal
//! the corpus manifest, and the files with documented defects fail exactly there with an
//! error that names the offset and event type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use binlogd_parser::{ErrorKind, EventReader, EventType, ParseError, decode_event};

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("BINLOGD_MYSQL_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/mysql-corpus"),
        PathBuf::from,
    );
    assert!(
        dir.join("MANIFEST.json").is_file(),
        "the MySQL binlog corpus is missing at {}: it lives in the shared/ folder beside the \
         checkout (shared/testdata/mysql-corpus); point BINLOGD_MYSQL_CORPUS at a copy",
        dir.display()
    );
    dir
}

/// What walking one file found.
#[derive(Debug, Default)]
struct Walk {
    counts: BTreeMap<u8, u64>,
    decode_errors: Vec<ParseError>,
    end: Option<ParseError>,
}

fn walk(bytes: &[u8]) -> Walk {
    let mut walk = Walk::default();
    let mut reader = EventReader::new(bytes);
    while let Some(event) = reader.next() {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                walk.end = Some(err);
                return walk;
            }
        };
        *walk.counts.entry(event.event_type().0).or_default() += 1;
        let format = reader.format().expect("format description before events");
        if let Err(err) = decode_event(&event, format) {
            walk.decode_errors.push(err);
        }
    }
    walk.end = reader.finish().err();
    walk
}

/// The manifest names types by the servers' names, or by number for rare ones.
fn type_code(name: &str) -> u8 {
    name.parse().unwrap_or_else(|_| {
        (0..=255u8)
            .find(|&code| EventType(code).name() == Some(name))
            .unwrap_or_else(|| panic!("manifest names unknown event type {name}"))
    })
}

fn manifest() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.json")).expect("read manifest");
    serde_json::from_str(&text).expect("parse manifest")
}

#[test]
fn every_corpus_file_walks_to_its_end_or_its_documented_defect() {
    let manifest = manifest();
    assert!(manifest.len() >= 40, "corpus has {} files", manifest.len());
    for (name, entry) in &manifest {
        let bytes = std::fs::read(corpus_dir().join(name)).expect("read corpus file");
        assert_eq!(
            bytes.len() as u64,
            entry["bytes"].as_u64().expect("bytes"),
            "{name}: size"
        );
        let walk = walk(&bytes);
        let expected: BTreeMap<u8, u64> = entry["events"]
            .as_object()
            .expect("events")
            .iter()
            .map(|(t, n)| (type_code(t), n.as_u64().expect("count")))
            .collect();
        assert_eq!(walk.counts, expected, "{name}: events per type");

        match name.as_str() {
            "binlog_truncated_event.000001" => {
                let end = walk.end.expect("truncated error");
                assert_eq!(end.offset, 4, "{name}");
                assert!(
                    matches!(end.kind, ErrorKind::Truncated { needed: 9 }),
                    "{name}: {end}"
                );
                assert!(end.to_string().contains("truncated"), "{end}");
            }
            "binlog_truncated_prev_gtid_event.000001" => {
                let end = walk.end.expect("truncated error");
                assert_eq!(end.offset, 120, "{name}");
                assert!(
                    matches!(end.kind, ErrorKind::Truncated { .. }),
                    "{name}: {end}"
                );
            }
            "corrupt-relay-bin.000624" => {
                assert!(walk.end.is_none(), "{name}: framing survives the bad body");
                let [err] = walk.decode_errors.as_slice() else {
                    panic!(
                        "{name}: one bad QUERY expected, got {:?}",
                        walk.decode_errors
                    )
                };
                assert_eq!(err.event_type, Some(EventType::QUERY), "{name}: {err}");
                assert!(
                    matches!(err.kind, ErrorKind::LengthMismatch { .. }),
                    "{name}: {err}"
                );
            }
            "ver_5_1-wl2325_r.001" => {
                // A 5.2 development tree that used type code 16 for a table-map-like event:
                // all three "XID" events (the corpus README mentions one) are 38 bytes
                // where an XID has 27, at these offsets.
                assert!(walk.end.is_none(), "{name}");
                let offsets: Vec<u64> = walk.decode_errors.iter().map(|e| e.offset).collect();
                assert_eq!(offsets, [428, 511, 612], "{name}: {:?}", walk.decode_errors);
                for err in &walk.decode_errors {
                    assert_eq!(err.event_type, Some(EventType::XID), "{name}: {err}");
                    assert!(
                        matches!(err.kind, ErrorKind::LengthMismatch { available: 19, .. }),
                        "{err}"
                    );
                }
            }
            _ => {
                assert_eq!(walk.end, None, "{name}: clean end");
                assert_eq!(
                    walk.decode_errors,
                    Vec::new(),
                    "{name}: every event decodes"
                );
            }
        }
    }
}

#[test]
fn corpus_files_with_checksums_fail_on_a_flipped_byte() {
    // Flip one byte inside the last event's body: the CRC32 must catch it.
    let bytes =
        std::fs::read(corpus_dir().join("binlog_transaction_with_GTID.000001")).expect("read");
    let last = EventReader::new(&bytes)
        .filter_map(Result::ok)
        .last()
        .expect("events");
    let mut corrupt = bytes.clone();
    corrupt[last.offset as usize + 20] ^= 0x40;
    let err = EventReader::new(&corrupt)
        .find_map(Result::err)
        .expect("checksum error");
    assert_eq!(err.offset, last.offset);
    assert!(
        matches!(err.kind, ErrorKind::ChecksumMismatch { .. }),
        "{err}"
    );
}

/// Checks that rest on what the MySQL documentation says the fields mean, not on our own
/// output: `transaction_length` is the byte size of the whole transaction including its
/// GTID event; commit timestamps are the commit time, which the GTID event's header
/// also carries (in seconds); PREVIOUS_GTIDS holds a GTID set in the server's encoding.
#[test]
fn mysql_8_gtid_fields_agree_with_the_file() {
    use binlogd_parser::events::Event;
    use binlogd_parser::{MysqlGtidSet, TransactionTracker};

    let mut checked_lengths = 0;
    let mut checked_sets = 0;
    for name in manifest().keys() {
        let bytes = std::fs::read(corpus_dir().join(name)).expect("read");
        let mut reader = EventReader::new(&bytes);
        let mut tracker = TransactionTracker::new();
        let mut pending: Option<(u64, u32)> = None; // transaction_length, GTID header time
        while let Some(Ok(raw)) = reader.next() {
            let Ok(event) = decode_event(&raw, reader.format().expect("format")) else {
                continue;
            };
            match &event {
                Event::MysqlGtid(gtid) => {
                    if let Some(length) = gtid.transaction_length {
                        pending = Some((length, raw.header.timestamp));
                    }
                }
                Event::PreviousGtids { encoded } => {
                    let set = MysqlGtidSet::decode(encoded)
                        .unwrap_or_else(|e| panic!("{name}: PREVIOUS_GTIDS: {e}"));
                    assert_eq!(
                        set.encode(),
                        *encoded,
                        "{name}: re-encodes to the server's bytes"
                    );
                    checked_sets += 1;
                }
                _ => {}
            }
            if let Some(transaction) = tracker.push(&raw, &event)
                && let Some((length, header_time)) = pending.take()
            {
                assert_eq!(
                    transaction.end - transaction.start,
                    length,
                    "{name}: transaction at {}",
                    transaction.start
                );
                assert!(
                    transaction.commit_time.exact,
                    "{name}: MySQL 8 commit times are exact"
                );
                let seconds = transaction.commit_time.seconds();
                assert!(
                    seconds.abs_diff(u64::from(header_time)) <= 1,
                    "{name}: commit {seconds} vs header {header_time}"
                );
                checked_lengths += 1;
            }
        }
    }
    assert!(
        checked_lengths >= 10,
        "only {checked_lengths} transactions had a length"
    );
    assert!(
        checked_sets >= 10,
        "only {checked_sets} PREVIOUS_GTIDS events"
    );
}

#[test]
fn tagged_gtid_file_decodes_gtid_tag_and_set() {
    use binlogd_parser::TransactionTracker;
    use binlogd_parser::events::Event;

    let bytes =
        std::fs::read(corpus_dir().join("binlog_transaction_with_GTID_TAG.000001")).expect("read");
    let mut reader = EventReader::new(&bytes);
    let mut tracker = TransactionTracker::new();
    let mut transactions = Vec::new();
    let mut previous = None;
    while let Some(raw) = reader.next() {
        let raw = raw.expect("frame");
        let event = decode_event(&raw, reader.format().expect("format")).expect("decode");
        if let Event::PreviousGtids { encoded } = &event {
            previous = Some(binlogd_parser::MysqlGtidSet::decode(encoded).expect("previous set"));
        }
        if let Event::MysqlGtid(gtid) = &event {
            assert_eq!(gtid.immediate_server_version, Some(90600), "9.6.0");
            assert_eq!(
                gtid.original_commit_timestamp, gtid.immediate_commit_timestamp,
                "written on this server"
            );
            assert_eq!(
                (gtid.last_committed, gtid.sequence_number),
                (Some(0), Some(1))
            );
        }
        transactions.extend(tracker.push(&raw, &event));
    }
    let [transaction] = transactions.as_slice() else {
        panic!("one transaction: {transactions:?}")
    };
    let gtid = transaction.gtid.expect("gtid").to_string();
    assert_eq!(gtid, "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3");
    // Earlier files of this server executed tagged GTIDs 1-2 of the same tag.
    let previous = previous.expect("PREVIOUS_GTIDS").to_string();
    assert!(
        previous.contains("55778904-0299-11f1-b1b8-4ef0c4956feb"),
        "{previous}"
    );
    assert!(previous.contains(":mytag:"), "{previous}");
}

#[test]
fn transaction_payload_decompresses_into_whole_events() {
    use binlogd_parser::events::Event;
    use binlogd_parser::{EventType, TransactionTracker};

    let bytes = std::fs::read(corpus_dir().join("transaction_compression.000001")).expect("read");
    let mut reader = EventReader::new(&bytes);
    let mut tracker = TransactionTracker::new();
    let mut found = Vec::new();
    let mut inner_types = Vec::new();
    while let Some(raw) = reader.next() {
        let raw = raw.expect("frame");
        let format = reader.format().expect("format").clone();
        let event = decode_event(&raw, &format).expect("decode");
        if let Event::TransactionPayload(payload) = &event {
            let inner = payload.decompress().expect("zstd");
            assert_eq!(inner.len(), 179);
            let mut events = EventReader::payload(&inner, &format);
            while let Some(e) = events.next() {
                let e = e.expect("inner event frames");
                decode_event(&e, events.format().expect("the file's format"))
                    .expect("inner event decodes");
                assert_eq!(e.header.log_pos, 0, "inner events have no position");
                inner_types.push(e.event_type());
            }
            assert_eq!(events.incomplete(), None);
            assert_eq!(
                events.offset(),
                179,
                "inner events fill the payload exactly"
            );
        }
        found.extend(tracker.push(&raw, &event));
    }
    assert_eq!(inner_types.first(), Some(&EventType::QUERY), "BEGIN");
    assert_eq!(
        inner_types.last(),
        Some(&EventType::XID),
        "the commit is inside the payload"
    );
    let [transaction] = found.as_slice() else {
        panic!("{found:?}")
    };
    assert_eq!(
        (transaction.start, transaction.end),
        (197, 431),
        "GTID through payload"
    );
}

/// A live binlog ends anywhere: every prefix of a real file must yield exactly the
/// events it holds whole, then say where the cut event starts and how many bytes it
/// still needs — never an error, never a panic.
#[test]
fn every_prefix_of_a_file_is_incomplete_not_an_error() {
    for name in [
        "binlog_transaction_with_GTID_TAG.000001",
        "mariadb-bin.000001",
        "time_issue.000001",
    ] {
        let bytes = std::fs::read(corpus_dir().join(name)).expect("read");
        let events: Vec<(u64, u64)> = EventReader::new(&bytes)
            .map(|e| e.expect("whole file frames"))
            .map(|e| (e.offset, e.end_offset()))
            .collect();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let mut reader = EventReader::new(prefix);
            let whole: Vec<u64> = reader
                .by_ref()
                .map(|e| e.expect("no error on a prefix").offset)
                .collect();
            let expected: Vec<u64> = events
                .iter()
                .filter(|(_, end)| *end as usize <= cut)
                .map(|(start, _)| *start)
                .collect();
            assert_eq!(whole, expected, "{name} cut at {cut}");
            match reader.incomplete() {
                None => assert!(
                    cut == 0 || cut == 4 || events.iter().any(|(_, end)| *end as usize == cut),
                    "{name} cut at {cut}"
                ),
                Some(incomplete) => {
                    if cut < 4 {
                        assert_eq!((incomplete.offset, incomplete.needed), (0, 4 - cut));
                        continue;
                    }
                    let (start, end) = events
                        .iter()
                        .copied()
                        .find(|(start, end)| (*start as usize) <= cut && cut < *end as usize)
                        .expect("cut inside an event");
                    assert_eq!(incomplete.offset, start, "{name} cut at {cut}");
                    let have = cut - start as usize;
                    let needed = if have < 19 {
                        19 - have
                    } else {
                        end as usize - cut
                    };
                    assert_eq!(incomplete.needed, needed, "{name} cut at {cut}");
                }
            }
        }
    }
}
