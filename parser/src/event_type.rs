//! Event type codes: MySQL's (0–42) and MariaDB's (160–171).
//!
//! Reference: `Log_event_type` in MySQL's `libbinlogevents/include/binlog_event.h` and
//! MariaDB's `sql/log_event.h`. A code we do not know stays a valid [`EventType`]; the
//! decoder passes such events through as [`crate::Event::Unknown`].

use std::fmt;

/// The type code in an event's common header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u8);

macro_rules! event_types {
    ($($name:ident = $code:literal,)*) => {
        impl EventType {
            $(
                #[allow(missing_docs)]
                pub const $name: EventType = EventType($code);
            )*

            /// The type's name as the servers' sources spell it, or `None` if unknown.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    START_V3 = 0x01,
    QUERY = 0x02,
    STOP = 0x03,
    ROTATE = 0x04,
    INTVAR = 0x05,
    LOAD = 0x06,
    SLAVE = 0x07,
    CREATE_FILE = 0x08,
    APPEND_BLOCK = 0x09,
    EXEC_LOAD = 0x0a,
    DELETE_FILE = 0x0b,
    NEW_LOAD = 0x0c,
    RAND = 0x0d,
    USER_VAR = 0x0e,
    FORMAT_DESCRIPTION = 0x0f,
    XID = 0x10,
    BEGIN_LOAD_QUERY = 0x11,
    EXECUTE_LOAD_QUERY = 0x12,
    TABLE_MAP = 0x13,
    PRE_GA_WRITE_ROWS = 0x14,
    PRE_GA_UPDATE_ROWS = 0x15,
    PRE_GA_DELETE_ROWS = 0x16,
    WRITE_ROWS_V1 = 0x17,
    UPDATE_ROWS_V1 = 0x18,
    DELETE_ROWS_V1 = 0x19,
    INCIDENT = 0x1a,
    HEARTBEAT = 0x1b,
    IGNORABLE = 0x1c,
    ROWS_QUERY = 0x1d,
    WRITE_ROWS = 0x1e,
    UPDATE_ROWS = 0x1f,
    DELETE_ROWS = 0x20,
    GTID = 0x21,
    ANONYMOUS_GTID = 0x22,
    PREVIOUS_GTIDS = 0x23,
    TRANSACTION_CONTEXT = 0x24,
    VIEW_CHANGE = 0x25,
    XA_PREPARE = 0x26,
    PARTIAL_UPDATE_ROWS = 0x27,
    TRANSACTION_PAYLOAD = 0x28,
    HEARTBEAT_V2 = 0x29,
    GTID_TAGGED = 0x2a,
    MARIADB_ANNOTATE_ROWS = 0xa0,
    MARIADB_BINLOG_CHECKPOINT = 0xa1,
    MARIADB_GTID = 0xa2,
    MARIADB_GTID_LIST = 0xa3,
    MARIADB_START_ENCRYPTION = 0xa4,
    MARIADB_QUERY_COMPRESSED = 0xa5,
    MARIADB_WRITE_ROWS_COMPRESSED_V1 = 0xa6,
    MARIADB_UPDATE_ROWS_COMPRESSED_V1 = 0xa7,
    MARIADB_DELETE_ROWS_COMPRESSED_V1 = 0xa8,
    MARIADB_WRITE_ROWS_COMPRESSED = 0xa9,
    MARIADB_UPDATE_ROWS_COMPRESSED = 0xaa,
    MARIADB_DELETE_ROWS_COMPRESSED = 0xab,
}

impl EventType {
    /// Whether this is one of the row events (write, update, delete; any version,
    /// compressed or not).
    pub fn is_rows(self) -> bool {
        matches!(self.0, 0x14..=0x19 | 0x1e..=0x20 | 0x27 | 0xa6..=0xab)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "UNKNOWN({:#04x})", self.0),
        }
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
