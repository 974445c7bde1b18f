//! `binlogd stream`: follow a server like a replica and keep a byte-exact archive of its
//! binlogs.
//!
//! Wiring only: `binlogd-protocol` speaks to the server, `binlogd-storage` writes and
//! recovers the archive. This module decides where to start, when to make data durable,
//! when to reconnect, and what to report.

use crate::flags::now_micros;
use crate::metrics::{GtidLabel, SourceLabel, StreamMetrics};
use crate::upload::{ArchiveTarget, UploadSettings, UploadState};
use anyhow::{Context, bail};
use backon::BackoffBuilder;
use binlogd_protocol::{
    BINLOG_DUMP_NON_BLOCK, BinlogStream, ConnectOptions, Connection, EventPiece, ProtocolError,
    ServerPublicKey, TlsMode, TlsOptions,
};
use binlogd_storage::archive::local_files;
use binlogd_storage::remote::keys::Codec;
use binlogd_storage::remote::s3::S3Url;
use binlogd_storage::retention::{Retention, purge_local};
use binlogd_storage::{
    ArchiveWriter, Durable, Epoch, GtidState, Ingested, LocalArchive, SourceIdentity, StorageError,
    WriterStats, close_abandoned, recover,
};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const EXAMPLES: &str = "\
Examples:
  # Archive everything the server still has, then follow it live:
  BINLOGD_SOURCE_PASSWORD=secret binlogd stream --source mysql://repl@db1:3306 --archive /var/lib/binlogd

  # Verified TLS, metrics for Prometheus, zero-RPO semi-sync replica:
  binlogd stream --source mysql://repl@db1.example.com:3306 --password-file /run/secrets/repl \\
      --archive /var/lib/binlogd --tls-mode verify-identity --tls-ca /etc/ssl/db-ca.pem \\
      --semi-sync --metrics-addr 0.0.0.0:9606

  # Copy what the server has now and exit:
  binlogd stream --source mysql://repl@127.0.0.1:3306 --archive ./archive --exit-at-end

The archive holds the server's binlog files under their own names, byte for byte, with an index
beside each (NAME.index.jsonl). Stop binlogd at any moment, even with SIGKILL: the next start cuts
the last file back to its last whole transaction and continues from there.";

/// Arguments of `binlogd stream`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct StreamArgs {
    /// The server to follow: mysql://USER@HOST:PORT (mariadb:// works too). The password
    /// comes from BINLOGD_SOURCE_PASSWORD or --password-file, never from the URL.
    #[arg(long, env = "BINLOGD_SOURCE", value_name = "URL")]
    source: String,
    /// File holding the password of the source user (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Where to archive: a directory (created if missing), or s3://BUCKET/PREFIX with
    /// --spool-dir. S3 credentials come from the AWS chain (AWS_* variables, a profile,
    /// web identity / IRSA, instance metadata), never from the URL.
    #[arg(long, env = "BINLOGD_ARCHIVE", value_name = "DIR|s3://BUCKET/PREFIX")]
    archive: String,
    /// With an S3 archive: the local directory binlogd streams into first and uploads
    /// from (a local archive of its own). Put it on a persistent volume: what it holds
    /// and S3 does not yet is lost with it.
    #[arg(long, env = "BINLOGD_SPOOL_DIR", value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// With an S3 archive: stop reading from the source while this much durable data
    /// waits for upload (the store is down or slow), e.g. 1GiB, 500MiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = crate::flags::parse_size)]
    spool_max: u64,
    /// With an S3 archive: upload what is new at least this often (the RPO of the
    /// object copy, give or take one upload).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = crate::flags::parse_seconds)]
    checkpoint_interval: f64,
    /// With an S3 archive: upload early once this much was written since the last
    /// checkpoint.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::flags::parse_size)]
    checkpoint_size: u64,
    /// With an S3 archive: the largest segment object; a backlog is cut into segments
    /// this big (at transaction boundaries), which --max-parallel then upload together.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::flags::parse_segment_size)]
    segment_size: u64,
    /// With an S3 archive: segment compression: zstd, gzip, bzip2 or none.
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    compression: Codec,
    #[command(flatten)]
    s3: crate::flags::S3Args,
    #[command(flatten)]
    lease: crate::flags::LeaseArgs,
    #[command(flatten)]
    retention: crate::flags::RetentionArgs,
    /// With --retention or --keep-after-gtid: how often to look for files to delete.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = crate::flags::parse_seconds)]
    purge_interval: f64,
    /// Replica server id to register with. Must differ from every server and replica of
    /// the source; the default is derived from the archive path, stable across restarts.
    #[arg(long, value_name = "ID")]
    server_id: Option<u32>,
    /// Without TLS, ask the server for its RSA key when caching_sha2_password needs the
    /// password in full (as the mysql client's --get-server-public-key): the key comes over
    /// the same unencrypted connection, so whoever sits in between could read the password.
    #[arg(long, conflicts_with = "server_public_key_file")]
    get_server_public_key: bool,
    /// Without TLS, encrypt the password for caching_sha2_password with this RSA key (the
    /// server's public_key.pem, PEM), as the mysql client's --server-public-key-path.
    #[arg(long, value_name = "PATH")]
    server_public_key_file: Option<PathBuf>,
    /// TLS to the source: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, value_enum, default_value = "preferred", value_name = "MODE")]
    tls_mode: TlsModeArg,
    /// PEM file of the CA certificates that sign the server's certificate.
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate chain, for users that REQUIRE X509.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host in --source.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Be a semi-synchronous replica: the source's commits wait until binlogd has the
    /// transaction on disk (zero RPO). Needs rpl_semi_sync_master_enabled on the source.
    #[arg(long)]
    semi_sync: bool,
    /// How often the source sends a heartbeat when it has nothing else to send.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = crate::flags::parse_seconds)]
    heartbeat: f64,
    /// Take the connection as dead and reconnect when the source sends nothing (no
    /// event, no heartbeat, no reply) for this long. Must exceed --heartbeat; like a
    /// replica's slave_net_timeout, it catches a peer that vanished without closing.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = crate::flags::parse_seconds)]
    net_timeout: f64,
    /// With an empty archive, start at this binlog file instead of the oldest one the
    /// server has.
    #[arg(long, value_name = "FILE")]
    start_file: Option<String>,
    /// How to resume a non-empty archive from the same server: `gtid` asks the server
    /// for everything after the archive's GTID state (and fails if the server's history
    /// does not contain it), `position` asks for the archive's last file from where its
    /// copy ends. `auto` is `gtid` when the archive has GTIDs. Either way every event
    /// must land exactly where the copy ends; if not, binlogd resumes by position. A new
    /// server behind the same address (failover) is always followed by GTID.
    #[arg(long, value_enum, default_value = "auto", value_name = "HOW")]
    resume_by: ResumeBy,
    /// Stop when everything the server has is archived, instead of following it.
    #[arg(long)]
    exit_at_end: bool,
    /// Serve Prometheus /metrics and /healthz on this address (e.g. 127.0.0.1:9606).
    #[arg(long, env = "BINLOGD_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Longest wait between reconnection attempts.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = crate::flags::parse_seconds)]
    max_retry_delay: f64,
    /// No progress line, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TlsModeArg {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ResumeBy {
    Auto,
    Gtid,
    Position,
}

