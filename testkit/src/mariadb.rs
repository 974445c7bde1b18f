//! Private MariaDB instances: fresh datadir, free loopback port, the binlog on, and every
//! other setting the server's own default unless a test sets it.
//!
//! The server runs with `--no-defaults`, so nothing on the machine (a `my.cnf`, a running
//! service) changes what a test sees. Two versions run: 10.11, Debian 12's own
//! `mariadbd`, and 11.8, Debian 13's, `chroot`ed into the root filesystem
//! `scripts/install-test-deps` builds (its instance folders then live inside that root, and
//! the server is given paths as it sees them). SQL goes through the machine's `mariadb`
//! client over the instance's Unix socket as root; the replication account
//! ([`crate::REPLICATION_USER`]) is for the code under test, over TCP on 127.0.0.1.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::process::{ChildGuard, free_port, wait_until};
use crate::reap::{new_instance_dir_in, record_server_pid};
use crate::tools::{Tool, find_tool};
use crate::{REPLICATION_PASSWORD, REPLICATION_USER};

/// Which MariaDB server an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MariaDbVersion {
    /// MariaDB 10.11 LTS, Debian 12's own `mariadb-server`, run from the machine.
    V10_11,
    /// MariaDB 11.8 LTS, Debian 13's `mariadb-server`, run with `chroot` from the root
    /// filesystem `scripts/install-test-deps` builds (its libraries need a newer glibc).
    V11_8,
}

impl MariaDbVersion {
    /// The version tests use when they do not choose: `BINLOGD_TEST_MARIADB=11.8` runs the
    /// suite on 11.8, anything else (or nothing) on 10.11.
    pub fn from_env() -> MariaDbVersion {
        match std::env::var("BINLOGD_TEST_MARIADB").as_deref() {
            Ok("11.8") => MariaDbVersion::V11_8,
            _ => MariaDbVersion::V10_11,
        }
    }

    /// The series, as people name it (`10.11`, `11.8`).
    pub fn series(self) -> &'static str {
        match self {
            MariaDbVersion::V10_11 => "10.11",
            MariaDbVersion::V11_8 => "11.8",
        }
    }

    fn server(self) -> Result<ServerFiles> {
        match self {
            MariaDbVersion::V10_11 => Ok(ServerFiles::Host),
            MariaDbVersion::V11_8 => Ok(ServerFiles::Chroot(mariadb_root(self)?)),
        }
    }
}

impl std::fmt::Display for MariaDbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MariaDB {}", self.series())
    }
}

/// `binlog_checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinlogChecksum {
    /// No checksum after each event.
    None,
    /// A CRC32 after each event (the server default).
    Crc32,
}

/// `binlog_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinlogFormat {
    /// Row events only.
    Row,
    /// Statements as QUERY events.
    Statement,
    /// Statements, switching to rows when a statement is unsafe (the server default).
    Mixed,
}

/// `binlog_row_image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowImage {
    /// Every column in before and after images (the server default).
    Full,
    /// Only the primary key in the before image and changed columns in the after image.
    Minimal,
    /// Full, except unchanged blob columns.
    Noblob,
}

/// Settings of one instance. Every setting is the server's own default unless the test
/// sets it: `None` passes nothing to `mariadbd`. The binlog is on (`--log-bin`), as it
/// must be for a binlog server to have anything to read; a test that changes anything else
/// says which setting and why where it does.
#[derive(Debug, Clone)]
pub struct MariaDbConfig {
    /// Which server runs.
    pub version: MariaDbVersion,
    /// `server_id` (the server's default, 1, unless set).
    pub server_id: u32,
    /// `gtid_domain_id`.
    pub gtid_domain_id: Option<u32>,
    /// `binlog_checksum`.
    pub binlog_checksum: Option<BinlogChecksum>,
    /// `binlog_format`.
    pub binlog_format: Option<BinlogFormat>,
    /// `binlog_row_image`.
    pub binlog_row_image: Option<RowImage>,
    /// `max_binlog_size` in bytes (the server rounds to 4 KiB; minimum 4096).
    pub max_binlog_size: Option<u64>,
    /// `log_bin_compress`: QUERY and ROWS events written compressed.
    pub log_bin_compress: Option<bool>,
    /// `binlog_annotate_row_events`: an ANNOTATE_ROWS event before row events.
    pub binlog_annotate_row_events: Option<bool>,
    /// `gtid_strict_mode`.
    pub gtid_strict_mode: Option<bool>,
    /// `log_slave_updates`, needed on a replica that may be promoted.
    pub log_slave_updates: Option<bool>,
    /// `encrypt_binlog`, with `file_key_management` and a key file the harness writes
    /// into the instance (what MariaDB's documentation sets up).
    pub encrypt_binlog: Option<bool>,
    /// Base name of the binlog files (`<name>.000001`).
    pub binlog_basename: String,
    /// Further `--option=value` arguments for `mariadbd`.
    pub extra_args: Vec<String>,
    /// A prepared backup to copy into the datadir instead of bootstrapping a new one.
    pub restore_from: Option<PathBuf>,
    /// Start with the binary log off (a restore target that only applies relay logs).
    pub skip_log_bin: bool,
    /// A datadir made elsewhere (e.g. by [`Backup::copy_back_to`] and then restored into)
    /// to move into the instance and start on, instead of bootstrapping a new one.
    pub adopt_datadir: Option<PathBuf>,
}

