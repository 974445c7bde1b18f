//! The flags of `binlogd restore`: where from (the archive), what to (a running server or
//! a restored datadir), where to start and stop, and how to replay.

use crate::flags::{ArchiveArgs, TargetArgs, parse_gtids};
use binlogd_storage::GtidState;
use std::path::PathBuf;

/// Arguments of `binlogd restore`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("server").required(true)))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub(crate) archive: ArchiveArgs,
    /// The MariaDB or MySQL server to restore into, running on this machine (binlogd writes
    /// relay logs into its relay-log folder): mysql://USER@HOST:PORT. The user needs SUPER
    /// (MariaDB: or REPLICATION SLAVE ADMIN; MySQL: or REPLICATION_SLAVE_ADMIN and
    /// SYSTEM_VARIABLES_ADMIN) to run the applier. Its password comes from
    /// BINLOGD_TARGET_PASSWORD or --target-password-file.
    #[arg(long, env = "BINLOGD_TARGET", value_name = "URL", group = "server")]
    pub(crate) target: Option<String>,
    /// File holding the target user's password.
    #[arg(long, value_name = "PATH", requires = "target")]
    pub(crate) target_password_file: Option<PathBuf>,
    /// Restore into this datadir (a restored base backup) with no server running on it:
    /// binlogd starts the server on it with networking off and grant tables skipped,
    /// replays, and shuts it down cleanly. What a restore Job does on the database's volume.
    #[arg(long, value_name = "DIR", group = "server")]
    pub(crate) datadir: Option<PathBuf>,
    /// The server binary for --datadir. By default mysqld for a MySQL datadir (one with
    /// mysql.ibd), else mariadbd, else mysqld, from PATH or /usr/sbin.
    #[arg(long, value_name = "PATH", requires = "datadir")]
    pub(crate) mysqld: Option<PathBuf>,
    /// The option file the server reads for --datadir (its usual ones by default): the
    /// database's own configuration, so the replay runs with its settings.
    #[arg(
        long,
        value_name = "PATH",
        requires = "datadir",
        conflicts_with = "no_defaults"
    )]
    pub(crate) defaults_file: Option<PathBuf>,
    /// Start the server for --datadir without reading any option file.
    #[arg(long, requires = "datadir")]
    pub(crate) no_defaults: bool,
    /// A further option for the server started for --datadir (repeat as needed), e.g.
    /// --mysqld-arg=--innodb-buffer-pool-size=4G.
    #[arg(
        long,
        value_name = "OPTION",
        requires = "datadir",
        allow_hyphen_values = true
    )]
    pub(crate) mysqld_arg: Vec<String>,
    /// How long the server started for --datadir may take to come up (InnoDB recovery of
    /// a large datadir takes a while).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        requires = "datadir"
    )]
    pub(crate) startup_timeout: u64,
    #[command(flatten)]
    pub(crate) stop: TargetArgs,
    /// Fail when the target is beyond what the archive holds, instead of restoring as far
    /// as it goes and saying so.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Start after these GTIDs (what the base backup holds). By default the server's own:
    /// MariaDB's gtid_binlog_pos and gtid_slave_pos, MySQL's gtid_executed.
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS", conflicts_with_all = ["from_backup", "from_archive_start"])]
    pub(crate) from_gtid: Option<GtidState>,
    /// Start where a base backup ends: a mariadb-backup or Percona XtraBackup folder, or a
    /// datadir restored from one (xtrabackup_binlog_info or xtrabackup_info names the GTIDs;
    /// mariadb_backup_* since MariaDB 11). A MariaDB server restored from a backup reports no
    /// GTID state of its own. A MySQL CLONE (its folder has #clone) keeps its GTID state in
    /// its mysql.gtid_executed table: the server started on it reports it, and the restore
    /// starts there.
    #[arg(long, value_name = "DIR", conflicts_with = "from_archive_start")]
    pub(crate) from_backup: Option<PathBuf>,
    /// Replay from the archive's first transaction, into an empty server.
    #[arg(long)]
    pub(crate) from_archive_start: bool,
    /// Parallel applier workers (MariaDB: slave_parallel_threads, optimistic mode; MySQL:
    /// replica_parallel_workers, commit order preserved). By default one per core.
    #[arg(long, value_name = "N", default_value_t = default_workers())]
    pub(crate) parallel_workers: u32,
    /// Give up when the applier makes no progress for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) stall_timeout: u64,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Replay through `mariadb-binlog FILES | mariadb` (MySQL: `mysqlbinlog | mysql`)
    /// instead of the server's applier: one thread, SQL parsed twice, slower; for servers
    /// where relay-log replay is not possible, and to compare. Leaves MariaDB's
    /// gtid_slave_pos at the end as the applier would.
    #[arg(long, conflicts_with = "via_replication")]
    pub(crate) via_mysqlbinlog: bool,
    /// Replay by replication instead of staged relay logs: binlogd serves the archive up
    /// to the target on 127.0.0.1 (a private `binlogd serve`, a one-off account) and the
    /// server replicates from it by GTID with its parallel applier (MariaDB:
    /// MASTER_USE_GTID=slave_pos and START SLAVE UNTIL master_gtid_pos; MySQL:
    /// SOURCE_AUTO_POSITION=1 and START REPLICA UNTIL SQL_AFTER_GTIDS). Nothing is staged:
    /// no room is needed beside the server for relay-log copies, and applying begins at
    /// once. Staged relay logs stay the default: the server applies local files faster than
    /// it replicates (see BENCHMARKS.md).
    #[arg(long)]
    pub(crate) via_replication: bool,
    /// With --via-mysqlbinlog: the binlog reader (into MariaDB: mariadb-binlog, else
    /// mysqlbinlog; into MySQL: mysqlbinlog).
    #[arg(long, value_name = "PATH", requires = "via_mysqlbinlog")]
    pub(crate) mysqlbinlog: Option<PathBuf>,
    /// With --via-mysqlbinlog: the client (into MariaDB: mariadb, else mysql; into MySQL:
    /// mysql).
    #[arg(long, value_name = "PATH", requires = "via_mysqlbinlog")]
    pub(crate) mysql_client: Option<PathBuf>,
}

fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(4, |n| n.get() as u32)
}
