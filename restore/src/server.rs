//! A temporary server on a restored datadir, for a restore where no server runs yet: what a
//! restore Job in Kubernetes does on the database's volume before the database starts.
//!
//! binlogd starts the server binary itself (`mariadbd`, or `mysqld`) on the datadir with the
//! user's configuration, but with networking off and a Unix socket in a private folder, so
//! that nothing but binlogd can reach it while it is half restored. Grant tables are
//! skipped (no credentials to hand over; the socket is the only way in), replication
//! does not start by itself (MariaDB's `--skip-slave-start`, MySQL's
//! `--skip-replica-start`; MySQL's X protocol is off), and the error log goes to the private folder, where binlogd
//! reads it when the server fails. Run as root, the server runs as the datadir's owner,
//! so the files it writes stay the database's. When the replay is done the server is
//! shut down cleanly (SIGTERM, which a server answers with a normal shutdown), and on
//! any failure too: a restore never leaves it running.

use crate::apply::{Endpoint, ServerAddress};
use crate::error::RestoreError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Which option files the server reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defaults {
    /// Its usual ones (`/etc/mysql/my.cnf` and the rest).
    System,
    /// Only this file (`--defaults-file`).
    File(PathBuf),
    /// None (`--no-defaults`).
    None,
}

/// How to start the temporary server.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// The server binary.
    pub binary: PathBuf,
    /// The restored datadir.
    pub datadir: PathBuf,
    /// Which option files it reads.
    pub defaults: Defaults,
    /// Further options, after binlogd's own.
    pub extra_args: Vec<String>,
    /// How long it may take to come up (crash recovery of a large datadir takes a while).
    pub startup_timeout: Duration,
}

/// A server binlogd started; shut down cleanly by [`TemporaryServer::shut_down`], or
/// killed if dropped while running.
#[derive(Debug)]
pub struct TemporaryServer {
    child: Child,
    /// The private folder with its socket, pid file and error log.
    private: tempfile::TempDir,
    binary: PathBuf,
}

