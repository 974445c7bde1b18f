//! The one error type of the parser: what was wrong, at which byte, in which event.

use std::fmt;

use crate::EventType;

/// A binlog could not be parsed.
///
/// Carries the absolute byte offset of the event that failed (or of the point where framing
/// failed) and its type when the header was readable, so that a message can always say
/// "file F, offset N, QUERY event: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// Byte offset of the failing event in its file or stream.
    pub offset: u64,
    /// Type of the failing event, when its header could be read.
    pub event_type: Option<EventType>,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(offset: u64, event_type: Option<EventType>, kind: ErrorKind) -> Self {
        ParseError {
            offset,
            event_type,
            kind,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}", self.offset)?;
        if let Some(t) = self.event_type {
            write!(f, " ({t} event)")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file does not start with the binlog magic `\xfebin`.
    #[error("not a binlog file: the first 4 bytes are not the magic 0xfe 'b' 'i' 'n'")]
    BadMagic,
    /// The input ends inside an event. For a live file this only means "wait for more";
    /// a closed file that ends like this is truncated.
    #[error("truncated: the input ends inside an event, {needed} more bytes needed")]
    Truncated {
        /// How many more bytes the event needs at least.
        needed: usize,
    },
    /// The header's `event_size` is smaller than the header and checksum it must contain.
    #[error("event size {size} is smaller than the {minimum} bytes of header and checksum")]
    EventTooShort {
        /// The declared size.
        size: u32,
        /// The least a valid event can be.
        minimum: u32,
    },
    /// The header's `event_size` is beyond any event a server writes.
    #[error("event size {size} exceeds the maximum of {maximum} bytes")]
    EventTooLarge {
        /// The declared size.
        size: u32,
        /// The largest accepted size.
        maximum: u32,
    },
    /// The CRC32 stored after the event does not match its bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The CRC32 in the event.
        stored: u32,
        /// The CRC32 of the event's bytes.
        computed: u32,
    },
    /// A length inside the event body points past the end of the body.
    #[error("{field} says {value} bytes but only {available} remain in the event")]
    LengthMismatch {
        /// The field that lies.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What the event has left.
        available: usize,
    },
    /// The body is shorter than the fixed part of this event type.
    #[error("body of {len} bytes is shorter than the {minimum} bytes this event type needs")]
    BodyTooShort {
        /// Body length.
        len: usize,
        /// Least length for the type.
        minimum: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The format description names a binlog version other than 4 (MySQL before 5.0).
    #[error("binlog version {0} is not supported (only version 4, MySQL 5.0+ / MariaDB)")]
    UnsupportedBinlogVersion(u16),
    /// An event came before any FORMAT_DESCRIPTION event told how to read it.
    #[error("event before the FORMAT_DESCRIPTION event")]
    MissingFormatDescription,
    /// The file is encrypted (MariaDB `encrypt_binlog`): events after the
    /// START_ENCRYPTION event cannot be read without the server's key.
    #[error(
        "the binlog is encrypted (START_ENCRYPTION event); binlogd cannot read encrypted binlogs"
    )]
    Encrypted,
    /// A compressed event whose payload does not decompress.
    #[error("compressed payload is corrupt: {0}")]
    Decompression(String),
}
