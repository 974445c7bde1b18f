//! Binlog parsing for MySQL and MariaDB: events, transactions and GTIDs.
//!
//! Takes bytes, gives typed views that borrow them. It does no I/O, spawns nothing, and
//! knows nothing of sockets or files: the stream, the archive and the restore feed it bytes.
//!
//! The layers, bottom up:
//! - [`framing`]: the file magic, the 19-byte common header ([`header`]), the
//!   FORMAT_DESCRIPTION event ([`format_description`]), CRC32 verification, and
//!   [`EventReader`] over a file in memory. Input that ends inside an event is
//!   [`Frame::Incomplete`], the normal state of a live file.
//! - [`events`]: [`decode_event`] turns a framed event into an [`Event`].
//! - [`transaction`]: [`TransactionTracker`] groups events into [`Transaction`]s with GTID,
//!   byte range and commit time — what the archive index records.
//! - [`gtid`]: GTIDs of both flavours.
//!
//! ```
//! use binlogd_parser::{EventReader, TransactionTracker, decode_event};
//!
//! fn transactions(file: &[u8]) -> Result<usize, binlogd_parser::ParseError> {
//!     let mut reader = EventReader::new(file);
//!     let mut tracker = TransactionTracker::new();
//!     let mut count = 0;
//!     while let Some(raw) = reader.next() {
//!         let raw = raw?;
//!         let format = reader.format().expect("a format description precedes every event");
//!         if tracker.push(&raw, &decode_event(&raw, format)?).is_some() {
//!             count += 1;
//!         }
//!     }
//!     Ok(count)
//! }
//! ```
//!
//! Specifications: MySQL's libbinlogevents documentation
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_replication_binlog_event.html>)
//! and MariaDB's replication protocol pages (<https://mariadb.com/kb/en/replication-protocol/>).

mod error;
mod event_type;
pub mod events;
pub mod format_description;
pub mod framing;
pub mod gtid;
pub mod header;
mod le;
pub mod transaction;

pub use error::{ErrorKind, ParseError};
pub use event_type::EventType;
pub use events::{Event, decode_event};
pub use format_description::{ChecksumAlgorithm, Flavour, FormatDescription};
pub use framing::{BINLOG_MAGIC, EventReader, Frame, Framer, Incomplete, PiecewiseEvent, RawEvent};
pub use gtid::{Gtid, MariadbGtid, MariadbGtidPos, MysqlGtid, MysqlGtidSet, Tag, Uuid};
pub use header::{EventHeader, HEADER_LEN};
pub use transaction::{CommitTime, Transaction, TransactionTracker};
