//! The MySQL client/server protocol as a binlog replica speaks it, and as a binlog
//! server answers replicas.
//!
//! - [`packet`]: packet framing (3-byte length, sequence id, 16 MiB splitting), as a
//!   tokio-util codec — the only code that sees the socket's bytes.
//! - [`handshake`]: the server greeting, the client's answer, and the authentication
//!   plugins (`mysql_native_password`, `caching_sha2_password` with its fast and full
//!   paths, MariaDB's `client_ed25519`).
//! - `auth`: the authentication exchange after the handshake, a state machine fed the
//!   server's packets (no I/O).
//! - [`connection`]: an async connection with text queries and the replica commands
//!   (`COM_REGISTER_SLAVE`, `COM_BINLOG_DUMP`, MySQL's `COM_BINLOG_DUMP_GTID`, MariaDB's
//!   GTID dump through `@slave_connect_state`), semi-sync acknowledgements and heartbeats.
//! - [`tls`]: TLS with rustls, in the MySQL client's five modes.
//! - [`server`]: the server's side, for `binlogd serve`: what clients send, what a server
//!   answers, password checks.
//!
//! It hands event bytes to the caller untouched: it does not parse events (that is
//! `binlogd-parser`) and does not store them (that is `binlogd-storage`).

mod auth;
pub mod connection;
mod error;
pub mod handshake;
pub mod packet;
mod packets;
pub mod server;
pub mod tls;
mod wire;

pub use auth::ServerPublicKey;
pub use connection::{
    BINLOG_DUMP_NON_BLOCK, BINLOG_SEND_ANNOTATE_ROWS_EVENT, BinlogStream, ConnectOptions,
    Connection,
};
pub use error::{ProtocolError, Refusal, ServerError};
pub use packets::Row;
pub use tls::{MaybeTls, ServerTransport, TlsMode, TlsOptions};

#[cfg(test)]
mod untrusted_input {
    //! What the server sends is untrusted: every parser of server bytes must answer with an
    //! error, never a panic, whatever the bytes.

    use bytes::BytesMut;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn server_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = crate::handshake::ServerHandshake::parse(&bytes);
            let _ = crate::packets::parse_err(&bytes);
            let _ = crate::packets::parse_text_row(&bytes, 5);
            let mut reader = crate::wire::Reader::new(&bytes, "fuzz");
            while reader.lenenc_bytes().is_ok() && !reader.rest.is_empty() {}
            let mut codec = crate::packet::PacketCodec::new();
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buffer) {}
        }

        #[test]
        fn greetings_with_a_valid_start_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
            // Protocol 10 and a version string, then anything: reaches the deeper fields.
            let mut bytes = b"\x0a8.0.40\x00".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = crate::handshake::ServerHandshake::parse(&bytes);
        }
    }
}
