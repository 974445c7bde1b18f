//! What a client sends a server: the handshake response (or the SSLRequest that comes
//! first when it wants TLS), the authentication data that follows, and commands.
//!
//! ```text
//! HandshakeResponse41: capabilities u32, max packet u32, charset u8, reserved [23],
//!     user NUL-string, auth response (lenenc with PLUGIN_AUTH_LENENC_CLIENT_DATA, else
//!     u8-length), database NUL-string (CONNECT_WITH_DB), plugin NUL-string (PLUGIN_AUTH),
//!     attributes: lenenc total, then lenenc key/value pairs (CONNECT_ATTRS)
//! SSLRequest: the first 32 bytes alone
//! COM_REGISTER_SLAVE 0x15: server id u32, host u8-string, user u8-string,
//!     password u8-string, port u16, rank u32, source id u32
//! COM_BINLOG_DUMP 0x12: position u32, flags u16, server id u32, file name (to the end)
//! COM_BINLOG_DUMP_GTID 0x1e: flags u16, server id u32, name length u32, name,
//!     position u64, GTID set length u32 + encoded GTID set (flag 0x04)
//! ```
//! References: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_replication.html>,
//! <https://mariadb.com/kb/en/com_binlog_dump/>.

use crate::error::ProtocolError;
use crate::handshake::capabilities::{
    CONNECT_WITH_DB, PLUGIN_AUTH, PLUGIN_AUTH_LENENC_CLIENT_DATA, SECURE_CONNECTION,
};
use crate::wire::Reader;

/// `CLIENT_CONNECT_ATTRS`: the response ends with key/value attributes.
const CONNECT_ATTRS: u32 = 0x0010_0000;
/// `COM_BINLOG_DUMP_GTID` flag: the packet carries a GTID set (`BINLOG_THROUGH_GTID`).
const THROUGH_GTID: u16 = 0x0004;

/// The first packet a client sends: either a request to start TLS, or who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello<'a> {
    /// SSLRequest: start TLS, then the handshake response follows over it.
    StartTls {
        /// The capabilities the client asks for.
        capabilities: u32,
    },
    /// HandshakeResponse41.
    Response(HandshakeResponse<'a>),
}

/// The client's answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse<'a> {
    /// Capabilities the client asks for.
    pub capabilities: u32,
    /// The account's name.
    pub user: &'a str,
    /// The plugin's answer to the greeting's scramble.
    pub auth_response: &'a [u8],
    /// The default database, if named.
    pub database: Option<&'a str>,
    /// The authentication plugin the client answered with.
    pub auth_plugin: Option<&'a str>,
    /// Connection attributes (`_client_name`, `program_name`, ...).
    pub attributes: Vec<(&'a str, &'a str)>,
}

/// Parses the client's first packet.
pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello<'_>, ProtocolError> {
    const WHAT: &str = "handshake response";
    let mut r = Reader::new(payload, WHAT);
    let capabilities = r.u32()?;
    r.take(4 + 1 + 23)?; // max packet, charset, reserved
    if r.rest.is_empty() {
        return Ok(ClientHello::StartTls { capabilities });
    }
    let user = text(r.nul_terminated()?, WHAT)?;
    let auth_response = if capabilities & PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()?.unwrap_or_default()
    } else if capabilities & SECURE_CONNECTION != 0 {
        let len = usize::from(r.u8()?);
        r.take(len)?
    } else {
        r.nul_terminated()?
    };
    let database = if capabilities & CONNECT_WITH_DB != 0 && !r.rest.is_empty() {
        Some(text(r.nul_terminated()?, WHAT)?)
    } else {
        None
    };
    let auth_plugin = if capabilities & PLUGIN_AUTH != 0 && !r.rest.is_empty() {
        // Some clients leave out the terminating NUL of the last field.
        let name = match r.rest.iter().position(|&b| b == 0) {
            Some(_) => r.nul_terminated()?,
            None => r.take(r.rest.len())?,
        };
        Some(text(name, WHAT)?)
    } else {
        None
    };
    let mut attributes = Vec::new();
    if capabilities & CONNECT_ATTRS != 0 && !r.rest.is_empty() {
        let total = r.lenenc_int()?.unwrap_or(0);
        let total =
            usize::try_from(total).map_err(|_| ProtocolError::malformed(WHAT, "attributes"))?;
        let mut pairs = Reader::new(r.take(total)?, WHAT);
        while !pairs.rest.is_empty() {
            let key = pairs.lenenc_bytes()?.unwrap_or_default();
            let value = pairs.lenenc_bytes()?.unwrap_or_default();
            attributes.push((text(key, WHAT)?, text(value, WHAT)?));
        }
    }
    Ok(ClientHello::Response(HandshakeResponse {
        capabilities,
        user,
        auth_response,
        database,
        auth_plugin,
        attributes,
    }))
}

