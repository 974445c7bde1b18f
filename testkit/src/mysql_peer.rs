//! The server's side of a MySQL 8 conversation, played by a test, for what no server we
//! can run here produces: MySQL's `caching_sha2_password` exchanges and a MySQL binlog
//! dump (`COM_BINLOG_DUMP_GTID`) of real MySQL-written binlog files.
//!
//! It speaks the classic protocol without `CLIENT_DEPRECATE_EOF` (binlogd does not ask
//! for it): packets of a 3-byte length and a sequence id
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html>),
//! text result sets ending with EOF packets
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>).
//! The peer is synchronous (std::net) so a test runs it on a thread beside an async
//! client or a child process alike; every read has a timeout, so a client that stops
//! talking fails the test instead of hanging it.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// The nonce a MySQL 8 server sent, and the `caching_sha2_password` scramble a client
/// answers for the password `"secret"`: the known-answer vector published with
/// go-sql-driver/mysql's tests (recorded from MySQL 8 servers).
pub const CACHING_SHA2_NONCE: [u8; 20] = [
    90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118,
];
/// See [`CACHING_SHA2_NONCE`].
pub const CACHING_SHA2_ANSWER_FOR_SECRET: [u8; 32] = [
    102, 32, 5, 35, 143, 161, 140, 241, 171, 232, 56, 139, 43, 14, 107, 196, 249, 170, 147, 60,
    220, 204, 120, 178, 214, 15, 184, 150, 26, 61, 57, 235,
];

/// One accepted client connection, with the sequence id of the next packet to send.
#[derive(Debug)]
pub struct PeerConnection {
    stream: TcpStream,
    next_seq: u8,
}

impl PeerConnection {
    /// Waits for a client on `listener`.
    pub fn accept(listener: &TcpListener) -> anyhow::Result<PeerConnection> {
        let (stream, _) = listener.accept().context("accepting the client")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(PeerConnection {
            stream,
            next_seq: 0,
        })
    }

    /// Sends one packet (payloads here are below 16 MiB).
    pub fn send(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(payload.len()).context("payload size")?;
        if len >= 0xff_ffff {
            bail!("the scripted peer sends packets below 16 MiB only");
        }
        let mut header = len.to_le_bytes();
        header[3] = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.stream.write_all(&header)?;
        self.stream.write_all(payload)?;
        Ok(())
    }

    /// Reads one packet; `None` when the client closed the connection. Returns the
    /// sequence id with it, and continues the sequence after it.
    pub fn receive(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; 4];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("reading a packet header"),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .context("reading a packet payload")?;
        self.next_seq = header[3].wrapping_add(1);
        Ok(Some((header[3], payload)))
    }

    /// The next packet, which must come.
    pub fn expect_packet(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        self.receive()?
            .context("the client closed the connection early")
    }

    /// An OK packet (no rows affected, autocommit).
    pub fn send_ok(&mut self) -> anyhow::Result<()> {
        self.send(&[0, 0, 0, 2, 0, 0, 0])
    }

    /// An ERR packet with the error `code`, SQL `state` (5 characters) and message.
    pub fn send_err(&mut self, code: u16, state: &str, message: &str) -> anyhow::Result<()> {
        let mut err = vec![0xff];
        err.extend_from_slice(&code.to_le_bytes());
        err.push(b'#');
        err.extend_from_slice(state.as_bytes());
        err.extend_from_slice(message.as_bytes());
        self.send(&err)
    }

    /// An EOF packet, which also ends a dump sent with `BINLOG_DUMP_NON_BLOCK`.
    pub fn send_eof(&mut self) -> anyhow::Result<()> {
        self.send(&[0xfe, 0, 0, 2, 0])
    }

    /// A text result set: column definitions, EOF, rows (`None` is SQL NULL), EOF.
    pub fn send_result_set(
        &mut self,
        columns: &[&str],
        rows: &[Vec<Option<&str>>],
    ) -> anyhow::Result<()> {
        self.send(&[u8::try_from(columns.len()).context("columns")?])?;
        for name in columns {
            let mut def = Vec::new();
            for field in ["def", "", "", "", name, name] {
                put_lenenc_str(&mut def, field);
            }
            def.push(0x0c); // length of the fixed fields
            def.extend_from_slice(&33u16.to_le_bytes()); // utf8_general_ci
            def.extend_from_slice(&1024u32.to_le_bytes()); // column length
            def.push(0xfd); // VAR_STRING
            def.extend_from_slice(&0u16.to_le_bytes()); // flags
            def.push(0); // decimals
            def.extend_from_slice(&[0, 0]);
            self.send(&def)?;
        }
        self.send_eof()?;
        for row in rows {
            let mut packet = Vec::new();
            for value in row {
                match value {
                    Some(text) => put_lenenc_str(&mut packet, text),
                    None => packet.push(0xfb),
                }
            }
            self.send(&packet)?;
        }
        self.send_eof()
    }

    /// The underlying socket, for a test that wants to cut it.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

