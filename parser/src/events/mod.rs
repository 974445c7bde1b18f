//! Typed events: what an archiver and a restore need from each event type.
//!
//! [`decode_event`] turns a framed [`RawEvent`] into an [`Event`] that borrows the
//! event's bytes. Types that binlogd needs no more from than their header (INTVAR, RAND,
//! USER_VAR, ...) and types no server we know writes come back as [`Event::Other`] with
//! their body: an unknown type is never an error.
//!
//! Each event family has its own module with the wire layout in its documentation.

pub mod compressed;
pub mod gtid;
pub mod query;
pub mod row_image;
pub mod rows;

use crate::EventType;
use crate::error::{ErrorKind, ParseError};
use crate::format_description::FormatDescription;
use crate::framing::RawEvent;
use crate::le::{read_packed_integer, read_u32, read_u64};

pub use compressed::{PayloadCompression, TransactionPayload, decompress_mariadb};
pub use gtid::{BinlogCheckpoint, GtidList, MariadbGtidEvent, MysqlGtidEvent};
pub use query::{Query, StatementKind};
pub use rows::{ColumnBitmaps, RowsHeader, TableMap, XaPrepare};

/// A decoded event, borrowing the bytes of its [`RawEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// FORMAT_DESCRIPTION: how to read the following events. Boxed, like the MySQL GTID
    /// event, to keep every `Event` small: events are moved by value on the hot path.
    FormatDescription(Box<FormatDescription>),
    /// ROTATE: the next file's name and the position to continue at.
    Rotate {
        /// Position in the next file (4 when it starts from its beginning).
        position: u64,
        /// Name of the next file.
        next_file: &'a [u8],
    },
    /// STOP: the server stopped; the file ends here.
    Stop,
    /// XID: commit of a transaction with transactional changes.
    Xid {
        /// The transaction's XA id on the source.
        xid: u64,
    },
    /// QUERY or MariaDB QUERY_COMPRESSED.
    Query(Query<'a>),
    /// HEARTBEAT (v1): sent by the source when idle; never in a file.
    Heartbeat {
        /// The source's current binlog file (its position is in the header's `log_pos`).
        file: &'a [u8],
    },
    /// HEARTBEAT_V2 (MySQL 8.0.26+): like HEARTBEAT, with a 64-bit position.
    HeartbeatV2 {
        /// The source's current binlog file.
        file: &'a [u8],
        /// The source's position in it, when sent.
        position: Option<u64>,
    },
    /// TABLE_MAP.
    TableMap(TableMap<'a>),
    /// Any ROWS event; the type is in the raw event's header.
    Rows(RowsHeader<'a>),
    /// ROWS_QUERY (MySQL): the statement that produced the following row events.
    RowsQuery {
        /// The statement text.
        sql: &'a [u8],
    },
    /// ANNOTATE_ROWS (MariaDB): the statement that produced the following row events.
    AnnotateRows {
        /// The statement text.
        sql: &'a [u8],
    },
    /// XA_PREPARE (MySQL).
    XaPrepare(XaPrepare<'a>),
    /// MySQL GTID, GTID_TAGGED or ANONYMOUS_GTID.
    MysqlGtid(Box<MysqlGtidEvent>),
    /// MySQL TRANSACTION_PAYLOAD: the rest of a transaction, compressed.
    TransactionPayload(TransactionPayload<'a>),
    /// MySQL PREVIOUS_GTIDS: the GTID set of all files before this one (encoded).
    PreviousGtids {
        /// The encoded GTID set.
        encoded: &'a [u8],
    },
    /// MariaDB GTID.
    MariadbGtid(MariadbGtidEvent),
    /// MariaDB GTID_LIST.
    GtidList(GtidList<'a>),
    /// MariaDB BINLOG_CHECKPOINT.
    BinlogCheckpoint(BinlogCheckpoint<'a>),
    /// MariaDB START_ENCRYPTION: the rest of the file is encrypted, unless the event is
    /// flagged ignorable (as a server sends it with the decrypted events of a dump).
    StartEncryption {
        /// Encryption scheme.
        scheme: u8,
        /// Version of the server's key.
        key_version: u32,
        /// Whether the events after it are encrypted.
        starts_encryption: bool,
    },
    /// Any other event, with its body (without checksum).
    Other {
        /// The type code.
        event_type: EventType,
        /// The body.
        body: &'a [u8],
    },
}

/// Decodes a framed event under the format description in force.
pub fn decode_event<'a>(
    event: &RawEvent<'a>,
    format: &FormatDescription,
) -> Result<Event<'a>, ParseError> {
    let event_type = event.event_type();
    decode_body(event, format).map_err(|kind| ParseError {
        offset: event.offset,
        event_type: Some(event_type),
        kind,
    })
}

fn decode_body<'a>(
    event: &RawEvent<'a>,
    format: &FormatDescription,
) -> Result<Event<'a>, ErrorKind> {
    let body = event.body();
    let event_type = event.event_type();
    let post_header = |default: usize| format.post_header_len(event_type.0).unwrap_or(default);
    Ok(match event_type {
        EventType::FORMAT_DESCRIPTION => {
            // The checksum was stripped from `body`; the algorithm byte and checksum
            // field are part of what FormatDescription::parse reads.
            Event::FormatDescription(Box::new(FormatDescription::parse(
                &event.bytes[crate::header::HEADER_LEN..],
            )?))
        }
        EventType::ROTATE => {
            if body.len() < 8 {
                return Err(ErrorKind::BodyTooShort {
                    len: body.len(),
                    minimum: 8,
                });
            }
            Event::Rotate {
                position: read_u64(&body[..8]),
                next_file: &body[8..],
            }
        }
        EventType::STOP => Event::Stop,
        EventType::XID => {
            if body.len() != 8 {
                return Err(ErrorKind::LengthMismatch {
                    field: "XID body",
                    value: 8,
                    available: body.len(),
                });
            }
            Event::Xid {
                xid: read_u64(body),
            }
        }
        EventType::QUERY => Event::Query(Query::parse(body, post_header(13), false)?),
        EventType::MARIADB_QUERY_COMPRESSED => {
            Event::Query(Query::parse(body, post_header(13), true)?)
        }
        EventType::HEARTBEAT => Event::Heartbeat { file: body },
        EventType::HEARTBEAT_V2 => parse_heartbeat_v2(body)?,
        EventType::TABLE_MAP => Event::TableMap(TableMap::parse(body, post_header(8))?),
        t if t.is_rows() => {
            let version2 = matches!(
                t,
                EventType::WRITE_ROWS
                    | EventType::UPDATE_ROWS
                    | EventType::DELETE_ROWS
                    | EventType::PARTIAL_UPDATE_ROWS
                    | EventType::MARIADB_WRITE_ROWS_COMPRESSED
                    | EventType::MARIADB_UPDATE_ROWS_COMPRESSED
                    | EventType::MARIADB_DELETE_ROWS_COMPRESSED
            ) && post_header(10) >= 10;
            let mut rows =
                RowsHeader::parse(body, post_header(if version2 { 10 } else { 8 }), version2)?;
            // UPDATE images come in pairs (before, after), each with its bitmap.
            rows.two_bitmaps = matches!(
                t,
                EventType::PRE_GA_UPDATE_ROWS
                    | EventType::UPDATE_ROWS_V1
                    | EventType::UPDATE_ROWS
                    | EventType::PARTIAL_UPDATE_ROWS
                    | EventType::MARIADB_UPDATE_ROWS_COMPRESSED_V1
                    | EventType::MARIADB_UPDATE_ROWS_COMPRESSED
            );
            rows.compressed = matches!(t.0, 0xa6..=0xab);
            Event::Rows(rows)
        }
        EventType::ROWS_QUERY => {
            // A length byte (truncated at 255, so ignored) precedes the text.
            Event::RowsQuery {
                sql: body.get(1..).unwrap_or_default(),
            }
        }
        EventType::MARIADB_ANNOTATE_ROWS => Event::AnnotateRows { sql: body },
        EventType::XA_PREPARE => Event::XaPrepare(XaPrepare::parse(body)?),
        EventType::GTID => Event::MysqlGtid(Box::new(MysqlGtidEvent::parse(body, false)?)),
        EventType::ANONYMOUS_GTID => Event::MysqlGtid(Box::new(MysqlGtidEvent::parse(body, true)?)),
        EventType::GTID_TAGGED => Event::MysqlGtid(Box::new(MysqlGtidEvent::parse_tagged(body)?)),
        EventType::PREVIOUS_GTIDS => Event::PreviousGtids { encoded: body },
        EventType::TRANSACTION_PAYLOAD => {
            Event::TransactionPayload(TransactionPayload::parse(body)?)
        }
        EventType::MARIADB_GTID => {
            Event::MariadbGtid(MariadbGtidEvent::parse(body, event.header.server_id)?)
        }
        EventType::MARIADB_GTID_LIST => Event::GtidList(GtidList::parse(body)?),
        EventType::MARIADB_BINLOG_CHECKPOINT => {
            Event::BinlogCheckpoint(BinlogCheckpoint::parse(body)?)
        }
        EventType::MARIADB_START_ENCRYPTION => {
            if body.len() < 17 {
                return Err(ErrorKind::BodyTooShort {
                    len: body.len(),
                    minimum: 17,
                });
            }
            Event::StartEncryption {
                scheme: body[0],
                key_version: read_u32(&body[1..5]),
                starts_encryption: event.header.flags & crate::header::FLAG_IGNORABLE == 0,
            }
        }
        _ => Event::Other { event_type, body },
    })
}

/// HEARTBEAT_V2 body (`codecs::binary::Heartbeat` in MySQL's libbinlogevents): fields of
/// `type, length, value` (type and length packed integers), ended by type 0. Type 1 is
/// the file name, type 2 the position as a packed integer; other types are skipped.
fn parse_heartbeat_v2(body: &[u8]) -> Result<Event<'_>, ErrorKind> {
    let mut rest = body;
    let (mut file, mut position): (&[u8], Option<u64>) = (&[], None);
    let packed = |rest: &mut &[u8], field: &'static str| -> Result<u64, ErrorKind> {
        let (value, used) = read_packed_integer(rest).ok_or(ErrorKind::Invalid(field))?;
        *rest = &rest[used..];
        Ok(value)
    };
    while !rest.is_empty() {
        let field_type = packed(&mut rest, "heartbeat field type")?;
        if field_type == 0 {
            break;
        }
        let length = packed(&mut rest, "heartbeat field length")?;
        if length > rest.len() as u64 {
            return Err(ErrorKind::LengthMismatch {
                field: "heartbeat field length",
                value: length,
                available: rest.len(),
            });
        }
        let (mut value, after) = rest.split_at(length as usize);
        rest = after;
        match field_type {
            1 => file = value,
            2 => position = Some(packed(&mut value, "heartbeat position")?),
            _ => {}
        }
    }
    Ok(Event::HeartbeatV2 { file, position })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_v2_fields() {
        let mut body = vec![1, 13];
        body.extend_from_slice(b"binlog.000041");
        body.extend_from_slice(&[2, 5, 0xfd, 0x15, 0xcd, 0x5b, 9, 0]);
        assert_eq!(
            parse_heartbeat_v2(&body),
            Ok(Event::HeartbeatV2 {
                file: b"binlog.000041",
                position: Some(0x5bcd15)
            })
        );
        assert_eq!(
            parse_heartbeat_v2(&[0]),
            Ok(Event::HeartbeatV2 {
                file: b"",
                position: None
            })
        );
        assert!(
            parse_heartbeat_v2(&[1, 200, b'x']).is_err(),
            "length past the body"
        );
    }

    #[test]
    fn events_stay_small() {
        // Every decoded event is moved by value a few times; large variants are boxed.
        assert!(
            std::mem::size_of::<Event<'_>>() <= 80,
            "{}",
            std::mem::size_of::<Event<'_>>()
        );
        assert!(std::mem::size_of::<Result<Event<'_>, ParseError>>() <= 88);
    }
}