impl Default for MariaDbConfig {
    fn default() -> Self {
        MariaDbConfig {
            version: MariaDbVersion::from_env(),
            server_id: 1,
            gtid_domain_id: None,
            binlog_checksum: None,
            binlog_format: None,
            binlog_row_image: None,
            max_binlog_size: None,
            log_bin_compress: None,
            binlog_annotate_row_events: None,
            gtid_strict_mode: None,
            log_slave_updates: None,
            encrypt_binlog: None,
            binlog_basename: "mariadb-bin".to_owned(),
            extra_args: Vec::new(),
            restore_from: None,
            skip_log_bin: false,
            adopt_datadir: None,
        }
    }
}

impl MariaDbConfig {
    /// Starts an instance with these settings.
    pub fn start(self) -> Result<MariaDb> {
        MariaDb::start(self)
    }

    /// The server's arguments; paths are as the server sees them (inside its root).
    fn server_args(&self, layout: &Layout, port: u16) -> Vec<String> {
        let path = |p: &Path| layout.arg(p);
        let mut args = vec![
            "--no-defaults".to_owned(),
            "--user=root".to_owned(),
            format!("--datadir={}", path(&layout.data)),
            format!("--socket={}", path(&layout.socket)),
            format!("--pid-file={}", path(&layout.root.join("mariadbd.pid"))),
            format!("--log-error={}", path(&layout.error_log)),
            format!("--tmpdir={}", path(&layout.tmp)),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            // The machine's resolver is no business of a test's: without this every TCP
            // login waits on a reverse lookup of 127.0.0.1. Changes nothing in a binlog.
            "--skip-name-resolve".to_owned(),
            format!("--server-id={}", self.server_id),
            // Relay logs live in the instance folder too, for replicas and restore targets.
            format!("--relay-log={}", path(&layout.root.join("relay/relay-bin"))),
        ];
        let mut settings = vec![
            ("gtid-domain-id", self.gtid_domain_id.map(|d| d.to_string())),
            ("gtid-strict-mode", self.gtid_strict_mode.map(on_off)),
        ];
        if self.skip_log_bin {
            args.push("--skip-log-bin".to_owned());
        } else {
            args.push(format!(
                "--log-bin={}",
                path(&layout.binlog.join(&self.binlog_basename))
            ));
            settings.extend([
                (
                    "binlog-checksum",
                    self.binlog_checksum.map(|c| match c {
                        BinlogChecksum::None => "NONE".to_owned(),
                        BinlogChecksum::Crc32 => "CRC32".to_owned(),
                    }),
                ),
                (
                    "binlog-format",
                    self.binlog_format.map(|f| match f {
                        BinlogFormat::Row => "ROW".to_owned(),
                        BinlogFormat::Statement => "STATEMENT".to_owned(),
                        BinlogFormat::Mixed => "MIXED".to_owned(),
                    }),
                ),
                (
                    "binlog-row-image",
                    self.binlog_row_image.map(|i| match i {
                        RowImage::Full => "FULL".to_owned(),
                        RowImage::Minimal => "MINIMAL".to_owned(),
                        RowImage::Noblob => "NOBLOB".to_owned(),
                    }),
                ),
                ("log-bin-compress", self.log_bin_compress.map(on_off)),
                (
                    "binlog-annotate-row-events",
                    self.binlog_annotate_row_events.map(on_off),
                ),
                (
                    "max-binlog-size",
                    self.max_binlog_size.map(|s| s.to_string()),
                ),
                ("log-slave-updates", self.log_slave_updates.map(on_off)),
            ]);
            if self.encrypt_binlog.is_some() {
                args.push("--plugin-load-add=file_key_management".to_owned());
                args.push(format!(
                    "--file-key-management-filename={}",
                    path(&layout.key_file())
                ));
                settings.push(("encrypt-binlog", self.encrypt_binlog.map(on_off)));
            }
        }
        for (name, value) in settings {
            if let Some(value) = value {
                args.push(format!("--{name}={value}"));
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

fn on_off(value: bool) -> String {
    if value { "ON" } else { "OFF" }.to_owned()
}

/// Where a server's programs and files are: on this machine, or in a root filesystem the
/// server is `chroot`ed into (whose paths it sees without the root's prefix).
#[derive(Debug, Clone)]
pub(crate) enum ServerFiles {
    Host,
    Chroot(PathBuf),
}

impl ServerFiles {
    /// `host_path` as the server sees it.
    pub(crate) fn server_path(&self, host_path: &Path) -> PathBuf {
        match self {
            ServerFiles::Host => host_path.to_owned(),
            ServerFiles::Chroot(root) => match host_path.strip_prefix(root) {
                Ok(inside) => Path::new("/").join(inside),
                // Checked where such paths come in (`new_instance_dir_in`, `backup`).
                Err(_) => host_path.to_owned(),
            },
        }
    }

    /// A command that runs one of the server's own programs (`mariadbd`,
    /// `mariadb-install-db`, `mariadb-backup`: they must match the server's version).
    pub(crate) fn command(&self, tool: Tool) -> Result<Command> {
        Ok(match self {
            ServerFiles::Host => Command::new(find_tool(tool)?),
            // mariadb-backup needs /proc (it crashes without it): a private one, in a
            // mount and pid namespace of its own, so nothing stays mounted in the root.
            ServerFiles::Chroot(root) if tool == Tool::MariadbBackup => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "--fork", "--pid"])
                    .arg(format!("--mount-proc={}", root.join("proc").display()))
                    .arg("chroot")
                    .arg(root)
                    .arg(tool.program());
                cmd
            }
            ServerFiles::Chroot(root) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(root).arg(tool.program());
                cmd
            }
        })
    }

