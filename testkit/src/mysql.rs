//! Private MySQL 9.7 instances, as MySQL ships: fresh datadir, free loopback port, and the
//! server's own defaults (binary log on as `binlog.NNNNNN` in the datadir, `gtid_mode=ON`,
//! ROW format, CRC32 checksums, `caching_sha2_password`, TLS with generated certificates).
//!
//! MySQL 9.7 is Debian's `sid` package, whose libraries need a newer glibc than Debian 12's:
//! it runs with `chroot` from the root filesystem `scripts/install-test-deps` builds, and
//! its instance folders live inside that root. SQL goes through the root's own `mysql`
//! client over the instance's Unix socket as root (no password, `--initialize-insecure`);
//! the replication account ([`crate::REPLICATION_USER`]) is for the code under test, over
//! TCP on 127.0.0.1, with only `REPLICATION SLAVE, REPLICATION CLIENT`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::mariadb::{ServerFiles, run_checked, run_sql_client, tail};
use crate::process::{ChildGuard, free_port, wait_until};
use crate::reap::{CHROOT_INSTANCES, new_instance_dir_in, record_server_pid};
use crate::tools::{Tool, tool_cache};
use crate::{BinlogSource, REPLICATION_PASSWORD, REPLICATION_USER};

/// Settings of one instance: the server's defaults unless set.
#[derive(Debug, Clone, Default)]
pub struct MySqlConfig {
    /// `server_id` (the server's default, 1, unless set).
    pub server_id: Option<u32>,
    /// `max_binlog_size` in bytes (minimum 4096).
    pub max_binlog_size: Option<u64>,
    /// Further `--option=value` arguments for `mysqld`.
    pub extra_args: Vec<String>,
    /// Start on this datadir (inside MySQL's root filesystem; a clone, say) instead of a
    /// fresh one. The instance takes it over: it is removed with the instance.
    pub adopt_datadir: Option<PathBuf>,
}

impl MySqlConfig {
    /// Starts an instance with these settings.
    pub fn start(self) -> Result<MySql> {
        MySql::start(self)
    }
}

/// A running private MySQL 9.7 server. Dropping it kills the server and removes its files.
#[derive(Debug)]
pub struct MySql {
    files: ServerFiles,
    port: u16,
    // Kills the server when the handle is dropped.
    _server: ChildGuard,
    // Declared last: the directory is removed after the server is dead.
    dir: tempfile::TempDir,
}

/// The root filesystem `scripts/install-test-deps` builds for MySQL 9.7.
fn mysql_root() -> Result<PathBuf> {
    let root = tool_cache().join("mysql-9.7-root");
    ensure!(
        root.join("usr/sbin/mysqld").is_file(),
        "MySQL 9.7 is not installed at {}: run `scripts/install-test-deps` (it builds that \
         root filesystem with mmdebstrap from Debian's sid suite, about 30 s)",
        root.display()
    );
    Ok(root)
}

