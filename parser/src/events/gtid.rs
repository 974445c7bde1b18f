//! Events that carry GTIDs: MariaDB GTID, GTID_LIST and BINLOG_CHECKPOINT; MySQL GTID and
//! ANONYMOUS_GTID.
//!
//! MariaDB GTID (<https://mariadb.com/kb/en/gtid_event/>), server id from the header:
//! ```text
//!   sequence u64, domain_id u32, flags u8,
//!   commit_id u64 if flags & FL_GROUP_COMMIT_ID, else 6 unused bytes, then XA data and
//!   extra flags on newer servers (kept raw)
//! ```
//! MariaDB GTID_LIST (<https://mariadb.com/kb/en/gtid_list_event/>): count u32 (low 28
//! bits), then count × (domain u32, server u32, sequence u64).
//!
//! MySQL GTID (`Gtid_event` in libbinlogevents `control_events.cpp`):
//! ```text
//!   flags u8, sid [16], gno i64,
//!   then, each present only on newer servers and only if bytes remain:
//!   lt_type u8 (2), last_committed i64, sequence_number i64,
//!   immediate_commit_timestamp 7 bytes (bit 55 set: original_commit_timestamp 7 bytes follows),
//!   transaction_length (packed integer),
//!   immediate_server_version u32 (bit 31 set: original_server_version u32 follows)
//! ```
//! Commit timestamps are microseconds since the epoch.
//!
//! MySQL GTID_TAGGED_LOG (8.3+; `Gtid_event::define_fields` in MySQL's
//! `libs/mysql/binlog/event/control_events.h`) is one `mysql::serialization` message:
//! ```text
//!   format_version varint (1), message_size varint (bytes from the start of the message),
//!   last_non_ignorable_field_id varint, then fields in ascending id order, each
//!   field_id varint followed by its value; absent fields take their defaults:
//!   0 flags, 1 uuid (16 varints), 2 gno (signed), 3 tag (varint length + bytes),
//!   4 last_committed (signed), 5 sequence_number (signed), 6 immediate_commit_timestamp,
//!   7 original_commit_timestamp (default: immediate), 8 transaction_length,
//!   9 immediate_server_version, 10 original_server_version (default: immediate),
//!   11 commit_group_ticket
//! ```
//! A varint's first byte has as many trailing one bits as bytes follow it; the value is
//! the little-endian number of all its bytes shifted right by their count (9 bytes:
//! first byte 0xff, the value in the next 8). Signed values are zigzag-encoded.

use crate::error::ErrorKind;
use crate::gtid::{MariadbGtid, MysqlGtid, Tag, Uuid};
use crate::le::{read_packed_integer, read_u32, read_u56, read_u64};

/// MariaDB GTID flag: the group is one statement without BEGIN/COMMIT (DDL, or a
/// non-transactional statement).
pub const FL_STANDALONE: u8 = 0x01;
/// MariaDB GTID flag: `commit_id` is present.
pub const FL_GROUP_COMMIT_ID: u8 = 0x02;
/// MariaDB GTID flag: the group contains DDL.
pub const FL_DDL: u8 = 0x20;
/// MariaDB GTID flag: the group is the prepared part of an XA transaction.
pub const FL_PREPARED_XA: u8 = 0x40;
/// MariaDB GTID flag: the group is an `XA COMMIT`/`XA ROLLBACK`.
pub const FL_COMPLETED_XA: u8 = 0x80;

/// A MariaDB GTID event: the start of a transaction (an "event group").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtidEvent {
    /// The GTID (server id taken from the event header).
    pub gtid: MariadbGtid,
    /// `FL_*` flags.
    pub flags: u8,
    /// Group-commit id, shared by transactions committed together.
    pub commit_id: Option<u64>,
}

impl MariadbGtidEvent {
    pub(crate) fn parse(body: &[u8], server_id: u32) -> Result<Self, ErrorKind> {
        if body.len() < 13 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: 13,
            });
        }
        let sequence = read_u64(&body[0..8]);
        let domain_id = read_u32(&body[8..12]);
        let flags = body[12];
        let commit_id = if flags & FL_GROUP_COMMIT_ID != 0 {
            if body.len() < 21 {
                return Err(ErrorKind::BodyTooShort {
                    len: body.len(),
                    minimum: 21,
                });
            }
            Some(read_u64(&body[13..21]))
        } else {
            None
        };
        Ok(MariadbGtidEvent {
            gtid: MariadbGtid {
                domain_id,
                server_id,
                sequence,
            },
            flags,
            commit_id,
        })
    }

    /// Whether the group is a single statement with no COMMIT/XID after it.
    pub fn is_standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }

    /// Whether the group contains DDL.
    pub fn is_ddl(&self) -> bool {
        self.flags & FL_DDL != 0
    }
}