    /// Where this server's instance directories go (inside its root, for a chroot).
    fn instances_root(&self) -> PathBuf {
        match self {
            ServerFiles::Host => crate::reap::instances_root(),
            ServerFiles::Chroot(root) => root.join(crate::reap::CHROOT_INSTANCES),
        }
    }

    fn check_inside(&self, host_path: &Path, what: &str) -> Result<()> {
        if let ServerFiles::Chroot(root) = self {
            ensure!(
                host_path.starts_with(root),
                "{what} {} is outside the server's root {}: a chrooted server cannot reach it",
                host_path.display(),
                root.display()
            );
        }
        Ok(())
    }
}

/// The root filesystem `scripts/install-test-deps` builds for `version`.
fn mariadb_root(version: MariaDbVersion) -> Result<PathBuf> {
    let root = crate::tools::tool_cache().join(format!("mariadb-{}-root", version.series()));
    ensure!(
        root.join("usr/sbin/mariadbd").is_file(),
        "{version} is not installed at {}: run `scripts/install-test-deps` (it builds that \
         root filesystem with mmdebstrap from Debian's trixie suite, about 30 s)",
        root.display()
    );
    Ok(root)
}

/// Paths inside one instance directory, as this machine sees them.
#[derive(Debug, Clone)]
struct Layout {
    files: ServerFiles,
    root: PathBuf,
    data: PathBuf,
    binlog: PathBuf,
    tmp: PathBuf,
    socket: PathBuf,
    error_log: PathBuf,
}

