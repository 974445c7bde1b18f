//! `cargo run --release -p xtask -- bench-restore [--flavour mariadb|mysql]`: point-in-time
//! restore, end to end, by `binlogd restore` (relay logs replayed by the server's parallel
//! applier, staging included) against `mariadb-binlog FILES | mariadb` (MySQL 9.7:
//! `mysqlbinlog FILES | mysql`), what people do today, on the same base (a mariadb-backup
//! backup; a MySQL CLONE) and the same sysbench binlogs, in alternating runs; prints both
//! medians and the ratio. Every restore is checked: the tables' checksums must equal the
//! primary's.
//!
//! `--against replication` sets `binlogd restore --via-replication` (the server replicating
//! from a private `binlogd serve`, nothing staged) against the default staged relay logs
//! instead of the pipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use binlogd_testkit::{
    BinlogSource, MariaDb, MariaDbConfig, MySql, MySqlConfig, SysbenchLoad, Tool, find_tool,
};

const TABLES: u32 = 4;

struct Args {
    binlogd: PathBuf,
    runs: usize,
    megabytes: u64,
    workers: u32,
    mysql: bool,
    /// The second contender: the pipe, or binlogd restore --via-replication.
    by_replication: bool,
}

impl Args {
    /// The second contender's name.
    fn other(&self) -> &'static str {
        match (self.by_replication, self.mysql) {
            (true, _) => "binlogd restore --via-replication",
            (false, false) => "mariadb-binlog | mariadb",
            (false, true) => "mysqlbinlog | mysql",
        }
    }
}

fn parse(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        binlogd: PathBuf::from("target/release/binlogd"),
        runs: 3,
        megabytes: 500,
        workers: 4,
        mysql: false,
        by_replication: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--binlogd" => parsed.binlogd = PathBuf::from(value()?),
            "--runs" => parsed.runs = value()?.parse()?,
            "--megabytes" => parsed.megabytes = value()?.parse()?,
            "--workers" => parsed.workers = value()?.parse()?,
            "--flavour" => {
                parsed.mysql = match value()?.as_str() {
                    "mariadb" => false,
                    "mysql" => true,
                    other => bail!("--flavour {other}: mariadb or mysql"),
                }
            }
            "--against" => {
                parsed.by_replication = match value()?.as_str() {
                    "pipe" => false,
                    "replication" => true,
                    other => bail!("--against {other}: pipe or replication"),
                }
            }
            other => bail!(
                "unknown argument {other}: bench-restore [--flavour mariadb|mysql] \
                 [--against pipe|replication] [--binlogd PATH] [--runs N] [--megabytes M] \
                 [--workers W]"
            ),
        }
    }
    if !parsed.binlogd.is_file() {
        bail!(
            "{} not found: cargo build --release",
            parsed.binlogd.display()
        );
    }
    Ok(parsed)
}