impl MySql {
    /// A folder inside MySQL's root filesystem, for files a test hands the server before it
    /// starts (certificates, say); [`MySql::path_for_server`] names them as it sees them.
    pub fn scratch_dir() -> Result<PathBuf> {
        // Not among the instance folders, which the reaper removes when they have no owner.
        let dir = mysql_root()?.join("tmp/binlogd-scratch");
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    /// The root filesystem MySQL 9.7 runs from: what a MySQL database image is to a pod.
    pub fn root_filesystem() -> Result<PathBuf> {
        mysql_root()
    }

    /// A path inside MySQL's root filesystem, as the server names it.
    pub fn path_for_server(path: &Path) -> Result<PathBuf> {
        Ok(ServerFiles::Chroot(mysql_root()?).server_path(path))
    }

    /// Starts an instance with the server's defaults.
    pub fn start_default() -> Result<MySql> {
        MySql::start(MySqlConfig::default())
    }

    /// Initialises a datadir, starts `mysqld` on a free port, waits until it answers, and
    /// creates the replication account.
    pub fn start(config: MySqlConfig) -> Result<MySql> {
        let root = mysql_root()?;
        let files = ServerFiles::Chroot(root.clone());
        let dir = new_instance_dir_in(&root.join(CHROOT_INSTANCES), "mysql-")?;
        let arg = |p: &Path| files.server_path(p).display().to_string();
        fs::create_dir_all(dir.path().join("tmp")).context("create the tmpdir")?;
        if let Some(datadir) = &config.adopt_datadir {
            fs::rename(datadir, dir.path().join("data"))
                .with_context(|| format!("move {} into the instance", datadir.display()))?;
        } else {
            run_checked(
                files
                    .command(Tool::Mysqld)?
                    .args(["--no-defaults", "--initialize-insecure", "--user=root"])
                    .arg(format!("--datadir={}", arg(&dir.path().join("data")))),
                "mysqld --initialize-insecure",
            )?;
        }
        let mut attempt = 0;
        let (server, port) = loop {
            attempt += 1;
            let port = free_port()?;
            let error_log = dir.path().join("error.log");
            let mut command = files.command(Tool::Mysqld)?;
            command
                .args(["--no-defaults", "--user=root"])
                .arg(format!("--datadir={}", arg(&dir.path().join("data"))))
                .arg(format!("--socket={}", arg(&dir.path().join("mysqld.sock"))))
                .arg(format!(
                    "--pid-file={}",
                    arg(&dir.path().join("mysqld.pid"))
                ))
                .arg(format!("--log-error={}", arg(&error_log)))
                .arg(format!("--tmpdir={}", arg(&dir.path().join("tmp"))))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                // The X protocol listens on 33060 by default: two instances would clash.
                .arg("--mysqlx=OFF")
                // The default folder for LOAD DATA and SELECT INTO OUTFILE does not exist
                // in the root filesystem.
                .arg("--secure-file-priv=");
            if let Some(id) = config.server_id {
                command.arg(format!("--server-id={id}"));
            }
            if let Some(size) = config.max_binlog_size {
                command.arg(format!("--max-binlog-size={size}"));
            }
            command.args(&config.extra_args);
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start mysqld")?;
            let mut guard = ChildGuard::new(child, format!("mysqld on port {port}"));
            record_server_pid(dir.path(), guard.pid())?;
            let socket = arg(&dir.path().join("mysqld.sock"));
            let ready = wait_until(&mut guard, Duration::from_secs(90), "mysqld", || {
                Ok(files
                    .command(Tool::MysqlAdmin)?
                    .args(["--no-defaults", "--user=root", "--connect-timeout=1"])
                    .arg(format!("--socket={socket}"))
                    .arg("ping")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()?
                    .success())
            });
            match ready {
                Ok(()) => break (guard, port),
                Err(_) if attempt < 5 && tail(&error_log).contains("Address already in use") => {
                    let _ = fs::remove_file(&error_log);
                }
                Err(err) => {
                    return Err(err.context(format!(
                        "start MySQL 9.7 on port {port}; error log:\n{}",
                        tail(&error_log)
                    )));
                }
            }
        };
        let db = MySql {
            files,
            port,
            _server: server,
            dir,
        };
        // Kept out of the binlog: a test's binlog starts with the test's own statements.
        db.sql(&format!(
            "SET sql_log_bin = 0;\n\
             CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{REPLICATION_PASSWORD}';\n\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPLICATION_USER}'@'127.0.0.1';"
        ))?;
        Ok(db)
    }

    /// The instance's own directory (inside the server's root filesystem).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The datadir, which also holds the binlog files.
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A path of this machine as the server names it.
    pub fn server_path(&self, path: &Path) -> PathBuf {
        self.files.server_path(path)
    }

    /// A command running `program` (a path inside MySQL's root filesystem) in that root,
    /// where it sees the server's paths as the server does: a tool run on the database's
    /// own machine.
    pub fn beside_server(&self, program: &Path) -> Command {
        match &self.files {
            ServerFiles::Host => Command::new(program),
            ServerFiles::Chroot(root) => {
                let mut command = Command::new("chroot");
                command.arg(root).arg(self.files.server_path(program));
                command
            }
        }
    }

    /// A command running one of the root's own tools (`mysqlbinlog`, `mysql`...).
    pub fn own_tool(&self, tool: Tool) -> Result<Command> {
        self.files.command(tool)
    }

    /// An account with every privilege that logs in over TCP from 127.0.0.1, created
    /// outside the binlog (it is the test's, not the database's).
    pub fn create_tcp_admin(&self, user: &str, password: &str) -> Result<()> {
        self.sql(&format!(
            "SET sql_log_bin = 0; \
             CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL ON *.* TO '{user}'@'127.0.0.1'"
        ))
        .map(drop)
    }

    /// A consistent physical copy of the server, made by the server itself (`CLONE LOCAL
    /// DATA DIRECTORY`, installing the clone plugin first), at `dir`: a new folder inside
    /// MySQL's root filesystem. A server started on it has the source's data and
    /// `@@gtid_executed` as of the clone.
    pub fn clone_to(&self, dir: &Path) -> Result<()> {
        let installed = self.query_value(
            "SELECT COUNT(*) FROM information_schema.plugins WHERE plugin_name = 'clone'",
        )? == "1";
        if !installed {
            self.sql("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")?;
        }
        self.sql(&format!(
            "CLONE LOCAL DATA DIRECTORY = '{}'",
            self.server_path(dir).display()
        ))
        .map(drop)
    }

    /// Runs SQL as root and returns the client's tab-separated output without headers.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut client = self.files.command(Tool::MysqlClient)?;
        client.arg("--no-defaults").arg(format!(
            "--socket={}",
            self.server_path(&self.dir.path().join("mysqld.sock"))
                .display()
        ));
        run_sql_client(client, sql, self.port)
    }

