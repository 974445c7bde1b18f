//! `cargo xtask demo` (what `scripts/demo` runs): a sandbox MariaDB under a write load,
//! streamed live by `binlogd stream` into a local archive.
//!
//! The sandbox is the test harness's private instance (temporary datadir, loopback port),
//! so the demo touches nothing else on the machine; the archive stays in
//! `target/binlogd-demo/archive` for the user to look at.

mod bench_age;
mod bench_find;
mod bench_restore;
mod bench_serve;
mod capture_replica;
mod fixture_previous_release;
mod module_cycles;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use binlogd_parser::EventReader;
use binlogd_testkit::{
    BinlogChecksum, BinlogFormat, BinlogSource, MariaDb, MariaDbConfig, MySqlConfig, SysbenchLoad,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("fuzz-seeds") if args.get(1).map(String::as_str) == Some("--archive-only") => {
            archive_fuzz_seeds(Path::new("fuzz/corpus"))
        }
        Some("fuzz-seeds") => fuzz_seeds(),
        Some("bench-pull") => bench_pull(&args[1..]),
        Some("pull-mysql-async") => pull_mysql_async(&args[1..]),
        Some("bench-lag") => bench_lag(&args[1..]),
        Some("bench-restore") => bench_restore::bench_restore(&args[1..]),
        Some("bench-find") => bench_find::bench_find(&args[1..]),
        Some("bench-serve") => bench_serve::bench_serve(&args[1..]),
        Some("bench-age") => bench_age::bench_age(&args[1..]),
        Some("fixture-previous-release") => {
            fixture_previous_release::fixture_previous_release(&args[1..])
        }
        Some("module-cycles") => module_cycles::module_cycles(),
        Some("capture-replica-setup") => capture_replica::capture_replica_setup(&args[1..]),
        _ => {
            bail!(
                "usage: cargo xtask demo [--seconds N] [--binlogd PATH] | cargo xtask fuzz-seeds [--archive-only] | \
                 cargo xtask module-cycles | \
                 cargo xtask fixture-previous-release --binlogd PATH [--out DIR] | \
                 cargo xtask capture-replica-setup [mariadb-10.11|mariadb-11.8|mysql-9.7]... | \
                 cargo run --release -p xtask -- bench-pull [--flavour mariadb|mysql] [--runs N] [--megabytes M] [--binlogd PATH] [--baseline PATH] | \
                 cargo run --release -p xtask -- bench-lag [--seconds N] [--binlogd PATH] | \
                 cargo run --release -p xtask -- bench-restore [--flavour mariadb|mysql] [--against pipe|replication] [--runs N] [--megabytes M] [--workers W] | \
                 cargo run --release -p xtask -- bench-serve [--runs N] [--megabytes M] [--binlogd PATH] [--skip-replicas] | \
                 cargo run --release -p xtask -- bench-find [--runs N] [--megabytes M] [--binlogd PATH] [--keep-archive DIR] | \
                 cargo run --release -p xtask -- bench-age [--ages N,N,...] [--latency-ms MS] [--logins N] [--binlogd PATH]"
            )
        }
    }
}

struct DemoArgs {
    seconds: Option<u64>,
    binlogd: PathBuf,
    archive: PathBuf,
}