fn text<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(bytes).map_err(|_| ProtocolError::malformed(what, "text is not UTF-8"))
}

/// A command, the first packet of each exchange after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `COM_QUIT`: the client is leaving.
    Quit,
    /// `COM_PING`.
    Ping,
    /// `COM_QUERY` with its text.
    Query(&'a str),
    /// `COM_REGISTER_SLAVE`: a replica says who it is.
    RegisterReplica(RegisterReplica<'a>),
    /// `COM_BINLOG_DUMP`: stream from a file and position (with MariaDB's
    /// `@slave_connect_state` set, from a GTID state instead).
    BinlogDump(BinlogDump<'a>),
    /// MySQL's `COM_BINLOG_DUMP_GTID`: stream every transaction not in a GTID set.
    BinlogDumpGtid(BinlogDumpGtid<'a>),
    /// Any other command, by its code.
    Other(u8),
}

/// `COM_REGISTER_SLAVE`'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReplica<'a> {
    /// The replica's `server_id`.
    pub server_id: u32,
    /// `report_host`, often empty.
    pub host: &'a str,
    /// `report_user`.
    pub user: &'a str,
    /// `report_port`.
    pub port: u16,
}

/// `COM_BINLOG_DUMP`'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogDump<'a> {
    /// Where in the file to start.
    pub position: u32,
    /// `BINLOG_DUMP_NON_BLOCK` (1): end at the end instead of waiting; MariaDB's
    /// `BINLOG_SEND_ANNOTATE_ROWS_EVENT` (2).
    pub flags: u16,
    /// The replica's `server_id`.
    pub server_id: u32,
    /// The file to start in; empty for "the first file" (and for MariaDB GTID dumps).
    pub file: &'a [u8],
}

/// `COM_BINLOG_DUMP_GTID`'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogDumpGtid<'a> {
    /// As [`BinlogDump::flags`]; 0x02 `BINLOG_THROUGH_POSITION`, 0x04 `BINLOG_THROUGH_GTID`.
    pub flags: u16,
    /// The replica's `server_id`.
    pub server_id: u32,
    /// File to start in (usually empty: the server finds it from the set).
    pub file: &'a [u8],
    /// Position in that file (4 when the set decides).
    pub position: u64,
    /// The GTIDs the replica has, in MySQL's binary encoding (empty when absent).
    pub gtid_set: &'a [u8],
}

