//! `kubectl binlogd`: put this binary on PATH as `kubectl-binlogd` and kubectl runs it.
//! See `binlogd_operator::plugin`.

use anyhow::Context;
use binlogd_operator::crd::{RestoreMethod, RestoreTarget};
use binlogd_operator::plugin::{self, RestoreRequest};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-binlogd",
    version,
    about = "binlogd's archives and restores on Kubernetes (kubectl binlogd ...)"
)]
struct Cli {
    /// The namespace (else the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct StopArgs {
    /// The last transaction committed at or before this time (RFC 3339).
    #[arg(long)]
    to_time: Option<String>,
    /// Everything before this transaction, leaving it out.
    #[arg(long)]
    before_gtid: Option<String>,
    /// Up to and including these GTIDs.
    #[arg(long)]
    to_gtid: Option<String>,
    /// Everything archived.
    #[arg(long)]
    latest: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The binlog servers (how far each archive reaches) and the restores.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long, conflicts_with = "svg")]
        all_namespaces: bool,
        /// Also draw a BinlogServer's archive over time into this SVG file: servers and
        /// failovers, gaps, the recoverable range and the last recoverable time (runs
        /// `binlogd timeline --svg` here: binlogd on PATH, this machine's S3 credentials).
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
        /// The BinlogServer to draw (needed when the namespace has several).
        #[arg(long = "from", value_name = "BINLOGSERVER", requires = "svg")]
        binlog_server: Option<String>,
        /// Draw what can be recovered from this base backup's GTID state.
        #[arg(long, value_name = "GTIDS", requires = "svg")]
        from_gtid: Option<String>,
    },
    /// Restore a database's volume to a point in time: creates a PointInTimeRestore and
    /// follows it. The volume must hold a datadir restored from a base backup, and the
    /// database must be stopped.
    Restore {
        /// The BinlogServer whose archive to replay.
        #[arg(long = "from", value_name = "BINLOGSERVER")]
        binlog_server: String,
        /// The database's PersistentVolumeClaim.
        #[arg(long)]
        pvc: String,
        /// The database's image (its server replays).
        #[arg(long)]
        image: String,
        /// The user (and group) the image's server runs as, which owns the datadir: the
        /// restore runs as it (999 in the official mariadb and mysql images).
        #[arg(long, value_name = "UID", default_value_t = 999)]
        run_as_user: i64,
        #[command(flatten)]
        target: StopArgs,
        /// Fail when the target is beyond the archive: the default (the flag is kept for
        /// scripts that say it).
        #[arg(long, conflicts_with = "allow_short")]
        strict: bool,
        /// Restore as far as the archive goes when the target is beyond it, instead of
        /// failing (the restore then ends with a ShortOfTarget warning).
        #[arg(long)]
        allow_short: bool,
        /// Parallel applier workers.
        #[arg(long)]
        parallel_workers: Option<u32>,
        /// How the server receives the archive: relay-logs (staged beside it, then
        /// applied; the fastest) or replication (from a binlogd serve in the Job; nothing
        /// staged, applying begins at once).
        #[arg(long, value_enum, default_value_t = Method::RelayLogs)]
        method: Method,
        /// The PointInTimeRestore's name (else one made from the claim and the time).
        #[arg(long)]
        name: Option<String>,
    },
    /// Which transaction to restore before: runs `binlogd find` here on the BinlogServer's
    /// archive (binlogd on PATH, this machine's S3 credentials), e.g. `kubectl binlogd
    /// find --from db1 --kind drop --table shop.orders`.
    Find {
        /// The BinlogServer.
        #[arg(long = "from", value_name = "BINLOGSERVER")]
        binlog_server: String,
        /// The filters, as binlogd find takes them (--table, --kind, --sql, --min-rows,
        /// --from TIME, --until TIME, ...: see binlogd find --help). Everything after the
        /// BinlogServer goes to binlogd find.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        filters: Vec<String>,
    },
    /// What a restore to a target would replay: runs `binlogd search` here on the
    /// BinlogServer's archive (binlogd on PATH, this machine's S3 credentials).
    Search {
        /// The BinlogServer.
        #[arg(long = "from", value_name = "BINLOGSERVER")]
        binlog_server: String,
        /// The base backup's GTID state.
        #[arg(long)]
        from_gtid: Option<String>,
        /// The search target, as binlogd search takes it (e.g. --time T, --before-gtid G).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        target: Vec<String>,
    },
}

