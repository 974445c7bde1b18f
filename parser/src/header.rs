//! The common header that starts every v4 binlog event.
//!
//! ```text
//! offset  size  field
//!      0     4  timestamp    seconds since the epoch, when the statement began
//!      4     1  type_code    see EventType
//!      5     4  server_id    the server that originally wrote the event
//!      9     4  event_size   header + body + checksum
//!     13     4  log_pos      offset of the next event in the file (end_log_pos)
//!     17     2  flags
//! ```
//! All integers are little-endian. Reference: MySQL `Log_event_header`
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Log__event__header.html>)
//! and MariaDB's "Log Event Header" (<https://mariadb.com/kb/en/2-binlog-event-header/>).

use nom::{IResult, Needed};

use crate::EventType;

/// Length of the v4 common header.
pub const HEADER_LEN: usize = 19;

/// `LOG_EVENT_ARTIFICIAL_F`: the event was made up by the sender (a fake ROTATE in a dump
/// stream, the ROTATE a replica writes at the head of a relay log), not read from a file.
pub const FLAG_ARTIFICIAL: u16 = 0x0020;
/// `LOG_EVENT_IGNORABLE_F`: a reader that does not know or need the event may skip it.
/// MariaDB sets it on the START_ENCRYPTION event it sends to replicas, whose events it
/// decrypts: in such a stream (and in a file written from it, like a replica's relay log)
/// that event no longer starts encryption.
pub const FLAG_IGNORABLE: u16 = 0x0080;
/// `LOG_EVENT_BINLOG_IN_USE_F` in a FORMAT_DESCRIPTION event: the file was not closed
/// cleanly (it is open, or the server crashed).
pub const FLAG_BINLOG_IN_USE: u16 = 0x0001;

/// The common header of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// Seconds since the epoch when the statement began.
    pub timestamp: u32,
    /// Event type.
    pub event_type: EventType,
    /// The server that originally wrote the event.
    pub server_id: u32,
    /// Size of the whole event: header, body and checksum.
    pub event_size: u32,
    /// `end_log_pos`: offset of the next event in the original file (0 for artificial
    /// events and inside compressed payloads).
    pub log_pos: u32,
    /// Header flags (`LOG_EVENT_*_F`).
    pub flags: u16,
}

/// Parses a common header; fewer than [`HEADER_LEN`] bytes is `Incomplete`.
///
/// The header is fixed-size, so it is read from one 19-byte array rather than through
/// six chained nom number parsers: this runs once per event and was 10% of indexing time
/// that way (see BENCHMARKS.md). The streaming contract is nom's.
pub fn parse_event_header(input: &[u8]) -> IResult<&[u8], EventHeader> {
    let Some((header, rest)) = input.split_first_chunk::<HEADER_LEN>() else {
        return Err(nom::Err::Incomplete(Needed::new(HEADER_LEN - input.len())));
    };
    let u32_at =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    Ok((
        rest,
        EventHeader {
            timestamp: u32_at(0),
            event_type: EventType(header[4]),
            server_id: u32_at(5),
            event_size: u32_at(9),
            log_pos: u32_at(13),
            flags: u16::from_le_bytes([header[17], header[18]]),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_little_endian() {
        let bytes = [
            0x41, 0x93, 0x03, 0x6b, // timestamp
            0x0f, // FORMAT_DESCRIPTION
            0x01, 0x00, 0x00, 0x00, // server id 1
            0xfc, 0x00, 0x00, 0x00, // size 252
            0x00, 0x01, 0x00, 0x00, // log_pos 256
            0x01, 0x00, // flags: in use
            0xaa, // first body byte
        ];
        let (rest, header) = parse_event_header(&bytes).expect("header");
        assert_eq!(rest, [0xaa]);
        assert_eq!(
            header,
            EventHeader {
                timestamp: 0x6b03_9341,
                event_type: EventType::FORMAT_DESCRIPTION,
                server_id: 1,
                event_size: 252,
                log_pos: 256,
                flags: FLAG_BINLOG_IN_USE,
            }
        );
    }

    #[test]
    fn short_input_is_incomplete_not_a_panic() {
        assert_eq!(
            parse_event_header(&[0u8; HEADER_LEN - 3]),
            Err(nom::Err::Incomplete(Needed::new(3)))
        );
        assert_eq!(
            parse_event_header(&[]),
            Err(nom::Err::Incomplete(Needed::new(HEADER_LEN)))
        );
    }
}
