//! One client's connection: the handshake (TLS when asked), authentication against the
//! users file, the setup queries, then a dump — or an error that ends this client only.
//!
//! Authentication follows the servers: the greeting proposes the archive's flavour's
//! default plugin (`caching_sha2_password` for MySQL, `mysql_native_password` for
//! MariaDB); a client that answered with a plugin its account lacks is switched to one
//! it has. `caching_sha2_password` takes its fast path against the SHA256(SHA256())
//! remembered from the account's last full authentication; otherwise it asks for the
//! password in full, which `binlogd serve` accepts only over TLS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binlogd_parser::{ChecksumAlgorithm, Flavour, MysqlGtidSet};
use binlogd_protocol::packet::PacketCodec;
use binlogd_protocol::server::passwords::{
    caching_sha2_hash, check_caching_sha2_fast, check_native_password,
};
use binlogd_protocol::server::{
    ClientHello, Command, HandshakeResponse, parse_client_hello, replies,
};
use binlogd_protocol::{MaybeTls, ProtocolError, ServerTransport};
use binlogd_storage::GtidState;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::archive::{self, ArchiveSource};
use crate::dump::{Dump, DumpOptions, Progress};
use crate::error::ServeError;
use crate::queries::{self, Answer, SessionVariables, SourceFacts};
use crate::start::{FATAL_READING_BINLOG, Request, find_start};
use crate::users::{CACHING_SHA2, NATIVE, Users};

/// How long the last words to a client that is being dropped may take to send.
const ERROR_DELIVERY: Duration = Duration::from_secs(5);
/// How long a client has to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `ER_ACCESS_DENIED_ERROR`.
const ACCESS_DENIED: u16 = 1045;
/// `ER_SECURE_TRANSPORT_REQUIRED`.
const SECURE_TRANSPORT_REQUIRED: u16 = 3159;
/// `ER_UNKNOWN_COM_ERROR`.
const UNKNOWN_COMMAND: u16 = 1047;
/// `BINLOG_DUMP_NON_BLOCK`.
const NON_BLOCK: u16 = 0x01;
/// MariaDB's `BINLOG_SEND_ANNOTATE_ROWS_EVENT`.
const SEND_ANNOTATE_ROWS: u16 = 0x02;
/// MariaDB's `MARIA_SLAVE_CAPABILITY_GTID`: the replica reads GTID events as they are.
const CAPABILITY_GTID: u64 = 4;

/// What every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub archive: ArchiveSource,
    pub users: Users,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub require_tls: bool,
    pub write_timeout: Duration,
    /// SHA256(SHA256(password)) per account, learnt from a full authentication.
    pub fast_path: Mutex<HashMap<String, [u8; 32]>>,
    pub next_connection_id: AtomicU32,
    /// The replicas being served now, by connection id.
    pub replicas: Mutex<HashMap<u32, ReplicaSeen>>,
    /// What the setup queries last reported, and when it was read: shared by the logins
    /// of the next second, and the greeting's version for every later one.
    pub facts: Mutex<Option<(Instant, SourceFacts)>>,
    /// Whether they are being read again in the background.
    pub facts_refreshing: std::sync::atomic::AtomicBool,
    /// What an unknown account's login is taken through (see [`crate::Users::decoy`]).
    pub decoy: crate::users::Account,
    /// Full authentications (Argon2) running at once.
    pub full_auth: tokio::sync::Semaphore,
    /// How long a logged-in client may send no command (while not being sent a dump).
    pub idle_timeout: Duration,
}

/// Full authentications run at once at most (Argon2: 19 MiB each).
pub(crate) const FULL_AUTH_AT_ONCE: usize = 4;

/// The largest packet a client may send before it has logged in: a handshake response,
/// with its connection attributes, is a few hundred bytes.
const LOGIN_PACKET_MAX: usize = 64 << 10;

/// The largest packet a logged-in client may send: a query, or a dump request whose GTID
/// set names thousands of servers.
const COMMAND_PACKET_MAX: usize = 4 << 20;

/// `ER_CON_COUNT_ERROR`.
const TOO_MANY_CONNECTIONS: u16 = 1040;

