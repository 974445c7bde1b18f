//! `cargo run --release -p xtask -- bench-serve`: how fast `binlogd serve` hands an
//! archive out, against the primary that wrote it.
//!
//! A MariaDB primary (its defaults, 256 MB files) takes sysbench `oltp_write_only` until
//! its binlog holds `--megabytes`; `binlogd stream --exit-at-end` archives it; `binlogd
//! serve` serves the archive. Then, in runs that alternate who goes first:
//! - `mariadb-binlog --read-from-remote-server --raw --to-last-log` pulls every file from
//!   binlogd and from the primary (target: binlogd at least as fast — it serves files, not
//!   a database);
//! - a new, empty MariaDB replica catches up on everything from binlogd and from the
//!   primary, timed from `START SLAVE` to `MASTER_GTID_WAIT` (target: ≥ 0.9× the
//!   primary's speed). `--skip-replicas` leaves this part out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use binlogd_testkit::{MariaDb, MariaDbConfig, SysbenchLoad};

/// The account the benchmark's clients log in to binlogd serve with.
const USER: &str = "bench";
const PASSWORD: &str = "bench-Secret-1";

pub fn bench_serve(args: &[String]) -> Result<()> {
    let mut binlogd = PathBuf::from("target/release/binlogd");
    let mut runs = 3usize;
    let mut megabytes = 500u64;
    let mut replicas = true;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binlogd" => binlogd = PathBuf::from(it.next().context("--binlogd needs a path")?),
            "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
            "--megabytes" => {
                megabytes = it.next().context("--megabytes needs a number")?.parse()?;
            }
            "--skip-replicas" => replicas = false,
            other => bail!(
                "unknown argument {other}: cargo run --release -p xtask -- bench-serve \
                 [--binlogd PATH] [--runs N] [--megabytes M] [--skip-replicas]"
            ),
        }
    }
    if !binlogd.is_file() {
        bail!("{} not found: cargo build --release", binlogd.display());
    }
    let primary = MariaDbConfig {
        max_binlog_size: Some(256 << 20),
        ..MariaDbConfig::default()
    }
    .start()?;
    println!("==> writing at least {megabytes} MB of sysbench oltp_write_only binlogs");
    let load = SysbenchLoad {
        tables: 8,
        table_size: 100_000,
        threads: 4,
        seconds: 20,
        events: 0,
    };
    let mut total = 0;
    while total < megabytes << 20 {
        primary.sysbench(&load)?;
        total = primary
            .binlog_files()?
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum();
        println!("    {} MB", total >> 20);
    }
    primary.rotate()?;
    let scratch = crate::tempfile_dir()?;
    let archive = scratch.join("archive");
    println!(
        "==> binlogd stream --exit-at-end into {}",
        archive.display()
    );
    let status = Command::new(&binlogd)
        .args(["stream", "--exit-at-end", "--no-progress", "--source"])
        .arg(primary.replication_url())
        .arg("--archive")
        .arg(&archive)
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .env("BINLOGD_LOG", "warn")
        .status()?;
    if !status.success() {
        bail!("binlogd stream failed: {status}");
    }
    let users = scratch.join("users");
    make_users_file(&binlogd, &users, USER, PASSWORD)?;
    let port = binlogd_testkit::free_port()?;
    let mut serve = Command::new(&binlogd)
        .args(["serve", "--archive"])
        .arg(&archive)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--users-file"])
        .arg(&users)
        .env("BINLOGD_LOG", "warn")
        .spawn()?;
    let serve_result = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("binlogd serve did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let first = primary
            .binlog_names()?
            .into_iter()
            .next()
            .context("no binlog")?;
        let tool = binlogd_testkit::find_tool(binlogd_testkit::Tool::MariadbBinlog)?;
        let pull =
            |port: u16, user: &'static str, password: &'static str| -> crate::PullCommand<'_> {
                let tool = tool.clone();
                let first = first.clone();
                Box::new(move |dir: &Path| {
                    let mut command = Command::new(&tool);
                    command
                        .args([
                            "--read-from-remote-server",
                            "--raw",
                            "--to-last-log",
                            "--host=127.0.0.1",
                        ])
                        .arg(format!("--port={port}"))
                        .arg(format!("--user={user}"))
                        .arg(format!("--password={password}"))
                        .arg(format!("--result-file={}/", dir.display()))
                        .arg(&first);
                    Ok(command)
                })
            };
        println!("==> mariadb-binlog --read-from-remote-server --raw, {runs} alternating runs");
        let contenders: Vec<crate::Contender<'_>> = vec![
            (
                "mariadb-binlog from binlogd".to_owned(),
                pull(port, USER, PASSWORD),
            ),
            (
                "mariadb-binlog from the primary".to_owned(),
                pull(
                    primary.port(),
                    binlogd_testkit::REPLICATION_USER,
                    binlogd_testkit::REPLICATION_PASSWORD,
                ),
            ),
        ];
        crate::pull_contest(&contenders, &scratch.join("pulls"), runs, total)?;
        if replicas {
            replica_contest(&primary, port, runs)?;
        }
        Ok(())
    })();
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_dir_all(&scratch);
    serve_result
}

/// Fresh replicas catch up from binlogd and from the primary, in alternating order.
fn replica_contest(primary: &MariaDb, serve_port: u16, runs: usize) -> Result<()> {
    println!("==> a new replica catches up on everything, {runs} alternating runs");
    let target = primary.gtid_binlog_pos()?;
    let sources = [
        ("from binlogd", serve_port, USER, PASSWORD),
        (
            "from the primary",
            primary.port(),
            binlogd_testkit::REPLICATION_USER,
            binlogd_testkit::REPLICATION_PASSWORD,
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sources.len()];
    for run in 0..runs {
        for slot in 0..sources.len() {
            let turn = (slot + run) % sources.len();
            let (name, port, user, password) = sources[turn];
            // A replica needs a server_id of its own.
            let replica = MariaDbConfig {
                server_id: 2,
                ..MariaDbConfig::default()
            }
            .start()?;
            let started = Instant::now();
            replica.replicate_from_port(port, user, password, "")?;
            replica
                .wait_for_gtid(&target, Duration::from_secs(3600))
                .with_context(|| format!("the replica {name}"))?;
            let seconds = started.elapsed().as_secs_f64();
            println!("    run {}: {name} {seconds:.1} s", run + 1);
            times[turn].push(seconds);
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!(
        "replica catch-up medians: {} {:.1} s, {} {:.1} s: binlogd is {:.2}x the primary's speed",
        sources[0].0,
        medians[0],
        sources[1].0,
        medians[1],
        medians[1] / medians[0]
    );
    Ok(())
}

/// Writes a users file for `binlogd serve` with one account, by `binlogd serve-user` as a
/// user would.
pub(crate) fn make_users_file(
    binlogd: &Path,
    users: &Path,
    user: &str,
    password: &str,
) -> Result<()> {
    let mut child = Command::new(binlogd)
        .args(["serve-user", user, "--users-file"])
        .arg(users)
        .stdin(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("binlogd serve-user failed");
    }
    Ok(())
}