pub fn bench_restore(args: &[String]) -> Result<()> {
    let args = parse(args)?;
    if args.mysql {
        return bench_restore_mysql(&args);
    }
    let scratch = crate::tempfile_dir()?;
    let primary = MariaDbConfig {
        max_binlog_size: Some(128 << 20),
        ..MariaDbConfig::default()
    }
    .start()?;
    println!("==> sysbench tables, then a base backup");
    primary.sysbench(&load(1))?;
    let backup = primary.backup(&scratch.join("base"))?;
    let at_backup = binlog_bytes(&primary)?;
    println!(
        "==> writing at least {} MB of sysbench oltp_write_only binlogs after it",
        args.megabytes
    );
    let mut written = 0;
    while written < args.megabytes << 20 {
        primary.sysbench(&load(20))?;
        written = binlog_bytes(&primary)? - at_backup;
        println!("    {} MB", written >> 20);
    }
    primary.rotate()?;
    let expected = checksums(&primary)?;
    let archive = scratch.join("archive");
    let status = Command::new(&args.binlogd)
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
    // The pipe reads the archived copies (plain binlog files) from the backup's file on.
    let epoch = archive.join("0001-server1");
    let mut files: Vec<PathBuf> = primary
        .binlog_names()?
        .into_iter()
        .filter(|name| name.as_str() >= backup.binlog_file.as_str())
        .map(|name| epoch.join(name))
        .collect();
    files.sort();
    drop(primary);

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..args.runs {
        for slot in 0..2 {
            let turn = (slot + run) % 2;
            let target = MariaDbConfig {
                server_id: 9,
                skip_log_bin: true,
                restore_from: Some(backup.dir.clone()),
                extra_args: vec!["--innodb-buffer-pool-size=1G".to_owned()],
                ..MariaDbConfig::default()
            }
            .start()?;
            target.create_tcp_admin("restorer", "restore-pw")?;
            let started = Instant::now();
            if turn == 0 {
                restore_with_binlogd(&args, &archive, &backup.dir, &target, &[])?;
            } else if args.by_replication {
                restore_with_binlogd(
                    &args,
                    &archive,
                    &backup.dir,
                    &target,
                    &["--via-replication"],
                )?;
            } else {
                restore_with_pipe(&files, backup.binlog_position, &target)?;
            }
            let seconds = started.elapsed().as_secs_f64();
            if checksums(&target)? != expected {
                bail!("run {run}: the restored tables differ from the primary's");
            }
            if turn == 0 {
                ours.push(seconds);
            } else {
                theirs.push(seconds);
            }
        }
        println!(
            "    run {}: binlogd restore {:.1} s, {} {:.1} s",
            run + 1,
            ours[run],
            args.other(),
            theirs[run]
        );
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "restored {} MB of binlogs after the backup, checksums equal every time; medians: \
         binlogd restore ({} workers) {ours:.1} s, {} {theirs:.1} s\n\
         binlogd restore is {:.2}x as fast",
        written >> 20,
        args.workers,
        args.other(),
        theirs / ours
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

fn restore_with_binlogd(
    args: &Args,
    archive: &Path,
    backup: &Path,
    target: &MariaDb,
    extra: &[&str],
) -> Result<()> {
    let output = Command::new(&args.binlogd)
        .args(["restore", "--latest", "--archive"])
        .arg(archive)
        .args(extra)
        .arg("--from-backup")
        .arg(backup)
        .arg("--target")
        .arg(format!("mysql://restorer@127.0.0.1:{}", target.port()))
        .arg("--parallel-workers")
        .arg(args.workers.to_string())
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .env("BINLOGD_LOG", "warn")
        .output()?;
    if !output.status.success() {
        bail!(
            "binlogd restore failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `mariadb-binlog --start-position=P FILES | mariadb`, as the manual says.
fn restore_with_pipe(files: &[PathBuf], start: u64, target: &MariaDb) -> Result<()> {
    let mut reader = Command::new(find_tool(Tool::MariadbBinlog)?)
        .arg(format!("--start-position={start}"))
        .args(files)
        .stdout(Stdio::piped())
        .spawn()?;
    let sql = reader.stdout.take().context("mariadb-binlog's output")?;
    let client = Command::new(find_tool(Tool::MariadbClient)?)
        .args(["--no-defaults", "--protocol=tcp", "--host=127.0.0.1"])
        .arg(format!("--port={}", target.port()))
        .args(["--user=restorer", "--binary-mode"])
        .env("MYSQL_PWD", "restore-pw")
        .stdin(sql)
        .output()?;
    let read = reader.wait()?;
    if !read.success() || !client.status.success() {
        bail!(
            "the pipe failed ({read}, {}): {}",
            client.status,
            String::from_utf8_lossy(&client.stderr)
        );
    }
    Ok(())
}

/// `CHECKSUM TABLE` of the sysbench tables, in order.
fn checksums(db: &impl BinlogSource) -> Result<Vec<Vec<String>>> {
    let tables: Vec<String> = (1..=TABLES).map(|i| format!("sbtest.sbtest{i}")).collect();
    db.query_rows(&format!("CHECKSUM TABLE {}", tables.join(", ")))
}

/// The sysbench load of both flavours: `seconds` of oltp_write_only on TABLES tables.
fn load(seconds: u32) -> SysbenchLoad {
    SysbenchLoad {
        tables: TABLES,
        table_size: 100_000,
        threads: 4,
        seconds,
        events: 0,
    }
}

/// The bytes of `db`'s binlogs.
fn binlog_bytes(db: &impl BinlogSource) -> Result<u64> {
    Ok(db
        .binlog_files()?
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum())
}

/// The median of `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// MySQL 9.7: a CLONE base, the binlogs after it archived by binlogd, then restores by
/// `binlogd restore` and by `mysqlbinlog | mysql` into servers started on copies of the
/// clone. Both run in MySQL's root filesystem, where the server's files and tools are.
fn bench_restore_mysql(args: &Args) -> Result<()> {
    let primary = MySqlConfig {
        max_binlog_size: Some(128 << 20),
        ..MySqlConfig::default()
    }
    .start()?;
    let scratch = primary.dir().join("bench");
    std::fs::create_dir_all(&scratch)?;
    println!("==> sysbench tables, then a CLONE");
    primary.sysbench(&load(1))?;
    let clone = scratch.join("clone");
    primary.clone_to(&clone)?;
    // The pipe is fed whole files: the ones after the clone.
    primary.rotate()?;
    let first_after = primary.binlog_names()?.pop().context("no binlog")?;
    let at_clone = binlog_bytes(&primary)?;
    println!(
        "==> writing at least {} MB of sysbench oltp_write_only binlogs after it",
        args.megabytes
    );
    let mut written = 0;
    while written < args.megabytes << 20 {
        primary.sysbench(&load(20))?;
        written = binlog_bytes(&primary)? - at_clone;
        println!("    {} MB", written >> 20);
    }
    primary.rotate()?;
    let expected = checksums(&primary)?;
    let expected_gtids = primary.gtid_executed()?;
    let archive = scratch.join("archive");
    let status = Command::new(&args.binlogd)
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
    let epoch = std::fs::read_dir(&archive)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("no epoch in the archive")?;
    let files: Vec<PathBuf> = primary
        .binlog_names()?
        .into_iter()
        .filter(|name| name.as_str() >= first_after.as_str())
        .map(|name| primary.server_path(&epoch.join(name)))
        .collect();
    let binlogd = scratch.join("binlogd");
    std::fs::copy(&args.binlogd, &binlogd)?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..args.runs {
        for slot in 0..2 {
            let turn = (slot + run) % 2;
            let copy = scratch.join(format!("datadir-{run}-{turn}"));
            let status = Command::new("cp")
                .arg("-a")
                .arg(&clone)
                .arg(&copy)
                .status()?;
            if !status.success() {
                bail!("copying the clone: {status}");
            }
            let target = MySqlConfig {
                server_id: Some(9),
                adopt_datadir: Some(copy),
                extra_args: vec!["--innodb-buffer-pool-size=1G".to_owned()],
                ..MySqlConfig::default()
            }
            .start()?;
            target.create_tcp_admin("restorer", "restore-pw")?;
            let started = Instant::now();
            let output = if turn == 0 || args.by_replication {
                target
                    .beside_server(&binlogd)
                    .args(["restore", "--latest", "--archive"])
                    .arg(target.server_path(&archive))
                    .args((turn == 1).then_some("--via-replication"))
                    .arg("--from-backup")
                    .arg(target.server_path(&clone))
                    .arg("--target")
                    .arg(format!("mysql://restorer@127.0.0.1:{}", target.port()))
                    .arg("--parallel-workers")
                    .arg(args.workers.to_string())
                    .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
                    .env("BINLOGD_LOG", "warn")
                    .output()?
            } else {
                // `mysqlbinlog FILES | mysql`, as MySQL's manual says, in one shell.
                let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let mut shell = Command::new("chroot");
                shell
                    .arg(MySql::root_filesystem()?)
                    .args(["sh", "-c"])
                    .arg(format!(
                        "mysqlbinlog {} | mysql --no-defaults --protocol=tcp --host=127.0.0.1 \
                         --port={} --user=restorer --binary-mode",
                        list.join(" "),
                        target.port()
                    ))
                    .env("MYSQL_PWD", "restore-pw");
                shell.output()?
            };
            let seconds = started.elapsed().as_secs_f64();
            if !output.status.success() {
                bail!(
                    "run {run}, {}: {}",
                    if turn == 0 {
                        "binlogd restore"
                    } else {
                        args.other()
                    },
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if checksums(&target)? != expected || target.gtid_executed()? != expected_gtids {
                bail!("run {run}: the restored server differs from the primary");
            }
            if turn == 0 {
                ours.push(seconds);
            } else {
                theirs.push(seconds);
            }
        }
        println!(
            "    run {}: binlogd restore {:.1} s, {} {:.1} s",
            run + 1,
            ours[run],
            args.other(),
            theirs[run]
        );
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "restored {} MB of MySQL 9.7 binlogs after the clone, checksums and gtid_executed \
         equal every time; medians: binlogd restore ({} workers) {ours:.1} s, \
         {} {theirs:.1} s\nbinlogd restore is {:.2}x as fast",
        written >> 20,
        args.workers,
        args.other(),
        theirs / ours
    );
    Ok(())
}