/// A MariaDB GTID_LIST event: the last GTID of each domain before this file (written
/// after the format description of every file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidList<'a> {
    /// The upper 4 bits of the count field.
    pub flags: u8,
    entries: &'a [u8],
}

impl<'a> GtidList<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, ErrorKind> {
        if body.len() < 4 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: 4,
            });
        }
        let word = read_u32(&body[..4]);
        let count = (word & 0x0fff_ffff) as usize;
        let flags = (word >> 28) as u8;
        let available = body.len() - 4;
        if count > available / 16 {
            return Err(ErrorKind::LengthMismatch {
                field: "GTID count",
                value: count as u64 * 16,
                available,
            });
        }
        Ok(GtidList {
            flags,
            entries: &body[4..4 + count * 16],
        })
    }

    /// The GTIDs in the list, one per domain.
    pub fn gtids(&self) -> impl ExactSizeIterator<Item = MariadbGtid> + 'a {
        self.entries.chunks_exact(16).map(|e| MariadbGtid {
            domain_id: read_u32(&e[0..4]),
            server_id: read_u32(&e[4..8]),
            sequence: read_u64(&e[8..16]),
        })
    }
}

/// A MariaDB BINLOG_CHECKPOINT event: the oldest binlog file crash recovery still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinlogCheckpoint<'a> {
    /// The file name.
    pub file: &'a [u8],
}

impl<'a> BinlogCheckpoint<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, ErrorKind> {
        if body.len() < 4 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: 4,
            });
        }
        let len = read_u32(&body[..4]) as usize;
        let rest = &body[4..];
        if len > rest.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "file name length",
                value: len as u64,
                available: rest.len(),
            });
        }
        Ok(BinlogCheckpoint { file: &rest[..len] })
    }
}

/// A MySQL GTID or ANONYMOUS_GTID event: the start of a transaction.
///
/// Every field after the GTID is optional: older servers write fewer of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MysqlGtidEvent {
    /// The GTID; `None` for ANONYMOUS_GTID (gtid_mode=OFF).
    pub gtid: Option<MysqlGtid>,
    /// GTID flags (bit 0: may contain statement-based changes).
    pub flags: u8,
    /// Logical clock for the parallel applier, when written (5.7+).
    pub last_committed: Option<i64>,
    /// Logical clock sequence number, when written (5.7+).
    pub sequence_number: Option<i64>,
    /// Commit time on this server, microseconds since the epoch (8.0.1+).
    pub immediate_commit_timestamp: Option<u64>,
    /// Commit time on the server where the transaction began (8.0.1+).
    pub original_commit_timestamp: Option<u64>,
    /// Bytes of the whole transaction, GTID event included (8.0.2+).
    pub transaction_length: Option<u64>,
    /// Version of this server as a number (80040 for 8.0.40), when written.
    pub immediate_server_version: Option<u32>,
    /// Version of the originating server, when written.
    pub original_server_version: Option<u32>,
}

/// `LOGICAL_TIMESTAMP_TYPECODE` in the GTID event.
const LOGICAL_TIMESTAMP_TYPECODE: u8 = 2;

impl MysqlGtidEvent {
    pub(crate) fn parse(body: &[u8], anonymous: bool) -> Result<Self, ErrorKind> {
        if body.len() < 25 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: 25,
            });
        }
        let flags = body[0];
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&body[1..17]);
        let gno = read_u64(&body[17..25]);
        let gtid = if anonymous {
            None
        } else {
            // GNOs run from 1 to 2^63 - 2.
            if gno == 0 || gno >= i64::MAX as u64 {
                return Err(ErrorKind::Invalid("GTID transaction number"));
            }
            Some(MysqlGtid {
                uuid: Uuid(uuid),
                tag: Tag::NONE,
                gno,
            })
        };
        let mut event = MysqlGtidEvent {
            gtid,
            flags,
            ..MysqlGtidEvent::default()
        };
        let mut rest = &body[25..];
        // Every later field is optional: older servers stop early.
        if rest.len() < 17 || rest[0] != LOGICAL_TIMESTAMP_TYPECODE {
            return Ok(event);
        }
        event.last_committed = Some(read_u64(&rest[1..9]) as i64);
        event.sequence_number = Some(read_u64(&rest[9..17]) as i64);
        rest = &rest[17..];
        if rest.len() < 7 {
            return Ok(event);
        }
        let immediate = read_u56(&rest[..7]);
        rest = &rest[7..];
        let immediate_ts = immediate & !(1 << 55);
        event.immediate_commit_timestamp = Some(immediate_ts);
        event.original_commit_timestamp = Some(if immediate & (1 << 55) != 0 {
            if rest.len() < 7 {
                return Err(ErrorKind::BodyTooShort {
                    len: body.len(),
                    minimum: body.len() + 7 - rest.len(),
                });
            }
            let original = read_u56(&rest[..7]);
            rest = &rest[7..];
            original
        } else {
            immediate_ts
        });
        if rest.is_empty() {
            return Ok(event);
        }
        let (length, used) =
            read_packed_integer(rest).ok_or(ErrorKind::Invalid("transaction length"))?;
        event.transaction_length = Some(length);
        rest = &rest[used..];
        if rest.len() < 4 {
            return Ok(event);
        }
        let immediate_version = read_u32(&rest[..4]);
        rest = &rest[4..];
        let version = immediate_version & !(1 << 31);
        event.immediate_server_version = Some(version);
        event.original_server_version = Some(if immediate_version & (1 << 31) != 0 {
            if rest.len() < 4 {
                return Err(ErrorKind::Invalid("original server version"));
            }
            read_u32(&rest[..4])
        } else {
            version
        });
        Ok(event)
    }
}