/// How long what the setup queries report is shared between logins.
const FACTS_AGE: Duration = Duration::from_secs(1);

impl Shared {
    /// What the setup queries report: as last read, and read again in the background
    /// when that is more than a second ago, so that a login waits for the store only the
    /// first time.
    pub(crate) async fn source_facts(self: &Arc<Self>) -> Result<SourceFacts, ServeError> {
        let (cached, stale) = match &*lock(&self.facts) {
            Some((read_at, facts)) => (Some(facts.clone()), read_at.elapsed() >= FACTS_AGE),
            None => (None, true),
        };
        match cached {
            Some(facts) => {
                if stale && !self.facts_refreshing.swap(true, Ordering::AcqRel) {
                    let shared = Arc::clone(self);
                    tokio::spawn(async move {
                        match crate::facts::source_facts(&shared.archive).await {
                            Ok(facts) => {
                                *lock(&shared.facts) = Some((Instant::now(), facts));
                            }
                            Err(e) => tracing::warn!(error = %e,
                                "reading the archive's facts failed; logins get the last ones"),
                        }
                        shared.facts_refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(facts)
            }
            None => {
                let facts = crate::facts::source_facts(&self.archive).await?;
                *lock(&self.facts) = Some((Instant::now(), facts.clone()));
                Ok(facts)
            }
        }
    }

    /// The flavour and version to greet a client with: the archive's, as last read (at
    /// start, then at each refresh), so that nothing is read from the archive before a
    /// client has logged in. An archive never read yet (empty, or its store down at
    /// start) greets as MariaDB would; the account's password decides the rest.
    fn greeting_identity(&self) -> (Flavour, String) {
        match &*lock(&self.facts) {
            Some((_, facts)) => (facts.flavour, facts.version.clone()),
            None => (Flavour::MariaDb, "10.11.0-MariaDB".to_owned()),
        }
    }
}

/// A replica being served, for metrics and status.
#[derive(Debug, Clone)]
pub struct ReplicaSeen {
    /// Where it connects from.
    pub peer: SocketAddr,
    /// The account it logged in as.
    pub user: String,
    /// Its `server_id` (from the dump request).
    pub server_id: u32,
    /// How far it has been sent.
    pub progress: watch::Receiver<Progress>,
}

type Connection = Framed<ServerTransport, PacketCodec>;

/// Serves one client until it leaves, fails, or the server shuts down.
pub(crate) async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    // A client that does not finish logging in holds a connection for nothing: as a
    // server's connect_timeout, it gets a limited time.
    let (mut conn, user, mut facts) =
        match tokio::time::timeout(LOGIN_TIMEOUT, log_in(stream, peer, id, &shared)).await {
            Ok(logged_in) => logged_in?,
            Err(_) => return Err(ServeError::LoginTimedOut(LOGIN_TIMEOUT)),
        };
    tracing::info!(%peer, %user, connection = id, tls = conn.get_ref().is_tls(), "client logged in");
    conn.codec_mut().limit_payload(Some(COMMAND_PACKET_MAX));
    let mut session = SessionVariables::default();
    let mut shutdown = shutdown;
    loop {
        conn.codec_mut().reset_sequence();
        let packet = tokio::select! {
            packet = tokio::time::timeout(shared.idle_timeout, conn.next()) => match packet {
                Err(_) => {
                    tracing::info!(%peer, %user, idle = ?shared.idle_timeout, "closed an idle connection");
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Ok(Some(packet)) => packet?.payload,
            },
            _ = shutdown.changed() => return Ok(()),
        };
        match Command::parse(&packet)? {
            Command::Quit => return Ok(()),
            Command::Ping => conn.send(replies::ok()).await?,
            Command::Query(query) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if facts.executed_gtids.is_none() && queries::needs_executed_gtids(query) {
                    let files = shared.archive.list().await?.files;
                    facts.executed_gtids = Some(archive::gtids_after(&files).await?.to_string());
                }
                match queries::answer(query, &facts, &mut session, now) {
                    Answer::Ok => conn.send(replies::ok()).await?,
                    Answer::Rows { columns, rows } => {
                        let columns: Vec<_> = columns
                            .iter()
                            .map(|c| (c.as_str(), replies::ColumnType::Text))
                            .collect();
                        for packet in replies::result_set(&columns, &rows) {
                            conn.feed(packet).await?;
                        }
                        SinkExt::<Vec<u8>>::flush(&mut conn).await?;
                    }
                    Answer::Refuse {
                        code,
                        state,
                        message,
                    } => {
                        let query = queries::quoted_statement(query);
                        tracing::info!(%peer, %query, code, "refused a query");
                        conn.send(replies::err(code, state, &message)).await?;
                    }
                }
            }
            Command::RegisterReplica(_) => conn.send(replies::ok()).await?,
            Command::BinlogDump(dump) => {
                let request = match session.get("slave_connect_state") {
                    Some(state) if facts.flavour == Flavour::MariaDb => {
                        match state.unwrap_or("").parse() {
                            Ok(pos) => Request::Gtids(GtidState::Mariadb(pos)),
                            Err(_) => {
                                return Err(refuse(
                                    &mut conn,
                                    1105,
                                    "Out of memory or malformed slave request when obtaining \
                                     start position from GTID state",
                                )
                                .await);
                            }
                        }
                    }
                    _ => Request::Position {
                        file: String::from_utf8_lossy(dump.file).into_owned(),
                        position: u64::from(dump.position),
                    },
                };
                let target = DumpTarget {
                    request,
                    flags: dump.flags,
                    server_id: dump.server_id,
                };
                return run_dump(
                    &mut conn, &shared, &facts, &session, target, &user, peer, id, shutdown,
                )
                .await;
            }
            Command::BinlogDumpGtid(dump) => {
                let request = match MysqlGtidSet::decode(dump.gtid_set) {
                    Ok(set) => Request::Gtids(GtidState::Mysql(set)),
                    Err(_) if dump.gtid_set.is_empty() => {
                        Request::Gtids(GtidState::Mysql(MysqlGtidSet::new()))
                    }
                    Err(e) => {
                        return Err(refuse(
                            &mut conn,
                            FATAL_READING_BINLOG,
                            &format!("the replica's GTID set does not decode: {e}"),
                        )
                        .await);
                    }
                };
                let target = DumpTarget {
                    request,
                    flags: dump.flags,
                    server_id: dump.server_id,
                };
                return run_dump(
                    &mut conn, &shared, &facts, &session, target, &user, peer, id, shutdown,
                )
                .await;
            }
            Command::Other(code) => {
                tracing::info!(%peer, code, "refused an unknown command");
                conn.send(replies::err(UNKNOWN_COMMAND, "08S01", "Unknown command"))
                    .await?;
            }
        }
    }
}

/// The handshake, TLS if the client asks, and authentication: the connection, the
/// account and what the setup queries will report.
async fn log_in(
    stream: TcpStream,
    peer: SocketAddr,
    id: u32,
    shared: &Arc<Shared>,
) -> Result<(Connection, String, SourceFacts), ServeError> {
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    // Until TLS is settled the socket is read by hand, exactly one packet at a time: a
    // client that wants TLS sends its ClientHello right behind the SSLRequest, and those
    // bytes belong to the TLS acceptor, not to a packet reader's buffer.
    let mut codec = PacketCodec::new();
    codec.limit_payload(Some(LOGIN_PACKET_MAX));
    // Nothing is read from the archive before the client has logged in: a client that
    // connects costs the store nothing, and one that cannot log in learns nothing of it.
    let (flavour, version) = shared.greeting_identity();
    let scramble = scramble();
    let version = match flavour {
        // MariaDB says "5.5.5-" first so that clients that read the first digit as the
        // major version do not take 10 or 11 for 1.
        Flavour::MariaDb => format!("5.5.5-{version}-binlogd"),
        Flavour::MySql => format!("{version}-binlogd"),
    };
    let proposed = match flavour {
        Flavour::MariaDb => NATIVE,
        Flavour::MySql => CACHING_SHA2,
    };
    write_packet(
        &mut stream,
        &mut codec,
        &replies::greeting(
            &version,
            id,
            &scramble,
            replies::server_capabilities(shared.tls.is_some()),
            proposed,
        ),
    )
    .await?;
    let mut packet = read_one_packet(&mut stream, &mut codec).await?;
    let mut conn = if let ClientHello::StartTls { .. } = parse_client_hello(&packet)? {
        let Some(tls) = &shared.tls else {
            return Err(ProtocolError::Unsupported(
                "the client asked for TLS, which this server did not offer".into(),
            )
            .into());
        };
        let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(tls))
            .accept(stream)
            .await
            .map_err(|e| ProtocolError::Tls(format!("TLS handshake with {peer}: {e}")))?;
        let mut conn = Framed::new(MaybeTls::Tls(Box::new(tls)), codec);
        packet = read_packet(&mut conn).await?;
        conn
    } else {
        Framed::new(MaybeTls::Plain(stream), codec)
    };
    let ClientHello::Response(hello) = parse_client_hello(&packet)? else {
        return Err(ProtocolError::Unsupported("TLS asked for twice".into()).into());
    };
    if shared.require_tls && !conn.get_ref().is_tls() {
        return Err(refuse(
            &mut conn,
            SECURE_TRANSPORT_REQUIRED,
            "Connections using insecure transport are prohibited while \
             --require_secure_transport=ON.",
        )
        .await);
    }
    let user = authenticate(&mut conn, &hello, &scramble, shared, peer).await?;
    let facts = match shared.source_facts().await {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!(%peer, %user, error = %e, "refused a login: the archive cannot be served");
            return Err(refuse(&mut conn, 1105, &e.to_string()).await);
        }
    };
    Ok((conn, user, facts))
}