impl Layout {
    fn new(files: ServerFiles, root: &Path) -> Result<Self> {
        let layout = Layout {
            files,
            root: root.to_owned(),
            data: root.join("data"),
            binlog: root.join("binlog"),
            tmp: root.join("tmp"),
            socket: root.join("mariadbd.sock"),
            error_log: root.join("error.log"),
        };
        for dir in [&layout.binlog, &layout.tmp, &root.join("relay")] {
            fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        Ok(layout)
    }

    /// The `file_key_management` key file.
    fn key_file(&self) -> PathBuf {
        self.root.join("binlog-keys.txt")
    }

    /// `host_path` as the server sees it, for its arguments.
    fn arg(&self, host_path: &Path) -> String {
        self.files.server_path(host_path).display().to_string()
    }
}

/// A running private MariaDB server. Dropping it kills the server and removes its files.
#[derive(Debug)]
pub struct MariaDb {
    config: MariaDbConfig,
    layout: Layout,
    port: u16,
    server: ChildGuard,
    // Declared last: the directory is removed after the server is dead.
    dir: tempfile::TempDir,
}

impl MariaDb {
    /// Starts an instance with default settings.
    pub fn start_default() -> Result<MariaDb> {
        MariaDb::start(MariaDbConfig::default())
    }

    /// Starts an instance: bootstraps (or restores) a datadir, starts `mariadbd` on a free
    /// port, waits until it answers, and creates the replication account.
    pub fn start(config: MariaDbConfig) -> Result<MariaDb> {
        let files = config.version.server()?;
        let dir = new_instance_dir_in(&files.instances_root(), "mariadb-")?;
        let layout = Layout::new(files, dir.path())?;
        match (&config.restore_from, &config.adopt_datadir) {
            (Some(backup), _) => copy_back(&layout.files, backup, &layout.data)?,
            (None, Some(datadir)) => {
                fs::rename(datadir, &layout.data)
                    .with_context(|| format!("move {} into the instance", datadir.display()))?;
            }
            (None, None) => bootstrap(&layout)?,
        }
        if config.encrypt_binlog.is_some() {
            // Key 1, the one file_key_management encrypts binlogs with by default.
            fs::write(
                layout.key_file(),
                "1;a7addd9adea9978fda19f21e6be987880e68ac92632ca052e5bb42b1a506939a\n",
            )
            .context("write the binlog key file")?;
        }
        // Another test may take the port between probe and bind: retry a few times.
        let mut attempt = 0;
        let (server, port) = loop {
            attempt += 1;
            let port = free_port()?;
            match spawn_server(&config, &layout, port) {
                Ok(server) => break (server, port),
                // Lost the race for the port: start over with a fresh error log.
                Err(_) if attempt < 5 && error_log_mentions(&layout, "Address already in use") => {
                    let _ = fs::remove_file(&layout.error_log);
                }
                Err(err) => return Err(err),
            }
        };
        let db = MariaDb {
            config,
            layout,
            port,
            server,
            dir,
        };
        if db.config.restore_from.is_none() && db.config.adopt_datadir.is_none() {
            db.create_replication_user()?;
        }
        Ok(db)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's Unix socket (root access without a password).
    pub fn socket(&self) -> &Path {
        &self.layout.socket
    }

    /// The instance's own directory; every file of the instance lies below it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The datadir.
    pub fn datadir(&self) -> &Path {
        &self.layout.data
    }

    /// A path of this machine as the server names it (in SQL such as `LOAD DATA INFILE`):
    /// the same path for a server of the machine, the path inside its root for a
    /// chrooted one.
    pub fn server_path(&self, path: &Path) -> PathBuf {
        self.layout.files.server_path(path)
    }

    /// A command running the server's own copy of `tool` (of its version: 10.11's
    /// `mariadb-binlog` refuses to read from an 11.8 server). Paths given to it must be as
    /// the server sees them ([`MariaDb::server_path`]).
    pub fn own_tool(&self, tool: Tool) -> Result<Command> {
        self.layout.files.command(tool)
    }

    /// A command running `program` (a path on this machine, inside the server's root for
    /// a chrooted server) where the server runs, so that it sees the server's paths as the
    /// server does: what a tool run on the database's own machine sees.
    pub fn beside_server(&self, program: &Path) -> Command {
        match &self.layout.files {
            ServerFiles::Host => Command::new(program),
            ServerFiles::Chroot(root) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(root).arg(self.layout.files.server_path(program));
                cmd
            }
        }
    }

    /// The folder holding the binlog files and their index.
    pub fn binlog_dir(&self) -> &Path {
        &self.layout.binlog
    }

    /// The folder holding relay logs (`relay-bin.NNNNNN`).
    pub fn relay_log_dir(&self) -> PathBuf {
        self.layout.root.join("relay")
    }

    /// The settings this instance was started with.
    pub fn config(&self) -> &MariaDbConfig {
        &self.config
    }