fn parse_demo_args(args: &[String]) -> Result<DemoArgs> {
    let mut parsed = DemoArgs {
        seconds: None,
        binlogd: PathBuf::from("target/release/binlogd"),
        archive: PathBuf::from("target/binlogd-demo/archive"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                parsed.seconds = Some(it.next().context("--seconds needs a value")?.parse()?)
            }
            "--binlogd" => {
                parsed.binlogd = PathBuf::from(it.next().context("--binlogd needs a path")?)
            }
            "--archive" => {
                parsed.archive = PathBuf::from(it.next().context("--archive needs a path")?)
            }
            "-h" | "--help" => {
                println!(
                    "cargo xtask demo [--seconds N] [--binlogd PATH] [--archive DIR]\n\n\
                     Starts a sandbox MariaDB, writes to it, and runs `binlogd stream` into a local\n\
                     archive (default target/binlogd-demo/archive, emptied first). Shows progress\n\
                     every second; on Ctrl-C (or after N seconds) stops both and compares the\n\
                     archive with the server's binlog files byte for byte."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; see --help"),
        }
    }
    Ok(parsed)
}

fn demo(args: &[String]) -> Result<()> {
    let args = parse_demo_args(args)?;
    if !args.binlogd.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release`",
            args.binlogd.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst))
        .context("install Ctrl-C handler")?;

    println!("==> starting a sandbox MariaDB (private datadir, 127.0.0.1 only, server defaults)");
    // The server's defaults, but files of 64 KiB (the default is 1 GiB), so that the demo
    // shows rotations within seconds.
    let db = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()?;
    println!(
        "    ready: {}  (password: {})",
        db.replication_url(),
        db.replication_password()
    );
    println!("    binlogs: {}", db.binlog_dir().display());

    if args.archive.exists() {
        std::fs::remove_dir_all(&args.archive)
            .with_context(|| format!("emptying {}", args.archive.display()))?;
    }
    let parent = args.archive.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let log_path = parent.join("binlogd.log");
    let metrics_port = binlogd_testkit::free_port()?;
    println!(
        "==> binlogd stream --source {} --archive {}",
        db.replication_url(),
        args.archive.display()
    );
    println!(
        "    metrics: http://127.0.0.1:{metrics_port}/metrics   log: {}",
        log_path.display()
    );
    let mut streamer = Command::new(&args.binlogd)
        .args(["stream", "--source", &db.replication_url(), "--archive"])
        .arg(&args.archive)
        .args(["--no-progress", "--metrics-addr"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
        .stderr(std::fs::File::create(&log_path)?)
        // Its own process group: Ctrl-C is for the demo, which then stops binlogd cleanly.
        .process_group(0)
        .spawn()
        .context("start binlogd stream")?;
    println!("==> writing transactions (Ctrl-C to stop)");

    let started = Instant::now();
    let mut written = 0usize;
    let outcome = (|| -> Result<()> {
        while !stop.load(Ordering::SeqCst)
            && args
                .seconds
                .is_none_or(|s| started.elapsed() < Duration::from_secs(s))
        {
            let tick = Instant::now();
            if let Some(status) = streamer.try_wait()? {
                bail!(
                    "binlogd stream exited with {status}; its log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            // Ctrl-C in a terminal reaches the whole process group, the SQL client too: a
            // batch cut short by it is the user stopping the demo, not a failure.
            if let Err(err) = db.write_workload(200) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                return Err(err);
            }
            written += 200;
            let (transactions, last) = archived_transactions(&args.archive)?;
            println!(
                "    {:>5.1}s  server: {:>6} txns in {} files, at {:<10}  archive: {:>6} txns, last {}",
                started.elapsed().as_secs_f64(),
                written,
                db.binlog_names()?.len(),
                db.gtid_binlog_pos()?,
                transactions,
                last
            );
            if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok(())
    })();
    if let Err(err) = outcome {
        let _ = streamer.kill();
        return Err(err);
    }
    println!("==> letting binlogd catch up, then stopping it (SIGTERM)");
    wait_caught_up(&db, &args.archive, Duration::from_secs(30))?;
    Command::new("kill")
        .args(["-TERM", &streamer.id().to_string()])
        .status()?;
    let status = streamer.wait()?;
    if !status.success() {
        bail!("binlogd stream exited with {status}");
    }
    let files = db.binlog_files()?;
    let epoch = newest_epoch(&args.archive)?;
    let mut identical = 0;
    for file in &files {
        let copy = epoch.join(file.file_name().unwrap_or_default());
        if std::fs::read(file)? == std::fs::read(&copy).unwrap_or_default() {
            identical += 1;
        }
    }
    println!(
        "    {identical} of {} binlog files in the archive are byte-identical to the server's",
        files.len()
    );
    println!("==> stopping the sandbox");
    drop(db);
    let archive = args.archive.display();
    println!("\nNext:");
    println!("  binlogd inspect -t {archive}     every archived transaction, from the index");
    println!("  binlogd inspect -t {archive}/0001-server1/mariadb-bin.000001");
    println!("  binlogd stream --help            follow your own server");
    println!("  scripts/test                     the whole test suite against real servers");
    if identical != files.len() {
        bail!("the archive differs from the server's files");
    }
    Ok(())
}

/// The newest epoch directory of an archive.
fn newest_epoch(archive: &Path) -> Result<PathBuf> {
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(archive)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    epochs.sort();
    epochs.pop().context("the archive has no epoch yet")
}

/// Counts the transactions in the archive's index and finds the last GTID.
fn archived_transactions(archive: &Path) -> Result<(usize, String)> {
    let mut count = 0;
    let mut last = String::from("-");
    let Ok(epoch) = newest_epoch(archive) else {
        return Ok((0, last));
    };
    let mut indexes: Vec<PathBuf> = std::fs::read_dir(&epoch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".index.jsonl"))
        .collect();
    indexes.sort();
    for index in indexes {
        for line in std::fs::read_to_string(&index)?.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line being written
            };
            if record["record"] == "transaction" {
                count += 1;
                if let Some(gtid) = record["gtid"].as_str() {
                    last = gtid.to_owned();
                }
            }
        }
    }
    Ok((count, last))
}

/// Waits until the archive holds every binlog file of the server at its full length.
fn wait_caught_up(db: &MariaDb, archive: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // The server writes on after its last transaction (after a rotation, a
    // BINLOG_CHECKPOINT event once InnoDB has flushed, from a background thread): wait
    // until its binlogs have been still for two seconds, then until the archive holds
    // every byte of them.
    let mut sizes = server_binlog_sizes(db)?;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let now = server_binlog_sizes(db)?;
        if now != sizes {
            sizes = now;
            still_since = Instant::now();
        }
        if Instant::now() > deadline {
            bail!("the server's binlogs did not stop growing within {timeout:?}");
        }
    }
    loop {
        let epoch = newest_epoch(archive)?;
        let behind: Vec<String> = server_binlog_sizes(db)?
            .into_iter()
            .filter_map(|(name, size)| {
                let have = std::fs::metadata(epoch.join(&name)).map_or(0, |m| m.len());
                (have != size).then(|| format!("{name}: {have} of {size} bytes"))
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "binlogd did not catch up within {timeout:?}: {}",
                behind.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every binlog file of the server and its size, as `SHOW BINARY LOGS` says.
fn server_binlog_sizes(db: &MariaDb) -> Result<Vec<(String, u64)>> {
    db.query_rows("SHOW BINARY LOGS")?
        .into_iter()
        .map(|row| {
            let name = row.first().context("SHOW BINARY LOGS: no name")?.clone();
            let size = row
                .get(1)
                .context("SHOW BINARY LOGS: no size")?
                .parse()
                .context("SHOW BINARY LOGS: size")?;
            Ok((name, size))
        })
        .collect()
}

/// `cargo xtask bench-pull`: pulls the same ≥500 MB of existing binlogs from one local
/// server with `binlogd stream --exit-at-end` (which parses, CRC-checks, indexes and
/// fsyncs every event), with `mariadb-binlog --read-from-remote-server --raw
/// --to-last-log`, and with `mysql_async`'s binlog stream (`pull-mysql-async`) twice:
/// reading event headers only, and decoding every event's body and checking its CRC32 as
/// binlogd does; in rotating order; prints the median of each and the ratios.
fn bench_pull(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        // The mysql_async contender runs in this process's binary: a debug build would
        // handicap it.
        bail!("build the benchmark in release: cargo run --release -p xtask -- bench-pull");
    }
    let mut binlogd = PathBuf::from("target/release/binlogd");
    let mut baseline = None;
    let mut runs = 5usize;
    let mut megabytes = 500u64;
    let mut mysql = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binlogd" => binlogd = PathBuf::from(it.next().context("--binlogd needs a path")?),
            "--baseline" => {
                baseline = Some(PathBuf::from(it.next().context("--baseline needs a path")?))
            }
            "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
            "--megabytes" => {
                megabytes = it.next().context("--megabytes needs a number")?.parse()?
            }
            "--flavour" => {
                mysql = match it.next().context("--flavour needs a value")?.as_str() {
                    "mariadb" => false,
                    "mysql" => true,
                    other => bail!("--flavour {other}: mariadb or mysql"),
                }
            }
            other => bail!(
                "unknown argument {other}: cargo xtask bench-pull [--flavour mariadb|mysql] \
                 [--binlogd PATH] [--baseline PATH] [--runs N] [--megabytes M]"
            ),
        }
    }
    if !binlogd.is_file() {
        bail!("{} not found: cargo build --release", binlogd.display());
    }
    if let Some(baseline) = baseline.as_ref().filter(|b| !b.is_file()) {
        bail!("--baseline {}: no such binlogd binary", baseline.display());
    }
    let load = SysbenchLoad {
        tables: 8,
        table_size: 100_000,
        threads: 4,
        seconds: 20,
        events: 0,
    };
    println!("==> writing at least {megabytes} MB of sysbench oltp_write_only binlogs");
    let binlog_bytes = |db: &dyn Fn() -> Result<Vec<PathBuf>>| -> Result<u64> {
        Ok(db()?
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum())
    };
    if mysql {
        let db = MySqlConfig {
            max_binlog_size: Some(256 << 20),
            ..MySqlConfig::default()
        }
        .start()?;
        let mut total = 0;
        while total < megabytes << 20 {
            db.sysbench(&load)?;
            total = binlog_bytes(&|| db.binlog_files())?;
            println!("    {} MB", total >> 20);
        }
        db.rotate()?;
        let first = db.binlog_names()?.into_iter().next().context("no binlog")?;
        // MySQL's own mysqlbinlog, in its root filesystem, writing where it can.
        let scratch = db.dir().join("pulls");
        let reader = |dir: &Path, extra: &[&str]| -> Result<Command> {
            let mut command = db.own_tool(binlogd_testkit::Tool::Mysqlbinlog)?;
            command
                .args(extra)
                .args([
                    "--read-from-remote-server",
                    "--raw",
                    "--to-last-log",
                    "--host=127.0.0.1",
                ])
                .arg(format!("--port={}", db.port()))
                .arg(format!("--user={}", binlogd_testkit::REPLICATION_USER))
                .arg(format!("--password={}", db.replication_password()))
                .arg(format!("--result-file={}/", db.server_path(dir).display()))
                .arg(&first);
            Ok(command)
        };
        let mut contenders = common_contenders(&db, &binlogd, baseline.as_deref(), &first)?;
        contenders.insert(
            1,
            (
                "mysqlbinlog".to_owned(),
                Box::new(move |dir: &Path| reader(dir, &[])),
            ),
        );
        contenders.insert(
            2,
            (
                "mysqlbinlog (no TLS)".to_owned(),
                Box::new(move |dir: &Path| reader(dir, &["--ssl-mode=DISABLED"])),
            ),
        );
        pull_contest(&contenders, &scratch, runs, total)
    } else {
        let db = MariaDbConfig {
            max_binlog_size: Some(256 << 20),
            ..MariaDbConfig::default()
        }
        .start()?;
        let mut total = 0;
        while total < megabytes << 20 {
            db.sysbench(&load)?;
            total = binlog_bytes(&|| db.binlog_files())?;
            println!("    {} MB", total >> 20);
        }
        db.rotate()?;
        let first = db.binlog_names()?.into_iter().next().context("no binlog")?;
        let mariadb_binlog = binlogd_testkit::find_tool(binlogd_testkit::Tool::MariadbBinlog)?;
        let reader = |dir: &Path| -> Result<Command> {
            let mut command = Command::new(&mariadb_binlog);
            command
                .args([
                    "--read-from-remote-server",
                    "--raw",
                    "--to-last-log",
                    "--host=127.0.0.1",
                ])
                .arg(format!("--port={}", db.port()))
                .arg(format!("--user={}", binlogd_testkit::REPLICATION_USER))
                .arg(format!("--password={}", db.replication_password()))
                .arg(format!("--result-file={}/", dir.display()))
                .arg(&first);
            Ok(command)
        };
        let scratch = tempfile_dir()?;
        let mut contenders = common_contenders(&db, &binlogd, baseline.as_deref(), &first)?;
        // MariaDB 10.11 ships without TLS: "no TLS" is the same as the default there.
        drop(contenders.remove(1));
        contenders.insert(1, ("mariadb-binlog".to_owned(), Box::new(reader)));
        pull_contest(&contenders, &scratch, runs, total)
    }
}

