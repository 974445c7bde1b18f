//! `binlogd restore`: replays the archive into a MariaDB or MySQL server up to a target,
//! with the server's own parallel applier. Plan (`storage::plan`) → relay logs in the server's
//! relay-log folder (`restore::stage`) → applier driven over SQL (`restore::apply`). The
//! server is one running on this machine (`--target`), or one binlogd starts on a restored
//! datadir with networking off and shuts down afterwards (`--datadir`, `restore::server`).

use crate::archive::{block_on, open_archive};
use crate::flags::parse_server_url;
use crate::flags::{ArchiveArgs, TargetArgs, parse_gtids};
use crate::restore_report::{Shown, log_restored, progress_bar, short_of};
use crate::search::print_plan;
use crate::signals::Interrupts;
use anyhow::{Context, bail};
use binlogd_parser::Flavour;
use binlogd_restore::apply::{Endpoint, ReplayServer, ReplicationSource, ServerAddress};
use binlogd_restore::pipe::{PipePrograms, replay_through_pipe};
use binlogd_restore::replay::{ReplayOptions, replay, replicate};
use binlogd_restore::server::{Defaults, ServerCommand, TemporaryServer};
use binlogd_restore::start::{StartGiven, choose_start};
use binlogd_storage::plan::{Plan, StopAt, format_micros, plan};
use binlogd_storage::{Archive, GtidState};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `binlogd restore`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("server").required(true)))]
pub struct RestoreArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// The MariaDB or MySQL server to restore into, running on this machine (binlogd writes
    /// relay logs into its relay-log folder): mysql://USER@HOST:PORT. The user needs SUPER
    /// (MariaDB: or REPLICATION SLAVE ADMIN; MySQL: or REPLICATION_SLAVE_ADMIN and
    /// SYSTEM_VARIABLES_ADMIN) to run the applier. Its password comes from
    /// BINLOGD_TARGET_PASSWORD or --target-password-file.
    #[arg(long, env = "BINLOGD_TARGET", value_name = "URL", group = "server")]
    target: Option<String>,
    /// File holding the target user's password.
    #[arg(long, value_name = "PATH", requires = "target")]
    target_password_file: Option<PathBuf>,
    /// Restore into this datadir (a restored base backup) with no server running on it:
    /// binlogd starts the server on it with networking off and grant tables skipped,
    /// replays, and shuts it down cleanly. What a restore Job does on the database's volume.
    #[arg(long, value_name = "DIR", group = "server")]
    datadir: Option<PathBuf>,
    /// The server binary for --datadir. By default mysqld for a MySQL datadir (one with
    /// mysql.ibd), else mariadbd, else mysqld, from PATH or /usr/sbin.
    #[arg(long, value_name = "PATH", requires = "datadir")]
    mysqld: Option<PathBuf>,
    /// The option file the server reads for --datadir (its usual ones by default): the
    /// database's own configuration, so the replay runs with its settings.
    #[arg(
        long,
        value_name = "PATH",
        requires = "datadir",
        conflicts_with = "no_defaults"
    )]
    defaults_file: Option<PathBuf>,
    /// Start the server for --datadir without reading any option file.
    #[arg(long, requires = "datadir")]
    no_defaults: bool,
    /// A further option for the server started for --datadir (repeat as needed), e.g.
    /// --mysqld-arg=--innodb-buffer-pool-size=4G.
    #[arg(
        long,
        value_name = "OPTION",
        requires = "datadir",
        allow_hyphen_values = true
    )]
    mysqld_arg: Vec<String>,
    /// How long the server started for --datadir may take to come up (InnoDB recovery of
    /// a large datadir takes a while).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        requires = "datadir"
    )]
    startup_timeout: u64,
    #[command(flatten)]
    stop: TargetArgs,
    /// Fail when the target is beyond what the archive holds, instead of restoring as far
    /// as it goes and saying so.
    #[arg(long)]
    strict: bool,
    /// Start after these GTIDs (what the base backup holds). By default the server's own:
    /// MariaDB's gtid_binlog_pos and gtid_slave_pos, MySQL's gtid_executed.
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS", conflicts_with_all = ["from_backup", "from_archive_start"])]
    from_gtid: Option<GtidState>,
    /// Start where a base backup ends: a mariadb-backup or Percona XtraBackup folder, or a
    /// datadir restored from one (xtrabackup_binlog_info or xtrabackup_info names the GTIDs;
    /// mariadb_backup_* since MariaDB 11). A MariaDB server restored from a backup reports no
    /// GTID state of its own. A MySQL CLONE (its folder has #clone) keeps its GTID state in
    /// its mysql.gtid_executed table: the server started on it reports it, and the restore
    /// starts there.
    #[arg(long, value_name = "DIR", conflicts_with = "from_archive_start")]
    from_backup: Option<PathBuf>,
    /// Replay from the archive's first transaction, into an empty server.
    #[arg(long)]
    from_archive_start: bool,
    /// Parallel applier workers (MariaDB: slave_parallel_threads, optimistic mode; MySQL:
    /// replica_parallel_workers, commit order preserved). By default one per core.
    #[arg(long, value_name = "N", default_value_t = default_workers())]
    parallel_workers: u32,
    /// Give up when the applier makes no progress for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    stall_timeout: u64,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay through `mariadb-binlog FILES | mariadb` (MySQL: `mysqlbinlog | mysql`)
    /// instead of the server's applier: one thread, SQL parsed twice, slower; for servers
    /// where relay-log replay is not possible, and to compare. Leaves MariaDB's
    /// gtid_slave_pos at the end as the applier would.
    #[arg(long, conflicts_with = "via_replication")]
    via_mysqlbinlog: bool,
    /// Replay by replication instead of staged relay logs: binlogd serves the archive up
    /// to the target on 127.0.0.1 (a private `binlogd serve`, a one-off account) and the
    /// server replicates from it by GTID with its parallel applier (MariaDB:
    /// MASTER_USE_GTID=slave_pos and START SLAVE UNTIL master_gtid_pos; MySQL:
    /// SOURCE_AUTO_POSITION=1 and START REPLICA UNTIL SQL_AFTER_GTIDS). Nothing is staged:
    /// no room is needed beside the server for relay-log copies, and applying begins at
    /// once. Staged relay logs stay the default: the server applies local files faster than
    /// it replicates (see BENCHMARKS.md).
    #[arg(long)]
    via_replication: bool,
    /// With --via-mysqlbinlog: the binlog reader (into MariaDB: mariadb-binlog, else
    /// mysqlbinlog; into MySQL: mysqlbinlog).
    #[arg(long, value_name = "PATH", requires = "via_mysqlbinlog")]
    mysqlbinlog: Option<PathBuf>,
    /// With --via-mysqlbinlog: the client (into MariaDB: mariadb, else mysql; into MySQL:
    /// mysql).
    #[arg(long, value_name = "PATH", requires = "via_mysqlbinlog")]
    mysql_client: Option<PathBuf>,
}

fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(4, |n| n.get() as u32)
}

pub fn run(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        // Caught from here on: a deleted Job's SIGTERM (or Ctrl-C) then stops the applier
        // and removes the channel and relay logs, instead of leaving a server half-way
        // through a replay that goes on by itself. The pipe of --via-mysqlbinlog keeps the
        // default: its programs stop with binlogd.
        let mut interrupts = if args.via_mysqlbinlog {
            None
        } else {
            Some(Interrupts::catch().context("catching SIGINT and SIGTERM")?)
        };
        if let Some(target) = &args.target {
            return restore_into(args, &target_address(args, target)?, &mut interrupts).await;
        }
        let Some(datadir) = &args.datadir else {
            bail!("say where to restore: --target URL or --datadir DIR");
        };
        let command = ServerCommand {
            binary: match &args.mysqld {
                Some(path) => path.clone(),
                // MySQL 8 and later keep their data dictionary in mysql.ibd.
                None if datadir.join("mysql.ibd").is_file() => {
                    find_program(&["mysqld"], "--mysqld")?
                }
                None => find_program(&["mariadbd", "mysqld"], "--mysqld")?,
            },
            datadir: datadir.clone(),
            defaults: if args.no_defaults {
                Defaults::None
            } else if let Some(path) = &args.defaults_file {
                Defaults::File(path.clone())
            } else {
                Defaults::System
            },
            extra_args: args.mysqld_arg.clone(),
            startup_timeout: Duration::from_secs(args.startup_timeout),
        };
        let server = or_interrupted(
            &mut interrupts,
            async {
                TemporaryServer::start(&command)
                    .await
                    .with_context(|| format!("starting a server on {}", datadir.display()))
            },
            "while the temporary server started: nothing was replayed",
        )
        .await?;
        let restored = restore_into(args, &server.address(), &mut interrupts).await;
        let tail = server.error_log_tail(10);
        let stopped = server.shut_down().await;
        match (restored, stopped) {
            (Ok(code), Ok(())) => {
                // A log line, not a bare one: a restore Job's log is read as JSON.
                tracing::info!(datadir = %datadir.display(), "the temporary server shut down cleanly");
                Ok(code)
            }
            (Ok(_), Err(e)) => Err(e).context("shutting the temporary server down"),
            (Err(e), stopped) => {
                match stopped {
                    Ok(()) => tracing::warn!(
                        error_log = %tail,
                        "the temporary server was shut down; its error log ends so"
                    ),
                    Err(stop) => tracing::warn!(error = %stop, "the temporary server"),
                }
                Err(e)
            }
        }
    })
}

