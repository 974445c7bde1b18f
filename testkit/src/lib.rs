//! Test harness for binlogd: real servers as private, disposable instances.
//!
//! Every integration test in the workspace that needs a MySQL-protocol server or an object
//! store gets it from here, never from a mock:
//!
//! - [`MariaDb`]: MariaDB 10.11 or 11.8 ([`MariaDbVersion`]) started in a fresh temporary
//!   datadir on a free loopback port, with the binlog on and the server's own defaults for
//!   everything else; every setting that changes binlog bytes is on [`MariaDbConfig`], for
//!   the tests that name the setting they change. Helpers run SQL, rotate logs, drive write workloads (our own SQL and
//!   `sysbench oltp_write_only`), take and restore `mariadb-backup` base backups, wire two
//!   instances as primary and replica, and list the server's own binlog files.
//! - [`MySql`]: MySQL 9.7 from a chroot, as it ships, in a fresh datadir on a free loopback
//!   port. [`BinlogSource`] is what tests need of either kind of server.
//! - [`S3Server`]: an S3-compatible store on loopback, either `moto_server` or Garage
//!   ([`S3Kind`]), with credentials ready to use.
//! - [`TcpProxy`]: a loopback proxy that cuts connections on demand, for failure tests.
//! - [`mysql_peer`]: the server's side of a MySQL 8 conversation, scripted by a test, for
//!   what no server we can run produces (`caching_sha2_password`, MySQL binlog dumps).
//! - [`TestPki`]: a throwaway CA with server and client certificates, for TLS tests.
//!
//! # Lifetimes and cleanup
//! Each instance owns its temporary directory and its process. Dropping the handle (also
//! during a panic's unwinding) kills the process, waits for it and removes the directory.
//! A test runner killed outright cannot run destructors, so every instance directory records
//! the pid of the test process that owns it; the next instance started on the machine reaps
//! the servers of owners that no longer exist (see [`reap`]).
//!
//! # What it does not do
//! It does not install anything: a missing tool is an error naming the command that installs
//! it (`scripts/install-test-deps`). Tests never skip silently.
//!
//! Errors are `anyhow` errors: this crate is only ever used by tests, which want the context
//! chain printed, not a type to match on.

mod http_faults;
mod mariadb;
mod mysql;
pub mod mysql_peer;
mod pki;
mod process;
mod prometheus;
mod proxy;
pub mod reap;
mod s3;
mod tools;

pub use http_faults::{Faults, HttpFaultProxy, RequestCounts};
pub use mariadb::{
    Backup, BinlogChecksum, BinlogFormat, MariaDb, MariaDbConfig, MariaDbVersion, RowImage,
    SysbenchLoad,
};
pub use mysql::{MySql, MySqlConfig};
pub use pki::TestPki;
pub use process::{free_port, pids_mentioning};
pub use prometheus::{Alert, Prometheus};
pub use proxy::TcpProxy;
pub use s3::{S3Kind, S3Server};
pub use tools::{Tool, find_tool};

/// Name and password of the replication account every [`MariaDb`] instance creates.
///
/// The account has only the privileges a binlog client needs (`REPLICATION SLAVE`,
/// `REPLICATION CLIENT`, which MariaDB 10.5+ calls `BINLOG MONITOR`), so tests notice when
/// binlogd starts to depend on more.
pub const REPLICATION_USER: &str = "binlogd_repl";
/// Password of [`REPLICATION_USER`].
pub const REPLICATION_PASSWORD: &str = "repl-Secret-1";

/// What tests need of a server binlogd follows, whether MariaDB ([`MariaDb`]) or MySQL
/// ([`MySql`]).
pub trait BinlogSource {
    /// The TCP port on 127.0.0.1.
    fn port(&self) -> u16;

    /// Connection URL for the replication account, as binlogd's `--source` takes it.
    fn replication_url(&self) -> String {
        format!("mysql://{REPLICATION_USER}@127.0.0.1:{}", self.port())
    }

    /// Password of the replication account.
    fn replication_password(&self) -> &'static str {
        REPLICATION_PASSWORD
    }

    /// Paths of the server's binlog files, oldest first.
    fn binlog_files(&self) -> anyhow::Result<Vec<std::path::PathBuf>>;

    /// Runs SQL as root and returns the client's tab-separated output without headers.
    fn sql(&self, sql: &str) -> anyhow::Result<String>;

    /// Runs a query as root and returns its rows, each a list of columns.
    fn query_rows(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        Ok(self
            .sql(sql)?
            .lines()
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect())
    }

    /// The instance's own directory (inside the server's root, for a chrooted server).
    fn dir(&self) -> &std::path::Path;

    /// A path of this machine as the server names it in SQL.
    fn server_path(&self, path: &std::path::Path) -> std::path::PathBuf;

    /// Runs `transactions` small write transactions in `binlogd_test.workload`.
    fn write_workload(&self, transactions: usize) -> anyhow::Result<()>;

    /// The last lines of the server's error log, for failure messages.
    fn error_log_tail(&self) -> String;

    /// Every GTID in the server's binlogs, as binlogd's index writes them.
    fn binlog_gtids(&self) -> anyhow::Result<Vec<String>>;
}

/// A server shared between threads (a test's load and its checks) is still one.
impl<T: BinlogSource + ?Sized> BinlogSource for std::sync::Arc<T> {
    fn port(&self) -> u16 {
        (**self).port()
    }

    fn binlog_files(&self) -> anyhow::Result<Vec<std::path::PathBuf>> {
        (**self).binlog_files()
    }

    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        (**self).sql(sql)
    }

    fn dir(&self) -> &std::path::Path {
        (**self).dir()
    }

    fn server_path(&self, path: &std::path::Path) -> std::path::PathBuf {
        (**self).server_path(path)
    }

    fn write_workload(&self, transactions: usize) -> anyhow::Result<()> {
        (**self).write_workload(transactions)
    }

    fn error_log_tail(&self) -> String {
        (**self).error_log_tail()
    }

    fn binlog_gtids(&self) -> anyhow::Result<Vec<String>> {
        (**self).binlog_gtids()
    }
}

/// The inputs kept in `fuzz/corpus/<target>` (what cargo-fuzz found interesting, minimised),
/// in name order, for tests that replay them on stable. Panics when there are none: the
/// corpus is committed, and `cargo xtask fuzz-seeds` makes its seeds.
pub fn fuzz_corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} is empty: run `cargo xtask fuzz-seeds`",
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a corpus file");
            (path, bytes)
        })
        .collect()
}
