//! A real MariaDB binlog written with `encrypt_binlog=ON`: the parser reads the events
//! before START_ENCRYPTION, recognises that event, and then stops with a clear
//! `Encrypted` error at the first encrypted event instead of misreading ciphertext.

use binlogd_parser::events::Event;
use binlogd_parser::{ErrorKind, EventReader, EventType, decode_event};
use binlogd_testkit::MariaDbConfig;

#[test]
fn encrypted_binlog_stops_with_a_clear_error_after_start_encryption() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("keys.txt");
    std::fs::write(
        &key_file,
        "1;a7addd9adea9978fda19f21e6be987880e68ac92632ca052e5bb42b1a506939a\n",
    )
    .expect("key file");
    let db = MariaDbConfig {
        extra_args: vec![
            "--plugin-load-add=file_key_management".to_owned(),
            format!("--file-key-management-filename={}", key_file.display()),
            "--encrypt-binlog=1".to_owned(),
        ],
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start MariaDB with binlog encryption");
    db.write_workload(5).expect("workload");
    let bytes = std::fs::read(db.binlog_files().expect("files").remove(0)).expect("read binlog");

    let mut reader = EventReader::new(&bytes);
    let mut types = Vec::new();
    let mut error = None;
    for event in reader.by_ref() {
        match event {
            Ok(raw) => types.push((raw.event_type(), raw.offset, raw.end_offset())),
            Err(err) => error = Some(err),
        }
    }
    let (start_type, _, start_end) = *types.last().expect("events before encryption");
    assert_eq!(start_type, EventType::MARIADB_START_ENCRYPTION, "{types:?}");
    assert_eq!(
        types.first().map(|t| t.0),
        Some(EventType::FORMAT_DESCRIPTION)
    );
    let error = error.expect("an error at the first encrypted event");
    assert_eq!(error.kind, ErrorKind::Encrypted);
    assert_eq!(
        error.offset, start_end,
        "at the event right after START_ENCRYPTION"
    );
    assert!(error.to_string().contains("encrypted"), "{error}");

    // The START_ENCRYPTION event itself decodes.
    let mut reader = EventReader::new(&bytes);
    while let Some(Ok(raw)) = reader.next() {
        let event = decode_event(&raw, reader.format().expect("format")).expect("decode");
        if raw.event_type() == EventType::MARIADB_START_ENCRYPTION {
            assert!(
                matches!(
                    event,
                    Event::StartEncryption {
                        scheme: 1,
                        key_version: 1,
                        starts_encryption: true,
                    }
                ),
                "{event:?}"
            );
        }
    }
}