/// The first of `names` found on PATH or in /usr/sbin (where servers are, and not on
/// every user's PATH).
fn find_program(names: &[&str], flag: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/libexec"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "found none of {} on PATH or in /usr/sbin: name it with {flag}",
                names.join(", ")
            )
        })
}

fn target_address(args: &RestoreArgs, url: &str) -> anyhow::Result<ServerAddress> {
    let (host, port, user) = parse_server_url(
        url,
        "--target",
        "BINLOGD_TARGET_PASSWORD or a file named by --target-password-file",
    )?;
    let password = crate::flags::read_password(
        args.target_password_file.as_deref(),
        "--target-password-file",
        "BINLOGD_TARGET_PASSWORD",
    )?;
    Ok(ServerAddress {
        endpoint: Endpoint::Tcp { host, port },
        user,
        password,
    })
}

/// `work`, unless a signal comes first: then the error says which, and `what_then` (the
/// state things are left in).
async fn or_interrupted<T>(
    interrupts: &mut Option<Interrupts>,
    work: impl Future<Output = anyhow::Result<T>>,
    what_then: &str,
) -> anyhow::Result<T> {
    match interrupts {
        Some(interrupts) => tokio::select! {
            done = work => done,
            signal = interrupts.recv() => bail!("interrupted by {signal} {what_then}"),
        },
        None => work.await,
    }
}

