//! Driving the target server's replication applier over SQL.
//!
//! The staged relay logs (see [`crate::relay`]) are applied by the server itself: binlogd
//! configures a replication channel that reads only them (no connection to any master),
//! starts just the SQL thread with parallel workers, watches the server's GTID state until
//! the plan's end is reached, and removes the channel again so that the server is an
//! ordinary primary. The relay logs end at the plan's cut, so the applier stops there by
//! itself: no `START SLAVE UNTIL`, whose forms differ between servers.
//!
//! Or, with no staging ([`Feed::Replication`]), the server replicates from a private
//! `binlogd serve` that serves the archive up to the plan's cut: by GTID
//! (`MASTER_USE_GTID=slave_pos` from the seeded `gtid_slave_pos`; MySQL's
//! `SOURCE_AUTO_POSITION=1` from `gtid_executed`), and told to stop at the plan's end as
//! well (`START SLAVE UNTIL master_gtid_pos=`, `START REPLICA UNTIL SQL_AFTER_GTIDS=`).
//!
//! The two servers speak it differently:
//!
//! | | MariaDB | MySQL |
//! |---|---|---|
//! | channel | the default one: `CHANGE MASTER TO MASTER_HOST=..., RELAY_LOG_FILE=..., MASTER_USE_GTID=no` | its own, `CHANGE REPLICATION SOURCE TO SOURCE_HOST=..., RELAY_LOG_FILE=... FOR CHANNEL 'binlogd'` |
//! | workers | `slave_parallel_threads`, `slave_parallel_mode=optimistic` | `replica_parallel_workers`, `replica_preserve_commit_order=ON` |
//! | applied | `@@gtid_slave_pos` | `@@gtid_executed` |
//! | status | `SHOW SLAVE STATUS` | `SHOW REPLICA STATUS FOR CHANNEL`, workers' errors in `performance_schema.replication_applier_status_by_worker` |
//! | clean up | `STOP SLAVE; RESET SLAVE ALL` | `STOP REPLICA ...; RESET REPLICA ALL FOR CHANNEL 'binlogd'` |
//!
//! References: MariaDB's knowledge base on `CHANGE MASTER TO`, `START SLAVE` and parallel
//! replication; MySQL's reference manual on `CHANGE REPLICATION SOURCE TO`, replication
//! channels and `replica_parallel_workers`.

use crate::error::RestoreError;
use crate::relay::RelayLogPlace;
use binlogd_parser::Flavour;
use binlogd_storage::GtidState;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the target server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket.
    Socket(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How to reach the target server.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    /// Where.
    pub endpoint: Endpoint,
    /// A user allowed to configure replication and read its status (`SUPER` or
    /// `REPLICATION SLAVE ADMIN`, `REPLICA MONITOR`).
    pub user: String,
    /// Its password.
    pub password: Option<String>,
}

/// Where the applier reads the transactions to apply from.
#[derive(Debug, Clone, Copy)]
pub enum Feed<'a> {
    /// Relay logs staged in the server's relay-log folder, from this one (its bare file
    /// name) on.
    RelayLogs {
        /// The first staged relay log.
        first: &'a str,
    },
    /// Replication from a source that serves the plan's transactions (a private `binlogd
    /// serve`), the applier told to stop once it has applied `until`.
    Replication {
        /// The source.
        source: &'a ReplicationSource,
        /// The plan's end: the GTID state to stop at.
        until: &'a GtidState,
    },
}

/// A replication source the target server can connect to.
#[derive(Debug, Clone)]
pub struct ReplicationSource {
    /// Host name or address, as the server reaches it.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Account.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// What binlogd needs to know of the target before it stages anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `@@version`.
    pub version: String,
    /// MariaDB or MySQL: which replication statements it speaks.
    pub flavour: Flavour,
    /// `@@server_id`.
    pub server_id: u32,
    /// Where its relay logs go.
    pub relay_logs: RelayLogPlace,
    /// The transactions the server holds: MariaDB's `gtid_binlog_pos` and
    /// `gtid_slave_pos` together, MySQL's `gtid_executed`.
    pub executed: GtidState,
}

