//! One connection to the source: identify the server that answers, pick the archive's
//! epoch and where the dump starts, register as a replica and start the dump.
//!
//! The start follows from the archive and the server: the same server as the archive's
//! last epoch resumes where the recovered copy ends (by GTID or by file and position);
//! another server (a failover behind the same address) gets a new epoch, followed by
//! GTID; an empty archive starts at the server's oldest binlog. See MariaDB's
//! `sql/sql_repl.cc` (`mysql_binlog_send`) and MySQL's `COM_BINLOG_DUMP_GTID` for what
//! each dump asks of the server.

use crate::config::{ReplicaConfig, ResumeBy};
use crate::error::ReplicaError;
use crate::observer::Observer;
use binlogd_protocol::{BINLOG_DUMP_NON_BLOCK, BinlogStream, Connection, ProtocolError};
use binlogd_storage::{
    ArchiveWriter, Epoch, GtidState, LocalArchive, SourceIdentity, close_abandoned, recover,
};
use std::time::Duration;

/// Where a dump starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A file, from a byte position.
    Position {
        /// The binlog file.
        file: String,
        /// Where in it.
        position: u64,
    },
    /// Everything after a GTID state.
    Gtid(GtidState),
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Position { file, position } => write!(f, "at {file}:{position}"),
            Start::Gtid(state) => write!(f, "after GTIDs {state}"),
        }
    }
}

/// What one session leaves to the next.
#[derive(Debug, Default)]
pub(crate) struct Continuity {
    /// Set after a gap: the next dump goes by file and position, which is exact.
    pub force_position: bool,
    /// Whether the warning that the archive is plaintext was given.
    pub warned_plaintext: bool,
    /// Where the last dump began.
    pub last_start: Option<Start>,
}

/// A dump under way, and the writer that archives it.
pub(crate) struct Dump {
    pub stream: BinlogStream,
    pub writer: ArchiveWriter,
    /// Whether the dump's first packet came (see [`first_packet`]); a failure here is
    /// the session's, reported once the session counts as connected.
    pub ready: Result<(), ProtocolError>,
}

/// Connects, decides where to start, and starts the dump.
pub(crate) async fn open(
    config: &ReplicaConfig,
    archive: &LocalArchive,
    continuity: &mut Continuity,
    observer: &dyn Observer,
) -> Result<Dump, ReplicaError> {
    let address = config.address();
    let net_timeout = config.net_timeout;
    let mut conn = tokio::time::timeout(net_timeout, Connection::connect(&config.connect))
        .await
        .map_err(|_| ProtocolError::TimedOut(net_timeout))
        .and_then(|connected| connected)
        .map_err(ReplicaError::protocol(format!("connecting to {address}")))?;
    conn.set_read_timeout(Some(net_timeout));
    let identity = identify(&mut conn, &address).await?;
    warn_if_archive_is_plaintext(&mut conn, config, continuity).await;
    observer.source(&identity);
    let (epoch, start, unfinished) =
        choose_start(&mut conn, config, archive, continuity, identity).await?;
    conn.register_replica(config.server_id)
        .await
        .map_err(ReplicaError::protocol("registering as a replica"))?;
    conn.set_heartbeat_period(config.heartbeat)
        .await
        .map_err(ReplicaError::protocol("setting the heartbeat period"))?;
    if config.semi_sync {
        conn.request_semi_sync()
            .await
            .map_err(ReplicaError::protocol("asking for semi-sync"))?;
    }
    let flags = if config.exit_at_end {
        BINLOG_DUMP_NON_BLOCK
    } else {
        0
    };
    tracing::info!(epoch = %epoch.dir.display(), start = ?start, "starting the dump");
    let dumping = format!("starting the binlog dump {start}");
    let mut stream = match &start {
        Start::Position { file, position } => {
            let position = u32::try_from(*position).map_err(|_| ReplicaError::PositionTooFar {
                file: file.clone(),
                position: *position,
            })?;
            conn.binlog_dump(config.server_id, file, position, flags)
                .await
        }
        Start::Gtid(GtidState::Mariadb(pos)) => {
            conn.binlog_dump_mariadb_gtid(config.server_id, pos, flags)
                .await
        }
        Start::Gtid(GtidState::Mysql(set)) => {
            conn.binlog_dump_mysql_gtid(config.server_id, set, flags)
                .await
        }
        // `choose_start` never starts by GTID from an empty state.
        Start::Gtid(GtidState::None) => return Err(ReplicaError::NoGtidState),
    }
    .map_err(ReplicaError::protocol(dumping))?;
    continuity.last_start = Some(start.clone());
    let gtids = match &start {
        Start::Gtid(state) => state.clone(),
        Start::Position { .. } => recover(&epoch)
            .map_err(ReplicaError::storage(format!(
                "recovering {}",
                epoch.dir.display()
            )))?
            .map(|r| r.gtids)
            .unwrap_or_else(|| epoch.gtids_at_start.clone()),
    };
    let mut writer = ArchiveWriter::new(epoch, stream.checksum(), gtids)
        .map_err(ReplicaError::storage("opening the archive's file"))?;
    if let (Start::Gtid(_), Some((file, len))) = (&start, unfinished) {
        writer.continues(&file, len);
    }
    let ready = first_packet(&mut stream, config).await;
    Ok(Dump {
        stream,
        writer,
        ready,
    })
}

