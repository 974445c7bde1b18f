//! What a server sends: the greeting, OK, ERR and EOF packets, text result sets, and the
//! authentication packets (switch to another plugin, plugin data).
//!
//! ```text
//! HandshakeV10: 10, version NUL-string, connection id u32, scramble [8], 0,
//!     capabilities low u16, charset u8, status u16, capabilities high u16,
//!     scramble length u8 (21), reserved [10], scramble [12] + NUL, plugin NUL-string
//! OK:  0x00, affected rows lenenc, last insert id lenenc, status u16, warnings u16
//! ERR: 0xff, code u16, '#', SQLSTATE [5], message
//! EOF: 0xfe, warnings u16, status u16
//! result set: column count lenenc, column definitions, EOF, rows (lenenc strings,
//!     0xfb for NULL), EOF
//! ```
//! References: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>.

use bytes::BufMut;

use crate::handshake::capabilities::{
    CONNECT_WITH_DB, LONG_FLAG, LONG_PASSWORD, MULTI_RESULTS, PLUGIN_AUTH,
    PLUGIN_AUTH_LENENC_CLIENT_DATA, PROTOCOL_41, SECURE_CONNECTION, SSL, TRANSACTIONS,
};
use crate::wire::{put_lenenc_bytes, put_lenenc_int};

/// `SERVER_STATUS_AUTOCOMMIT`: the only status a binlog server has.
const STATUS_AUTOCOMMIT: u16 = 0x0002;
/// `CLIENT_CONNECT_ATTRS`.
const CONNECT_ATTRS: u32 = 0x0010_0000;
/// utf8mb4_general_ci, which both flavours understand.
const CHARSET_UTF8MB4: u8 = 45;

/// The capabilities `binlogd serve` offers: what replicas need, without
/// `CLIENT_DEPRECATE_EOF` (result sets end in EOF packets) or query attributes.
pub fn server_capabilities(tls: bool) -> u32 {
    LONG_PASSWORD
        | LONG_FLAG
        | CONNECT_WITH_DB
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | if tls { SSL } else { 0 }
}

/// The greeting: who the server says it is, the 20-byte scramble, and the plugin it
/// proposes.
pub fn greeting(
    server_version: &str,
    connection_id: u32,
    scramble: &[u8; 20],
    capabilities: u32,
    auth_plugin: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + server_version.len());
    out.put_u8(10);
    out.put_slice(server_version.as_bytes());
    out.put_u8(0);
    out.put_u32_le(connection_id);
    out.put_slice(&scramble[..8]);
    out.put_u8(0);
    out.put_u16_le(capabilities as u16);
    out.put_u8(CHARSET_UTF8MB4);
    out.put_u16_le(STATUS_AUTOCOMMIT);
    out.put_u16_le((capabilities >> 16) as u16);
    out.put_u8(21);
    out.put_slice(&[0; 10]);
    out.put_slice(&scramble[8..]);
    out.put_u8(0);
    out.put_slice(auth_plugin.as_bytes());
    out.put_u8(0);
    out
}

/// An OK packet.
pub fn ok() -> Vec<u8> {
    vec![0x00, 0, 0, STATUS_AUTOCOMMIT as u8, 0, 0, 0]
}

/// An ERR packet: the error number, its SQLSTATE and the message.
pub fn err(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + message.len());
    out.put_u8(0xff);
    out.put_u16_le(code);
    out.put_u8(b'#');
    let mut state_bytes = [b'0'; 5];
    for (slot, byte) in state_bytes.iter_mut().zip(state.bytes()) {
        *slot = byte;
    }
    out.put_slice(&state_bytes);
    out.put_slice(message.as_bytes());
    out
}

/// An EOF packet: the end of column definitions, of rows, or of a binlog dump.
pub fn eof() -> Vec<u8> {
    vec![0xfe, 0, 0, STATUS_AUTOCOMMIT as u8, 0]
}

/// `0xfe` + plugin + data: use this plugin, with this nonce.
pub fn auth_switch(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + data.len());
    out.put_u8(0xfe);
    out.put_slice(plugin.as_bytes());
    out.put_u8(0);
    out.put_slice(data);
    out
}