/// Where the applier is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What the server has applied: `@@gtid_slave_pos` (MariaDB), `@@gtid_executed`
    /// (MySQL).
    pub applied: GtidState,
    /// Whether the SQL thread runs.
    pub running: bool,
    /// `Last_SQL_Errno` (0: none).
    pub errno: u32,
    /// `Last_SQL_Error` (MySQL: the failing worker's own error).
    pub error: String,
    /// The master file and position of the last event applied.
    pub at: (String, u64),
    /// `Last_IO_Errno` and `Last_IO_Error`: why the replication connection failed (0
    /// when it did not, or when there is none: the relay-log feed).
    pub connection_error: (u32, String),
}

/// A connection to the target server.
#[derive(Debug)]
pub struct ReplayServer {
    conn: Conn,
    flavour: Flavour,
    /// What puts back the settings binlogd changed for the replay.
    restore_settings: Vec<String>,
}

/// The channel binlogd configures: not a real master; nothing connects to it.
const ARCHIVE_HOST: &str = "binlogd-archive";

/// MySQL's replication channel for the replay: its own, so that its relay logs
/// (`<relay_log>-binlogd.NNNNNN`) and its status are apart from any other channel's.
pub const MYSQL_CHANNEL: &str = "binlogd";

/// The `server_id` the server replays under. An applier skips events that carry its own
/// server's id (they would be its own, come back around a ring), and a database restored
/// with its own configuration has the id of the primary that wrote the archive: the
/// replay would skip every transaction, or crash MariaDB 10.11's parallel applier (it then
/// skips the relay log's ROTATE and compares an empty master file name). So the replay
/// runs under an id from the top of the range, which servers are not given in practice.
const REPLAY_SERVER_ID: u32 = 4_294_967_000;