/// Which server answers: its id (and uuid on MySQL), flavour and version.
async fn identify(conn: &mut Connection, address: &str) -> Result<SourceIdentity, ReplicaError> {
    let asking = ReplicaError::protocol("asking the source for its @@server_id");
    let mariadb = conn.server().is_mariadb();
    let (server_id, server_uuid) = if mariadb {
        let id = conn
            .query_value("SELECT @@server_id")
            .await
            .map_err(asking)?;
        (id, None)
    } else {
        let rows = conn
            .query("SELECT @@server_id, @@server_uuid")
            .await
            .map_err(asking)?;
        let row = rows.into_iter().next().unwrap_or_default();
        (
            row.first().cloned().flatten(),
            row.get(1).cloned().flatten(),
        )
    };
    let server_id = server_id
        .and_then(|id| id.parse().ok())
        .ok_or(ReplicaError::NoServerId)?;
    Ok(SourceIdentity {
        server_id,
        server_uuid,
        flavour: if mariadb {
            binlogd_parser::Flavour::MariaDb
        } else {
            binlogd_parser::Flavour::MySql
        },
        version: conn.server().server_version.clone(),
        address: address.to_owned(),
    })
}

/// A MariaDB with `encrypt_binlog=ON` sends its events decrypted to replicas: said once,
/// unless the archive is encrypted on its way to the store.
async fn warn_if_archive_is_plaintext(
    conn: &mut Connection,
    config: &ReplicaConfig,
    continuity: &mut Continuity,
) {
    if continuity.warned_plaintext || !conn.server().is_mariadb() {
        return;
    }
    let encrypted_source = matches!(
        conn.query_value("SELECT @@global.encrypt_binlog").await,
        Ok(Some(value)) if value == "1" || value.eq_ignore_ascii_case("on")
    );
    if encrypted_source && !config.archive_encrypted {
        tracing::warn!(
            "the source encrypts its binlogs (encrypt_binlog=ON), but a replica receives \
             them decrypted: this archive holds them in plaintext. Keep it as safe as the \
             data, or archive to s3:// with --encryption-key-file, --sse-c-key-file or --sse-kms"
        );
        continuity.warned_plaintext = true;
    }
}