/// Where a dump starts.
#[derive(Debug, Clone)]
enum Start {
    Position { file: String, position: u64 },
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

/// Why a session ended without an error.
enum SessionEnd {
    /// `--exit-at-end` and everything is archived.
    CaughtUp,
    /// A signal asked to stop.
    Shutdown,
}

struct Streamer {
    args: StreamArgs,
    connect: ConnectOptions,
    address: String,
    server_id: u32,
    archive: LocalArchive,
    metrics: Arc<StreamMetrics>,
    shutdown: watch::Receiver<bool>,
    /// Set after a gap: the next dump goes by file and position, which is exact.
    force_position: bool,
    /// Where the stream failed again and again, until it gets past that place.
    stuck_at: Option<(String, u64)>,
    /// Whether the warning that the archive is plaintext was given.
    warned_plaintext: bool,
    /// Where the last dump began.
    last_start: Option<Start>,
    progress: Option<indicatif::ProgressBar>,
    /// The current writer's counters as last added to the metrics.
    reported: WriterStats,
    /// What the archive holds durably, as the writer last said.
    durable: Option<Durable>,
    /// With an S3 archive: what the upload task and the stream share.
    upload: Option<Arc<UploadState>>,
}

pub fn run(args: StreamArgs) -> anyhow::Result<ExitCode> {
    // One thread: the stream is one connection and one file, and waking a second worker
    // for every batch of packets cost more than it gave (measured with bench-pull).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: StreamArgs) -> anyhow::Result<ExitCode> {
    let (host, port, user) = parse_source(&args.source)?;
    let password = read_password(&args)?;
    let tls = TlsOptions {
        mode: match args.tls_mode {
            TlsModeArg::Disabled => TlsMode::Disabled,
            TlsModeArg::Preferred => TlsMode::Preferred,
            TlsModeArg::Required => TlsMode::Required,
            TlsModeArg::VerifyCa => TlsMode::VerifyCa,
            TlsModeArg::VerifyIdentity => TlsMode::VerifyIdentity,
        },
        ca_file: args.tls_ca.clone(),
        client_cert: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                crate::secrets::check_secret_file(key, "--tls-key")?;
                Some((cert.clone(), key.clone()))
            }
            _ => None,
        },
        server_name: args.tls_server_name.clone(),
    };
    if matches!(
        args.tls_mode,
        TlsModeArg::VerifyCa | TlsModeArg::VerifyIdentity
    ) && args.tls_ca.is_none()
    {
        bail!("--tls-mode verify-ca and verify-identity need --tls-ca");
    }
    if !(args.purge_interval >= 0.1 && args.purge_interval <= 4_000_000.0) {
        bail!("--purge-interval must be between 0.1 and 4000000 seconds");
    }
    if !(args.heartbeat > 0.0 && args.heartbeat <= 4_000_000.0) {
        bail!("--heartbeat must be between 0 and 4000000 seconds");
    }
    if !(args.net_timeout > args.heartbeat && args.net_timeout <= 4_000_000.0) {
        bail!(
            "--net-timeout ({} s) must exceed --heartbeat ({} s): the source's heartbeats are \
             what keeps a quiet connection from timing out",
            args.net_timeout,
            args.heartbeat
        );
    }
    let (spool_root, s3_url) = archive_target(&args)?;
    let archive = LocalArchive::open(&spool_root).context("opening the archive")?;
    let _writing = archive.claim_for_writing()?;
    let server_id = args.server_id.unwrap_or_else(|| match &s3_url {
        Some(url) => server_id_from(url.to_string().as_bytes()),
        None => default_server_id(&spool_root),
    });
    let metrics = StreamMetrics::new(Duration::from_secs_f64(args.heartbeat * 3.0 + 5.0));
    if let Some(addr) = args.metrics_addr {
        let bound = crate::metrics::serve(addr, metrics.clone()).await?;
        tracing::info!(%bound, "serving /metrics and /healthz");
    }
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    let signalled = Arc::clone(&stop);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = signalled.send(true);
    });
    let upload_state = Arc::new(UploadState::default());
    let (finish_upload, upload_finishing) = watch::channel(false);
    let upload_task = match s3_url {
        Some(url) => {
            let settings = UploadSettings {
                target: ArchiveTarget::new(
                    url,
                    &args.s3,
                    &args.lease,
                    args.compression,
                    args.segment_size,
                )?,
                interval: Duration::from_secs_f64(args.checkpoint_interval),
                size: args.checkpoint_size,
                retention: args.retention.policy(),
                purge_interval: Duration::from_secs_f64(args.purge_interval),
            };
            let (uploader, lease) =
                crate::upload::open(&settings.target, LocalArchive::open(&spool_root)?).await?;
            Some(tokio::spawn(crate::upload::run(
                uploader,
                lease,
                settings,
                Arc::clone(&upload_state),
                metrics.clone(),
                upload_finishing,
                Arc::clone(&stop),
            )))
        }
        None => {
            let retention = args.retention.policy();
            if retention.is_active() {
                tokio::spawn(purge_local_now_and_then(
                    archive.clone(),
                    retention,
                    Duration::from_secs_f64(args.purge_interval),
                ));
            }
            None
        }
    };
    let progress = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let address = format!("{host}:{port}");
    tracing::info!(
        source = %address,
        user = %user,
        archive = %args.archive,
        server_id,
        "streaming"
    );
    let server_public_key = match &args.server_public_key_file {
        Some(path) => ServerPublicKey::Pinned(
            std::fs::read(path)
                .with_context(|| format!("--server-public-key-file {}", path.display()))?,
        ),
        None if args.get_server_public_key => ServerPublicKey::Fetch,
        None => ServerPublicKey::Refuse,
    };
    let mut streamer = Streamer {
        connect: ConnectOptions {
            host,
            port,
            user,
            password,
            tls,
            server_public_key,
        },
        address,
        server_id,
        archive,
        metrics,
        shutdown,
        force_position: false,
        stuck_at: None,
        warned_plaintext: false,
        last_start: None,
        progress,
        reported: WriterStats::default(),
        durable: None,
        upload: upload_task.is_some().then_some(upload_state),
        args,
    };
    let streamed = streamer.run().await;
    // Whatever ended the stream, upload what the spool holds before exiting.
    let uploaded = match upload_task {
        Some(task) => {
            let _ = finish_upload.send(true);
            task.await.context("the upload task")?
        }
        None => Ok(()),
    };
    match (streamed, uploaded) {
        (Ok(code), Ok(())) => Ok(code),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
    }
}