/// How a contender of `bench-pull` pulls into a folder: its command.
pub(crate) type PullCommand<'a> = Box<dyn Fn(&Path) -> Result<Command> + 'a>;

/// A contender of `bench-pull`: its name, and its command.
pub(crate) type Contender<'a> = (String, PullCommand<'a>);

/// The contenders every flavour has: binlogd with and without TLS, the `mysql_async`
/// client reading headers only and decoding every event, and, to compare two builds in
/// one run, a `baseline` binlogd (another commit's release binary) last.
fn common_contenders<'a>(
    db: &'a impl binlogd_testkit::BinlogSource,
    binlogd: &'a Path,
    baseline: Option<&'a Path>,
    first: &'a str,
) -> Result<Vec<Contender<'a>>> {
    let xtask = std::env::current_exe()?;
    let build_with = move |binary: &'a Path, args: &'a [&'a str]| -> PullCommand<'a> {
        Box::new(move |dir: &Path| {
            let mut command = Command::new(binary);
            command
                .args(["stream", "--exit-at-end", "--no-progress", "--source"])
                .arg(db.replication_url())
                .arg("--archive")
                .arg(dir.join("archive"))
                .args(args)
                .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
                .env("BINLOGD_LOG", "warn");
            Ok(command)
        })
    };
    let mysql_async = move |decode: bool| -> PullCommand<'a> {
        let xtask = xtask.clone();
        Box::new(move |_: &Path| {
            let mut command = Command::new(&xtask);
            command
                .arg("pull-mysql-async")
                .arg(format!(
                    "mysql://{}@127.0.0.1:{}",
                    binlogd_testkit::REPLICATION_USER,
                    db.port()
                ))
                .arg(first)
                .args(decode.then_some("--decode"))
                .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
                .stdout(std::process::Stdio::null());
            Ok(command)
        })
    };
    let mut contenders: Vec<Contender<'a>> = vec![
        ("binlogd stream".to_owned(), build_with(binlogd, &[])),
        (
            "binlogd stream (no TLS)".to_owned(),
            build_with(binlogd, &["--tls-mode", "disabled"]),
        ),
        ("mysql_async (headers)".to_owned(), mysql_async(false)),
        ("mysql_async (decoding)".to_owned(), mysql_async(true)),
    ];
    if let Some(baseline) = baseline {
        contenders.push(("binlogd (baseline)".to_owned(), build_with(baseline, &[])));
    }
    Ok(contenders)
}

