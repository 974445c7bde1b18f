//! The server's side of the protocol, as `binlogd serve` speaks it to replicas: the same
//! framing, read the other way round. Sans-IO like the client side: parsers of what
//! clients send, encoders of what a server answers, and password checks; the socket
//! belongs to the caller.
//!
//! - [`client_packets`]: the handshake response, the SSLRequest, commands
//!   (`COM_QUERY`, `COM_REGISTER_SLAVE`, `COM_BINLOG_DUMP`, `COM_BINLOG_DUMP_GTID`).
//! - [`replies`]: the greeting, OK/ERR/EOF, text result sets, authentication packets.
//! - [`passwords`]: checking answers to the scramble (`mysql_native_password`,
//!   `caching_sha2_password`'s fast path) from the hashes a server keeps.

pub mod client_packets;
pub mod passwords;
pub mod replies;

pub use client_packets::{
    BinlogDump, BinlogDumpGtid, ClientHello, Command, HandshakeResponse, RegisterReplica,
    parse_client_hello,
};
pub use replies::ColumnType;