/// `--method` of `kubectl binlogd restore`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Method {
    RelayLogs,
    Replication,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (kubeconfig)")?;
        let namespace = cli
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let mut out = std::io::stdout();
        match cli.command {
            Command::Status {
                all_namespaces,
                svg,
                binlog_server,
                from_gtid,
            } => {
                let ns = (!all_namespaces).then_some(namespace.as_str());
                plugin::status(client.clone(), ns, &mut out).await?;
                if let Some(svg) = svg {
                    let args = plugin::timeline_command(
                        client,
                        &namespace,
                        binlog_server.as_deref(),
                        &svg,
                        from_gtid.as_deref(),
                    )
                    .await?;
                    std::io::Write::flush(&mut out)?;
                    let status = std::process::Command::new("binlogd")
                        .args(&args)
                        .status()
                        .context("running binlogd timeline (is binlogd on PATH?)")?;
                    if !status.success() {
                        return Ok(ExitCode::FAILURE);
                    }
                    eprintln!("drew the timeline into {}", svg.display());
                }
            }
            Command::Restore {
                binlog_server,
                pvc,
                image,
                run_as_user,
                target,
                strict: _,
                allow_short,
                parallel_workers,
                method,
                name,
            } => {
                let request = RestoreRequest {
                    name: name.unwrap_or_else(|| format!("{pvc}-{}", unix_seconds())),
                    namespace,
                    binlog_server,
                    target: RestoreTarget {
                        time: target.to_time,
                        before_gtid: target.before_gtid,
                        to_gtid: target.to_gtid,
                        latest: target.latest,
                    },
                    strict: !allow_short,
                    pvc,
                    image,
                    run_as_user,
                    parallel_workers,
                    method: match method {
                        Method::RelayLogs => RestoreMethod::RelayLogs,
                        Method::Replication => RestoreMethod::Replication,
                    },
                };
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    // A bar on a terminal: PROGRESS as its position, the phase and the
                    // message beside it.
                    let bar = indicatif::ProgressBar::new(100);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    let outcome = plugin::restore_with(
                        client,
                        &request,
                        Duration::from_secs(2),
                        &mut |line, status| {
                            let percent = status
                                .progress
                                .as_deref()
                                .and_then(|p| p.trim_end_matches('%').parse().ok())
                                .unwrap_or(0);
                            bar.set_position(percent);
                            bar.set_message(line.to_owned());
                            Ok(())
                        },
                    )
                    .await;
                    bar.finish();
                    outcome?;
                } else {
                    plugin::restore(client, &request, Duration::from_secs(2), &mut out).await?;
                }
            }
            Command::Find {
                binlog_server,
                filters,
            } => {
                let args =
                    plugin::find_command(client, &namespace, &binlog_server, &filters).await?;
                let status = std::process::Command::new("binlogd")
                    .args(&args)
                    .status()
                    .context("running binlogd find (is binlogd on PATH?)")?;
                if !status.success() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Command::Search {
                binlog_server,
                from_gtid,
                target,
            } => {
                let args = plugin::search_command(
                    client,
                    &namespace,
                    &binlog_server,
                    from_gtid.as_deref(),
                    &target,
                )
                .await?;
                let status = std::process::Command::new("binlogd")
                    .args(&args)
                    .status()
                    .context("running binlogd search (is binlogd on PATH?)")?;
                if !status.success() {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Seconds since the epoch, for a name no other restore has.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