/// What a dump command asked for.
struct DumpTarget {
    request: Request,
    flags: u16,
    server_id: u32,
}

#[allow(clippy::too_many_arguments)]
async fn run_dump(
    conn: &mut Connection,
    shared: &Shared,
    facts: &SourceFacts,
    session: &SessionVariables,
    target: DumpTarget,
    user: &str,
    peer: SocketAddr,
    id: u32,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let announced = session
        .get("master_binlog_checksum")
        .or_else(|| session.get("source_binlog_checksum"))
        .flatten();
    let checksum = match announced {
        Some(name) if name.eq_ignore_ascii_case("CRC32") => ChecksumAlgorithm::Crc32,
        Some(_) => ChecksumAlgorithm::None,
        None if facts.binlog_checksum == "NONE" => ChecksumAlgorithm::None,
        None => {
            return Err(refuse(
                conn,
                FATAL_READING_BINLOG,
                "Slave can not handle replication events with the checksum that master is \
                 configured to log",
            )
            .await);
        }
    };
    if facts.flavour == Flavour::MariaDb
        && session.number("mariadb_slave_capability").unwrap_or(0) < CAPABILITY_GTID
    {
        return Err(refuse(
            conn,
            FATAL_READING_BINLOG,
            "binlogd serve sends MariaDB binlogs as they are archived, GTID events included, \
             and needs a client that reads them (@mariadb_slave_capability=4: any MariaDB \
             10.0+ replica, mariadb-binlog)",
        )
        .await);
    }
    let heartbeat = session
        .number("master_heartbeat_period")
        .or_else(|| session.number("source_heartbeat_period"))
        .filter(|&ns| ns > 0)
        .map(Duration::from_nanos);
    let files = shared.archive.list_fresh().await?.files;
    let file_facts = archive::start_facts(&files).await?;
    // Only a MariaDB GTID request is checked against the archive's newest GTIDs.
    let archive_has = match &target.request {
        Request::Gtids(GtidState::Mariadb(_)) => archive::gtids_after(&files).await?,
        _ => GtidState::None,
    };
    let start = match find_start(facts.flavour, &file_facts, &archive_has, &target.request) {
        Ok(start) => start,
        Err(refusal) => {
            tracing::warn!(%peer, %user, request = ?target.request, reason = %refusal.message, "refused a dump");
            return Err(refuse(conn, refusal.code, &refusal.message).await);
        }
    };
    let by_gtid = matches!(target.request, Request::Gtids(_));
    tracing::info!(
        %peer, %user, server_id = target.server_id,
        file = %files[start.file].name, position = start.position,
        request = ?target.request, "dump starts"
    );
    let (progress, watcher) = watch::channel(Progress::default());
    lock(&shared.replicas).insert(
        id,
        ReplicaSeen {
            peer,
            user: user.to_owned(),
            server_id: target.server_id,
            progress: watcher,
        },
    );
    let dump = Dump {
        conn,
        archive: &shared.archive,
        options: DumpOptions {
            non_blocking: target.flags & NON_BLOCK != 0 || target.server_id == 0,
            annotate_rows: target.flags & SEND_ANNOTATE_ROWS != 0,
            heartbeat,
            checksum,
            by_gtid,
            write_timeout: shared.write_timeout,
        },
        shutdown,
        progress,
    };
    let result = dump.run(files, start).await;
    lock(&shared.replicas).remove(&id);
    match result {
        Ok(end) => {
            tracing::info!(%peer, %user, ?end, "dump ended");
            Ok(())
        }
        Err(ServeError::Refused { code, message }) => Err(refuse(conn, code, &message).await),
        // A replica that reads nothing would not read an error either.
        Err(e @ ServeError::ReplicaStalled(_)) => Err(e),
        // Replicas take error 1236 for good; a lost connection they retry. A store that
        // fails for a moment should cost a reconnection, not the replica.
        Err(e) if e.is_transient() => {
            tracing::warn!(%peer, %user, error = %e, "the store failed mid-dump; closing the connection so that the replica reconnects");
            Err(e)
        }
        Err(e) => {
            let _ = tokio::time::timeout(
                ERROR_DELIVERY,
                conn.send(replies::err(FATAL_READING_BINLOG, "HY000", &e.to_string())),
            )
            .await;
            Err(e)
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends an ERR; the error that ends the session with it.
async fn refuse(conn: &mut Connection, code: u16, message: &str) -> ServeError {
    let state = match code {
        ACCESS_DENIED => "28000",
        _ => "HY000",
    };
    let _ = tokio::time::timeout(
        ERROR_DELIVERY,
        conn.send(replies::err(code, state, message)),
    )
    .await;
    ServeError::Refused {
        code,
        message: message.to_owned(),
    }
}

/// Tells a client over the connection limit so, as the servers do (an error packet in
/// place of the greeting), without waiting: a socket that does not take it at once is
/// closed all the same.
pub(crate) fn refuse_too_many(stream: &TcpStream, limit: usize) {
    use tokio_util::codec::Encoder;
    let payload = replies::err(
        TOO_MANY_CONNECTIONS,
        "08004",
        &format!("Too many connections (binlogd serve --max-connections {limit})"),
    );
    let mut bytes = bytes::BytesMut::new();
    if PacketCodec::new().encode(&payload[..], &mut bytes).is_ok() {
        let _ = stream.try_write(&bytes);
    }
}

/// Writes one packet straight to the socket.
async fn write_packet(
    stream: &mut TcpStream,
    codec: &mut PacketCodec,
    payload: &[u8],
) -> Result<(), ServeError> {
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Encoder;
    let mut bytes = bytes::BytesMut::new();
    codec.encode(payload, &mut bytes)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| ServeError::Protocol(e.into()))
}

/// Reads exactly one packet from the socket, nothing after it.
async fn read_one_packet(
    stream: &mut TcpStream,
    codec: &mut PacketCodec,
) -> Result<Bytes, ServeError> {
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Decoder;
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProtocolError::Closed.into());
        }
        Err(e) => return Err(ServeError::Protocol(e.into())),
    }
    // Checked against the codec's limit before anything is allocated for it.
    let len = codec.announced_length(&header)?;
    let mut bytes = bytes::BytesMut::with_capacity(4 + len);
    bytes.extend_from_slice(&header);
    bytes.resize(4 + len, 0);
    stream
        .read_exact(&mut bytes[4..])
        .await
        .map_err(|e| ServeError::Protocol(e.into()))?;
    match codec.decode(&mut bytes)? {
        Some(packet) if !packet.continues => Ok(packet.payload),
        _ => Err(ProtocolError::Unsupported("a handshake packet over 16 MiB".into()).into()),
    }
}