/// The spool directory and, for an S3 archive, its URL.
fn archive_target(args: &StreamArgs) -> anyhow::Result<(PathBuf, Option<S3Url>)> {
    if args.archive.starts_with("s3://") {
        let url: S3Url = args.archive.parse().map_err(anyhow::Error::msg)?;
        let spool = args.spool_dir.clone().with_context(|| {
            format!(
                "--archive {url} needs --spool-dir: the local directory binlogd streams into \
                 before uploading (on a persistent volume)"
            )
        })?;
        if !(args.checkpoint_interval > 0.0 && args.checkpoint_interval <= 86_400.0) {
            bail!("--checkpoint-interval must be between 0 and 86400 seconds");
        }
        return Ok((spool, Some(url)));
    }
    if args.spool_dir.is_some() {
        bail!("--spool-dir goes with an s3:// archive; a local --archive is its own spool");
    }
    Ok((PathBuf::from(&args.archive), None))
}

impl Streamer {
    /// A MariaDB with `encrypt_binlog=ON` sends its events decrypted to replicas: said
    /// once, unless the archive is encrypted on its way to the store.
    async fn warn_if_archive_is_plaintext(&mut self, conn: &mut Connection) {
        if self.warned_plaintext || !conn.server().is_mariadb() {
            return;
        }
        let encrypted_source = matches!(
            conn.query_value("SELECT @@global.encrypt_binlog").await,
            Ok(Some(value)) if value == "1" || value.eq_ignore_ascii_case("on")
        );
        let s3 = &self.args.s3;
        let encrypted_archive = self.upload.is_some()
            && (s3.encryption_key_file.is_some() || s3.sse_c_key_file.is_some() || s3.sse_kms);
        if encrypted_source && !encrypted_archive {
            tracing::warn!(
                "the source encrypts its binlogs (encrypt_binlog=ON), but a replica receives \
                 them decrypted: this archive holds them in plaintext. Keep it as safe as the \
                 data, or archive to s3:// with --encryption-key-file, --sse-c-key-file or --sse-kms"
            );
            self.warned_plaintext = true;
        }
    }

