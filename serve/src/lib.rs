//! The archive as a replication source: `binlogd serve` lets MySQL and MariaDB replicas,
//! and `mysqlbinlog --read-from-remote-server`, read an archive as they would read the
//! primary's binlog — from its oldest file to what a `binlogd stream` writing the same
//! archive has just made durable (a local archive) or uploaded (an S3 archive).
//!
//! - [`session`](mod@session): one client: handshake, TLS, authentication
//!   ([`users`]), setup queries ([`queries`]), then a dump.
//! - [`start`]: where a dump starts (file and position, or GTIDs), or the error the real
//!   server would give.
//! - `dump`: sending files, skipping what a GTID replica has, following the live tail,
//!   heartbeats; `events`: the artificial events a source makes up.
//! - [`archive`]: the archive's files, local or in an object store; `reading`: one file's
//!   bytes and index as the sender reads them.
//!
//! The wire protocol itself (framing, the server's packets, password checks) is
//! `binlogd_protocol::server`; this crate decides what to say.

pub mod archive;
mod dump;
mod error;
mod events;
mod facts;
#[doc(hidden)]
pub mod fuzzing;
pub mod queries;
mod reading;
pub mod session;
pub mod start;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use binlogd_storage::LocalArchive;

use crate::archive::ArchiveSource;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use archive::{RemoteSource, Until};
pub use dump::Progress;
pub use error::ServeError;
pub use session::ReplicaSeen;
pub use users::Users;

/// Where the archive to serve is.
#[derive(Debug)]
pub enum ServedArchive {
    /// A directory.
    Local(PathBuf),
    /// An object store.
    Remote(RemoteSource),
}

/// How `binlogd serve` runs.
#[derive(Debug)]
pub struct ServeConfig {
    /// The archive: a directory (a `binlogd stream` may be writing it) or an object
    /// store.
    pub archive: ServedArchive,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Who may log in.
    pub users: Users,
    /// TLS certificate and key (PEM), if clients may use TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// How long a replica may read nothing while there is data for it before its
    /// connection is closed (a server's `net_write_timeout`).
    pub write_timeout: std::time::Duration,
    /// Serve nothing past this point (a restore's target); `None`: the whole archive and
    /// its live tail.
    pub until: Option<Until>,
    /// Connections open at once at most (logged in or not); one more is told "Too many
    /// connections" (1040) and closed, as the servers do.
    pub max_connections: usize,
    /// How long a logged-in client may send no command (not counting a dump being sent)
    /// before its connection is closed (the servers' `wait_timeout`).
    pub idle_timeout: std::time::Duration,
}

/// A listening `binlogd serve`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<session::Shared>,
    /// One permit per connection open.
    connections: Arc<tokio::sync::Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Opens the archive, reads the TLS files and binds the address.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        let archive = match config.archive {
            ServedArchive::Local(root) => {
                ArchiveSource::local(LocalArchive::open(&root)?, config.until)
            }
            ServedArchive::Remote(remote) => {
                // Opened once here so that a wrong bucket, prefix or key fails at start.
                remote.open().await?;
                ArchiveSource::remote(remote, config.until)
            }
        };
        let tls = match &config.tls {
            Some((cert, key)) => Some(binlogd_protocol::tls::server_config(cert, key)?),
            None => None,
        };
        if config.require_tls && tls.is_none() {
            return Err(ServeError::Config(
                "--require-tls needs --tls-cert and --tls-key".to_owned(),
            ));
        }
        let shared_facts = match crate::facts::source_facts(&archive).await {
            // What the greeting says from the first client on.
            Ok(facts) => Some((std::time::Instant::now(), facts)),
            Err(e) => {
                tracing::warn!(error = %e, "the archive cannot be served yet; clients are told why once they log in");
                None
            }
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(ServeError::io(format!("listening on {}", config.listen)))?;
        Ok(Server {
            listener,
            shared: Arc::new(session::Shared {
                archive,
                users: config.users,
                tls,
                require_tls: config.require_tls,
                write_timeout: config.write_timeout,
                fast_path: Mutex::new(HashMap::new()),
                next_connection_id: AtomicU32::new(1),
                replicas: Mutex::new(HashMap::new()),
                facts: Mutex::new(shared_facts),
                facts_refreshing: std::sync::atomic::AtomicBool::new(false),
                decoy: Users::decoy()?,
                full_auth: tokio::sync::Semaphore::new(session::FULL_AUTH_AT_ONCE),
                idle_timeout: config.idle_timeout,
            }),
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
            max_connections: config.max_connections.max(1),
        })
    }

    /// The address it listens on (the port, when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(ServeError::io("reading the listening address"))
    }

    /// The replicas being served now.
    pub fn replicas(&self) -> impl Fn() -> Vec<ReplicaSeen> + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || session::lock(&shared.replicas).values().cloned().collect()
    }

    /// Serves clients until `shutdown` turns true; then closes every connection and
    /// returns once their sessions have ended.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, do not spin.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    // Each connection holds a permit until it closes: past the limit,
                    // one more is told so at once and costs nothing else.
                    let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
                        tracing::warn!(%peer, limit = self.max_connections, "refused a connection: too many connections");
                        session::refuse_too_many(&stream, self.max_connections);
                        continue;
                    };
                    let shared = Arc::clone(&self.shared);
                    let shutdown = shutdown.clone();
                    sessions.spawn(async move {
                        let _permit = permit;
                        match session::serve_client(stream, peer, shared, shutdown).await {
                            // Said where it was decided, and told to the client.
                            Ok(()) | Err(ServeError::Refused { .. }) => {}
                            // A TCP health check, or a port scan: nothing to report.
                            Err(e) if e.is_hang_up() => {
                                tracing::debug!(%peer, error = %e, "a client hung up");
                            }
                            Err(e) => tracing::warn!(%peer, error = %e, "client session failed"),
                        }
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        while sessions.join_next().await.is_some() {}
        Ok(())
    }
}
