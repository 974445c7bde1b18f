//! The events a source makes up for a dump, and the one it changes.
//!
//! - The artificial ROTATE that opens each file of a dump: it names the file and the
//!   position the replica is at (timestamp 0, `log_pos` 0, `LOG_EVENT_ARTIFICIAL_F`), so
//!   a replica that asked for "the first file" learns which one that is.
//! - HEARTBEAT (type 27) while there is nothing to send: the file and position the dump
//!   has reached, so the replica knows the source is alive and where it is.
//! - The file's FORMAT_DESCRIPTION is sent as the file has it, except that the
//!   "file in use" flag is cleared (a replica would take it as a crashed source), and —
//!   when the dump starts inside the file, or a GTID replica has already seen part of it —
//!   `log_pos` and `created` are zeroed, so that the replica neither moves its position
//!   nor drops its temporary tables. Its checksum is then computed again.
//!
//! Each is written with the checksum the dump uses at that point. Reference: MariaDB
//! `sql/sql_repl.cc` (`fake_rotate_event`, `send_format_descriptor_event`,
//! `send_heartbeat_event`), MySQL `sql/rpl_binlog_sender.cc`.

use binlogd_parser::header::{FLAG_ARTIFICIAL, FLAG_BINLOG_IN_USE};
use binlogd_parser::{ChecksumAlgorithm, EventType, HEADER_LEN};

/// Where `created` (seconds) lies in a FORMAT_DESCRIPTION event: after the header, the
/// binlog version (2) and the server version (50).
const CREATED_OFFSET: usize = HEADER_LEN + 2 + 50;

fn artificial(
    event_type: EventType,
    server_id: u32,
    log_pos: u32,
    body: &[u8],
    checksum: ChecksumAlgorithm,
) -> Vec<u8> {
    let size = HEADER_LEN + body.len() + checksum.len();
    let mut event = Vec::with_capacity(size);
    event.extend_from_slice(&0u32.to_le_bytes());
    event.push(event_type.0);
    event.extend_from_slice(&server_id.to_le_bytes());
    event.extend_from_slice(&(size as u32).to_le_bytes());
    event.extend_from_slice(&log_pos.to_le_bytes());
    event.extend_from_slice(&FLAG_ARTIFICIAL.to_le_bytes());
    event.extend_from_slice(body);
    if checksum == ChecksumAlgorithm::Crc32 {
        let crc = crc32fast::hash(&event);
        event.extend_from_slice(&crc.to_le_bytes());
    }
    event
}

/// The artificial ROTATE that starts the dump of `file` at `position`.
pub fn rotate(server_id: u32, file: &str, position: u64, checksum: ChecksumAlgorithm) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + file.len());
    body.extend_from_slice(&position.to_le_bytes());
    body.extend_from_slice(file.as_bytes());
    artificial(EventType::ROTATE, server_id, 0, &body, checksum)
}

/// A HEARTBEAT saying the dump stands at `position` of `file`.
pub fn heartbeat(
    server_id: u32,
    file: &str,
    position: u64,
    checksum: ChecksumAlgorithm,
) -> Vec<u8> {
    // Past 4 GiB the 32-bit field cannot say; MySQL's HEARTBEAT_V2 could, but every
    // replica reads the first kind, and the position only informs.
    let log_pos = u32::try_from(position).unwrap_or(u32::MAX);
    artificial(
        EventType::HEARTBEAT,
        server_id,
        log_pos,
        file.as_bytes(),
        checksum,
    )
}

/// Prepares a file's FORMAT_DESCRIPTION for a dump (see the module docs): `mid_file` when
/// the dump starts inside the file (`log_pos` and `created` zeroed), `keep_temporary_tables`
/// when the replica may hold temporary tables the file made (`created` zeroed).
pub fn format_description_for_dump(
    event: &mut [u8],
    checksum: ChecksumAlgorithm,
    mid_file: bool,
    keep_temporary_tables: bool,
) {
    if event.len() < CREATED_OFFSET + 4 {
        return;
    }
    let flags = u16::from_le_bytes([event[17], event[18]]) & !FLAG_BINLOG_IN_USE;
    event[17..19].copy_from_slice(&flags.to_le_bytes());
    if mid_file {
        event[13..17].copy_from_slice(&0u32.to_le_bytes());
    }
    if mid_file || keep_temporary_tables {
        event[CREATED_OFFSET..CREATED_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
    }
    if checksum == ChecksumAlgorithm::Crc32 && event.len() >= HEADER_LEN + 4 {
        let body_end = event.len() - 4;
        let crc = crc32fast::hash(&event[..body_end]);
        event[body_end..].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlogd_parser::{Event, Framer, decode_event};

    #[test]
    fn made_up_events_read_back_with_valid_checksums() {
        for checksum in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::None] {
            let mut framer = Framer::for_stream(checksum);
            let event = rotate(7, "mariadb-bin.000003", 4, checksum);
            let raw = match framer.next_event(&event, 0).expect("frame") {
                binlogd_parser::Frame::Event(raw) => raw,
                other => panic!("{other:?}"),
            };
            assert!(raw.is_artificial());
            assert_eq!(raw.header.server_id, 7);
            let format = binlogd_parser::FormatDescription::stream_preamble(checksum);
            match decode_event(&raw, &format).expect("decode") {
                Event::Rotate {
                    position,
                    next_file,
                } => {
                    assert_eq!(next_file, b"mariadb-bin.000003");
                    assert_eq!(position, 4);
                }
                other => panic!("{other:?}"),
            }
            let beat = heartbeat(7, "mariadb-bin.000003", 1234, checksum);
            let raw = match framer.next_event(&beat, 0).expect("frame") {
                binlogd_parser::Frame::Event(raw) => raw,
                other => panic!("{other:?}"),
            };
            assert_eq!(raw.header.log_pos, 1234);
            assert_eq!(raw.event_type(), EventType::HEARTBEAT);
        }
    }
}
