//! `binlogd serve`: the archive as a replication source for MySQL and MariaDB replicas
//! (`binlogd-serve` does the work); and `binlogd serve-user`, which writes the users-file
//! lines for an account.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use binlogd_serve::{ServeConfig, Server, Users};
use clap::Args;
use tokio::sync::watch;

/// Flags of `binlogd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The archive to serve: the directory `binlogd stream --archive` writes (it may be
    /// writing it now: replicas then follow the live tail within a few milliseconds), or
    /// s3://BUCKET/PREFIX (sealed files, and the file being written as it is uploaded,
    /// about a second behind).
    #[arg(long, env = "BINLOGD_ARCHIVE", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub archive: String,
    #[command(flatten)]
    pub s3: crate::flags::S3Args,
    /// Address to listen on for replicas (host:port).
    #[arg(long, default_value = "127.0.0.1:3307", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Accounts that may connect, one `NAME PLUGIN HASH` per line (mysql_native_password:
    /// `*` + SHA1(SHA1(password)) in hex, as in mysql.user; caching_sha2_password: an
    /// Argon2 hash). `binlogd serve-user NAME` writes the lines.
    #[arg(long, value_name = "FILE")]
    pub users_file: PathBuf,
    /// TLS certificate chain (PEM) offered to clients; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS.
    #[arg(long)]
    pub require_tls: bool,
    /// Serve /metrics (each replica's position, lag and bytes sent) and /healthz on this
    /// address (host:port).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds a replica may read nothing while there is data for it before its
    /// connection is closed (the servers' net_write_timeout); the others are not held up
    /// either way.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = crate::flags::parse_seconds)]
    pub write_timeout: f64,
    /// Connections open at once at most, logged in or not (the servers' max_connections);
    /// one more is told "Too many connections" and closed.
    #[arg(long, default_value_t = 151, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,
    /// Seconds a logged-in client may send no command before its connection is closed
    /// (the servers' wait_timeout); a replica being sent a dump is never idle.
    #[arg(long, default_value_t = 28_800.0, value_name = "SECONDS", value_parser = crate::flags::parse_seconds)]
    pub idle_timeout: f64,
}

/// Flags of `binlogd serve-user`.
#[derive(Debug, Args)]
pub struct ServeUserArgs {
    /// The account's name.
    pub name: String,
    /// Append the lines to this users file (created readable by its owner only) instead
    /// of printing them.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
}

/// `binlogd serve`.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    crate::secrets::check_secret_file(&args.users_file, "--users-file")?;
    if let Some(key) = &args.tls_key {
        crate::secrets::check_secret_file(key, "--tls-key")?;
    }
    let users = Users::load(&args.users_file)?;
    let archive_args = crate::flags::ArchiveArgs {
        archive: args.archive.clone(),
        output: crate::flags::Output::Text,
        s3: args.s3.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let archive = crate::archive::served_archive(&archive_args).await?;
        let config = ServeConfig {
            archive,
            listen: args.listen,
            users,
            tls: args.tls_cert.clone().zip(args.tls_key.clone()),
            require_tls: args.require_tls,
            write_timeout: std::time::Duration::from_secs_f64(args.write_timeout.max(0.001)),
            until: None,
            max_connections: args.max_connections as usize,
            idle_timeout: std::time::Duration::from_secs_f64(args.idle_timeout.max(0.001)),
        };
        let server = Server::bind(config).await?;
        let bound = server.local_addr()?;
        if let Some(addr) = args.metrics_addr {
            let listening = crate::metrics::endpoint(
                addr,
                serve_metrics(server.replicas()),
                std::sync::Arc::new(|| None),
            )
            .await?;
            tracing::info!(%listening, "serving /metrics and /healthz");
        }
        tracing::info!(listen = %bound, archive = %args.archive, "serving the archive to replicas");
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            if let Ok(mut interrupts) = crate::signals::Interrupts::catch() {
                let signal = interrupts.recv().await;
                tracing::info!(signal, "closing every replica's connection and stopping");
                let _ = stop.send(true);
            }
        });
        server.run(stopped).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `binlogd serve-user`: reads a password (from the terminal without echo, or the first
/// line of standard input) and writes the account's users-file lines.
pub fn run_serve_user(args: &ServeUserArgs) -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let term = console::Term::stderr();
        term.write_str(&format!("password for {}: ", args.name))?;
        term.read_secure_line().context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    let lines = binlogd_serve::users::account_lines(&args.name, password.as_bytes())?;
    match &args.users_file {
        None => print!("{lines}"),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.write_all(lines.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            // Checks that what is there now still reads as a users file.
            Users::load(path)?;
            eprintln!("binlogd: added {} to {}", args.name, path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Labels of one replica being served.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReplicaLabel {
    peer: String,
    user: String,
    server_id: String,
}

/// Labels of a replica's place in the archive.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PlaceLabel {
    peer: String,
    server_id: String,
    file: String,
}

/// What `binlogd serve` reports at `/metrics`: per replica being served, how far it has
/// been sent, how far behind it is, and what it was sent; read from the server at each
/// scrape.
fn serve_metrics(
    replicas: impl Fn() -> Vec<binlogd_serve::ReplicaSeen> + Send + Sync + 'static,
) -> crate::metrics::Render {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::AtomicU64;
    let connected: Gauge = Gauge::default();
    let sent: Family<ReplicaLabel, Gauge> = Family::default();
    let lag: Family<ReplicaLabel, Gauge<f64, AtomicU64>> = Family::default();
    let position: Family<PlaceLabel, Gauge> = Family::default();
    let mut registry = Registry::with_prefix("binlogd_serve");
    registry.register(
        "replicas",
        "Replicas being sent the archive now",
        connected.clone(),
    );
    registry.register(
        "replica_sent_bytes",
        "Event bytes sent to a replica since it connected",
        sent.clone(),
    );
    registry.register(
        "replica_lag_seconds",
        "Seconds between now and the source's timestamp of the last event sent to a replica (0 once it has everything)",
        lag.clone(),
    );
    registry.register(
        "replica_position",
        "The file and offset of the archive a replica has been sent up to",
        position.clone(),
    );
    std::sync::Arc::new(move || {
        let now = crate::flags::now_micros() / 1_000_000;
        let seen = replicas();
        connected.set(seen.len() as i64);
        sent.clear();
        lag.clear();
        position.clear();
        for replica in seen {
            let progress = replica.progress.borrow().clone();
            let label = ReplicaLabel {
                peer: replica.peer.to_string(),
                user: replica.user.clone(),
                server_id: replica.server_id.to_string(),
            };
            sent.get_or_create(&label)
                .set(i64::try_from(progress.bytes_sent).unwrap_or(i64::MAX));
            let behind = if progress.caught_up || progress.last_event_timestamp == 0 {
                0
            } else {
                now.saturating_sub(u64::from(progress.last_event_timestamp))
            };
            lag.get_or_create(&label).set(behind as f64);
            position
                .get_or_create(&PlaceLabel {
                    peer: label.peer,
                    server_id: label.server_id,
                    file: progress.file,
                })
                .set(i64::try_from(progress.position).unwrap_or(i64::MAX));
        }
        crate::metrics::encode(&registry)
    })
}
