//! `binlogd restore`: replays the archive into a MariaDB or MySQL server up to a target,
//! with the server's own parallel applier. Plan (`storage::plan`) → relay logs in the server's
//! relay-log folder (`restore::stage`) → applier driven over SQL (`restore::apply`). The
//! server is one running on this machine (`--target`), or one binlogd starts on a restored
//! datadir with networking off and shuts down afterwards (`--datadir`, `restore::server`).

use crate::archive::{block_on, open_archive};
use crate::flags::parse_server_url;
use crate::search::print_plan;
use crate::signals::Interrupts;
use anyhow::{Context, bail};
use binlogd_restore::apply::{Endpoint, ReplayServer, ServerAddress};
use binlogd_restore::server::{Defaults, ServerCommand, TemporaryServer};
use binlogd_restore::start::{StartGiven, choose_start};
use binlogd_storage::plan::{StopAt, format_micros, plan};
use std::process::ExitCode;
use std::time::Duration;

pub use crate::restore_args::RestoreArgs;
use crate::restore_replay::{apply, find_program, replay_via_mysqlbinlog, replay_via_replication};
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