fn put_lenenc_str(out: &mut Vec<u8>, text: &str) {
    // Every string a test sends is shorter than 251 bytes: a one-byte length.
    assert!(text.len() < 251, "lenenc strings here stay short");
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// A MySQL 8.0 HandshakeV10 greeting proposing `plugin`, with `nonce` and without TLS.
pub fn mysql8_greeting(version: &str, nonce: &[u8; 20], plugin: &str) -> Vec<u8> {
    const CAPS: u32 = 0x0000_0001 // LONG_PASSWORD
        | 0x0000_0004 // LONG_FLAG
        | 0x0000_0200 // PROTOCOL_41
        | 0x0000_2000 // TRANSACTIONS
        | 0x0000_8000 // SECURE_CONNECTION
        | 0x0002_0000 // MULTI_RESULTS
        | 0x0008_0000 // PLUGIN_AUTH
        | 0x0020_0000; // PLUGIN_AUTH_LENENC_CLIENT_DATA
    let mut g = vec![10];
    g.extend_from_slice(version.as_bytes());
    g.push(0);
    g.extend_from_slice(&7u32.to_le_bytes()); // connection id
    g.extend_from_slice(&nonce[..8]);
    g.push(0);
    g.extend_from_slice(&(CAPS as u16).to_le_bytes());
    g.push(255); // utf8mb4_0900_ai_ci
    g.extend_from_slice(&2u16.to_le_bytes()); // status: autocommit
    g.extend_from_slice(&((CAPS >> 16) as u16).to_le_bytes());
    g.push(21); // auth plugin data length
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(&nonce[8..]);
    g.push(0);
    g.extend_from_slice(plugin.as_bytes());
    g.push(0);
    g
}

/// The fields of a HandshakeResponse41 a test checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub plugin: String,
}

impl HandshakeResponse {
    /// Parses the response of a client that sent no database name (binlogd never does)
    /// and a one-byte length-encoded auth response.
    pub fn parse(payload: &[u8]) -> anyhow::Result<HandshakeResponse> {
        let rest = payload
            .get(32..)
            .context("response shorter than 32 bytes")?;
        let (user, rest) = split_nul(rest).context("user")?;
        let (&len, rest) = rest.split_first().context("auth length")?;
        let len = usize::from(len);
        let auth_response = rest.get(..len).context("auth response")?.to_vec();
        let (plugin, _) = split_nul(&rest[len..]).context("plugin")?;
        Ok(HandshakeResponse {
            user: String::from_utf8_lossy(user).into_owned(),
            auth_response,
            plugin: String::from_utf8_lossy(plugin).into_owned(),
        })
    }
}

fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// Plays a MySQL 8 greeting and `caching_sha2_password`'s fast path for user `user` with
/// the password `"secret"`, ending with OK: the client is then logged in. Fails if the
/// client's answer is not the recorded one.
pub fn caching_sha2_fast_login(conn: &mut PeerConnection, user: &str) -> anyhow::Result<()> {
    conn.send(&mysql8_greeting(
        "8.0.28",
        &CACHING_SHA2_NONCE,
        "caching_sha2_password",
    ))?;
    let (_, payload) = conn.expect_packet()?;
    let response = HandshakeResponse::parse(&payload)?;
    if response.user != user || response.plugin != "caching_sha2_password" {
        bail!("unexpected handshake response {response:?}");
    }
    if response.auth_response != CACHING_SHA2_ANSWER_FOR_SECRET {
        bail!("the scramble for \"secret\" is not the recorded answer");
    }
    conn.send(&[0x01, 0x03])?; // fast authentication succeeded
    conn.send_ok()
}
