//! The three ways `binlogd restore` replays a plan: the plan's ranges staged as relay logs
//! and applied by the server's own parallel applier (the default), the same ranges fed to
//! `mariadb-binlog | mariadb` (`--via-mysqlbinlog`), or served by a private `binlogd serve`
//! that the server replicates from (`--via-replication`).

use crate::restore_args::RestoreArgs;
use crate::restore_report::{Shown, log_restored, progress_bar, short_of};
use crate::signals::Interrupts;
use anyhow::{Context, bail};
use binlogd_parser::Flavour;
use binlogd_restore::apply::{ReplayServer, ReplicationSource, ServerAddress};
use binlogd_restore::pipe::{PipePrograms, replay_through_pipe};
use binlogd_restore::replay::{ReplayOptions, replay, replicate};
use binlogd_storage::Archive;
use binlogd_storage::plan::{Plan, format_micros};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The first of `names` found on PATH or in /usr/sbin (where servers are, and not on
/// every user's PATH).
pub(crate) fn find_program(names: &[&str], flag: &str) -> anyhow::Result<PathBuf> {
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

/// `--via-mysqlbinlog`: the plan replayed by `mariadb-binlog | mariadb`, or
/// `mysqlbinlog | mysql` into MySQL.
pub(crate) async fn replay_via_mysqlbinlog(
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
pub(crate) async fn replay_via_replication(
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
        // The one server being restored, reconnecting now and then.
        max_connections: 16,
        idle_timeout: Duration::from_secs(28_800),
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

pub(crate) async fn apply(
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