/// The runs of `bench-pull`: every contender pulls every binlog of the server (`total`
/// bytes) into a fresh folder under `scratch`, in turns that rotate; prints each run, the
/// medians, and how binlogd (the first contender) compares with each other one.
pub(crate) fn pull_contest(
    contenders: &[Contender<'_>],
    scratch: &Path,
    runs: usize,
    total: u64,
) -> Result<()> {
    let n = contenders.len();
    // Per contender: wall seconds and CPU seconds (user + system) of its process, whether
    // it is bound by its own work or waits on the server.
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
    for run in 0..runs {
        // Rotate which goes first: the page cache and the server warm up for all.
        for slot in 0..n {
            let turn = (slot + run) % n;
            let (name, command) = &contenders[turn];
            let dir = scratch.join(format!("run-{run}-{turn}"));
            std::fs::create_dir_all(&dir)?;
            let started = Instant::now();
            let cpu_before = children_cpu_seconds()?;
            let status = command(&dir)?.status()?;
            if !status.success() {
                bail!("{name} failed: {status}");
            }
            wall[turn].push(started.elapsed().as_secs_f64());
            cpu[turn].push(children_cpu_seconds()? - cpu_before);
            std::fs::remove_dir_all(&dir)?;
        }
        let line: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{} {:.2} s (cpu {:.2} s)",
                    contenders[i].0, wall[i][run], cpu[i][run]
                )
            })
            .collect();
        println!("    run {}: {}", run + 1, line.join(", "));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mb = total as f64 / 1e6;
    let walls: Vec<f64> = wall.iter_mut().map(median).collect();
    let cpus: Vec<f64> = cpu.iter_mut().map(median).collect();
    println!("pulled {mb:.0} MB; medians:");
    for i in 0..n {
        println!(
            "    {:<24} {:.2} s ({:.0} MB/s), cpu {:.2} s",
            contenders[i].0,
            walls[i],
            mb / walls[i],
            cpus[i]
        );
    }
    for i in 1..n {
        println!(
            "{} is {:.2}x as fast as {}",
            contenders[0].0,
            walls[i] / walls[0],
            contenders[i].0
        );
    }
    std::fs::remove_dir_all(scratch)?;
    Ok(())
}