    /// Runs a query that returns one value.
    pub fn query_value(&self, sql: &str) -> Result<String> {
        Ok(self.sql(sql)?.trim_end_matches('\n').to_owned())
    }

    /// `SHOW REPLICA STATUS`, column by column (`Last_IO_Error`, ...); empty when this
    /// server is no replica.
    pub fn replica_status(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut client = self.files.command(Tool::MysqlClient)?;
        client.arg("--no-defaults").arg(format!(
            "--socket={}",
            self.server_path(&self.dir.path().join("mysqld.sock"))
                .display()
        ));
        crate::mariadb::replica_status_of(client, "SHOW REPLICA STATUS", self.port)
    }

    /// `@@gtid_executed`, on one line.
    pub fn gtid_executed(&self) -> Result<String> {
        Ok(self
            .query_value("SELECT @@GLOBAL.gtid_executed")?
            .replace('\n', ""))
    }

    /// Makes this instance a replica of `primary` (GTID auto-positioning, the server's
    /// public key fetched for `caching_sha2_password` over a plain connection) and starts
    /// both replication threads.
    pub fn replicate_from(&self, primary: &MySql) -> Result<()> {
        self.replicate_from_port(
            primary.port,
            REPLICATION_USER,
            REPLICATION_PASSWORD,
            "SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
        )
    }

