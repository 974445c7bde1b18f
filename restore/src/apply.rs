//! Driving the target server's replication applier over SQL.
//!
//! The staged relay logs (see [`crate::relay`]) are applied by the server itself: binlogd
//! configures a replication channel that reads only them (`CHANGE MASTER TO ...
//! RELAY_LOG_FILE`, no connection to any master), starts just the SQL thread with parallel
//! workers, watches `gtid_slave_pos` until the plan's end state is reached, and removes the
//! channel again so that the server is an ordinary primary. The relay logs end at the
//! plan's cut, so the applier stops there by itself: no `START SLAVE UNTIL`, whose forms
//! differ between servers.
//!
//! MariaDB only for now: MySQL's `CHANGE REPLICATION SOURCE TO` and `replica_*` settings
//! need a MySQL server to be tested against, which this project's machines do not have.
//! Reference: MariaDB's knowledge base on `CHANGE MASTER TO`, `START SLAVE`, parallel
//! replication (`slave_parallel_threads`, `slave_parallel_mode`) and `SHOW SLAVE STATUS`.

use crate::error::RestoreError;
use crate::relay::RelayLogPlace;
use binlogd_storage::GtidState;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use std::path::PathBuf;
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
pub struct TargetAddress {
    /// Where.
    pub endpoint: Endpoint,
    /// A user allowed to configure replication and read its status (`SUPER` or
    /// `REPLICATION SLAVE ADMIN`, `REPLICA MONITOR`).
    pub user: String,
    /// Its password.
    pub password: Option<String>,
}

/// What binlogd needs to know of the target before it stages anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `@@version`.
    pub version: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// Where its relay logs go.
    pub relay_logs: RelayLogPlace,
    /// The transactions the server holds: `gtid_binlog_pos` and `gtid_slave_pos` together.
    pub executed: GtidState,
}

/// Where the applier is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `@@gtid_slave_pos`: what it has applied.
    pub applied: GtidState,
    /// Whether the SQL thread runs.
    pub running: bool,
    /// `Last_SQL_Errno` (0: none).
    pub errno: u32,
    /// `Last_SQL_Error`.
    pub error: String,
    /// The master file and position of the last event applied.
    pub at: (String, u64),
}

/// A connection to the target server.
#[derive(Debug)]
pub struct Target {
    conn: Conn,
    /// The settings binlogd changed for the replay, to put back afterwards.
    saved_settings: Option<SavedSettings>,
}

/// The channel binlogd configures: not a real master; nothing connects to it.
const ARCHIVE_HOST: &str = "binlogd-archive";

/// The `server_id` the server replays under. An applier skips events that carry its own
/// server's id (they would be its own, come back around a ring), and a database restored
/// with its own configuration has the id of the primary that wrote the archive: the
/// replay would skip every transaction, or crash MariaDB 10.11's parallel applier (it then
/// skips the relay log's ROTATE and compares an empty master file name). So the replay
/// runs under an id from the top of the range, which servers are not given in practice.
const REPLAY_SERVER_ID: u32 = 4_294_967_000;

#[derive(Debug)]
struct SavedSettings {
    parallel_threads: u64,
    parallel_mode: String,
    server_id: u32,
}

impl Target {
    /// Connects.
    pub async fn connect(address: &TargetAddress) -> Result<Target, RestoreError> {
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
        let conn = Conn::new(Opts::from(opts))
            .await
            .map_err(server_error(format!(
                "connecting to {}@{}",
                address.user, address.endpoint
            )))?;
        Ok(Target {
            conn,
            saved_settings: None,
        })
    }

    /// Says goodbye (COM_QUIT), so the server does not log an aborted connection.
    pub async fn close(self) -> Result<(), RestoreError> {
        self.conn
            .disconnect()
            .await
            .map_err(server_error("disconnecting"))
    }