    /// Connection URL for the replication account, as binlogd's `--source` takes it.
    /// The password is not in it: it comes from [`MariaDb::replication_password`].
    pub fn replication_url(&self) -> String {
        format!("mysql://{REPLICATION_USER}@127.0.0.1:{}", self.port)
    }

    /// Password of the replication account.
    pub fn replication_password(&self) -> &'static str {
        REPLICATION_PASSWORD
    }

    /// Runs SQL as root and returns the client's tab-separated output without headers.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut client = Command::new(find_tool(Tool::MariadbClient)?);
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.layout.socket.display()));
        run_sql_client(client, sql, self.port)
    }

    /// `SHOW SLAVE STATUS`, column by column (`Last_IO_Error`, ...); empty when this
    /// server is no replica.
    pub fn replica_status(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut client = Command::new(find_tool(Tool::MariadbClient)?);
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.layout.socket.display()));
        replica_status_of(client, "SHOW SLAVE STATUS", self.port)
    }

    /// Runs a query and returns its rows, each a list of columns.
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        crate::BinlogSource::query_rows(self, sql)
    }

    /// Runs a query that returns one value.
    pub fn query_value(&self, sql: &str) -> Result<String> {
        let out = self.sql(sql)?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Creates (if missing) a user with every privilege that logs in over TCP from
    /// 127.0.0.1 with `password`: what a restore drives the server with.
    pub fn create_tcp_admin(&self, user: &str, password: &str) -> Result<()> {
        self.sql(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL ON *.* TO '{user}'@'127.0.0.1'"
        ))
        .map(drop)
    }

    /// `@@gtid_binlog_pos`: the last GTID of each domain in the binlog.
    pub fn gtid_binlog_pos(&self) -> Result<String> {
        self.query_value("SELECT @@GLOBAL.gtid_binlog_pos")
    }

    /// `FLUSH BINARY LOGS`: closes the current binlog file and opens the next.
    pub fn rotate(&self) -> Result<()> {
        self.sql("FLUSH BINARY LOGS").map(drop)
    }

    /// Names of the server's binlog files, oldest first (`SHOW BINARY LOGS`).
    pub fn binlog_names(&self) -> Result<Vec<String>> {
        Ok(self
            .query_rows("SHOW BINARY LOGS")?
            .into_iter()
            .map(|mut row| row.swap_remove(0))
            .collect())
    }

    /// Paths of the server's binlog files, oldest first.
    pub fn binlog_files(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .binlog_names()?
            .into_iter()
            .map(|name| self.layout.binlog.join(name))
            .collect())
    }

    /// Runs `transactions` small write transactions (insert, update, delete in one table),
    /// each with one GTID. The first call also creates `binlogd_test.workload` (two DDL
    /// statements, two more GTIDs).
    pub fn write_workload(&self, transactions: usize) -> Result<()> {
        let exists = self.query_value(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = 'binlogd_test' AND table_name = 'workload'",
        )? == "1";
        self.sql(&workload_sql(transactions, exists)).map(drop)
    }

    /// Runs `sysbench oltp_write_only` against database `sbtest`: `prepare` (if the tables
    /// do not exist yet) then `run`.
    pub fn sysbench(&self, load: &SysbenchLoad) -> Result<()> {
        self.sql("CREATE DATABASE IF NOT EXISTS sbtest")?;
        let has_tables = self.query_value(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'sbtest'",
        )? != "0";
        if !has_tables {
            self.run_sysbench(load, "prepare")?;
        }
        self.run_sysbench(load, "run")
    }

    fn run_sysbench(&self, load: &SysbenchLoad, command: &str) -> Result<()> {
        run_sysbench(&self.layout.socket, load, command)
    }

    /// Takes a `mariadb-backup` base backup into `target` (which must not exist yet or be
    /// empty) and prepares it, so it can be restored with [`MariaDbConfig::restore_from`].
    pub fn backup(&self, target: &Path) -> Result<Backup> {
        let files = &self.layout.files;
        files.check_inside(target, "the backup folder")?;
        run_checked(
            files
                .command(Tool::MariadbBackup)?
                .arg("--backup")
                .arg(format!("--target-dir={}", self.layout.arg(target)))
                .arg(format!("--socket={}", self.layout.arg(&self.layout.socket)))
                .arg("--user=root"),
            "mariadb-backup --backup",
        )?;
        run_checked(
            files
                .command(Tool::MariadbBackup)?
                .arg("--prepare")
                .arg(format!("--target-dir={}", self.layout.arg(target))),
            "mariadb-backup --prepare",
        )?;
        Backup::read(target, self.config.version)
    }

    /// Makes this instance a replica of `primary` (GTID positioning from `gtid_slave_pos`)
    /// and starts both replication threads.
    pub fn replicate_from(&self, primary: &MariaDb) -> Result<()> {
        self.replicate_from_port(primary.port, REPLICATION_USER, REPLICATION_PASSWORD, "")
    }

    /// Makes this instance a replica of whatever listens on `127.0.0.1:port` (a server, a
    /// proxy, `binlogd serve`) as `user`, GTID positioning from `gtid_slave_pos`, with
    /// `extra` options for `CHANGE MASTER TO` (`MASTER_SSL=1, ...`), and starts it.
    pub fn replicate_from_port(
        &self,
        port: u16,
        user: &str,
        password: &str,
        extra: &str,
    ) -> Result<()> {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        self.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='{user}', \
             MASTER_PASSWORD='{password}', MASTER_USE_GTID=slave_pos{extra}; START SLAVE;"
        ))
        .map(drop)
    }

    /// Waits until this server has applied every GTID in `gtid_pos` (`MASTER_GTID_WAIT`).
    pub fn wait_for_gtid(&self, gtid_pos: &str, timeout: Duration) -> Result<()> {
        let answer = self.query_value(&format!(
            "SELECT MASTER_GTID_WAIT('{gtid_pos}', {})",
            timeout.as_secs_f64()
        ))?;
        ensure!(
            answer == "0",
            "replica did not reach {gtid_pos} within {timeout:?} (answer {answer})"
        );
        Ok(())
    }

    /// Shuts the server down cleanly (`mariadb-admin shutdown`) and waits for it to exit, so
    /// its binlog files are complete and closed. The files stay until the handle is dropped.
    pub fn shutdown(&mut self) -> Result<()> {
        let admin = find_tool(Tool::MariadbAdmin)?;
        run_checked(
            Command::new(admin)
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.layout.socket.display()))
                .args(["--user=root", "shutdown"]),
            "mariadb-admin shutdown",
        )?;
        ensure!(
            self.server.wait_or_kill(Duration::from_secs(60)),
            "mariadbd did not stop within 60 s"
        );
        Ok(())
    }

    /// Starts the server again after [`MariaDb::shutdown`], on the same port and datadir:
    /// a source that went away and came back.
    pub fn start_again(&mut self) -> Result<()> {
        self.server = spawn_server(&self.config, &self.layout, self.port)?;
        Ok(())
    }

    /// The last lines of the server's error log, for failure messages.
    pub fn error_log_tail(&self) -> String {
        tail(&self.layout.error_log)
    }

    fn create_replication_user(&self) -> Result<()> {
        // REPLICATION CLIENT is BINLOG MONITOR since 10.5; SHOW BINARY LOGS needs it.
        // Kept out of the binlog: a test's binlog starts with the test's own statements,
        // and a replica must not hold GTIDs of its own before it replicates.
        self.sql(&format!(
            "SET sql_log_bin = 0;\n\
             CREATE USER '{REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{REPLICATION_PASSWORD}';\n\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPLICATION_USER}'@'127.0.0.1';"
        ))
        .map(drop)
    }
}

