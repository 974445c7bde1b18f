//! An async client connection: handshake, authentication, text queries, and the replica
//! commands. The only async module of the crate; everything it parses or decides is in
//! sans-IO modules (`packet`, `handshake`, `auth`, `packets`).

use bytes::{BufMut, Bytes};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::error::ProtocolError;
use binlogd_parser::ChecksumAlgorithm;
use rustls::pki_types::ServerName;

use crate::auth::{AuthExchange, Channel, ServerPublicKey, Step};
use crate::handshake::{
    ServerHandshake, capabilities, client_capabilities, handshake_response, ssl_request,
};
use crate::packet::{MAX_MESSAGE, Packet, PacketCodec};
use crate::packets::{Reply, Row, parse_err, parse_reply, parse_text_row};
use crate::tls::{MaybeTls, TlsMode, TlsOptions, Transport};
use crate::wire::Reader;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (empty for none).
    pub password: String,
    /// TLS settings.
    pub tls: TlsOptions,
    /// Where the RSA key comes from that `caching_sha2_password` encrypts the password
    /// with when it must be sent in full over a connection without TLS.
    pub server_public_key: ServerPublicKey,
}

impl std::fmt::Debug for ConnectOptions {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Commands (first payload byte) this client sends.
mod command {
    pub const QUERY: u8 = 0x03;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
}

/// `COM_BINLOG_DUMP_GTID` flag: the request carries a GTID set; the server sends every
/// transaction not in it.
const BINLOG_THROUGH_GTID: u16 = 0x0004;

/// The `COM_BINLOG_DUMP_GTID` request (MySQL 5.6+; MariaDB answers "Unknown command"):
/// ```text
/// 0x1e, flags u16, server_id u32, file name length u32, file name, position u64,
/// [flags & BINLOG_THROUGH_GTID] GTID set length u32, encoded GTID set
/// ```
/// Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_binlog_dump_gtid.html>.
pub(crate) fn binlog_dump_gtid_request(
    server_id: u32,
    executed: &binlogd_parser::MysqlGtidSet,
    flags: u16,
) -> Vec<u8> {
    let encoded = executed.encode();
    let mut payload = Vec::with_capacity(27 + encoded.len());
    payload.put_u8(command::BINLOG_DUMP_GTID);
    payload.put_u16_le(flags | BINLOG_THROUGH_GTID);
    payload.put_u32_le(server_id);
    payload.put_u32_le(0); // no file name: the GTID set decides where to start
    payload.put_u64_le(4);
    payload.put_u32_le(encoded.len() as u32);
    payload.put_slice(&encoded);
    payload
}

/// Appends the next packet of a long message, refusing to grow past [`MAX_MESSAGE`].
fn append_bounded(joined: &mut bytes::BytesMut, next: &[u8]) -> Result<(), ProtocolError> {
    let size = joined.len() + next.len();
    if size > MAX_MESSAGE {
        return Err(ProtocolError::MessageTooLarge {
            size,
            maximum: MAX_MESSAGE,
        });
    }
    joined.extend_from_slice(next);
    Ok(())
}

/// Reads one whole reply, joining the packets of a long one (up to [`MAX_MESSAGE`]).
async fn read_message(framed: &mut Framed<Transport, PacketCodec>) -> Result<Bytes, ProtocolError> {
    let first = framed.next().await.ok_or(ProtocolError::Closed)??;
    if !first.continues {
        return Ok(first.payload);
    }
    let mut joined = bytes::BytesMut::from(&first.payload[..]);
    loop {
        let next = framed.next().await.ok_or(ProtocolError::Closed)??;
        append_bounded(&mut joined, &next.payload)?;
        if !next.continues {
            return Ok(joined.freeze());
        }
    }
}

/// `COM_BINLOG_DUMP` flag: end the stream with EOF at the end of the binlog instead of
/// waiting for new events.
pub const BINLOG_DUMP_NON_BLOCK: u16 = 0x0001;
/// `COM_BINLOG_DUMP` flag (MariaDB): send ANNOTATE_ROWS events.
pub const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 0x0002;

/// A failed TLS handshake. What rustls refused (the certificate, the protocol: kind
/// `InvalidData`) needs a person; a connection that closed or broke in the middle of the
/// handshake is like any cut connection, worth another try.
fn tls_handshake_failed(e: std::io::Error, host: &str, port: u16) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        ProtocolError::Tls(format!("handshake with {host}:{port}: {e}"))
    } else {
        ProtocolError::Io(std::io::Error::new(
            e.kind(),
            format!("TLS handshake with {host}:{port}: {e}"),
        ))
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub struct Connection {
    framed: Framed<Transport, PacketCodec>,
    server: ServerHandshake,
    tls: bool,
    semi_sync: bool,
    read_timeout: Option<std::time::Duration>,
}

impl Connection {
    /// Connects, upgrades to TLS as `options.tls` asks, and authenticates with
    /// `mysql_native_password`, MySQL's `caching_sha2_password` (fast path, or full
    /// authentication: in clear over TLS, RSA-encrypted otherwise) or MariaDB's
    /// `client_ed25519`, following the server's auth-switch requests.
    pub async fn connect(options: &ConnectOptions) -> Result<Connection, ProtocolError> {
        let stream = TcpStream::connect((options.host.as_str(), options.port)).await?;
        stream.set_nodelay(true)?;
        let mut framed = Framed::new(MaybeTls::Plain(stream), PacketCodec::new());
        let greeting = read_message(&mut framed).await?;
        let server = ServerHandshake::parse(&greeting)?;
        let server_has_tls = server.capabilities & capabilities::SSL != 0;
        let use_tls = match options.tls.mode {
            TlsMode::Disabled => false,
            TlsMode::Preferred => server_has_tls,
            _ if server_has_tls => true,
            _ => {
                return Err(ProtocolError::Tls(format!(
                    "TLS mode {:?} but the server at {}:{} does not offer TLS",
                    options.tls.mode, options.host, options.port
                )));
            }
        };
        let caps = client_capabilities(&server, use_tls);
        if use_tls {
            framed.send(ssl_request(caps)).await?;
            let config = options.tls.client_config()?;
            let name = options
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| options.host.clone());
            let name = ServerName::try_from(name)
                .map_err(|e| ProtocolError::Tls(format!("server name: {e}")))?;
            // The packet sequence continues inside TLS: keep the codec.
            let parts = framed.into_parts();
            let MaybeTls::Plain(tcp) = parts.io else {
                return Err(ProtocolError::Tls("TLS requested twice".to_owned()));
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| tls_handshake_failed(e, &options.host, options.port))?;
            framed = Framed::new(MaybeTls::Tls(Box::new(tls)), parts.codec);
        }
        let channel = match (use_tls, options.tls.verifies_server()) {
            (false, _) => Channel::Plain,
            (true, false) => Channel::UnverifiedTls,
            (true, true) => Channel::VerifiedTls,
        };
        let (mut exchange, plugin, answer) = AuthExchange::start(
            &server,
            options.password.as_bytes(),
            channel,
            &options.server_public_key,
            format!("{}:{}", options.host, options.port),
        )?;
        framed
            .send(handshake_response(caps, &options.user, &plugin, &answer))
            .await?;
        loop {
            let reply = read_message(&mut framed).await?;
            match exchange.step(&reply)? {
                Step::Send(packet) => framed.send(packet).await?,
                Step::Read => {}
                Step::Done => break,
            }
        }
        Ok(Connection {
            framed,
            server,
            tls: use_tls,
            semi_sync: false,
            read_timeout: None,
        })
    }

    /// Asks to be a semi-synchronous replica for the dump that follows: the primary then
    /// marks the events it waits on, and its commits return once this client
    /// acknowledges them ([`BinlogStream::acknowledge`]). Fails if the primary has
    /// semi-sync off (`rpl_semi_sync_master_enabled` / `rpl_semi_sync_source_enabled`).
    pub async fn request_semi_sync(&mut self) -> Result<(), ProtocolError> {
        let rows = self
            .query("SHOW VARIABLES LIKE 'rpl_semi_sync_%_enabled'")
            .await?;
        let enabled = rows.iter().any(|row| {
            let name = row.first().cloned().flatten().unwrap_or_default();
            let value = row.get(1).cloned().flatten().unwrap_or_default();
            (name.contains("master") || name.contains("source")) && value == "ON"
        });
        if !enabled {
            return Err(ProtocolError::Unsupported(
                "semi-sync was asked for, but the primary has rpl_semi_sync_master_enabled (or \
                 rpl_semi_sync_source_enabled) OFF"
                    .to_owned(),
            ));
        }
        self.query("SET @rpl_semi_sync_slave = 1, @rpl_semi_sync_replica = 1")
            .await?;
        self.semi_sync = true;
        Ok(())
    }

    /// Asks the primary to send a HEARTBEAT event whenever it has sent nothing for
    /// `period` during the dump that follows (`@master_heartbeat_period`, in nanoseconds,
    /// as a replica's `MASTER_HEARTBEAT_PERIOD`): a quiet stream is then told apart from a
    /// dead connection, and the heartbeat carries the primary's current file and position.
    pub async fn set_heartbeat_period(
        &mut self,
        period: std::time::Duration,
    ) -> Result<(), ProtocolError> {
        let nanos = period.as_nanos().min(u128::from(u64::MAX));
        self.query(&format!(
            "SET @master_heartbeat_period = {nanos}, @source_heartbeat_period = {nanos}"
        ))
        .await?;
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The server's greeting.
    pub fn server(&self) -> &ServerHandshake {
        &self.server
    }

    async fn command(&mut self, payload: Vec<u8>) -> Result<(), ProtocolError> {
        self.framed.codec_mut().reset_sequence();
        self.framed.send(payload).await
    }

    async fn read(&mut self) -> Result<Bytes, ProtocolError> {
        let message = read_message(&mut self.framed);
        match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, message)
                .await
                .map_err(|_| ProtocolError::TimedOut(limit))?,
            None => message.await,
        }
    }

    async fn read_packet(&mut self) -> Result<Packet, ProtocolError> {
        let next = self.framed.next();
        let packet = match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, next)
                .await
                .map_err(|_| ProtocolError::TimedOut(limit))?,
            None => next.await,
        };
        packet.ok_or(ProtocolError::Closed)?
    }

    /// How long to wait for the server's next packet before taking the connection as dead
    /// ([`ProtocolError::TimedOut`]); `None` (the default) waits forever. A dead peer or a
    /// network that drops packets without a reset otherwise leaves a reader waiting
    /// forever; during a dump, set it above the heartbeat period, which the server keeps
    /// even when it has nothing to send.
    pub fn set_read_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.read_timeout = timeout;
    }

    /// Runs a statement with the text protocol and returns its rows (none for a
    /// statement without a result set).
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>, ProtocolError> {
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.put_u8(command::QUERY);
        payload.put_slice(sql.as_bytes());
        self.command(payload).await?;
        let first = self.read().await?;
        let count = match parse_reply(&first)? {
            Reply::Ok => return Ok(Vec::new()),
            Reply::Err(e) => return Err(e.into()),
            Reply::Eof => {
                return Err(ProtocolError::malformed(
                    "query reply",
                    "EOF before any column",
                ));
            }
            Reply::Data(count) => count,
        };
        let columns = Reader::new(count, "column count")
            .lenenc_int()?
            .ok_or(ProtocolError::malformed("column count", "NULL"))?;
        let columns = usize::try_from(columns)
            .map_err(|_| ProtocolError::malformed("column count", "too large"))?;
        // Column definitions, then EOF.
        for _ in 0..columns {
            self.read().await?;
        }
        let eof = self.read().await?;
        if parse_reply(&eof)? != Reply::Eof {
            return Err(ProtocolError::malformed(
                "result set",
                "no EOF after column definitions",
            ));
        }
        let mut rows = Vec::new();
        loop {
            let packet = self.read().await?;
            match parse_reply(&packet)? {
                Reply::Eof => return Ok(rows),
                Reply::Err(e) => return Err(e.into()),
                Reply::Ok | Reply::Data(_) => rows.push(parse_text_row(&packet, columns)?),
            }
        }
    }

    /// Runs a query that returns one value.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, ProtocolError> {
        let rows = self.query(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// Closes the connections of this account's threads that the server has already
    /// marked killed but that live on, and returns their ids.
    ///
    /// Why: when a replica's connection vanishes without closing (its host dropped off the
    /// network), the server's dump thread for it blocks writing once the socket buffers
    /// fill. A new dump with the same replica `server_id` marks that thread killed, but on
    /// MariaDB the mark does not interrupt the blocked write, and the new dump does not
    /// start until the old thread ends: after `net_write_timeout`, by default a minute.
    /// `KILL CONNECTION` shuts the old socket down, which does interrupt it. An account
    /// may always kill its own threads, so this needs no privilege; and it only touches
    /// threads the server is ending anyway.
    pub async fn close_killed_threads_of_this_account(
        &mut self,
    ) -> Result<Vec<u64>, ProtocolError> {
        let rows = self
            .query(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE COMMAND = 'Killed' AND ID <> CONNECTION_ID() \
                 AND USER = SUBSTRING_INDEX(USER(), '@', 1)",
            )
            .await?;
        let mut closed = Vec::new();
        for id in rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten()?.parse::<u64>().ok())
        {
            match self.query(&format!("KILL CONNECTION {id}")).await {
                Ok(_) => closed.push(id),
                // ER_NO_SUCH_THREAD: it ended between the two statements.
                Err(ProtocolError::Server(e)) if e.code == 1094 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }

    /// `COM_REGISTER_SLAVE`: announces this client as replica `server_id`.
    pub async fn register_replica(&mut self, server_id: u32) -> Result<(), ProtocolError> {
        let mut payload = vec![command::REGISTER_SLAVE];
        payload.put_u32_le(server_id);
        payload.put_u8(0); // hostname
        payload.put_u8(0); // user
        payload.put_u8(0); // password
        payload.put_u16_le(0); // port
        payload.put_u32_le(0); // replication rank
        payload.put_u32_le(0); // master id
        self.command(payload).await?;
        let reply = self.read().await?;
        match parse_reply(&reply)? {
            Reply::Ok => Ok(()),
            Reply::Err(e) => Err(e.into()),
            Reply::Eof | Reply::Data(_) => Err(ProtocolError::malformed(
                "COM_REGISTER_SLAVE reply",
                "neither OK nor ERR",
            )),
        }
    }

    /// `COM_BINLOG_DUMP` from `file` at `position`; the connection becomes a stream of
    /// events.
    ///
    /// Declares first what a real replica declares: that it understands the server's
    /// checksum (`@master_binlog_checksum`, `@source_binlog_checksum` on MySQL 8.0.26+;
    /// without it a server that writes CRC32 refuses with error 1236) and, for MariaDB,
    /// its own GTID events (`@mariadb_slave_capability=4`; otherwise they arrive rewritten
    /// as BEGIN queries). The stream reports the negotiated checksum.
    ///
    /// From MariaDB it always asks for the file's ANNOTATE_ROWS events
    /// ([`BINLOG_SEND_ANNOTATE_ROWS_EVENT`]), as a replica with `log_slave_updates` does:
    /// without the flag the server leaves a hole where each one was (every row event
    /// of a default-configured server has one), and the stream would not be the file.
    pub async fn binlog_dump(
        mut self,
        server_id: u32,
        file: &str,
        position: u32,
        flags: u16,
    ) -> Result<BinlogStream, ProtocolError> {
        let checksum = self.negotiate_checksum().await?;
        let flags = if self.server().is_mariadb() {
            flags | BINLOG_SEND_ANNOTATE_ROWS_EVENT
        } else {
            flags
        };
        let mut payload = vec![command::BINLOG_DUMP];
        payload.put_u32_le(position);
        payload.put_u16_le(flags);
        payload.put_u32_le(server_id);
        payload.put_slice(file.as_bytes());
        self.command(payload).await?;
        Ok(self.into_stream(checksum))
    }

    /// Starts a MariaDB dump positioned by GTID: the stream continues right after
    /// `position` in every domain it names (a domain it does not name streams from the
    /// oldest binlog). This is what a MariaDB replica with `MASTER_USE_GTID` does: the
    /// position goes in `@slave_connect_state`, and `COM_BINLOG_DUMP` names no file.
    pub async fn binlog_dump_mariadb_gtid(
        mut self,
        server_id: u32,
        position: &binlogd_parser::MariadbGtidPos,
        flags: u16,
    ) -> Result<BinlogStream, ProtocolError> {
        // The position text is digits, dashes and commas only: safe to inline.
        self.query(&format!(
            "SET @slave_connect_state = '{position}', @slave_gtid_strict_mode = 1, @slave_gtid_ignore_duplicates = 0"
        ))
        .await?;
        self.binlog_dump(server_id, "", 4, flags).await
    }

    /// Starts a MySQL dump positioned by GTID set: the server sends every transaction
    /// not in `executed`, from the oldest binlog that holds one.
    pub async fn binlog_dump_mysql_gtid(
        mut self,
        server_id: u32,
        executed: &binlogd_parser::MysqlGtidSet,
        flags: u16,
    ) -> Result<BinlogStream, ProtocolError> {
        let checksum = self.negotiate_checksum().await?;
        self.command(binlog_dump_gtid_request(server_id, executed, flags))
            .await?;
        Ok(self.into_stream(checksum))
    }

    fn into_stream(self, checksum: ChecksumAlgorithm) -> BinlogStream {
        let semi_sync = self.semi_sync;
        BinlogStream {
            connection: self,
            checksum,
            semi_sync,
            ack_requested: false,
            in_event: false,
            waiting: None,
        }
    }

    async fn negotiate_checksum(&mut self) -> Result<ChecksumAlgorithm, ProtocolError> {
        self.query(
            "SET @master_binlog_checksum = @@global.binlog_checksum, \
                 @source_binlog_checksum = @@global.binlog_checksum, @mariadb_slave_capability = 4",
        )
        .await?;
        match self
            .query_value("SELECT @@global.binlog_checksum")
            .await?
            .as_deref()
        {
            Some("CRC32") => Ok(ChecksumAlgorithm::Crc32),
            Some("NONE") => Ok(ChecksumAlgorithm::None),
            other => Err(ProtocolError::Unsupported(format!(
                "binlog_checksum {other:?}"
            ))),
        }
    }
}

/// The events of a binlog dump, one message each.
#[derive(Debug)]
pub struct BinlogStream {
    connection: Connection,
    checksum: ChecksumAlgorithm,
    semi_sync: bool,
    ack_requested: bool,
    /// Inside an event that spans several packets.
    in_event: bool,
    /// A packet [`BinlogStream::readable`] read off the socket, lent by the next
    /// [`BinlogStream::read_piece`] before anything in the receive buffer.
    waiting: Option<Packet>,
}

/// What the first packet of an event says, once its status byte is read.
enum EventStart {
    /// An event follows `skip` bytes of prefix; a semi-sync primary may ask for an
    /// acknowledgement of it.
    Event { skip: usize, ack: Option<bool> },
    /// The server ended the stream (EOF after `BINLOG_DUMP_NON_BLOCK`).
    End,
}

/// Reads an event packet's prefix: 0x00 (then, in a semi-sync stream, 0xef and whether
/// the primary waits for an acknowledgement), an ERR packet, or EOF.
fn event_start(payload: &[u8], semi_sync: bool) -> Result<EventStart, ProtocolError> {
    match payload.first() {
        Some(0x00) if semi_sync => {
            if payload.len() < 3 || payload[1] != SEMI_SYNC_MAGIC {
                return Err(ProtocolError::malformed(
                    "semi-sync event",
                    "missing the 0xef prefix",
                ));
            }
            Ok(EventStart::Event {
                skip: 3,
                ack: Some(payload[2] == 1),
            })
        }
        Some(0x00) => Ok(EventStart::Event { skip: 1, ack: None }),
        Some(0xff) => Err(parse_err(payload)?.into()),
        Some(0xfe) if payload.len() < 9 => Ok(EventStart::End),
        _ => Err(ProtocolError::malformed(
            "binlog event",
            "unexpected first byte",
        )),
    }
}

impl BinlogStream {
    /// The checksum the server's events carry, as negotiated: what
    /// `binlogd_parser::Framer::for_stream` needs.
    pub fn checksum(&self) -> ChecksumAlgorithm {
        self.checksum
    }

    /// The stream's one read: lends the next piece of an event to `take(bytes, first,
    /// last)` where it lies, if one can be had without waiting. A piece is the whole event
    /// when it fits in one packet (under 16 MiB), otherwise each of its packets in turn,
    /// so that no event is ever held in memory whole; `first` says a piece starts an event
    /// (with its header), `last` that it ends it.
    ///
    /// `None` when it would have to wait: then await [`BinlogStream::readable`].
    /// `Some(Ok(None))` when the server ended the stream (EOF after
    /// `BINLOG_DUMP_NON_BLOCK`). No future, timer or reference count per event: the fast
    /// path of a stream with a backlog.
    ///
    /// In a semi-sync stream every event carries a 2-byte prefix (0xef, then 1 if the
    /// primary waits for an acknowledgement); it is removed here and the request is kept
    /// for [`BinlogStream::ack_requested`].
    pub fn read_piece<R>(
        &mut self,
        take: impl FnOnce(&[u8], bool, bool) -> R,
    ) -> Option<Result<Option<R>, ProtocolError>> {
        let mut take = Some(take);
        if self.waiting.is_none() {
            match self.lend_buffered(&mut take) {
                Some(lent) => return Some(lent),
                None => match self.connection.framed.next().now_or_never()? {
                    Some(Ok(packet)) => self.waiting = Some(packet),
                    Some(Err(e)) => return Some(Err(e)),
                    None => return Some(Err(ProtocolError::Closed)),
                },
            }
        }
        let packet = self.waiting.take()?;
        let take = take?;
        Some(self.lend(&packet.payload, packet.continues, take))
    }

    /// Waits (within the read timeout) until [`BinlogStream::read_piece`] has a piece
    /// to lend, or the stream failed. Cancel-safe: what arrived stays for the next read.
    pub async fn readable(&mut self) -> Result<(), ProtocolError> {
        if self.waiting.is_none() {
            self.waiting = Some(self.connection.read_packet().await?);
        }
        Ok(())
    }

    /// Lends a packet whole in the receive buffer, consuming it; `None` when the buffer
    /// holds no whole packet.
    fn lend_buffered<R>(
        &mut self,
        take: &mut Option<impl FnOnce(&[u8], bool, bool) -> R>,
    ) -> Option<Result<Option<R>, ProtocolError>> {
        // Framed lends the codec and the buffer one at a time: decode with a copy of the
        // codec (a sequence number) and put it back.
        let mut codec = self.connection.framed.codec().clone();
        let (in_event, semi_sync) = (self.in_event, self.semi_sync);
        let mut state = None;
        let lent = codec.lend(
            self.connection.framed.read_buffer_mut(),
            // `lend` calls this at most once, so `take` is always there.
            |payload, continues| match take.take() {
                Some(take) => {
                    let (lent, next_state) =
                        lend_piece(payload, continues, in_event, semi_sync, take);
                    state = next_state;
                    lent
                }
                None => Ok(None),
            },
        );
        *self.connection.framed.codec_mut() = codec;
        if let Some(after) = state {
            self.note(after);
        }
        match lent {
            Ok(None) => None,
            Ok(Some(lent)) => Some(lent),
            Err(e) => Some(Err(e)),
        }
    }

    /// Lends one packet's piece and keeps what it says of the stream.
    fn lend<R>(
        &mut self,
        payload: &[u8],
        continues: bool,
        take: impl FnOnce(&[u8], bool, bool) -> R,
    ) -> Result<Option<R>, ProtocolError> {
        let (lent, state) = lend_piece(payload, continues, self.in_event, self.semi_sync, take);
        if let Some(after) = state {
            self.note(after);
        }
        lent
    }

    fn note(&mut self, after: After) {
        self.in_event = after.in_event;
        if let Some(ack) = after.ack {
            self.ack_requested = ack;
        }
    }

    /// Whether the primary waits for an acknowledgement of the last event (the end of a
    /// transaction, in a semi-sync stream).
    pub fn ack_requested(&self) -> bool {
        self.ack_requested
    }

    /// Tells a semi-sync primary that everything up to `position` of `file` is durable
    /// here, which lets the waiting commit return to its client. Send it only once the
    /// bytes are safe: that is the whole point.
    pub async fn acknowledge(&mut self, file: &str, position: u64) -> Result<(), ProtocolError> {
        let mut payload = Vec::with_capacity(9 + file.len());
        payload.put_u8(SEMI_SYNC_MAGIC);
        payload.put_u64_le(position);
        payload.put_slice(file.as_bytes());
        self.ack_requested = false;
        // A reply is a new packet sequence of its own, on the same connection.
        self.connection.command(payload).await
    }
}

/// The first byte of a semi-sync event prefix and of a semi-sync reply.
const SEMI_SYNC_MAGIC: u8 = 0xef;

/// What a packet of a dump says of the stream after it.
#[derive(Debug, Clone, Copy)]
struct After {
    /// The next packet continues the event.
    in_event: bool,
    /// A semi-sync primary's acknowledgement request, when the packet started an event.
    ack: Option<bool>,
}

/// Lends one packet of a dump to `take`, and says what the stream is after it: whether
/// the next packet continues the event, and any semi-sync acknowledgement request. A
/// continuation packet is lent as it is; an event's first packet without its prefix.
fn lend_piece<R>(
    payload: &[u8],
    continues: bool,
    in_event: bool,
    semi_sync: bool,
    take: impl FnOnce(&[u8], bool, bool) -> R,
) -> (Result<Option<R>, ProtocolError>, Option<After>) {
    if in_event {
        let after = After {
            in_event: continues,
            ack: None,
        };
        return (Ok(Some(take(payload, false, !continues))), Some(after));
    }
    match event_start(payload, semi_sync) {
        Ok(EventStart::Event { skip, ack }) => (
            Ok(Some(take(&payload[skip..], true, !continues))),
            Some(After {
                in_event: continues,
                ack,
            }),
        ),
        Ok(EventStart::End) => (Ok(None), None),
        Err(e) => (Err(e), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_dump_gtid_request_has_the_documented_layout() {
        let set: binlogd_parser::MysqlGtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
            .parse()
            .expect("set");
        let request = binlog_dump_gtid_request(77, &set, BINLOG_DUMP_NON_BLOCK);
        let encoded = set.encode();
        assert_eq!(request[0], 0x1e);
        assert_eq!(
            u16::from_le_bytes([request[1], request[2]]),
            BINLOG_DUMP_NON_BLOCK | BINLOG_THROUGH_GTID
        );
        assert_eq!(
            u32::from_le_bytes([request[3], request[4], request[5], request[6]]),
            77
        );
        assert_eq!(
            u32::from_le_bytes([request[7], request[8], request[9], request[10]]),
            0,
            "no file name"
        );
        assert_eq!(request[11..19], 4u64.to_le_bytes(), "position");
        assert_eq!(request[19..23], (encoded.len() as u32).to_le_bytes());
        assert_eq!(&request[23..], encoded.as_slice());
        // One source with one interval [1, 6).
        assert_eq!(encoded.len(), 8 + 16 + 8 + 16);
    }
}