/// CPU time (user + system) used so far by this process's waited-for children, from
/// `/proc/self/stat` (`cutime` and `cstime`, fields 16 and 17, in clock ticks of 1/100 s
/// on Linux).
fn children_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state): field N is at index N - 3.
    let ticks = |n: usize| -> Result<f64> {
        Ok(fields
            .get(n - 3)
            .context("/proc/self/stat field")?
            .parse::<f64>()?)
    };
    Ok((ticks(16)? + ticks(17)?) / 100.0)
}

pub(crate) fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("binlogd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `cargo xtask pull-mysql-async URL FIRST_FILE`: pulls every binlog from FIRST_FILE to the
/// end with `mysql_async`'s `get_binlog_stream` (non-blocking dump) and counts the events
/// and bytes: the `mysql_async` contender of `bench-pull`. The password comes from
/// BINLOGD_SOURCE_PASSWORD.
fn pull_mysql_async(args: &[String]) -> Result<()> {
    use futures_util::StreamExt;
    let (url, first, decode) = match args {
        [url, first] => (url, first, false),
        [url, first, flag] if flag == "--decode" => (url, first, true),
        _ => bail!(
            "usage: cargo xtask pull-mysql-async mysql://USER@HOST:PORT FIRST_FILE [--decode]"
        ),
    };
    let password = std::env::var("BINLOGD_SOURCE_PASSWORD").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let opts = mysql_async::Opts::from_url(url).context("URL")?;
        let opts = mysql_async::OptsBuilder::from_opts(opts).pass(Some(password));
        let mut conn = mysql_async::Conn::new(opts).await.context("connect")?;
        // MariaDB sends its GTID events only to replicas that declare this capability.
        mysql_async::prelude::Queryable::query_drop(&mut conn, "SET @mariadb_slave_capability = 4")
            .await?;
        let request = mysql_async::BinlogStreamRequest::new(0x6269_6e6c)
            .with_filename(first.as_bytes())
            .with_pos(4)
            .with_non_blocking();
        let mut stream = conn.get_binlog_stream(request).await?;
        let (mut events, mut bytes) = (0u64, 0u64);
        while let Some(event) = stream.next().await {
            let event = event?;
            events += 1;
            bytes += u64::from(event.header().event_size());
            if decode {
                // What binlogd does with every event: its body decoded by type, and its
                // CRC32 checked.
                std::hint::black_box(event.read_data()?);
                if let Some(stored) = event.checksum() {
                    let computed = event.calc_checksum(
                        mysql_async::binlog::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
                    );
                    if computed != u32::from_le_bytes(stored) {
                        bail!("event {events}: checksum mismatch");
                    }
                }
            }
        }
        println!("{events} events, {bytes} bytes");
        anyhow::Ok(())
    })
}