async fn restore_into(
    args: &RestoreArgs,
    address: &ServerAddress,
    interrupts: &mut Option<Interrupts>,
) -> anyhow::Result<ExitCode> {
    let point = args.stop.stop_at();
    let mut server = ReplayServer::connect(address).await?;
    let facts = server.facts().await?;
    let given = if let Some(gtids) = &args.from_gtid {
        StartGiven::Gtids(gtids.clone())
    } else if let Some(dir) = &args.from_backup {
        StartGiven::Backup(dir.clone())
    } else if args.from_archive_start {
        StartGiven::ArchiveStart
    } else {
        StartGiven::ServerState
    };
    let start = choose_start(&given, &facts)?;
    if let (StopAt::Gtids(target), Some(start)) = (&point, &start)
        && start.includes_all(target)
        && target.includes_all(start)
    {
        eprintln!("nothing to apply: the server already holds {point}");
        return Ok(ExitCode::SUCCESS);
    }
    let archive = open_archive(&args.archive).await?;
    let files = archive.files().await?;
    let plan = plan(&files, &archive, start.as_ref(), &point)
        .await
        .with_context(|| format!("planning the restore from {}", archive.location()))?;
    if !plan.target_reached {
        let last = plan
            .stop
            .as_ref()
            .map_or("-".to_owned(), |s| format_micros(s.commit_micros));
        if args.strict {
            bail!(
                "{point} is beyond the archive, which reaches {} (last commit {last}); \
                 --strict restores nothing",
                plan.end
            );
        }
        eprintln!(
            "WARNING: {point} is beyond the archive: restoring to the last recoverable \
             transaction, {} (committed {last})",
            plan.end
        );
    }
    if args.dry_run {
        print_plan(&mut std::io::stdout().lock(), &plan, &point)?;
        return Ok(ExitCode::SUCCESS);
    }
    // For whoever follows the restore from its log (the operator reads it from a Job).
    tracing::info!(
        files = plan.pieces.len(),
        bytes = plan.pieces.iter().map(|p| p.end - p.start).sum::<u64>(),
        transactions = plan.transactions,
        target_gtid = %plan.end,
        target_time = %plan.stop.as_ref().map_or("-".to_owned(), |s| format_micros(s.commit_micros)),
        target_reached = plan.target_reached,
        "planned"
    );
    if plan.transactions == 0 {
        eprintln!("nothing to apply: the server already holds {point}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.via_mysqlbinlog {
        return replay_via_mysqlbinlog(args, &archive, &plan, address, facts.flavour).await;
    }
    if args.via_replication {
        return replay_via_replication(args, &archive, &plan, &mut server, interrupts).await;
    }
    apply(args, &archive, &plan, &mut server, &facts, interrupts).await
}

/// `--via-mysqlbinlog`: the plan replayed by `mariadb-binlog | mariadb`, or
/// `mysqlbinlog | mysql` into MySQL.
async fn replay_via_mysqlbinlog(
    args: &RestoreArgs,
    archive: &Archive,
    plan: &Plan,
    address: &ServerAddress,
    flavour: Flavour,
) -> anyhow::Result<ExitCode> {
    // MariaDB's reader cannot decode MySQL's newer events, nor MySQL's MariaDB's.
    let (readers, clients): (&[&str], &[&str]) = match flavour {
        Flavour::MariaDb => (&["mariadb-binlog", "mysqlbinlog"], &["mariadb", "mysql"]),
        Flavour::MySql => (&["mysqlbinlog"], &["mysql"]),
    };
    let programs = PipePrograms {
        binlog_reader: match &args.mysqlbinlog {
            Some(path) => path.clone(),
            None => find_program(readers, "--mysqlbinlog")?,
        },
        client: match &args.mysql_client {
            Some(path) => path.clone(),
            None => find_program(clients, "--mysql-client")?,
        },
    };
    let began = Instant::now();
    let total: u64 = plan.pieces.iter().map(|p| p.end - p.start).sum();
    let bar = progress_bar(total, "replaying");
    replay_through_pipe(archive, plan, address, &programs, flavour, |file, bytes| {
        if let Some(bar) = &bar {
            bar.inc(bytes);
        } else {
            tracing::info!(file, bytes, "replayed");
        }
    })
    .await?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    log_restored(plan, &args.stop.stop_at(), began);
    println!(
        "restored to {} through {} | {}: {} transactions in {:.1} s{}",
        plan.end,
        programs.binlog_reader.display(),
        programs.client.display(),
        plan.transactions,
        began.elapsed().as_secs_f64(),
        short_of(plan, &args.stop.stop_at())
    );
    Ok(ExitCode::SUCCESS)
}

/// `--via-replication`: a private `binlogd serve` on 127.0.0.1, serving the archive up to
/// the plan's cut to a one-off account, and the server replicating from it.
async fn replay_via_replication(
    args: &RestoreArgs,
    archive: &Archive,
    plan: &Plan,
    server: &mut ReplayServer,
    interrupts: &mut Option<Interrupts>,
) -> anyhow::Result<ExitCode> {
    let began = Instant::now();
    let Some(last) = plan.pieces.last() else {
        bail!("the plan has no transactions to serve");
    };
    const ACCOUNT: &str = "binlogd-restore";
    let password = binlogd_serve::users::random_password();
    let serve = binlogd_serve::Server::bind(binlogd_serve::ServeConfig {
        archive: crate::archive::served_archive(&args.archive).await?,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        users: binlogd_serve::Users::one_off(ACCOUNT, password.as_bytes())?,
        tls: None,
        require_tls: false,
        write_timeout: Duration::from_secs(60),
        until: Some(binlogd_serve::Until {
            epoch: last.epoch.clone(),
            file: last.file.clone(),
            end: last.end,
        }),
    })
    .await
    .context("starting the private binlogd serve the server replicates from")?;
    let listening = serve.local_addr()?;
    tracing::info!(%listening, "serving the archive to the server up to the target");
    let (close, closed) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(serve.run(closed));
    let source = ReplicationSource {
        host: listening.ip().to_string(),
        port: listening.port(),
        user: ACCOUNT.to_owned(),
        password,
    };
    let total: u64 = plan.pieces.iter().map(|p| p.end - p.start).sum();
    let mut shown = Shown::applying_only(total);
    let options = ReplayOptions {
        parallel_workers: args.parallel_workers,
        stall_timeout: Duration::from_secs(args.stall_timeout),
    };
    let stop = async {
        match interrupts {
            Some(interrupts) => interrupts.recv().await,
            None => std::future::pending().await,
        }
    };
    let replicated = replicate(archive, plan, server, &source, &options, &mut shown, stop).await;
    shown.clear();
    // The channel is gone (or never made): nothing connects to the private serve any more.
    let _ = close.send(true);
    match serving.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the private binlogd serve"),
        Err(e) => tracing::warn!(error = %e, "the private binlogd serve failed to run"),
    }
    replicated?;
    log_restored(plan, &args.stop.stop_at(), began);
    let stop = plan.stop.as_ref();
    println!(
        "restored to {} (last transaction {} committed {}): {} transactions by replication \
         from the archive ({} bytes) in {:.1} s{}",
        plan.end,
        stop.and_then(|s| s.gtid)
            .map_or("-".to_owned(), |g| g.to_string()),
        stop.map_or("-".to_owned(), |s| format_micros(s.commit_micros)),
        plan.transactions,
        total,
        began.elapsed().as_secs_f64(),
        short_of(plan, &args.stop.stop_at())
    );
    Ok(ExitCode::SUCCESS)
}