impl<'a> Command<'a> {
    /// Parses a command packet.
    pub fn parse(payload: &'a [u8]) -> Result<Command<'a>, ProtocolError> {
        let Some((&code, body)) = payload.split_first() else {
            return Err(ProtocolError::malformed("command", "empty"));
        };
        Ok(match code {
            0x01 => Command::Quit,
            0x0e => Command::Ping,
            0x03 => Command::Query(text(body, "COM_QUERY")?),
            0x15 => {
                const WHAT: &str = "COM_REGISTER_SLAVE";
                let mut r = Reader::new(body, WHAT);
                let server_id = r.u32()?;
                let short_text = |r: &mut Reader<'a>| -> Result<&'a str, ProtocolError> {
                    let len = usize::from(r.u8()?);
                    text(r.take(len)?, WHAT)
                };
                let host = short_text(&mut r)?;
                let user = short_text(&mut r)?;
                let _password = short_text(&mut r)?;
                let port = r.u16()?;
                Command::RegisterReplica(RegisterReplica {
                    server_id,
                    host,
                    user,
                    port,
                })
            }
            0x12 => {
                let mut r = Reader::new(body, "COM_BINLOG_DUMP");
                Command::BinlogDump(BinlogDump {
                    position: r.u32()?,
                    flags: r.u16()?,
                    server_id: r.u32()?,
                    file: r.rest,
                })
            }
            0x1e => {
                const WHAT: &str = "COM_BINLOG_DUMP_GTID";
                let mut r = Reader::new(body, WHAT);
                let flags = r.u16()?;
                let server_id = r.u32()?;
                let name_len = usize::try_from(r.u32()?)
                    .map_err(|_| ProtocolError::malformed(WHAT, "name"))?;
                let file = r.take(name_len)?;
                let position = u64::from(r.u32()?) | u64::from(r.u32()?) << 32;
                // MySQL's replica sends the set whether or not it sets the flag, and its
                // server reads it whenever it is there.
                let gtid_set = if flags & THROUGH_GTID != 0 || !r.rest.is_empty() {
                    let len = usize::try_from(r.u32()?)
                        .map_err(|_| ProtocolError::malformed(WHAT, "GTID set length"))?;
                    r.take(len)?
                } else {
                    &[]
                };
                Command::BinlogDumpGtid(BinlogDumpGtid {
                    flags,
                    server_id,
                    file,
                    position,
                    gtid_set,
                })
            }
            other => Command::Other(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{handshake_response, ssl_request};

    #[test]
    fn what_our_own_client_sends_reads_back() {
        let caps = PLUGIN_AUTH | PLUGIN_AUTH_LENENC_CLIENT_DATA | SECURE_CONNECTION | 0x200;
        assert_eq!(
            parse_client_hello(&ssl_request(caps)).expect("ssl"),
            ClientHello::StartTls { capabilities: caps }
        );
        let packet = handshake_response(caps, "repl", "mysql_native_password", &[7; 20]);
        let ClientHello::Response(hello) = parse_client_hello(&packet).expect("response") else {
            panic!("not a response");
        };
        assert_eq!(hello.user, "repl");
        assert_eq!(hello.auth_response, &[7; 20]);
        assert_eq!(hello.auth_plugin, Some("mysql_native_password"));
        assert_eq!(hello.database, None);
    }

    #[test]
    fn replica_commands_read_their_fields() {
        let mut dump = vec![0x12];
        dump.extend_from_slice(&4u32.to_le_bytes());
        dump.extend_from_slice(&2u16.to_le_bytes());
        dump.extend_from_slice(&7u32.to_le_bytes());
        dump.extend_from_slice(b"bin.000002");
        assert_eq!(
            Command::parse(&dump).expect("dump"),
            Command::BinlogDump(BinlogDump {
                position: 4,
                flags: 2,
                server_id: 7,
                file: b"bin.000002"
            })
        );
        let mut gtid = vec![0x1e];
        gtid.extend_from_slice(&4u16.to_le_bytes());
        gtid.extend_from_slice(&9u32.to_le_bytes());
        gtid.extend_from_slice(&0u32.to_le_bytes());
        gtid.extend_from_slice(&4u64.to_le_bytes());
        gtid.extend_from_slice(&8u32.to_le_bytes());
        gtid.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            Command::parse(&gtid).expect("gtid dump"),
            Command::BinlogDumpGtid(BinlogDumpGtid {
                flags: 4,
                server_id: 9,
                file: b"",
                position: 4,
                gtid_set: &[0; 8]
            })
        );
        let register =
            b"\x15\x02\x00\x00\x00\x00\x04repl\x00\xea\x0c\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(
            Command::parse(register).expect("register"),
            Command::RegisterReplica(RegisterReplica {
                server_id: 2,
                host: "",
                user: "repl",
                port: 3306
            })
        );
        assert_eq!(
            Command::parse(b"\x03SELECT 1").expect("query"),
            Command::Query("SELECT 1")
        );
        for bad in [
            &b""[..],
            b"\x12\x04",
            b"\x15\x01\x00\x00\x00\x09ab",
            b"\x1e\x04\x00",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }
}