impl MysqlGtidEvent {
    /// Decodes a GTID_TAGGED_LOG event body.
    pub(crate) fn parse_tagged(body: &[u8]) -> Result<Self, ErrorKind> {
        let mut input = Varints(body);
        let version = input.unsigned("serialization version")?;
        if version != 1 {
            return Err(ErrorKind::Invalid(
                "tagged GTID serialization version (only 1 is known)",
            ));
        }
        let size = input.unsigned("message size")?;
        // The size counts from the start of the message, so it covers at least the two
        // varints just read (found by fuzzing: a smaller size sliced backwards).
        let header_len = body.len() - input.0.len();
        let size =
            usize::try_from(size).map_err(|_| ErrorKind::Invalid("tagged GTID message size"))?;
        if size > body.len() || size < header_len {
            return Err(ErrorKind::LengthMismatch {
                field: "tagged GTID message size",
                value: size as u64,
                available: body.len(),
            });
        }
        // Fields end where the message says it ends.
        input = Varints(&body[header_len..size]);
        let last_non_ignorable = input.unsigned("last non-ignorable field id")?;
        let mut event = MysqlGtidEvent::default();
        let (mut uuid, mut gno, mut tag) = (None, None, Tag::NONE);
        let mut previous_id: Option<u64> = None;
        while !input.0.is_empty() {
            let id = input.unsigned("field id")?;
            if previous_id.is_some_and(|p| id <= p) {
                return Err(ErrorKind::Invalid("tagged GTID field order"));
            }
            previous_id = Some(id);
            match id {
                0 => {
                    event.flags = u8::try_from(input.unsigned("flags")?)
                        .map_err(|_| ErrorKind::Invalid("GTID flags"))?
                }
                1 => {
                    let mut bytes = [0u8; 16];
                    for b in &mut bytes {
                        *b = u8::try_from(input.unsigned("uuid")?)
                            .map_err(|_| ErrorKind::Invalid("GTID uuid byte"))?;
                    }
                    uuid = Some(Uuid(bytes));
                }
                2 => gno = Some(input.signed("gno")?),
                3 => {
                    let len = input.unsigned("tag length")?;
                    if len > crate::gtid::MAX_TAG_LEN as u64 || len as usize > input.0.len() {
                        return Err(ErrorKind::Invalid("GTID tag length"));
                    }
                    let (text, rest) = input.0.split_at(len as usize);
                    input.0 = rest;
                    let text =
                        std::str::from_utf8(text).map_err(|_| ErrorKind::Invalid("GTID tag"))?;
                    tag = Tag::new(text).map_err(|_| ErrorKind::Invalid("GTID tag"))?;
                }
                4 => event.last_committed = Some(input.signed("last_committed")?),
                5 => event.sequence_number = Some(input.signed("sequence_number")?),
                6 => {
                    event.immediate_commit_timestamp =
                        Some(input.unsigned("immediate_commit_timestamp")?)
                }
                7 => {
                    event.original_commit_timestamp =
                        Some(input.unsigned("original_commit_timestamp")?)
                }
                8 => event.transaction_length = Some(input.unsigned("transaction_length")?),
                9 => {
                    event.immediate_server_version =
                        Some(server_version(input.unsigned("server version")?)?)
                }
                10 => {
                    event.original_server_version =
                        Some(server_version(input.unsigned("server version")?)?)
                }
                11 => {
                    input.unsigned("commit_group_ticket")?;
                }
                // A newer server's field: its layout is unknown, so the rest of the
                // message cannot be read; that is only allowed for ignorable fields.
                _ if id > last_non_ignorable => break,
                _ => {
                    return Err(ErrorKind::Invalid(
                        "tagged GTID event has a required field this parser does not know",
                    ));
                }
            }
        }
        event.original_commit_timestamp = event
            .original_commit_timestamp
            .or(event.immediate_commit_timestamp);
        event.original_server_version = event
            .original_server_version
            .or(event.immediate_server_version);
        let (Some(uuid), Some(gno)) = (uuid, gno) else {
            return Err(ErrorKind::Invalid("tagged GTID event without uuid or gno"));
        };
        if gno < 1 || gno == i64::MAX {
            return Err(ErrorKind::Invalid("GTID transaction number"));
        }
        event.gtid = Some(MysqlGtid {
            uuid,
            tag,
            gno: gno as u64,
        });
        Ok(event)
    }
}