async fn read_packet(conn: &mut Connection) -> Result<Bytes, ServeError> {
    match conn.next().await {
        None => Err(ProtocolError::Closed.into()),
        Some(packet) => {
            let packet = packet?;
            if packet.continues {
                return Err(ProtocolError::Unsupported(
                    "a command over 16 MiB, which no replica sends".into(),
                )
                .into());
            }
            Ok(packet.payload)
        }
    }
}

/// 20 random printable bytes, as servers make them (clients cut a scramble at a NUL).
fn scramble() -> [u8; 20] {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes.map(|b| 0x21 + b % 94)
}

async fn authenticate(
    conn: &mut Connection,
    hello: &HandshakeResponse<'_>,
    scramble: &[u8; 20],
    shared: &Shared,
    peer: SocketAddr,
) -> Result<String, ServeError> {
    let user = hello.user.to_owned();
    let denied = format!(
        "Access denied for user '{user}'@'{}' (using password: {})",
        peer.ip(),
        if hello.auth_response.is_empty() {
            "NO"
        } else {
            "YES"
        }
    );
    // An unknown name goes through the same steps as a known one (the decoy opens to no
    // password), so that the answers do not tell which names exist.
    let known = shared.users.account(&user);
    let account = known.unwrap_or(&shared.decoy);
    let mut plugin = hello.auth_plugin.unwrap_or(NATIVE);
    let mut answer = hello.auth_response.to_vec();
    if !account.has_plugin(plugin) {
        plugin = account.preferred_plugin();
        let mut nonce = scramble.to_vec();
        nonce.push(0);
        conn.send(replies::auth_switch(plugin, &nonce)).await?;
        answer = read_packet(conn).await?.to_vec();
    }
    let accepted = match plugin {
        NATIVE => account
            .native
            .is_some_and(|stored| check_native_password(&stored, scramble, &answer)),
        _ => {
            let cached = lock(&shared.fast_path)
                .get(&user)
                .copied()
                .or(account.fast_path);
            if cached.is_some_and(|c| check_caching_sha2_fast(&c, scramble, &answer)) {
                conn.send(replies::auth_more_data(&[3])).await?;
                true
            } else if answer.is_empty() {
                false
            } else {
                conn.send(replies::auth_more_data(&[4])).await?;
                let full = read_packet(conn).await?;
                if !conn.get_ref().is_tls() {
                    let message = format!(
                        "{denied}: binlogd serve takes caching_sha2_password's full \
                         authentication only over TLS: connect with TLS (a MySQL replica: \
                         SOURCE_SSL=1)"
                    );
                    tracing::warn!(%peer, %user, "refused a login: full authentication without TLS");
                    return Err(refuse(conn, ACCESS_DENIED, &message).await);
                }
                let password = full.strip_suffix(&[0]).unwrap_or(&full).to_vec();
                let account = account.clone();
                let checked = password.clone();
                // Argon2 takes 19 MiB and tens of milliseconds: a few at a time, however
                // many clients ask (each waits within its login time).
                let _turn = shared.full_auth.acquire().await.map_err(|_| {
                    ServeError::Config("the full-authentication limiter closed".to_owned())
                })?;
                let good =
                    tokio::task::spawn_blocking(move || account.check_full_password(&checked))
                        .await
                        .unwrap_or(false);
                if good {
                    lock(&shared.fast_path).insert(user.clone(), caching_sha2_hash(&password));
                }
                good
            }
        }
    };
    if known.is_none() {
        tracing::warn!(%peer, %user, "refused a login: no such account in {}", shared.users.path().display());
        return Err(refuse(conn, ACCESS_DENIED, &denied).await);
    }
    if !accepted {
        tracing::warn!(%peer, %user, plugin, "refused a login: wrong password");
        return Err(refuse(conn, ACCESS_DENIED, &denied).await);
    }
    conn.send(replies::ok()).await?;
    Ok(user)
}