/// `sysbench oltp_write_only COMMAND` (`prepare` or `run`) on database `sbtest`, as root
/// over the server's Unix socket (a path on this machine).
pub(crate) fn run_sysbench(socket: &Path, load: &SysbenchLoad, command: &str) -> Result<()> {
    let sysbench = find_tool(Tool::Sysbench)?;
    let mut cmd = Command::new(sysbench);
    cmd.arg("oltp_write_only")
        .arg("--db-driver=mysql")
        .arg(format!("--mysql-socket={}", socket.display()))
        .args(["--mysql-user=root", "--mysql-db=sbtest"])
        .arg(format!("--tables={}", load.tables))
        .arg(format!("--table-size={}", load.table_size))
        .arg(format!("--threads={}", load.threads))
        .arg(format!("--time={}", load.seconds))
        .arg(format!("--events={}", load.events))
        .arg("--report-interval=0")
        .arg(command);
    let output = cmd.output().context("run sysbench")?;
    ensure!(
        output.status.success(),
        "sysbench {command} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Load for [`MariaDb::sysbench`] and [`crate::MySql::sysbench`].
#[derive(Debug, Clone)]
pub struct SysbenchLoad {
    /// `--tables`.
    pub tables: u32,
    /// `--table-size` (rows per table).
    pub table_size: u32,
    /// `--threads`.
    pub threads: u32,
    /// `--time` in seconds (0: no limit, stop after `events`).
    pub seconds: u32,
    /// `--events` (0: no limit, stop after `seconds`).
    pub events: u64,
}

impl Default for SysbenchLoad {
    fn default() -> Self {
        SysbenchLoad {
            tables: 2,
            table_size: 1000,
            threads: 2,
            seconds: 5,
            events: 0,
        }
    }
}

/// A prepared `mariadb-backup` base backup and where it starts in the binlog.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The backup folder.
    pub dir: PathBuf,
    /// Binlog file the backup is consistent with (`xtrabackup_binlog_info`).
    pub binlog_file: String,
    /// Byte position in that file.
    pub binlog_position: u64,
    /// `gtid_binlog_pos` at the backup point (may be empty on a fresh server).
    pub gtid: String,
    /// The server that took it, whose `mariadb-backup` copies it back.
    pub version: MariaDbVersion,
}

impl Backup {
    /// Reads the binlog coordinates a prepared backup folder records.
    pub fn read(dir: &Path, version: MariaDbVersion) -> Result<Backup> {
        // Renamed mariadb_backup_binlog_info in MariaDB 11.
        let info_path = ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"]
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| dir.join("xtrabackup_binlog_info"));
        let info = fs::read_to_string(&info_path)
            .with_context(|| format!("read {}", info_path.display()))?;
        let mut fields = info.split_whitespace();
        let binlog_file = fields
            .next()
            .context("xtrabackup_binlog_info: no file")?
            .to_owned();
        let binlog_position = fields
            .next()
            .context("xtrabackup_binlog_info: no position")?
            .parse()
            .context("xtrabackup_binlog_info: bad position")?;
        let gtid = fields.next().unwrap_or_default().to_owned();
        Ok(Backup {
            dir: dir.to_owned(),
            binlog_file,
            binlog_position,
            gtid,
            version,
        })
    }

    /// Copies the backup into `datadir` (`mariadb-backup --copy-back`): a restored datadir
    /// no server runs on yet.
    pub fn copy_back_to(&self, datadir: &Path) -> Result<()> {
        copy_back(&self.version.server()?, &self.dir, datadir)
    }
}

