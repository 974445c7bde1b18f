//! The MySQL client/server protocol as a binlog replica speaks it.
//!
//! - [`packet`]: packet framing (3-byte length, sequence id, 16 MiB splitting), as a
//!   tokio-util codec — the only code that sees the socket's bytes.
//! - [`handshake`]: the server greeting, the client's answer, authentication plugins.
//! - [`connection`]: an async connection with text queries and the replica commands
//!   (`COM_REGISTER_SLAVE`, `COM_BINLOG_DUMP`).
//!
//! It hands event bytes to the caller untouched: it does not parse events (that is
//! `binlogd-parser`) and does not store them (that is `binlogd-storage`).
//!
//! - [`tls`]: TLS with rustls, in the MySQL client's five modes.
//!
//! Not yet here (issue 4): `caching_sha2_password`, `COM_BINLOG_DUMP_GTID`, semi-sync
//! replies.

pub mod connection;
mod error;
pub mod handshake;
pub mod packet;
mod packets;
pub mod tls;
mod wire;

pub use connection::{
    BINLOG_DUMP_NON_BLOCK, BINLOG_SEND_ANNOTATE_ROWS_EVENT, BinlogStream, ConnectOptions,
    Connection,
};
pub use error::{ProtocolError, Refusal, ServerError};
pub use packets::Row;
pub use tls::{TlsMode, TlsOptions};