impl TemporaryServer {
    /// Starts the server and waits until it answers on its socket.
    pub async fn start(command: &ServerCommand) -> Result<TemporaryServer, RestoreError> {
        let datadir = &command.datadir;
        let owner = std::fs::metadata(datadir)
            .map_err(RestoreError::io("reading", datadir))?
            .uid();
        if !datadir.join("mysql").is_dir() {
            return Err(RestoreError::Unfit(format!(
                "datadir {} holds no mysql schema: is it a restored datadir?",
                datadir.display()
            )));
        }
        let private = tempfile::Builder::new()
            .prefix("binlogd-restore-")
            .tempdir()
            .map_err(RestoreError::io(
                "creating a private folder in",
                &std::env::temp_dir(),
            ))?;
        let mut args = match &command.defaults {
            Defaults::System => Vec::new(),
            Defaults::File(path) => vec![format!("--defaults-file={}", path.display())],
            Defaults::None => vec!["--no-defaults".to_owned()],
        };
        let dir = private.path();
        args.extend([
            format!("--datadir={}", datadir.display()),
            "--skip-networking".to_owned(),
            format!("--socket={}", dir.join("mysqld.sock").display()),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
            format!("--log-error={}", dir.join("error.log").display()),
            "--skip-grant-tables".to_owned(),
        ]);
        if server_is_mariadb(&command.binary, datadir).await? {
            args.push("--skip-slave-start".to_owned());
        } else {
            // MySQL's names since 8.0.26; its X protocol would listen on port 33060 and a
            // socket in /tmp, which a private server must not.
            args.extend(["--skip-replica-start".to_owned(), "--mysqlx=OFF".to_owned()]);
        }
        if nix::unistd::geteuid().is_root() {
            // The server refuses to run as root unless told; run it as whoever owns the
            // datadir, so that what it writes stays readable by the database later. It
            // must then be able to write its socket and logs in the private folder.
            args.push(format!("--user={owner}"));
            std::os::unix::fs::chown(dir, Some(owner), None)
                .map_err(RestoreError::io("handing to the datadir's owner", dir))?;
        }
        args.extend(command.extra_args.iter().cloned());
        tracing::info!(binary = %command.binary.display(), args = ?args, "starting a temporary server");
        let child = Command::new(&command.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(RestoreError::io("starting", &command.binary))?;
        let mut server = TemporaryServer {
            child,
            private,
            binary: command.binary.clone(),
        };
        server.wait_until_ready(command.startup_timeout).await?;
        Ok(server)
    }

    /// How to reach it: root over its socket.
    pub fn address(&self) -> ServerAddress {
        ServerAddress {
            endpoint: Endpoint::Socket(self.socket()),
            user: "root".to_owned(),
            password: None,
        }
    }

    fn socket(&self) -> PathBuf {
        self.private.path().join("mysqld.sock")
    }

    fn error_log(&self) -> PathBuf {
        self.private.path().join("error.log")
    }

    /// The last lines of its error log, for a message.
    pub fn error_log_tail(&self, lines: usize) -> String {
        tail(&self.error_log(), lines)
    }

    async fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), RestoreError> {
        let began = Instant::now();
        let address = self.address();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(RestoreError::io("waiting for", &self.binary))?
            {
                return Err(RestoreError::Unfit(format!(
                    "{} exited while starting ({status}); its error log ends:\n{}",
                    self.binary.display(),
                    self.error_log_tail(40)
                )));
            }
            let answered = match self.socket().exists() {
                true => match crate::apply::ReplayServer::connect(&address).await {
                    Ok(probe) => probe.close().await.is_ok(),
                    Err(_) => false,
                },
                false => false,
            };
            if answered {
                tracing::info!(
                    seconds = began.elapsed().as_secs_f64(),
                    "the temporary server is up"
                );
                return Ok(());
            }
            if began.elapsed() >= timeout {
                self.terminate().await;
                return Err(RestoreError::Unfit(format!(
                    "{} did not come up within {} s; its error log ends:\n{}",
                    self.binary.display(),
                    timeout.as_secs(),
                    self.error_log_tail(40)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Shuts the server down cleanly and waits for it to exit; fails if it exits with an
    /// error, naming what its error log says.
    pub async fn shut_down(mut self) -> Result<(), RestoreError> {
        let status = self.terminate().await;
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(RestoreError::Unfit(format!(
                "{} did not shut down cleanly ({status}); its error log ends:\n{}",
                self.binary.display(),
                self.error_log_tail(40)
            ))),
            None => Err(RestoreError::Unfit(format!(
                "{} could not be waited for",
                self.binary.display()
            ))),
        }
    }

    /// SIGTERM (a clean shutdown: InnoDB flushes, files close), then waits. A server
    /// that has not exited after a long while is killed: a stuck shutdown must not hang
    /// a restore Job forever, and InnoDB recovers from a kill.
    async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(600), self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::error!("the temporary server did not shut down in 600 s; killing it");
                let _ = self.child.kill().await;
                None
            }
        }
    }
}

/// Whether `binary` is MariaDB's server (its `--version` says so) rather than MySQL's,
/// whose options differ; refused when it is not the server that wrote `datadir`. MySQL 8
/// and later keep their data dictionary in `mysql.ibd`, which MariaDB never writes: one
/// server on the other's datadir fails, or worse, tries to upgrade it.
async fn server_is_mariadb(binary: &Path, datadir: &Path) -> Result<bool, RestoreError> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(RestoreError::io("running", binary))?;
    if !output.status.success() {
        return Err(RestoreError::Unfit(format!(
            "{} --version failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let mariadb = version.contains("MariaDB");
    let dictionary = datadir.join("mysql.ibd").is_file();
    let major: u32 = version
        .split_once(" Ver ")
        .and_then(|(_, rest)| rest.split('.').next())
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or(0);
    if mariadb && dictionary {
        return Err(RestoreError::Unfit(format!(
            "datadir {} is MySQL's (it holds mysql.ibd), and {} is MariaDB's server ({version}): \
             name MySQL's mysqld with --mysqld",
            datadir.display(),
            binary.display()
        )));
    }
    if !mariadb && major >= 8 && !dictionary {
        return Err(RestoreError::Unfit(format!(
            "datadir {} holds no mysql.ibd, which MySQL 8 and later keep their data \
             dictionary in (is it MariaDB's?), and {} is MySQL's server ({version}): name \
             the server that wrote it with --mysqld",
            datadir.display(),
            binary.display()
        )));
    }
    Ok(mariadb)
}

/// The last `lines` lines of a text file (empty if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