    async fn run(&mut self) -> anyhow::Result<ExitCode> {
        let max_delay = Duration::from_secs_f64(self.args.max_retry_delay.max(0.1));
        let new_backoff = || {
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(max_delay)
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut backoff = new_backoff();
        let mut failures = RepeatedFailure::default();
        loop {
            let archived_before = self.metrics.bytes.get();
            let outcome = self.session().await;
            self.metrics.set_connected(false);
            match outcome {
                Ok(SessionEnd::CaughtUp) => {
                    self.finish_progress("caught up");
                    tracing::info!("everything the source has is archived");
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(SessionEnd::Shutdown) => {
                    self.finish_progress("stopped");
                    tracing::info!("stopped; the archive is consistent");
                    return Ok(ExitCode::SUCCESS);
                }
                Err(err) => {
                    if is_fatal(&err) {
                        self.finish_progress("failed");
                        // "Not available" says nothing of which binlog: name where the dump
                        // was to start.
                        let err = match (&self.last_start, protocol_error(&err)) {
                            (Some(start), Some(ProtocolError::Server(e)))
                                if e.refusal() == binlogd_protocol::Refusal::BinlogNotAvailable =>
                            {
                                err.context(format!("the dump {start}"))
                            }
                            _ => err,
                        };
                        return Err(with_hint(err));
                    }
                    if is_gap(&err) {
                        self.force_position = true;
                    }
                    let repeats = failures.note(stuck_at(&err));
                    // The connection worked for a while: start the backoff over. Not when
                    // it failed where it failed last time: re-reading the same unfinished
                    // transaction is no progress.
                    if repeats == 1 && self.metrics.bytes.get() > archived_before {
                        backoff = new_backoff();
                    }
                    let delay = backoff.next().unwrap_or(max_delay);
                    self.metrics.reconnects.inc();
                    if is_resume_by_position(&err) {
                        // Nothing is wrong: the last dump by GTID cannot give the file's
                        // exact bytes, a dump by position can.
                        tracing::info!(reason = %format!("{err:#}"), "continuing by file and position");
                    } else if repeats >= STUCK_AFTER {
                        let reason = stuck_reason(&err);
                        if repeats == STUCK_AFTER {
                            tracing::error!(
                                error = %format!("{err:#}"),
                                retry_in_ms = delay.as_millis() as u64,
                                "the stream is stuck: {reason}"
                            );
                            if self.args.exit_at_end {
                                self.finish_progress("stuck");
                                return Err(err.context(format!("the stream is stuck: {reason}")));
                            }
                        } else {
                            // Said once, loudly; the retries go on quietly, with backoff.
                            tracing::debug!(error = %format!("{err:#}"), "still stuck; retrying");
                        }
                        self.stuck_at = failures.at.clone();
                        self.metrics.set_stuck(Some(reason));
                    } else {
                        tracing::warn!(
                            error = %format!("{err:#}"),
                            retry_in_ms = delay.as_millis() as u64,
                            "lost the source; reconnecting"
                        );
                    }
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => {
                            self.finish_progress("stopped");
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                }
            }
        }
    }

    /// One connection: connect, decide where to start, stream until something ends it.
    async fn session(&mut self) -> anyhow::Result<SessionEnd> {
        let net_timeout = Duration::from_secs_f64(self.args.net_timeout);
        let mut conn = tokio::time::timeout(net_timeout, Connection::connect(&self.connect))
            .await
            .map_err(|_| ProtocolError::TimedOut(net_timeout))
            .and_then(|connected| connected)
            .with_context(|| format!("connecting to {}", self.address))?;
        conn.set_read_timeout(Some(net_timeout));
        let identity = identify(&mut conn, &self.address).await?;
        self.warn_if_archive_is_plaintext(&mut conn).await;
        // After a failover behind the same address, another server: say which.
        self.metrics.source.clear();
        self.metrics
            .source
            .get_or_create(&SourceLabel {
                server_id: identity.server_id.to_string(),
                address: identity.address.clone(),
                // MariaDB's handshake says 5.5.5-10.11.19-MariaDB for old clients' sake.
                version: identity.version.trim_start_matches("5.5.5-").to_owned(),
            })
            .set(1);
        let (epoch, start, unfinished) = self.choose_start(&mut conn, identity).await?;
        conn.register_replica(self.server_id)
            .await
            .context("registering as a replica")?;
        conn.set_heartbeat_period(Duration::from_secs_f64(self.args.heartbeat))
            .await
            .context("setting the heartbeat period")?;
        if self.args.semi_sync {
            conn.request_semi_sync()
                .await
                .context("asking for semi-sync")?;
        }
        let flags = if self.args.exit_at_end {
            BINLOG_DUMP_NON_BLOCK
        } else {
            0
        };
        tracing::info!(epoch = %epoch.dir.display(), start = ?start, "starting the dump");
        let mut stream = match &start {
            Start::Position { file, position } => {
                let position = u32::try_from(*position).with_context(|| {
                    format!("{file}: position {position} is past what COM_BINLOG_DUMP can ask for (4 GiB)")
                })?;
                conn.binlog_dump(self.server_id, file, position, flags).await
            }
            Start::Gtid(GtidState::Mariadb(pos)) => {
                conn.binlog_dump_mariadb_gtid(self.server_id, pos, flags)
                    .await
            }
            Start::Gtid(GtidState::Mysql(set)) => {
                conn.binlog_dump_mysql_gtid(self.server_id, set, flags).await
            }
            Start::Gtid(GtidState::None) => bail!("no GTID state to start from"),
        }
        .with_context(|| format!("starting the binlog dump {start}"))?;
        self.last_start = Some(start.clone());
        let gtids = match &start {
            Start::Gtid(state) => state.clone(),
            Start::Position { .. } => recover(&epoch)?
                .map(|r| r.gtids)
                .unwrap_or_else(|| epoch.gtids_at_start.clone()),
        };
        let mut writer = ArchiveWriter::new(epoch, stream.checksum(), gtids)?;
        if let (Start::Gtid(_), Some((file, len))) = (&start, unfinished) {
            writer.continues(&file, len);
        }
        self.reported = WriterStats::default();
        let first = self.first_piece(&mut stream, net_timeout).await;
        self.metrics.set_connected(true);
        self.pump(stream, writer, first).await
    }

    /// The dump's first piece. A server answers a dump at once with the file's rotate and
    /// format events; when it does not, the likely cause is a dump thread of an earlier
    /// connection stuck writing to a connection that is gone, which the server waits for.
    /// That thread is closed from a second connection while this one keeps waiting.
    async fn first_piece(
        &self,
        stream: &mut BinlogStream,
        net_timeout: Duration,
    ) -> Result<Option<EventPiece>, ProtocolError> {
        let patience = (net_timeout / 3).min(Duration::from_secs(2));
        let first = stream.next_piece();
        tokio::pin!(first);
        tokio::select! {
            piece = &mut first => return piece,
            () = tokio::time::sleep(patience) => {}
        }
        let (piece, ()) = tokio::join!(first, self.close_stuck_predecessors(net_timeout));
        piece
    }

    /// See [`Connection::close_killed_threads_of_this_account`]. Failing here is no
    /// reason to drop the stream: the server frees a stuck thread on its own, only later.
    async fn close_stuck_predecessors(&self, net_timeout: Duration) {
        let attempt = async {
            let mut conn = Connection::connect(&self.connect).await?;
            conn.set_read_timeout(Some(net_timeout));
            conn.close_killed_threads_of_this_account().await
        };
        match tokio::time::timeout(net_timeout, attempt).await {
            Ok(Ok(closed)) if closed.is_empty() => {
                tracing::debug!(
                    "the dump is slow to start, but no earlier dump thread is in its way"
                );
            }
            Ok(Ok(closed)) => {
                for thread in closed {
                    tracing::warn!(
                        thread,
                        "closed the dump thread of an earlier connection: the server had it \
                         blocked writing to a connection that is gone, and would not start \
                         this dump until it ended"
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

    /// Picks the epoch and the start of the dump from the archive and the server.
    async fn choose_start(
        &mut self,
        conn: &mut Connection,
        identity: SourceIdentity,
    ) -> anyhow::Result<(Epoch, Start, Option<(String, u64)>)> {
        let epochs = self.archive.epochs()?;
        let last = epochs.last().cloned();
        let (epoch, resume) = match last {
            Some(epoch) if epoch.source.same_server(&identity) => {
                let resume = recover(&epoch)
                    .with_context(|| format!("recovering {}", epoch.dir.display()))?;
                (epoch, resume)
            }
            Some(previous) => {
                let resume = recover(&previous)
                    .with_context(|| format!("recovering {}", previous.dir.display()))?;
                let gtids = resume
                    .map(|r| r.gtids)
                    .unwrap_or_else(|| previous.gtids_at_start.clone());
                if gtids.is_empty() {
                    bail!(
                        "the source is now server {} (was server {}), and the archive has no GTIDs \
                         to find its place on the new server: start a new archive for it",
                        identity.server_id,
                        previous.source.server_id
                    );
                }
                tracing::warn!(
                    was = previous.source.server_id,
                    now = identity.server_id,
                    gtids = %gtids,
                    "a different server answers at the source address (failover?); following it by GTID in a new epoch"
                );
                if let Some(file) = close_abandoned(&previous)
                    .with_context(|| format!("closing {}", previous.dir.display()))?
                {
                    tracing::info!(
                        epoch = %previous.dir.display(),
                        file,
                        "closed the old server's last file as it stands: the stream follows \
                         another server now"
                    );
                }
                let epoch = self.archive.new_epoch(identity, gtids)?;
                (epoch, None)
            }
            None => (self.archive.new_epoch(identity, GtidState::None)?, None),
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
        let start = match resume {
            Some(resume)
                if self.args.resume_by != ResumeBy::Position
                    && !self.force_position
                    && !resume.gtids.is_empty() =>
            {
                Start::Gtid(resume.gtids)
            }
            Some(resume) => Start::Position {
                file: resume.file,
                position: resume.position,
            },
            None if !epoch.gtids_at_start.is_empty() && !self.force_position => {
                Start::Gtid(epoch.gtids_at_start.clone())
            }
            None => {
                // An epoch without files after a gap: its first file from the start.
                let file = match (&self.args.start_file, epoch.gtids_at_start.is_empty()) {
                    (Some(file), true) => file.clone(),
                    _ => oldest_binlog(conn).await?,
                };
                Start::Position { file, position: 4 }
            }
        };
        self.force_position = false;
        Ok((epoch, start, unfinished))
    }

    /// Moves events from the stream into the archive until the stream ends, fails, or a
    /// signal arrives. Syncs run on the writer's sync thread while the stream is read on:
    /// one is asked for whenever the stream has nothing more ready (so a quiet source's
    /// last transaction is on disk at once) and the previous one is done, and under load
    /// at least every 4 MiB or 100 ms. A semi-sync primary's acknowledgement waits for its
    /// transaction to be durable.
    async fn pump(
        &mut self,
        mut stream: BinlogStream,
        mut writer: ArchiveWriter,
        first: Result<Option<EventPiece>, ProtocolError>,
    ) -> anyhow::Result<SessionEnd> {
        let sync_done = Arc::new(tokio::sync::Notify::new());
        let waker = Arc::clone(&sync_done);
        writer.set_sync_waker(move || waker.notify_one());
        let mut last_sync = Instant::now();
        let mut pieces = 0u32;
        let mut shutdown = self.shutdown.clone();
        let mut first = Some(first);
        let result: anyhow::Result<SessionEnd> = async {
            loop {
                // A lock: look every 256 pieces (and whenever waiting, below).
                if pieces.is_multiple_of(256) && *shutdown.borrow() {
                    return Ok(SessionEnd::Shutdown);
                }
                // Whole in the receive buffer: ingested where it lies. Otherwise read more.
                let taken = if first.is_none() {
                    stream.try_take_piece(|bytes, first, last| {
                        (writer.ingest(bytes, first, last), last)
                    })
                } else {
                    None
                };
                let (ingested, last) = if let Some(taken) = taken {
                    let Some((ingested, last)) = taken.map_err(anyhow::Error::from)? else {
                        return Ok(SessionEnd::CaughtUp);
                    };
                    (ingested?, last)
                } else {
                    let next = match first.take().or_else(|| stream.try_next_piece()) {
                        Some(next) => next,
                        None => {
                            // Nothing more ready: have what arrived made durable.
                            self.report_durable(&mut writer, true)?;
                            if writer.syncs_in_flight() == 0 && writer.request_sync()? {
                                last_sync = Instant::now();
                            }
                            tokio::select! {
                                next = stream.next_piece() => next,
                                _ = sync_done.notified() => continue,
                                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                            }
                        }
                    };
                    let Some(piece) = next.map_err(anyhow::Error::from)? else {
                        return Ok(SessionEnd::CaughtUp);
                    };
                    (
                        writer.ingest(&piece.bytes, piece.first, piece.last)?,
                        piece.last,
                    )
                };
                if let Ingested::Heartbeat { file, position } = &ingested
                    && writer.position().is_some_and(|(ours, _)| ours == file)
                {
                    // The source is at `position` of the file we write: the difference
                    // is what is not yet durable here.
                    let durable = self.durable.as_ref().filter(|d| &d.file == file);
                    let durable = durable.map_or(0, |d| d.position);
                    self.metrics
                        .lag_bytes
                        .set(position.saturating_sub(durable) as i64);
                }
                if last && stream.ack_requested() {
                    // Semi-sync: the primary's commit waits for this acknowledgement,
                    // which promises the transaction is durable here.
                    let durable = writer.sync()?;
                    self.note_durable(durable, &writer, false);
                    if let Some(durable) = &self.durable
                        && !writer.in_event()
                    {
                        stream
                            .acknowledge(&durable.file, durable.position)
                            .await
                            .context("acknowledging to the semi-sync primary")?;
                    }
                    last_sync = Instant::now();
                }
                pieces += 1;
                // Reading the clock for every event cost 9% of a pull: look every 256.
                if pieces.is_multiple_of(256) {
                    self.report_durable(&mut writer, false)?;
                    if self.spool_is_full() {
                        let durable = writer.sync()?;
                        self.note_durable(durable, &writer, false);
                        if self.wait_for_spool_room(&mut shutdown).await {
                            return Ok(SessionEnd::Shutdown);
                        }
                    }
                    if writer.syncs_in_flight() == 0
                        && (writer.unsynced_bytes() >= 4 << 20
                            || last_sync.elapsed() >= Duration::from_millis(100))
                        && writer.request_sync()?
                    {
                        last_sync = Instant::now();
                    }
                }
                if pieces.is_multiple_of(1024) {
                    // Let /metrics answer while a long backlog streams in.
                    tokio::task::yield_now().await;
                }
            }
        }
        .await;
        // Whatever ended the session, keep what arrived whole.
        let synced = writer
            .sync()
            .map(|durable| self.note_durable(durable, &writer, true));
        match (result, synced) {
            (Ok(end), Ok(())) => Ok(end),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    /// Takes in the syncs the writer finished, without waiting.
    fn report_durable(
        &mut self,
        writer: &mut ArchiveWriter,
        caught_up: bool,
    ) -> anyhow::Result<()> {
        self.metrics.heard();
        let durable = writer.poll_durable()?;
        self.note_durable(durable, writer, caught_up);
        Ok(())
    }

    /// Updates what is reported (metrics, progress line) after a sync finished, or when
    /// the stream is caught up.
    fn note_durable(&mut self, durable: Option<Durable>, writer: &ArchiveWriter, caught_up: bool) {
        let had_news = durable.is_some();
        if let Some(durable) = durable {
            self.durable = Some(durable);
        }
        if let (Some((file, offset)), Some(durable)) = (&self.stuck_at, &self.durable)
            && (&durable.file != file || durable.position > *offset)
        {
            tracing::info!(file = %durable.file, position = durable.position, "the stream is moving again");
            self.stuck_at = None;
            self.metrics.set_stuck(None);
        }
        if !had_news && !caught_up {
            return;
        }
        let stats = writer.stats();
        let metrics = &self.metrics;
        // The writer counts from the start of the session; the metrics for the process.
        metrics.events.inc_by(stats.events - self.reported.events);
        metrics.bytes.inc_by(stats.bytes - self.reported.bytes);
        metrics
            .transactions
            .inc_by(stats.transactions - self.reported.transactions);
        if let Some(upload) = &self.upload {
            upload
                .written
                .fetch_add(stats.bytes - self.reported.bytes, Ordering::Relaxed);
        }
        self.reported.events = stats.events;
        self.reported.bytes = stats.bytes;
        self.reported.transactions = stats.transactions;
        let last = self
            .durable
            .as_ref()
            .and_then(|d| d.last_transaction.as_ref());
        if let Some(last) = last {
            let commit = last.commit_micros as f64 / 1e6;
            metrics.last_commit_seconds.set(commit);
            if let Some(gtid) = last.gtid {
                metrics.last_gtid.clear();
                metrics
                    .last_gtid
                    .get_or_create(&GtidLabel {
                        gtid: gtid.to_string(),
                    })
                    .set(1);
            }
            let lag = if caught_up && !writer.has_unsynced() && writer.syncs_in_flight() == 0 {
                0.0
            } else {
                (now_micros().saturating_sub(last.commit_micros)) as f64 / 1e6
            };
            metrics.lag_seconds.set(lag);
        }
        if let Some(bar) = &self.progress {
            let (file, position) = writer.position().unwrap_or(("-", 0));
            bar.set_message(format!(
                "{file} @ {position}  {} transactions  {:.1} MB archived  lag {:.1} s",
                stats.transactions,
                stats.bytes as f64 / 1e6,
                metrics.lag_seconds.get()
            ));
        }
    }

    /// Whether the spool holds --spool-max bytes the object store does not have yet.
    fn spool_is_full(&self) -> bool {
        self.upload
            .as_ref()
            .is_some_and(|u| u.backlog.load(Ordering::Relaxed) > self.args.spool_max)
    }

    /// Stops reading from the source until uploads bring the spool under --spool-max.
    /// Returns true if binlogd was asked to stop meanwhile.
    async fn wait_for_spool_room(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        tracing::warn!(
            spool_max = self.args.spool_max,
            "the spool is full of data the object store does not have yet; pausing the stream \
             until uploads catch up"
        );
        while self.spool_is_full() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return true,
            }
        }
        tracing::info!("the spool has room again; streaming on");
        false
    }

    fn finish_progress(&self, word: &str) {
        if let Some(bar) = &self.progress {
            bar.finish_with_message(word.to_owned());
        }
    }
}

/// Reads `mysql://USER@HOST:PORT`.
fn parse_source(source: &str) -> anyhow::Result<(String, u16, String)> {
    crate::flags::parse_server_url(
        source,
        "--source",
        "BINLOGD_SOURCE_PASSWORD or a file named by --password-file",
    )
}

fn read_password(args: &StreamArgs) -> anyhow::Result<String> {
    let password = crate::flags::read_password(
        args.password_file.as_deref(),
        "--password-file",
        "BINLOGD_SOURCE_PASSWORD",
    )?;
    Ok(password.unwrap_or_default())
}

/// A server id unlikely to collide with real servers (which are usually small numbers),
/// the same on every start with the same archive.
fn default_server_id(archive: &std::path::Path) -> u32 {
    let path = std::fs::canonicalize(archive).unwrap_or_else(|_| archive.to_owned());
    server_id_from(path.as_os_str().as_encoded_bytes())
}

/// A replica id derived from the archive's name: stable, and at or above 2^30, where
/// hand-numbered servers rarely are.
fn server_id_from(name: &[u8]) -> u32 {
    let hash = crc32fast::hash(name);
    (1 << 30) | (hash & ((1 << 30) - 1))
}

/// Which server answers: its id (and uuid on MySQL), flavour and version.
async fn identify(conn: &mut Connection, address: &str) -> anyhow::Result<SourceIdentity> {
    let mariadb = conn.server().is_mariadb();
    let (server_id, server_uuid) = if mariadb {
        let id = conn.query_value("SELECT @@server_id").await?;
        (id, None)
    } else {
        let rows = conn.query("SELECT @@server_id, @@server_uuid").await?;
        let row = rows.into_iter().next().unwrap_or_default();
        (
            row.first().cloned().flatten(),
            row.get(1).cloned().flatten(),
        )
    };
    let server_id = server_id
        .and_then(|id| id.parse().ok())
        .context("the source did not say its @@server_id")?;
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

async fn oldest_binlog(conn: &mut Connection) -> anyhow::Result<String> {
    let rows = conn
        .query("SHOW BINARY LOGS")
        .await
        .context("listing the source's binlogs (SHOW BINARY LOGS)")?;
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .context("the source has no binlogs: is log_bin on?")
}

async fn wait_for_signal() {
    match crate::signals::Interrupts::catch() {
        Ok(mut interrupts) => {
            interrupts.recv().await;
        }
        // Without a handler the signal ends the process as it always did.
        Err(_) => std::future::pending().await,
    }
}

fn protocol_error(err: &anyhow::Error) -> Option<&ProtocolError> {
    err.chain().find_map(|e| e.downcast_ref::<ProtocolError>())
}

fn storage_error(err: &anyhow::Error) -> Option<&StorageError> {
    err.chain().find_map(|e| e.downcast_ref::<StorageError>())
}

fn is_gap(err: &anyhow::Error) -> bool {
    matches!(
        storage_error(err),
        Some(
            StorageError::Gap { .. }
                | StorageError::UnfinishedFile { .. }
                | StorageError::AlteredHead { .. }
        )
    )
}

/// After this many failures in a row at the same place of the source's binlog, the stream
/// is stuck: reconnecting alone will not get it past.
const STUCK_AFTER: u32 = 3;

/// Where in the source's binlog a session failed, when the failure is about a place in
/// it (an event that does not land where the archived copy ends).
fn stuck_at(err: &anyhow::Error) -> Option<(String, u64)> {
    match storage_error(err)? {
        StorageError::Gap { file, offset, .. } => Some((file.clone(), *offset)),
        _ => None,
    }
}

/// What a user should know about a stream stuck on `err`.
fn stuck_reason(err: &anyhow::Error) -> String {
    match storage_error(err) {
        Some(StorageError::Gap {
            file,
            offset,
            archived,
            event_type,
        }) if offset > archived => format!(
            "{file}: every dump leaves out {} bytes before the {event_type} event at offset \
             {offset} (the archived copy ends at {archived}): the source filters events out of \
             binlogd's dump. Likely causes: events written with @@skip_replication=1 while the \
             source's init_connect sets skip_replication for binlogd's account, or a server \
             that omits events a replica did not ask for. The archive keeps everything before \
             {archived}; binlogd keeps retrying",
            offset - archived
        ),
        Some(StorageError::Gap {
            file,
            offset,
            archived,
            event_type,
        }) => format!(
            "{file}: the source sends a {event_type} event at offset {offset}, inside what the \
             archived copy already holds (up to {archived}), and it is not the same event: \
             the source's file is not the one archived (RESET MASTER, or a different server \
             behind the same address with the same server_id). Move the archive's last epoch \
             aside or give binlogd a new archive; binlogd keeps retrying"
        ),
        _ => format!("{err:#}"),
    }
}

/// Counts failures in a row at one place of the source's binlog.
#[derive(Debug, Default)]
struct RepeatedFailure {
    at: Option<(String, u64)>,
    count: u32,
}

impl RepeatedFailure {
    /// Notes a failure (at a place, or about none) and returns how many in a row failed
    /// there: 0 for a failure about no place.
    fn note(&mut self, at: Option<(String, u64)>) -> u32 {
        if at.is_some() && at == self.at {
            self.count += 1;
        } else {
            self.count = u32::from(at.is_some());
            self.at = at;
        }
        self.count
    }
}

/// Whether the session ended only so that the next one resumes by file and position.
fn is_resume_by_position(err: &anyhow::Error) -> bool {
    matches!(
        storage_error(err),
        Some(StorageError::UnfinishedFile { .. } | StorageError::AlteredHead { .. })
    )
}

/// Whether reconnecting cannot help: refusals, bad configuration, corrupt data.
fn is_fatal(err: &anyhow::Error) -> bool {
    if let Some(e) = protocol_error(err) {
        return e.is_fatal();
    }
    match storage_error(err) {
        // A gap is repaired by resuming by position; the disk may get space back.
        Some(
            StorageError::Gap { .. }
            | StorageError::UnfinishedFile { .. }
            | StorageError::AlteredHead { .. }
            | StorageError::Io { .. },
        ) => false,
        Some(_) => true,
        // Anything else (our own checks) would fail the same way again.
        None => true,
    }
}

/// Adds what the user can do about a server refusal.
fn with_hint(err: anyhow::Error) -> anyhow::Error {
    let hint = match protocol_error(&err) {
        Some(ProtocolError::Server(e)) => e.hint(),
        _ => None,
    };
    match hint {
        Some(hint) => err.context(hint),
        None => err,
    }
}

/// Applies the retention policy to a local archive at start and every `interval`. The
/// stream only ever writes the newest file, which a purge never touches.
async fn purge_local_now_and_then(archive: LocalArchive, retention: Retention, interval: Duration) {
    loop {
        let (archive_now, retention_now) = (archive.clone(), retention.clone());
        let done = tokio::task::spawn_blocking(move || {
            let files = local_files(&archive_now)?;
            let victims = retention_now.purgeable(&files, now_micros()).to_vec();
            let bytes = purge_local(&archive_now, &victims)?;
            Ok::<_, StorageError>((victims.len(), bytes))
        })
        .await;
        match done {
            Ok(Ok((0, _))) => {}
            Ok(Ok((files, bytes))) => {
                tracing::info!(files, bytes, "retention: deleted old archived files");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention: purging failed; trying again later")
            }
            Err(e) => tracing::warn!(error = %e, "retention: the purge task failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_url_gives_host_port_and_user_but_never_a_password() {
        assert_eq!(
            parse_source("mysql://repl@db1:3307").expect("valid"),
            ("db1".to_owned(), 3307, "repl".to_owned())
        );
        assert_eq!(
            parse_source("mariadb://r%40x@[::1]").expect("valid"),
            ("::1".to_owned(), 3306, "r@x".to_owned())
        );
        let err = parse_source("mysql://repl:secret@db1").expect_err("password");
        assert!(err.to_string().contains("BINLOGD_SOURCE_PASSWORD"), "{err}");
        assert!(parse_source("http://repl@db1").is_err());
        assert!(parse_source("mysql://db1").is_err());
    }

    #[test]
    fn the_default_server_id_is_stable_and_out_of_the_usual_range() {
        let id = default_server_id(std::path::Path::new("/var/lib/binlogd"));
        assert_eq!(
            id,
            default_server_id(std::path::Path::new("/var/lib/binlogd"))
        );
        assert!(id >= 1 << 30);
    }
}