fn server_version(value: u64) -> Result<u32, ErrorKind> {
    u32::try_from(value).map_err(|_| ErrorKind::Invalid("server version"))
}

/// A reader of `mysql::serialization` varints.
struct Varints<'a>(&'a [u8]);

impl Varints<'_> {
    fn unsigned(&mut self, field: &'static str) -> Result<u64, ErrorKind> {
        let first = *self.0.first().ok_or(ErrorKind::LengthMismatch {
            field,
            value: 1,
            available: 0,
        })?;
        let len = first.trailing_ones() as usize + 1;
        if len > self.0.len() {
            return Err(ErrorKind::LengthMismatch {
                field,
                value: len as u64,
                available: self.0.len(),
            });
        }
        let value = if len == 9 {
            read_u64(&self.0[1..9])
        } else {
            let mut a = [0u8; 8];
            a[..len].copy_from_slice(&self.0[..len]);
            u64::from_le_bytes(a) >> len
        };
        self.0 = &self.0[len..];
        Ok(value)
    }

    fn signed(&mut self, field: &'static str) -> Result<i64, ErrorKind> {
        let zigzag = self.unsigned(field)?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_with_and_without_commit_id() {
        let mut body = Vec::new();
        body.extend_from_slice(&42u64.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(FL_STANDALONE | FL_DDL);
        body.extend_from_slice(&[0; 6]);
        let ev = MariadbGtidEvent::parse(&body, 7).expect("parse");
        assert_eq!(ev.gtid.to_string(), "3-7-42");
        assert!(ev.is_standalone() && ev.is_ddl());
        assert_eq!(ev.commit_id, None);

        body[12] = FL_GROUP_COMMIT_ID;
        assert!(
            MariadbGtidEvent::parse(&body, 7).is_err(),
            "commit id announced but cut"
        );
        body.truncate(13);
        body.extend_from_slice(&99u64.to_le_bytes());
        assert_eq!(
            MariadbGtidEvent::parse(&body, 7).expect("parse").commit_id,
            Some(99)
        );
    }

    #[test]
    fn gtid_list_count_cannot_exceed_the_body() {
        let mut body = Vec::new();
        body.extend_from_slice(&2u32.to_le_bytes());
        for (d, s, n) in [(0u32, 1u32, 10u64), (1, 2, 20)] {
            body.extend_from_slice(&d.to_le_bytes());
            body.extend_from_slice(&s.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
        }
        let list = GtidList::parse(&body).expect("parse");
        let gtids: Vec<String> = list.gtids().map(|g| g.to_string()).collect();
        assert_eq!(gtids, ["0-1-10", "1-2-20"]);
        body[0] = 3;
        assert!(matches!(
            GtidList::parse(&body),
            Err(ErrorKind::LengthMismatch { .. })
        ));
        // A huge count must not overflow the size check.
        body[..4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
        assert!(GtidList::parse(&body).is_err());
    }

    #[test]
    fn tagged_gtid_with_a_size_smaller_than_its_header_is_an_error() {
        // Fuzzer crash input (event_decoder): version 1, message size 1.
        assert!(matches!(
            MysqlGtidEvent::parse_tagged(&[0x02, 0x02, 0x00, 0x00]),
            Err(ErrorKind::LengthMismatch {
                field: "tagged GTID message size",
                ..
            })
        ));
        assert!(
            MysqlGtidEvent::parse_tagged(&[0x02, 0x04, 0x00]).is_err(),
            "size 2: no field id room"
        );
    }

    #[test]
    fn serialization_varints() {
        let mut v = Varints(&[
            0x02, 0x25, 0x02, 0x43, 0x0f, 0x0b, 0x0c, 0xff, 1, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(v.unsigned("a"), Ok(1));
        assert_eq!(v.unsigned("b"), Ok(0x89));
        assert_eq!(v.unsigned("c"), Ok(90600));
        assert_eq!(v.signed("d"), Ok(3));
        assert_eq!(v.unsigned("e"), Ok(1));
        assert!(v.0.is_empty());
        assert!(Varints(&[0x01]).unsigned("cut").is_err());
        assert_eq!(Varints(&[0x02]).signed("neg"), Ok(-1));
        assert_eq!(Varints(&[0x06]).signed("neg"), Ok(-2));
    }
}