/// `0x01` + data: a plugin's own data (caching_sha2_password's `3` "fast authentication
/// succeeded" and `4` "send the password in full").
pub fn auth_more_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.put_u8(0x01);
    out.put_slice(data);
    out
}

/// A column's type in a text result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `VAR_STRING`.
    Text,
    /// `LONGLONG`, unsigned.
    Integer,
}

/// A text result set: the packets that answer a query with these columns and rows, in
/// order.
pub fn result_set(columns: &[(&str, ColumnType)], rows: &[Vec<Option<String>>]) -> Vec<Vec<u8>> {
    let mut packets = Vec::with_capacity(columns.len() + rows.len() + 3);
    let mut count = Vec::new();
    put_lenenc_int(&mut count, columns.len() as u64);
    packets.push(count);
    for (name, kind) in columns {
        let mut column = Vec::with_capacity(40 + name.len());
        put_lenenc_bytes(&mut column, b"def");
        for _schema_table_org_table in 0..3 {
            put_lenenc_bytes(&mut column, b"");
        }
        put_lenenc_bytes(&mut column, name.as_bytes());
        put_lenenc_bytes(&mut column, name.as_bytes());
        column.put_u8(0x0c);
        let (charset, length, code, flags): (u16, u32, u8, u16) = match kind {
            // utf8mb4, 4 bytes a character.
            ColumnType::Text => (u16::from(CHARSET_UTF8MB4), 1024, 0xfd, 0),
            // binary; NOT_NULL | UNSIGNED | BINARY.
            ColumnType::Integer => (63, 21, 0x08, 0x0001 | 0x0020 | 0x0080),
        };
        column.put_u16_le(charset);
        column.put_u32_le(length);
        column.put_u8(code);
        column.put_u16_le(flags);
        column.put_u8(0);
        column.put_u16_le(0);
        packets.push(column);
    }
    packets.push(eof());
    for row in rows {
        let mut packet = Vec::new();
        for value in row {
            match value {
                Some(text) => put_lenenc_bytes(&mut packet, text.as_bytes()),
                None => packet.put_u8(0xfb),
            }
        }
        packets.push(packet);
    }
    packets.push(eof());
    packets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ServerHandshake;
    use crate::packets::{Reply, parse_reply, parse_text_row};

    #[test]
    fn our_greeting_reads_back_with_our_client_parser() {
        let scramble: [u8; 20] = std::array::from_fn(|i| i as u8 + 1);
        let packet = greeting(
            "5.5.5-10.11.19-MariaDB-binlogd",
            42,
            &scramble,
            server_capabilities(true),
            "mysql_native_password",
        );
        let parsed = ServerHandshake::parse(&packet).expect("greeting");
        assert_eq!(parsed.server_version, "5.5.5-10.11.19-MariaDB-binlogd");
        assert_eq!(parsed.connection_id, 42);
        assert_eq!(parsed.scramble, scramble);
        assert_eq!(parsed.auth_plugin, "mysql_native_password");
        assert!(parsed.is_mariadb());
        assert_ne!(parsed.capabilities & SSL, 0);
        assert_eq!(server_capabilities(false) & SSL, 0);
    }

    #[test]
    fn replies_read_back_with_our_client_parsers() {
        assert_eq!(parse_reply(&ok()).expect("ok"), Reply::Ok);
        assert_eq!(parse_reply(&eof()).expect("eof"), Reply::Eof);
        let Reply::Err(e) = parse_reply(&err(1236, "HY000", "no such file")).expect("err") else {
            panic!("not an ERR");
        };
        assert_eq!(
            (e.code, e.state.as_str(), e.message.as_str()),
            (1236, "HY000", "no such file")
        );
        let packets = result_set(
            &[
                ("Variable_name", ColumnType::Text),
                ("Value", ColumnType::Text),
            ],
            &[vec![Some("server_id".into()), None]],
        );
        assert_eq!(packets.len(), 1 + 2 + 1 + 1 + 1);
        assert_eq!(packets[0], [2]);
        assert_eq!(parse_reply(&packets[3]).expect("eof"), Reply::Eof);
        assert_eq!(
            parse_text_row(&packets[4], 2).expect("row"),
            vec![Some("server_id".to_owned()), None]
        );
    }
}
