//! `binlogd stream`: follow a server like a replica and keep a byte-exact archive of its
//! binlogs.
//!
//! Flags → [`StreamConfig`] → [`binlogd_replica::stream`]: the engine decides where to
//! start, when to make data durable and when to reconnect; this module reads the command
//! line, serves `/metrics` and catches signals.

use crate::metrics::StreamMetrics;
use crate::report::StreamReport;
use crate::upload::archive_target_of;
use anyhow::{Context, bail};
use binlogd_replica::checkpoint::CheckpointPolicy;
use binlogd_replica::{
    DurabilityPolicy, RemoteArchive, ReplicaConfig, ResumeBy, StreamConfig, default_server_id,
    server_id_from,
};
use binlogd_storage::remote::keys::Codec;
use binlogd_storage::remote::s3::S3Url;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
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
    #[command(flatten)]
    source: crate::source::SourceArgs,
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
    resume_by: ResumeByArg,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ResumeByArg {
    Auto,
    Gtid,
    Position,
}

pub fn run(args: StreamArgs) -> anyhow::Result<ExitCode> {
    let config = stream_config(&args)?;
    // One thread: the stream is one connection and one file, and waking a second worker
    // for every batch of packets cost more than it gave (measured with bench-pull).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let exported = crate::metrics::Exported {
            object_store: config.remote.is_some(),
            retention: config.retention.is_active(),
            local_dir: Some(config.local.clone()),
        };
        let metrics = StreamMetrics::new(
            Duration::from_secs_f64(args.heartbeat * 3.0 + 5.0),
            exported,
        );
        if let Some(addr) = args.metrics_addr {
            let bound = crate::metrics::serve(addr, metrics.clone()).await?;
            tracing::info!(%bound, "serving /metrics and /healthz");
        }
        let (stop, _) = watch::channel(false);
        let stop = Arc::new(stop);
        let signalled = Arc::clone(&stop);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = signalled.send(true);
        });
        tracing::info!(
            source = %config.replica.address(),
            user = %config.replica.connect.user,
            archive = %args.archive,
            server_id = config.replica.server_id,
            "streaming"
        );
        let report = Arc::new(StreamReport::new(metrics, args.no_progress));
        match binlogd_replica::stream(config, report, stop).await {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(err) => {
                let hint = err.hint();
                let err = anyhow::Error::new(err);
                Err(match hint {
                    Some(hint) => err.context(hint),
                    None => err,
                })
            }
        }
    })
}

/// Reads the command line into the engine's configuration, refusing what cannot work.
fn stream_config(args: &StreamArgs) -> anyhow::Result<StreamConfig> {
    let connect = args.source.connect_options()?;
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
    let (local, s3_url) = archive_target(args)?;
    let server_id = args.server_id.unwrap_or_else(|| match &s3_url {
        Some(url) => server_id_from(url.to_string().as_bytes()),
        None => default_server_id(&local),
    });
    let remote = match s3_url {
        Some(url) => Some(RemoteArchive {
            target: archive_target_of(
                url,
                &args.s3,
                &args.lease,
                args.compression,
                args.segment_size,
            )?,
            checkpoints: CheckpointPolicy {
                interval: Duration::from_secs_f64(args.checkpoint_interval),
                size: args.checkpoint_size,
            },
            spool_max: args.spool_max,
        }),
        None => None,
    };
    let s3 = &args.s3;
    let archive_encrypted = remote.is_some()
        && (s3.encryption_key_file.is_some() || s3.sse_c_key_file.is_some() || s3.sse_kms);
    Ok(StreamConfig {
        replica: ReplicaConfig {
            connect,
            server_id,
            heartbeat: Duration::from_secs_f64(args.heartbeat),
            net_timeout: Duration::from_secs_f64(args.net_timeout),
            semi_sync: args.semi_sync,
            exit_at_end: args.exit_at_end,
            resume_by: match args.resume_by {
                ResumeByArg::Auto => ResumeBy::Auto,
                ResumeByArg::Gtid => ResumeBy::Gtid,
                ResumeByArg::Position => ResumeBy::Position,
            },
            start_file: args.start_file.clone(),
            max_retry_delay: Duration::from_secs_f64(args.max_retry_delay.max(0.1)),
            archive_encrypted,
            durability: DurabilityPolicy::default(),
        },
        local,
        remote,
        retention: args.retention.policy(),
        purge_interval: Duration::from_secs_f64(args.purge_interval),
    })
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

async fn wait_for_signal() {
    match crate::signals::Interrupts::catch() {
        Ok(mut interrupts) => {
            interrupts.recv().await;
        }
        // Without a handler the signal ends the process as it always did.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: StreamArgs,
    }

    fn config(line: &[&str]) -> anyhow::Result<StreamConfig> {
        let cli = Cli::try_parse_from(std::iter::once("stream").chain(line.iter().copied()))?;
        stream_config(&cli.args)
    }

    #[test]
    fn an_s3_archive_needs_a_spool_and_a_local_one_refuses_it() {
        let err = config(&["--source", "mysql://repl@db1", "--archive", "s3://b/p"])
            .expect_err("no spool");
        assert!(err.to_string().contains("needs --spool-dir"), "{err}");
        let err = config(&[
            "--source",
            "mysql://repl@db1",
            "--archive",
            "/tmp/a",
            "--spool-dir",
            "/tmp/s",
        ])
        .expect_err("spool with a local archive");
        assert!(
            err.to_string().contains("goes with an s3:// archive"),
            "{err}"
        );
    }

    #[test]
    fn the_net_timeout_must_exceed_the_heartbeat() {
        let err = config(&[
            "--source",
            "mysql://repl@db1",
            "--archive",
            "/tmp/a",
            "--heartbeat",
            "5",
            "--net-timeout",
            "5",
        ])
        .expect_err("timeout too short");
        assert!(err.to_string().contains("must exceed --heartbeat"), "{err}");
    }

    #[test]
    fn the_flags_become_the_engine_configuration() {
        let config = config(&[
            "--source",
            "mariadb://r%40x@[::1]:3307",
            "--archive",
            "/var/lib/binlogd",
            "--resume-by",
            "position",
            "--semi-sync",
        ])
        .expect("valid");
        let replica = &config.replica;
        assert_eq!(replica.address(), "::1:3307");
        assert_eq!(replica.connect.user, "r@x");
        assert_eq!(replica.resume_by, ResumeBy::Position);
        assert!(replica.semi_sync && !replica.exit_at_end);
        assert_eq!(
            replica.server_id,
            default_server_id(std::path::Path::new("/var/lib/binlogd"))
        );
        assert!(config.remote.is_none());
    }
}