async fn apply(
    args: &RestoreArgs,
    archive: &Archive,
    plan: &Plan,
    server: &mut ReplayServer,
    facts: &binlogd_restore::apply::ServerFacts,
    interrupts: &mut Option<Interrupts>,
) -> anyhow::Result<ExitCode> {
    let began = Instant::now();
    let total: u64 = plan.pieces.iter().map(|p| p.end - p.start).sum();
    let mut shown = Shown::new(total);
    let options = ReplayOptions {
        parallel_workers: args.parallel_workers,
        stall_timeout: Duration::from_secs(args.stall_timeout),
    };
    let stop = async {
        match interrupts {
            Some(interrupts) => interrupts.recv().await,
            None => std::future::pending().await,
        }
    };
    let replayed = replay(archive, plan, server, facts, &options, &mut shown, stop).await;
    shown.clear();
    let replayed = replayed?;
    let stop = plan.stop.as_ref();
    log_restored(plan, &args.stop.stop_at(), began);
    println!(
        "restored to {} (last transaction {} committed {}): {} transactions from {} relay logs \
         ({} bytes) in {:.1} s, staging {:.1} s{}",
        plan.end,
        stop.and_then(|s| s.gtid)
            .map_or("-".to_owned(), |g| g.to_string()),
        stop.map_or("-".to_owned(), |s| format_micros(s.commit_micros)),
        plan.transactions,
        replayed.relay_logs,
        replayed.staged_bytes,
        began.elapsed().as_secs_f64(),
        replayed.staging.as_secs_f64(),
        short_of(plan, &args.stop.stop_at())
    );
    Ok(ExitCode::SUCCESS)
}