/// `cargo xtask bench-lag`: how long a transaction takes from its commit on the primary
/// to being durable in the archive, under a `sysbench oltp_write_only` load.
///
/// A probe commits one small transaction every 20 ms on its own connection and notes
/// the moment COMMIT returns; the transaction's GTID (`@@last_gtid`) then appears in the
/// archive's index, which binlogd appends only after the bytes are fsynced. The time
/// between the two, polled every 0.2 ms, is the lag.
fn bench_lag(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        // The probe runs in this process: a debug build would add its own slowness.
        bail!("build the benchmark in release: cargo run --release -p xtask -- bench-lag");
    }
    let mut binlogd = PathBuf::from("target/release/binlogd");
    let mut seconds = 30u64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binlogd" => binlogd = PathBuf::from(it.next().context("--binlogd needs a path")?),
            "--seconds" => seconds = it.next().context("--seconds needs a number")?.parse()?,
            other => bail!(
                "unknown argument {other}: cargo xtask bench-lag [--binlogd PATH] [--seconds N]"
            ),
        }
    }
    if !binlogd.is_file() {
        bail!("{} not found: cargo build --release", binlogd.display());
    }
    let db = Arc::new(MariaDbConfig::default().start()?);
    println!("==> preparing sysbench tables");
    db.sysbench(&SysbenchLoad {
        tables: 4,
        table_size: 10_000,
        threads: 1,
        seconds: 1,
        events: 0,
    })?;
    db.sql("CREATE DATABASE probe; CREATE TABLE probe.t (id INT PRIMARY KEY AUTO_INCREMENT, at BIGINT)")?;
    let scratch = tempfile_dir()?;
    let archive = scratch.join("archive");
    let mut streamer = Command::new(&binlogd)
        .args([
            "stream",
            "--no-progress",
            "--source",
            &db.replication_url(),
            "--archive",
        ])
        .arg(&archive)
        .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
        .env("BINLOGD_LOG", "warn")
        .spawn()
        .context("start binlogd stream")?;
    let outcome = (|| -> Result<Vec<f64>> {
        let mut index = IndexWatcher::new(&archive);
        let deadline = Instant::now() + Duration::from_secs(60);
        let caught_up = db.gtid_binlog_pos()?;
        while !reached(index.poll()?, &caught_up) {
            if Instant::now() > deadline {
                bail!("binlogd did not catch up with {caught_up}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "==> {seconds} s of sysbench oltp_write_only (4 threads) with a probe every 20 ms"
        );
        let load = std::thread::spawn({
            let db = Arc::clone(&db);
            move || {
                db.sysbench(&SysbenchLoad {
                    tables: 4,
                    table_size: 10_000,
                    threads: 4,
                    seconds: seconds as u32,
                    events: 0,
                })
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut lags = Vec::new();
        runtime.block_on(async {
            use mysql_async::prelude::Queryable;
            let opts = mysql_async::OptsBuilder::default()
                .socket(Some(db.socket().display().to_string()))
                .user(Some("root"));
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .context("probe connection")?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                conn.query_drop(
                    "INSERT INTO probe.t (at) VALUES (UNIX_TIMESTAMP(NOW(6)) * 1000000)",
                )
                .await?;
                let committed = Instant::now();
                let gtid: String = conn
                    .query_first("SELECT @@last_gtid")
                    .await?
                    .context("no @@last_gtid")?;
                loop {
                    if reached(index.poll()?, &gtid) {
                        lags.push(committed.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    if committed.elapsed() > Duration::from_secs(10) {
                        bail!("{gtid} did not reach the archive within 10 s");
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                if let Some(rest) = Duration::from_millis(20).checked_sub(committed.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            anyhow::Ok(())
        })?;
        load.join()
            .map_err(|_| anyhow::anyhow!("sysbench thread panicked"))??;
        Ok(lags)
    })();
    let _ = streamer.kill();
    let _ = streamer.wait();
    let _ = std::fs::remove_dir_all(&scratch);
    let mut lags = outcome?;
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    println!(
        "commit on the primary -> durable in the archive, {} probes under load (ms): \
         p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        lags.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// Whether the archive's last GTID is at or past `target` (one domain: sequence numbers).
fn reached(last: &str, target: &str) -> bool {
    let seq = |g: &str| g.rsplit('-').next().and_then(|n| n.parse::<u64>().ok());
    matches!((seq(last), seq(target)), (Some(a), Some(b)) if a >= b)
}

/// Reads what binlogd appends to the index files of an archive's newest epoch.
struct IndexWatcher {
    archive: PathBuf,
    read: std::collections::HashMap<PathBuf, u64>,
    last_gtid: String,
}

impl IndexWatcher {
    fn new(archive: &Path) -> IndexWatcher {
        IndexWatcher {
            archive: archive.to_owned(),
            read: std::collections::HashMap::new(),
            last_gtid: String::new(),
        }
    }

    /// Reads new index lines; returns the GTID state as "domain-server-seq" of the last
    /// indexed transaction (one domain here).
    fn poll(&mut self) -> Result<&str> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(epoch) = newest_epoch(&self.archive) else {
            return Ok(&self.last_gtid);
        };
        let mut indexes: Vec<PathBuf> = std::fs::read_dir(&epoch)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".index.jsonl"))
            .collect();
        indexes.sort();
        for path in indexes {
            let offset = self.read.get(&path).copied().unwrap_or(0);
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            for line in text[..complete].lines() {
                let record: serde_json::Value = serde_json::from_str(line)?;
                if let Some(gtid) = record["gtid"].as_str() {
                    self.last_gtid = gtid.to_owned();
                }
            }
            self.read.insert(path, offset + complete as u64);
        }
        Ok(&self.last_gtid)
    }
}

/// `cargo xtask fuzz-seeds`: writes the seed corpora under `fuzz/corpus/` from binlogs of
/// real MariaDB servers (whole small files for `event_reader`, single events for
/// `event_decoder`) and GTID texts for the GTID targets. Re-running replaces the seeds.
fn fuzz_seeds() -> Result<()> {
    let root = PathBuf::from("fuzz/corpus");
    let configs = [
        ("row-crc32", MariaDbConfig::default()),
        (
            "statement-nocrc",
            MariaDbConfig {
                binlog_format: Some(BinlogFormat::Statement),
                binlog_checksum: Some(BinlogChecksum::None),
                ..Default::default()
            },
        ),
        (
            "compressed-annotated",
            MariaDbConfig {
                log_bin_compress: Some(true),
                binlog_annotate_row_events: Some(true),
                ..Default::default()
            },
        ),
    ];
    let reader_dir = root.join("event_reader");
    let decoder_dir = root.join("event_decoder");
    std::fs::create_dir_all(&reader_dir)?;
    std::fs::create_dir_all(&decoder_dir)?;
    for (name, config) in configs {
        let crc = config.binlog_checksum != Some(BinlogChecksum::None);
        let db = config.start()?;
        db.write_workload(8)?;
        db.sql(
            "CREATE TABLE binlogd_test.m (id INT PRIMARY KEY, v TEXT) ENGINE=MyISAM;
             INSERT INTO binlogd_test.m VALUES (1, REPEAT('long text ', 40));
             XA START 'x'; INSERT INTO binlogd_test.workload (k, c) VALUES (1, 'xa'); XA END 'x'; XA PREPARE 'x'; XA COMMIT 'x';
             SET SESSION gtid_domain_id = 3; INSERT INTO binlogd_test.workload (k, c) VALUES (2, 'domain 3');
             ALTER TABLE binlogd_test.workload ADD COLUMN extra INT; DROP TABLE binlogd_test.m;",
        )?;
        db.rotate()?;
        let file = db.binlog_files()?.remove(0);
        let bytes = std::fs::read(&file)?;
        std::fs::write(reader_dir.join(format!("mariadb-{name}.binlog")), &bytes)?;
        // Single events, at most three of each type, behind the selector byte the
        // target reads: bit 0 MariaDB, bit 1 CRC32.
        let selector = 1 | if crc { 2 } else { 0 };
        let mut per_type = std::collections::HashMap::<u8, usize>::new();
        for event in EventReader::new(&bytes) {
            let event = event?;
            let seen = per_type.entry(event.event_type().0).or_default();
            if *seen < 3 {
                *seen += 1;
                let mut seed = vec![selector];
                seed.extend_from_slice(event.bytes);
                std::fs::write(
                    decoder_dir.join(format!("{name}-{}-{}", event.event_type(), event.offset)),
                    seed,
                )?;
            }
        }
        println!(
            "seeded from {name}: {} bytes, {} event seeds",
            bytes.len(),
            per_type.values().sum::<usize>()
        );
    }
    let gtid_sets = [
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11-18,2174b383-5441-11e8-b90a-c80aa9429562:1-27",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3:blue:1-2:green:7",
        "",
    ];
    write_seeds(&root.join("mysql_gtid_set"), &gtid_sets)?;
    write_seeds(
        &root.join("mariadb_gtid_pos"),
        &["0-1-100", "0-1-100,1-2-5,7-3-18446744073709551615", ""],
    )?;
    archive_fuzz_seeds(&root)
}

/// Seeds for the archive readers' targets (`archive_json`, `index_object`, `segment`):
/// objects as binlogd writes them, made from a binlog seeded above.
fn archive_fuzz_seeds(root: &Path) -> Result<()> {
    // The largest whole binlog file of the event_reader corpus (minimising renames them).
    let mut binlog = Vec::new();
    for entry in std::fs::read_dir(root.join("event_reader"))? {
        let bytes = std::fs::read(entry?.path())?;
        if bytes.starts_with(b"\xfebin") && bytes.len() > binlog.len() {
            binlog = bytes;
        }
    }
    if binlog.is_empty() {
        bail!(
            "no binlog file in {}/event_reader: run `cargo xtask fuzz-seeds`",
            root.display()
        );
    }
    let seeds = binlogd_storage::fuzzing::seeds(&binlog);
    for (target, name, bytes) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    println!("{} archive object seeds", seeds.len());
    Ok(())
}

fn write_seeds(dir: &Path, seeds: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed)?;
    }
    Ok(())
}
