//! One event under a MySQL 8 or a MariaDB format description, checksums on or off.
//! The first input byte picks the context; the rest is the event.
#![no_main]

use binlogd_parser::{ChecksumAlgorithm, Flavour, FormatDescription, Frame, Framer, decode_event};
use libfuzzer_sys::fuzz_target;

fn format(selector: u8) -> FormatDescription {
    let mariadb = selector & 1 == 1;
    // Post-header lengths as MariaDB 10.11 and MySQL 8.0 declare them.
    let post_header_lengths = if mariadb {
        vec![
            0x38, 0x0d, 0x00, 0x08, 0x00, 0x12, 0x00, 0x04, 0x04, 0x04, 0x04, 0x12, 0x00, 0x00,
            0xe4, 0x00, 0x04, 0x1a, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x08, 0x02, 0x00, 0x00,
            0x00, 0x0a, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x0a, 0x0a,
        ]
    } else {
        vec![
            0x00, 0x0d, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x04, 0x00, 0x00, 0x00,
            0x62, 0x00, 0x04, 0x1a, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x08, 0x02, 0x00, 0x00,
            0x00, 0x0a, 0x0a, 0x0a, 0x2a, 0x2a, 0x00, 0x12, 0x34, 0x00, 0x0a, 0x28, 0x00, 0x00,
        ]
    };
    FormatDescription {
        binlog_version: 4,
        server_version: if mariadb {
            "10.11.19-MariaDB-log".into()
        } else {
            "8.0.40".into()
        },
        version: if mariadb { (10, 11, 19) } else { (8, 0, 40) },
        flavour: if mariadb {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        },
        create_timestamp: 0,
        header_len: 19,
        post_header_lengths,
        checksum: if selector & 2 == 2 {
            ChecksumAlgorithm::Crc32
        } else {
            ChecksumAlgorithm::None
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, event)) = data.split_first() else {
        return;
    };
    let format = format(selector);
    let mut framer =
        Framer::with_format(format.clone()).skip_checksum_verification(selector & 4 == 4);
    if let Ok(Frame::Event(raw)) = framer.next_event(event, 4) {
        assert_eq!(raw.bytes.len(), raw.header.event_size as usize);
        let _ = decode_event(&raw, framer.format().unwrap_or(&format));
    }
});