fn bootstrap(layout: &Layout) -> Result<()> {
    run_checked(
        layout
            .files
            .command(Tool::MariadbInstallDb)?
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", layout.arg(&layout.data)))
            // Its own tmpdir: concurrent bootstraps in a shared /tmp collide on
            // temporary table names ("Unknown table 'mysql.tmp_user_sys'").
            .arg(format!("--tmpdir={}", layout.arg(&layout.tmp)))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]),
        "mariadb-install-db",
    )
}

fn copy_back(files: &ServerFiles, backup: &Path, datadir: &Path) -> Result<()> {
    files.check_inside(backup, "the backup folder")?;
    files.check_inside(datadir, "the datadir")?;
    run_checked(
        files
            .command(Tool::MariadbBackup)?
            .arg("--copy-back")
            .arg(format!(
                "--target-dir={}",
                files.server_path(backup).display()
            ))
            .arg(format!(
                "--datadir={}",
                files.server_path(datadir).display()
            )),
        "mariadb-backup --copy-back",
    )
}

fn spawn_server(config: &MariaDbConfig, layout: &Layout, port: u16) -> Result<ChildGuard> {
    let child = layout
        .files
        .command(Tool::Mariadbd)?
        .args(config.server_args(layout, port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", config.version))?;
    let mut guard = ChildGuard::new(child, format!("mariadbd on port {port}"));
    record_server_pid(&layout.root, guard.pid())?;
    // The machine's client talks to either server over the socket.
    let admin = find_tool(Tool::MariadbAdmin)?;
    let socket = layout.socket.clone();
    wait_until(&mut guard, Duration::from_secs(60), "mariadbd", || {
        Ok(Command::new(&admin)
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["--user=root", "--connect-timeout=1", "ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success())
    })
    .with_context(|| {
        format!(
            "start {} on port {port}; error log:\n{}",
            config.version,
            tail(&layout.error_log)
        )
    })?;
    Ok(guard)
}

fn error_log_mentions(layout: &Layout, needle: &str) -> bool {
    fs::read_to_string(&layout.error_log).is_ok_and(|log| log.contains(needle))
}

pub(crate) fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let output = cmd.output().with_context(|| format!("run {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The SQL of [`MariaDb::write_workload`] (MySQL's too): `transactions` small write
/// transactions, after the schema unless it `exists`.
pub(crate) fn workload_sql(transactions: usize, exists: bool) -> String {
    let mut sql = String::new();
    if !exists {
        sql.push_str(
            "CREATE DATABASE binlogd_test;\n\
             CREATE TABLE binlogd_test.workload (\
               id INT PRIMARY KEY AUTO_INCREMENT, k INT NOT NULL, c VARCHAR(120) NOT NULL, \
               pad BLOB) ENGINE=InnoDB;\n",
        );
    }
    for i in 0..transactions {
        let _ = writeln!(
            sql,
            "BEGIN; INSERT INTO binlogd_test.workload (k, c, pad) VALUES ({i}, 'row-{i}', REPEAT('x', {})); \
             UPDATE binlogd_test.workload SET k = k + 1 WHERE id % 7 = {}; \
             DELETE FROM binlogd_test.workload WHERE id % 13 = {} AND k < {}; COMMIT;",
            i % 200,
            i % 7,
            i % 13,
            i / 2
        );
    }
    sql
}

impl crate::BinlogSource for MariaDb {
    fn port(&self) -> u16 {
        self.port
    }

    fn binlog_files(&self) -> Result<Vec<PathBuf>> {
        MariaDb::binlog_files(self)
    }

    fn sql(&self, sql: &str) -> Result<String> {
        MariaDb::sql(self, sql)
    }

    fn dir(&self) -> &Path {
        MariaDb::dir(self)
    }

    fn server_path(&self, path: &Path) -> PathBuf {
        MariaDb::server_path(self, path)
    }

    fn write_workload(&self, transactions: usize) -> Result<()> {
        MariaDb::write_workload(self, transactions)
    }

    fn error_log_tail(&self) -> String {
        MariaDb::error_log_tail(self)
    }

    /// `@@gtid_binlog_pos` spelled out: every sequence number from 1 in each domain (the
    /// harness's servers write each domain from 1 under one server_id).
    fn binlog_gtids(&self) -> Result<Vec<String>> {
        let pos = self.gtid_binlog_pos()?;
        let mut gtids = Vec::new();
        for domain_pos in pos.split(',').filter(|p| !p.is_empty()) {
            let mut parts = domain_pos.split('-');
            let (Some(domain), Some(server), Some(last)) =
                (parts.next(), parts.next(), parts.next())
            else {
                bail!("gtid_binlog_pos {pos:?} is not domain-server-sequence");
            };
            let last: u64 = last
                .parse()
                .with_context(|| format!("gtid_binlog_pos {pos:?}"))?;
            gtids.extend((1..=last).map(|n| format!("{domain}-{server}-{n}")));
        }
        Ok(gtids)
    }
}

/// Runs `sql` through a `mariadb` or `mysql` client command (connection options given) as
/// root, and returns its tab-separated output without headers.
pub(crate) fn run_sql_client(client: Command, sql: &str, port: u16) -> Result<String> {
    run_sql_client_with_names(client, sql, port, false)
}

/// The status of a replica (`SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`), column by
/// column; empty when the server is no replica.
pub(crate) fn replica_status_of(
    client: Command,
    statement: &str,
    port: u16,
) -> Result<std::collections::BTreeMap<String, String>> {
    let out = run_sql_client_with_names(client, statement, port, true)?;
    let mut lines = out.lines();
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Ok(Default::default());
    };
    Ok(names
        .split('\t')
        .zip(values.split('\t'))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

fn run_sql_client_with_names(
    mut client: Command,
    sql: &str,
    port: u16,
    names: bool,
) -> Result<String> {
    client.args(["--user=root", "--batch", "--raw"]);
    if !names {
        client.arg("--skip-column-names");
    }
    let mut child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run the SQL client")?;
    // SQL goes through stdin so that long scripts are not limited by argv.
    let mut stdin = child.stdin.take().context("client stdin")?;
    let script = sql.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let output = child
        .wait_with_output()
        .context("wait for the SQL client")?;
    let _ = writer.join();
    if !output.status.success() {
        bail!(
            "SQL failed on port {port}: {}\n--- SQL (first 500 bytes) ---\n{}",
            String::from_utf8_lossy(&output.stderr).trim(),
            sql.chars().take(500).collect::<String>()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