    /// Makes this instance a replica of whatever listens on `127.0.0.1:port` (a server, a
    /// proxy, `binlogd serve`) as `user`, with `options` for `CHANGE REPLICATION SOURCE
    /// TO` (positioning, TLS), and starts it.
    pub fn replicate_from_port(
        &self,
        port: u16,
        user: &str,
        password: &str,
        options: &str,
    ) -> Result<()> {
        self.sql(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={port}, \
             SOURCE_USER='{user}', SOURCE_PASSWORD='{password}', {options}; START REPLICA;"
        ))
        .map(drop)
    }

    /// Waits until this server has applied every GTID of `gtid_set`
    /// (`WAIT_FOR_EXECUTED_GTID_SET`).
    pub fn wait_for_gtids(&self, gtid_set: &str, timeout: Duration) -> Result<()> {
        let answer = self.query_value(&format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('{gtid_set}', {})",
            timeout.as_secs_f64()
        ))?;
        ensure!(
            answer == "0",
            "replica did not reach {gtid_set} within {timeout:?} (answer {answer})"
        );
        Ok(())
    }

    /// Runs `sysbench oltp_write_only` against database `sbtest` (this machine's sysbench,
    /// over the server's socket): `prepare` if the tables do not exist yet, then `run`.
    pub fn sysbench(&self, load: &crate::SysbenchLoad) -> Result<()> {
        self.sql("CREATE DATABASE IF NOT EXISTS sbtest")?;
        let has_tables = self.query_value(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'sbtest'",
        )? != "0";
        let socket = self.dir.path().join("mysqld.sock");
        if !has_tables {
            crate::mariadb::run_sysbench(&socket, load, "prepare")?;
        }
        crate::mariadb::run_sysbench(&socket, load, "run")
    }

    /// `FLUSH BINARY LOGS`.
    pub fn rotate(&self) -> Result<()> {
        self.sql("FLUSH BINARY LOGS").map(drop)
    }

    /// Names of the server's binlog files, oldest first.
    pub fn binlog_names(&self) -> Result<Vec<String>> {
        Ok(self
            .query_rows("SHOW BINARY LOGS")?
            .into_iter()
            .map(|mut row| row.swap_remove(0))
            .collect())
    }

    /// Runs `transactions` small write transactions, as [`crate::MariaDb::write_workload`].
    pub fn write_workload(&self, transactions: usize) -> Result<()> {
        self.sql(&crate::mariadb::workload_sql(
            transactions,
            self.query_value(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = 'binlogd_test' AND table_name = 'workload'",
            )? == "1",
        ))
        .map(drop)
    }
}

impl BinlogSource for MySql {
    fn port(&self) -> u16 {
        self.port
    }

    fn binlog_files(&self) -> Result<Vec<PathBuf>> {
        let data = self.datadir();
        Ok(self
            .binlog_names()?
            .into_iter()
            .map(|name| data.join(name))
            .collect())
    }

    fn sql(&self, sql: &str) -> Result<String> {
        MySql::sql(self, sql)
    }

    fn dir(&self) -> &Path {
        MySql::dir(self)
    }

    fn server_path(&self, path: &Path) -> PathBuf {
        MySql::server_path(self, path)
    }

    fn write_workload(&self, transactions: usize) -> Result<()> {
        MySql::write_workload(self, transactions)
    }

    fn error_log_tail(&self) -> String {
        tail(&self.dir.path().join("error.log"))
    }

    /// `@@gtid_executed` spelled out one GTID at a time: `uuid:n`, or `uuid:tag:n` for a
    /// tagged one (`uuid:1-5:tag:1-2` names both kinds).
    fn binlog_gtids(&self) -> Result<Vec<String>> {
        let executed = self.gtid_executed()?;
        let mut gtids = Vec::new();
        for set in executed.split(',').filter(|s| !s.trim().is_empty()) {
            let mut parts = set.trim().split(':');
            let uuid = parts.next().context("uuid")?;
            let mut tag: Option<&str> = None;
            for part in parts {
                if !part.starts_with(|c: char| c.is_ascii_digit()) {
                    tag = Some(part);
                    continue;
                }
                let (first, last) = part.split_once('-').unwrap_or((part, part));
                let range = || format!("gtid_executed {executed:?}");
                let first: u64 = first.parse().with_context(range)?;
                let last: u64 = last.parse().with_context(range)?;
                gtids.extend((first..=last).map(|n| match tag {
                    Some(tag) => format!("{uuid}:{tag}:{n}"),
                    None => format!("{uuid}:{n}"),
                }));
            }
        }
        Ok(gtids)
    }
}