impl ReplayServer {
    /// Connects, and learns which server it is.
    pub async fn connect(address: &ServerAddress) -> Result<ReplayServer, RestoreError> {
        let opts = OptsBuilder::default()
            .user(Some(address.user.clone()))
            .pass(address.password.clone());
        let opts = match &address.endpoint {
            Endpoint::Tcp { host, port } => opts
                .ip_or_hostname(host.clone())
                .tcp_port(*port)
                .prefer_socket(false),
            Endpoint::Socket(path) => opts.socket(Some(path.display().to_string())),
        };
        let mut conn = Conn::new(Opts::from(opts))
            .await
            .map_err(server_error(format!(
                "connecting to {}@{}",
                address.user, address.endpoint
            )))?;
        let version: Option<String> = conn
            .query_first("SELECT @@version")
            .await
            .map_err(server_error("reading the server's version"))?;
        let flavour = if version.unwrap_or_default().contains("MariaDB") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        };
        Ok(ReplayServer {
            conn,
            flavour,
            restore_settings: Vec::new(),
        })
    }

    /// MariaDB or MySQL.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Says goodbye (COM_QUIT), so the server does not log an aborted connection.
    pub async fn close(self) -> Result<(), RestoreError> {
        self.conn
            .disconnect()
            .await
            .map_err(server_error("disconnecting"))
    }

    /// Reads what a restore needs to know, and refuses a server binlogd cannot restore
    /// into as it is: with replication already configured (binlogd would overwrite it, or
    /// race it), or a MySQL server without GTIDs.
    pub async fn facts(&mut self) -> Result<ServerFacts, RestoreError> {
        let facts = match self.flavour {
            Flavour::MariaDb => self.mariadb_facts().await?,
            Flavour::MySql => self.mysql_facts().await?,
        };
        facts.relay_logs.check()?;
        Ok(facts)
    }

    async fn mariadb_facts(&mut self) -> Result<ServerFacts, RestoreError> {
        let row: Row = self
            .conn
            .query_first(
                "SELECT @@version, @@server_id, @@relay_log_basename, \
                 @@gtid_binlog_pos, @@gtid_slave_pos, @@datadir, @@pid_file",
            )
            .await
            .map_err(server_error("reading the server's settings"))?
            .ok_or_else(|| RestoreError::Unfit("answered no settings".into()))?;
        let text = |i: usize| -> String {
            row.get::<Option<String>, _>(i)
                .flatten()
                .unwrap_or_default()
        };
        // The server's user owns its datadir.
        let owner = staging_owner(&PathBuf::from(text(5)));
        let relay_logs = match text(2) {
            // A server without a relay_log option reports none (even once replication
            // is configured); it names its relay logs after its pid file, in the datadir,
            // and lists them relative to it: `<host>.pid` (the default) gives
            // `./<host>-relay-bin.000001`.
            empty if empty.is_empty() => {
                let pid_file = PathBuf::from(text(6));
                let stem = pid_file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "mysqld".into());
                RelayLogPlace {
                    dir: PathBuf::from(text(5)),
                    basename: format!("{stem}-relay-bin"),
                    listed_from: PathBuf::from("."),
                    owner,
                }
            }
            configured => {
                let configured = PathBuf::from(configured);
                let dir = configured.parent().map(PathBuf::from).unwrap_or_default();
                RelayLogPlace {
                    basename: configured
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    listed_from: dir.clone(),
                    dir,
                    owner,
                }
            }
        };
        let executed = parse_gtids(text(3), "gtid_binlog_pos")?
            .union(&parse_gtids(text(4), "gtid_slave_pos")?);
        let configured: Vec<Row> = self
            .conn
            .query("SHOW ALL SLAVES STATUS")
            .await
            .map_err(server_error("reading the server's replication status"))?;
        if let Some(channel) = configured.first() {
            let host: String = channel
                .get::<Option<String>, _>("Master_Host")
                .flatten()
                .unwrap_or_default();
            return Err(RestoreError::Unfit(format!(
                "already has replication configured (from {host}): binlogd would replace it. \
                 If it is not needed, remove it first (STOP ALL SLAVES; RESET SLAVE ALL)"
            )));
        }
        Ok(ServerFacts {
            version: text(0),
            flavour: Flavour::MariaDb,
            server_id: row.get::<Option<u32>, _>(1).flatten().unwrap_or(0),
            relay_logs,
            executed,
        })
    }

    async fn mysql_facts(&mut self) -> Result<ServerFacts, RestoreError> {
        let row: Row = self
            .conn
            .query_first(
                "SELECT @@version, @@server_id, @@relay_log, @@relay_log_basename, \
                 @@gtid_executed, @@datadir, @@gtid_mode",
            )
            .await
            .map_err(server_error("reading the server's settings"))?
            .ok_or_else(|| RestoreError::Unfit("answered no settings".into()))?;
        let text = |i: usize| -> String {
            row.get::<Option<String>, _>(i)
                .flatten()
                .unwrap_or_default()
        };
        let gtid_mode = text(6);
        if !gtid_mode.starts_with("ON") {
            return Err(RestoreError::Unfit(format!(
                "runs with gtid_mode={gtid_mode}: binlogd replays into MySQL by GTID, and \
                 follows the applier by @@gtid_executed. Turn GTIDs on first \
                 (enforce_gtid_consistency=ON, gtid_mode=ON)"
            )));
        }
        // MySQL reports the full base name however relay_log was given, and names a
        // channel's relay logs `<base>-<channel>.NNNNNN`. Its index lists them as
        // relay_log named them: from `.` (the datadir) for a relative name (the default,
        // `<host>-relay-bin`), from the folder for a full path.
        let basename = PathBuf::from(text(3));
        let dir = basename.parent().map(PathBuf::from).unwrap_or_default();
        let option = PathBuf::from(text(2));
        let listed_from = if option.is_absolute() {
            dir.clone()
        } else {
            PathBuf::from(".").join(option.parent().unwrap_or(Path::new("")))
        };
        let relay_logs = RelayLogPlace {
            basename: format!(
                "{}-{MYSQL_CHANNEL}",
                basename
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            listed_from,
            owner: staging_owner(&PathBuf::from(text(5))),
            dir,
        };
        let executed = parse_gtids(text(4), "gtid_executed")?;
        let channels: Vec<(String, String)> = self
            .conn
            .query(
                "SELECT CHANNEL_NAME, HOST \
                 FROM performance_schema.replication_connection_configuration",
            )
            .await
            .map_err(server_error("reading the server's replication channels"))?;
        if let Some((channel, host)) = channels.first() {
            return Err(RestoreError::Unfit(if channel == MYSQL_CHANNEL {
                format!(
                    "has a replication channel '{MYSQL_CHANNEL}' left by a restore that did \
                     not finish: remove it first (STOP REPLICA FOR CHANNEL '{MYSQL_CHANNEL}'; \
                     RESET REPLICA ALL FOR CHANNEL '{MYSQL_CHANNEL}')"
                )
            } else {
                format!(
                    "already has replication configured (channel '{channel}' from {host}): \
                     its applier would run beside the replay. If it is not needed, remove it \
                     first (STOP REPLICA; RESET REPLICA ALL)"
                )
            }));
        }
        Ok(ServerFacts {
            version: text(0),
            flavour: Flavour::MySql,
            server_id: row.get::<Option<u32>, _>(1).flatten().unwrap_or(0),
            relay_logs,
            executed,
        })
    }

    /// Points the applier at `feed` and starts it with `workers` parallel workers:
    /// MariaDB's optimistic mode, MySQL's logical-clock scheduling with commits kept in the
    /// source's order.
    ///
    /// `start` is the GTID state the replay starts from. MariaDB's applier moves
    /// `gtid_slave_pos` only in the domains it applies, so it is seeded with `start`
    /// first: a domain the replay never touches is then neither waited for nor missing
    /// from the restored state (a replica of the source would fetch it again); it is also
    /// where a replicating MariaDB asks its source to begin. MySQL's `gtid_executed` holds
    /// the server's whole state already.
    pub async fn start(
        &mut self,
        feed: Feed<'_>,
        workers: u32,
        start: &GtidState,
    ) -> Result<(), RestoreError> {
        let settings = match self.flavour {
            Flavour::MariaDb => {
                "SELECT @@server_id, @@slave_parallel_threads, @@slave_parallel_mode"
            }
            Flavour::MySql => {
                "SELECT @@server_id, @@replica_parallel_workers, \
                 @@replica_preserve_commit_order"
            }
        };
        let saved: Row = self
            .conn
            .query_first(settings)
            .await
            .map_err(server_error("reading the applier's settings"))?
            .ok_or_else(|| RestoreError::Unfit("answered no settings".into()))?;
        let saved_text = |i: usize| -> String {
            saved
                .get::<Option<String>, _>(i)
                .flatten()
                .unwrap_or_default()
                .replace('\'', "''")
        };
        let server_id = saved.get::<Option<u32>, _>(0).flatten().unwrap_or(0);
        let replay_id = if server_id == REPLAY_SERVER_ID {
            REPLAY_SERVER_ID + 1
        } else {
            REPLAY_SERVER_ID
        };
        let statements = match self.flavour {
            Flavour::MariaDb => {
                self.restore_settings = vec![
                    format!("SET GLOBAL slave_parallel_threads = {}", saved_text(1)),
                    format!("SET GLOBAL slave_parallel_mode = '{}'", saved_text(2)),
                    format!("SET GLOBAL server_id = {server_id}"),
                ];
                let mut statements = Vec::new();
                if !start.is_empty() {
                    statements.push(format!("SET GLOBAL gtid_slave_pos = '{start}'"));
                }
                statements.extend([
                    format!("SET GLOBAL server_id = {replay_id}"),
                    format!("SET GLOBAL slave_parallel_threads = {workers}"),
                    "SET GLOBAL slave_parallel_mode = 'optimistic'".to_owned(),
                ]);
                match feed {
                    Feed::RelayLogs { first } => statements.extend([
                        format!(
                            "CHANGE MASTER TO MASTER_HOST = '{ARCHIVE_HOST}', \
                             RELAY_LOG_FILE = '{}', RELAY_LOG_POS = 4, MASTER_USE_GTID = no",
                            quoted(first)
                        ),
                        "START SLAVE SQL_THREAD".to_owned(),
                    ]),
                    // No TLS: the source is binlogd's own, on this machine (MariaDB 11
                    // would otherwise insist on it).
                    Feed::Replication { source, until } => statements.extend([
                        format!(
                            "CHANGE MASTER TO MASTER_HOST = '{}', MASTER_PORT = {}, \
                             MASTER_USER = '{}', MASTER_PASSWORD = '{}', MASTER_SSL = 0, \
                             MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos",
                            quoted(&source.host),
                            source.port,
                            quoted(&source.user),
                            quoted(&source.password)
                        ),
                        format!("START SLAVE UNTIL master_gtid_pos = '{until}'"),
                    ]),
                }
                statements
            }
            Flavour::MySql => {
                self.restore_settings = vec![
                    format!("SET GLOBAL replica_parallel_workers = {}", saved_text(1)),
                    format!(
                        "SET GLOBAL replica_preserve_commit_order = {}",
                        saved_text(2)
                    ),
                    format!("SET GLOBAL server_id = {server_id}"),
                ];
                let mut statements = vec![
                    format!("SET GLOBAL server_id = {replay_id}"),
                    format!("SET GLOBAL replica_parallel_workers = {workers}"),
                    // Commits in the archive's order: a restore stopped by an error holds
                    // exactly the transactions before the failing one.
                    "SET GLOBAL replica_preserve_commit_order = ON".to_owned(),
                ];
                match feed {
                    Feed::RelayLogs { first } => statements.extend([
                        format!(
                            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '{ARCHIVE_HOST}', \
                             RELAY_LOG_FILE = '{}', RELAY_LOG_POS = 4 \
                             FOR CHANNEL '{MYSQL_CHANNEL}'",
                            quoted(first)
                        ),
                        format!("START REPLICA SQL_THREAD FOR CHANNEL '{MYSQL_CHANNEL}'"),
                    ]),
                    // SQL_AFTER_GTIDS (the plan's end) rather than SQL_BEFORE_GTIDS: the
                    // first transaction not to apply may not exist yet. Multi-threaded
                    // appliers honour it since MySQL 8.3.
                    Feed::Replication { source, until } => statements.extend([
                        format!(
                            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '{}', SOURCE_PORT = {}, \
                             SOURCE_USER = '{}', SOURCE_PASSWORD = '{}', SOURCE_SSL = 0, \
                             SOURCE_CONNECT_RETRY = 1, SOURCE_AUTO_POSITION = 1 \
                             FOR CHANNEL '{MYSQL_CHANNEL}'",
                            quoted(&source.host),
                            source.port,
                            quoted(&source.user),
                            quoted(&source.password)
                        ),
                        format!(
                            "START REPLICA UNTIL SQL_AFTER_GTIDS = '{until}' \
                             FOR CHANNEL '{MYSQL_CHANNEL}'"
                        ),
                    ]),
                }
                statements
            }
        };
        self.run_all(statements).await
    }

    /// What the server has applied: `@@gtid_slave_pos` (MariaDB), `@@gtid_executed`
    /// (MySQL). Readable with or without a channel.
    pub async fn applied(&mut self) -> Result<GtidState, RestoreError> {
        let applied_sql = match self.flavour {
            Flavour::MariaDb => "@@gtid_slave_pos",
            Flavour::MySql => "@@gtid_executed",
        };
        let applied: Option<String> = self
            .conn
            .query_first(format!("SELECT {applied_sql}"))
            .await
            .map_err(server_error(format!("reading {applied_sql}")))?;
        parse_gtids(applied.unwrap_or_default(), applied_sql)
    }

    /// Where the applier is now.
    pub async fn progress(&mut self) -> Result<Progress, RestoreError> {
        let status_sql = match self.flavour {
            Flavour::MariaDb => "SHOW SLAVE STATUS".to_owned(),
            Flavour::MySql => format!("SHOW REPLICA STATUS FOR CHANNEL '{MYSQL_CHANNEL}'"),
        };
        let applied = self.applied().await?;
        let status: Option<Row> = self
            .conn
            .query_first(&status_sql)
            .await
            .map_err(server_error(format!("reading {status_sql}")))?;
        let Some(status) = status else {
            return Ok(Progress {
                applied,
                running: false,
                errno: 0,
                error: String::new(),
                at: (String::new(), 0),
                connection_error: (0, String::new()),
            });
        };
        let text = |name: &str| -> String {
            status
                .get::<Option<String>, _>(name)
                .flatten()
                .unwrap_or_default()
        };
        // The same columns under each server's names.
        let (running, file, position) = match self.flavour {
            Flavour::MariaDb => (
                "Slave_SQL_Running",
                "Relay_Master_Log_File",
                "Exec_Master_Log_Pos",
            ),
            Flavour::MySql => (
                "Replica_SQL_Running",
                "Relay_Source_Log_File",
                "Exec_Source_Log_Pos",
            ),
        };
        let mut progress = Progress {
            applied,
            running: text(running) == "Yes",
            errno: text("Last_SQL_Errno").parse().unwrap_or(0),
            error: text("Last_SQL_Error"),
            at: (text(file), text(position).parse().unwrap_or(0)),
            connection_error: (
                text("Last_IO_Errno").parse().unwrap_or(0),
                text("Last_IO_Error"),
            ),
        };
        if self.flavour == Flavour::MySql && progress.errno != 0 {
            // The coordinator only says that a worker failed; the worker says what.
            let worker: Option<(u32, String)> = self
                .conn
                .query_first(format!(
                    "SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE \
                     FROM performance_schema.replication_applier_status_by_worker \
                     WHERE CHANNEL_NAME = '{MYSQL_CHANNEL}' AND LAST_ERROR_NUMBER <> 0 \
                     ORDER BY LAST_ERROR_TIMESTAMP LIMIT 1"
                ))
                .await
                .map_err(server_error("reading the applier workers' errors"))?;
            if let Some((errno, error)) = worker {
                progress.errno = errno;
                progress.error = error;
            }
        }
        Ok(progress)
    }

    /// Waits until the applier has applied `target`, calling `on_progress` on each look.
    /// Fails with the server's error if the applier stops, or when it makes no progress
    /// for `stall` (its position unchanged).
    pub async fn wait_for(
        &mut self,
        target: &GtidState,
        stall: Duration,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<Progress, RestoreError> {
        let mut last_change = Instant::now();
        let mut last_seen: Option<Progress> = None;
        loop {
            let mut progress = self.progress().await?;
            on_progress(&progress);
            if progress.applied.includes_all(target) {
                return Ok(progress);
            }
            if progress.errno == 0 && !progress.running {
                // Stopped by an UNTIL clause between reading the applied state and the
                // status: read the state again before calling it a failure.
                progress.applied = self.applied().await?;
                if progress.applied.includes_all(target) {
                    return Ok(progress);
                }
            }
            if progress.connection_error.0 != 0 {
                let (errno, message) = &progress.connection_error;
                return Err(RestoreError::Server {
                    doing: "replicating from the archive".to_owned(),
                    message: format!(
                        "the server's replication connection failed: error {errno}: {message}"
                    ),
                });
            }
            if progress.errno != 0 || !progress.running {
                return Err(RestoreError::ApplyFailed {
                    file: progress.at.0.clone(),
                    position: progress.at.1,
                    at: if progress.applied.is_empty() {
                        "nothing".to_owned()
                    } else {
                        progress.applied.to_string()
                    },
                    errno: progress.errno,
                    message: if progress.error.is_empty() {
                        "the SQL thread stopped".into()
                    } else {
                        progress.error
                    },
                });
            }
            if last_seen
                .as_ref()
                .is_none_or(|seen| seen.applied != progress.applied || seen.at != progress.at)
            {
                last_change = Instant::now();
            } else if last_change.elapsed() >= stall {
                return Err(RestoreError::TimedOut {
                    reached: progress.applied.to_string(),
                    target: target.to_string(),
                    seconds: stall.as_secs(),
                });
            }
            last_seen = Some(progress);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the applier, removes the channel and its relay logs, and puts the parallel
    /// settings back: the server is an ordinary primary again.
    pub async fn clean_up(&mut self) -> Result<(), RestoreError> {
        let mut statements = match self.flavour {
            Flavour::MariaDb => vec!["STOP SLAVE".to_owned(), "RESET SLAVE ALL".to_owned()],
            Flavour::MySql => vec![
                format!("STOP REPLICA FOR CHANNEL '{MYSQL_CHANNEL}'"),
                format!("RESET REPLICA ALL FOR CHANNEL '{MYSQL_CHANNEL}'"),
            ],
        };
        statements.append(&mut self.restore_settings);
        // Every step is tried, the settings too when the channel was never made (a start
        // that was refused half-way); the first refusal is the answer.
        let mut first_error = None;
        for statement in statements {
            if let Err(e) = self.conn.query_drop(&statement).await {
                first_error.get_or_insert_with(|| server_error(statement)(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `text` inside a single-quoted SQL string.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "''")
}

/// A GTID state as a server prints it (MySQL breaks long sets over lines).
fn parse_gtids(text: String, what: &str) -> Result<GtidState, RestoreError> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    text.parse().map_err(|e: String| RestoreError::Server {
        doing: format!("reading the server's {what}"),
        message: e,
    })
}

impl ReplayServer {
    /// Runs `statements` in order; the first refusal stops and names its statement.
    async fn run_all(
        &mut self,
        statements: impl IntoIterator<Item = String>,
    ) -> Result<(), RestoreError> {
        for statement in statements {
            self.conn
                .query_drop(&statement)
                .await
                .map_err(server_error(statement.clone()))?;
        }
        Ok(())
    }
}

/// Who the staged relay logs must belong to: the owner of the server's datadir (the
/// user it runs as) when binlogd runs as root and the server does not.
fn staging_owner(datadir: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = std::fs::metadata(datadir).ok()?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

fn server_error(doing: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> RestoreError {
    let doing = doing.into();
    move |e| RestoreError::Server {
        doing,
        message: e.to_string(),
    }
}