    /// Reads what a restore needs to know, and refuses a server binlogd cannot restore
    /// into as it is: not MariaDB, or with replication already configured (binlogd would
    /// overwrite it).
    pub async fn facts(&mut self) -> Result<ServerFacts, RestoreError> {
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
        let version = text(0);
        if !version.contains("MariaDB") {
            return Err(RestoreError::Unfit(format!(
                "runs {version}: restoring into MySQL is not supported yet (MariaDB only)"
            )));
        }
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
        let parse = |gtids: String| -> Result<GtidState, RestoreError> {
            gtids.parse().map_err(|e: String| RestoreError::Server {
                doing: "reading the server's GTID position".into(),
                message: e,
            })
        };
        let executed = parse(text(3))?.union(&parse(text(4))?);
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
            version,
            server_id: row.get::<Option<u32>, _>(1).flatten().unwrap_or(0),
            relay_logs,
            executed,
        })
    }

    /// Points the applier at the staged relay logs, from `first_relay_log` (its bare file
    /// name), and starts it with `workers` parallel workers (optimistic mode).
    pub async fn start(&mut self, first_relay_log: &str, workers: u32) -> Result<(), RestoreError> {
        let saved: Row = self
            .conn
            .query_first("SELECT @@slave_parallel_threads, @@slave_parallel_mode, @@server_id")
            .await
            .map_err(server_error("reading the applier's settings"))?
            .ok_or_else(|| RestoreError::Unfit("answered no settings".into()))?;
        let saved = SavedSettings {
            parallel_threads: saved.get::<Option<u64>, _>(0).flatten().unwrap_or(0),
            parallel_mode: saved
                .get::<Option<String>, _>(1)
                .flatten()
                .unwrap_or_else(|| "optimistic".into()),
            server_id: saved.get::<Option<u32>, _>(2).flatten().unwrap_or(0),
        };
        let replay_id = if saved.server_id == REPLAY_SERVER_ID {
            REPLAY_SERVER_ID + 1
        } else {
            REPLAY_SERVER_ID
        };
        self.saved_settings = Some(saved);
        let statements = [
            format!("SET GLOBAL server_id = {replay_id}"),
            format!("SET GLOBAL slave_parallel_threads = {workers}"),
            "SET GLOBAL slave_parallel_mode = 'optimistic'".to_owned(),
            format!(
                "CHANGE MASTER TO MASTER_HOST = '{ARCHIVE_HOST}', RELAY_LOG_FILE = '{}', \
                 RELAY_LOG_POS = 4, MASTER_USE_GTID = no",
                first_relay_log.replace('\'', "''")
            ),
            "START SLAVE SQL_THREAD".to_owned(),
        ];
        self.run_all(statements).await
    }

    /// Where the applier is now.
    pub async fn progress(&mut self) -> Result<Progress, RestoreError> {
        let applied: Option<String> = self
            .conn
            .query_first("SELECT @@gtid_slave_pos")
            .await
            .map_err(server_error("reading gtid_slave_pos"))?;
        let applied =
            applied
                .unwrap_or_default()
                .parse()
                .map_err(|e: String| RestoreError::Server {
                    doing: "reading gtid_slave_pos".into(),
                    message: e,
                })?;
        let status: Option<Row> = self
            .conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(server_error("reading SHOW SLAVE STATUS"))?;
        let Some(status) = status else {
            return Ok(Progress {
                applied,
                running: false,
                errno: 0,
                error: String::new(),
                at: (String::new(), 0),
            });
        };
        let text = |name: &str| -> String {
            status
                .get::<Option<String>, _>(name)
                .flatten()
                .unwrap_or_default()
        };
        Ok(Progress {
            applied,
            running: text("Slave_SQL_Running") == "Yes",
            errno: text("Last_SQL_Errno").parse().unwrap_or(0),
            error: text("Last_SQL_Error"),
            at: (
                text("Relay_Master_Log_File"),
                text("Exec_Master_Log_Pos").parse().unwrap_or(0),
            ),
        })
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
            let progress = self.progress().await?;
            on_progress(&progress);
            if progress.applied.includes_all(target) {
                return Ok(progress);
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
        let mut statements = vec!["STOP SLAVE".to_owned(), "RESET SLAVE ALL".to_owned()];
        if let Some(saved) = self.saved_settings.take() {
            statements.push(format!(
                "SET GLOBAL slave_parallel_threads = {}",
                saved.parallel_threads
            ));
            statements.push(format!(
                "SET GLOBAL slave_parallel_mode = '{}'",
                saved.parallel_mode.replace('\'', "''")
            ));
            statements.push(format!("SET GLOBAL server_id = {}", saved.server_id));
        }
        self.run_all(statements).await
    }
}

impl Target {
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