/// Picks the epoch and the start of the dump from the archive and the server, and the
/// archive's last file if the dump must continue it.
async fn choose_start(
    conn: &mut Connection,
    config: &ReplicaConfig,
    archive: &LocalArchive,
    continuity: &mut Continuity,
    identity: SourceIdentity,
) -> Result<(Epoch, Start, Option<(String, u64)>), ReplicaError> {
    let reading = |what: &str| ReplicaError::storage(what.to_owned());
    let epochs = archive
        .epochs()
        .map_err(reading("listing the archive's epochs"))?;
    let recovering = |epoch: &Epoch| {
        recover(epoch).map_err(ReplicaError::storage(format!(
            "recovering {}",
            epoch.dir.display()
        )))
    };
    let (epoch, resume) = match epochs.last().cloned() {
        Some(epoch) if epoch.source.same_server(&identity) => {
            let resume = recovering(&epoch)?;
            (epoch, resume)
        }
        Some(previous) => {
            let gtids = recovering(&previous)?
                .map(|r| r.gtids)
                .unwrap_or_else(|| previous.gtids_at_start.clone());
            if gtids.is_empty() {
                return Err(ReplicaError::NewServerWithoutGtids {
                    now: identity.server_id,
                    was: previous.source.server_id,
                });
            }
            tracing::warn!(
                was = previous.source.server_id,
                now = identity.server_id,
                gtids = %gtids,
                "a different server answers at the source address (failover?); following it by GTID in a new epoch"
            );
            let closed = close_abandoned(&previous).map_err(ReplicaError::storage(format!(
                "closing {}",
                previous.dir.display()
            )))?;
            if let Some(file) = closed {
                tracing::info!(
                    epoch = %previous.dir.display(),
                    file,
                    "closed the old server's last file as it stands: the stream follows \
                     another server now"
                );
            }
            let epoch = archive
                .new_epoch(identity, gtids)
                .map_err(reading("starting a new epoch"))?;
            (epoch, None)
        }
        None => (
            archive
                .new_epoch(identity, GtidState::None)
                .map_err(reading("starting the archive's first epoch"))?,
            None,
        ),
    };
    if let Some(resume) = &resume
        && resume.truncated > 0
    {
        tracing::info!(
            file = %resume.file,
            bytes = resume.truncated,
            "dropped an unfinished transaction from the archive's end; the source sends it again"
        );
    }
    // The archive's last file, if not closed: the dump must continue it.
    let unfinished = resume
        .as_ref()
        .filter(|r| epoch.data_path(&r.file).exists())
        .map(|r| (r.file.clone(), r.position));
    let force_position = std::mem::take(&mut continuity.force_position);
    let start = match resume {
        Some(resume)
            if config.resume_by != ResumeBy::Position
                && !force_position
                && !resume.gtids.is_empty() =>
        {
            Start::Gtid(resume.gtids)
        }
        Some(resume) => Start::Position {
            file: resume.file,
            position: resume.position,
        },
        None if !epoch.gtids_at_start.is_empty() && !force_position => {
            Start::Gtid(epoch.gtids_at_start.clone())
        }
        None => {
            // An epoch without files after a gap: its first file from the start.
            let file = match (&config.start_file, epoch.gtids_at_start.is_empty()) {
                (Some(file), true) => file.clone(),
                _ => oldest_binlog(conn).await?,
            };
            Start::Position { file, position: 4 }
        }
    };
    Ok((epoch, start, unfinished))
}

async fn oldest_binlog(conn: &mut Connection) -> Result<String, ReplicaError> {
    let rows = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(ReplicaError::protocol(
            "listing the source's binlogs (SHOW BINARY LOGS)",
        ))?;
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .ok_or(ReplicaError::NoBinlogs)
}

/// Waits for the dump's first packet. A server answers a dump at once with the file's
/// rotate and format events; when it does not, the likely cause is a dump thread of an
/// earlier connection stuck writing to a connection that is gone, which the server waits
/// for. That thread is closed from a second connection while this one keeps waiting.
async fn first_packet(
    stream: &mut BinlogStream,
    config: &ReplicaConfig,
) -> Result<(), ProtocolError> {
    let patience = (config.net_timeout / 3).min(Duration::from_secs(2));
    let first = stream.readable();
    tokio::pin!(first);
    tokio::select! {
        ready = &mut first => return ready,
        () = tokio::time::sleep(patience) => {}
    }
    let (ready, ()) = tokio::join!(first, close_stuck_predecessors(config));
    ready
}

/// See [`Connection::close_killed_threads_of_this_account`]. Failing here is no reason
/// to drop the stream: the server frees a stuck thread on its own, only later.
async fn close_stuck_predecessors(config: &ReplicaConfig) {
    let net_timeout = config.net_timeout;
    let attempt = async {
        let mut conn = Connection::connect(&config.connect).await?;
        conn.set_read_timeout(Some(net_timeout));
        conn.close_killed_threads_of_this_account().await
    };
    match tokio::time::timeout(net_timeout, attempt).await {
        Ok(Ok(closed)) if closed.is_empty() => {
            tracing::debug!("the dump is slow to start, but no earlier dump thread is in its way");
        }
        Ok(Ok(closed)) => {
            for thread in closed {
                tracing::warn!(
                    thread,
                    "closed the dump thread of an earlier connection: the server had it \
                     blocked writing to a connection that is gone, and would not start this \
                     dump until it ended"
                );
            }
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "could not look for an earlier dump thread in the way");
        }
        Err(_) => {
            tracing::warn!("timed out looking for an earlier dump thread in the way");
        }
    }
}
