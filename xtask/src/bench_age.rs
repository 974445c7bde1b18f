//! `cargo run --release -p xtask -- bench-age`: what reading an S3 archive costs as it
//! ages, against the same archive fresh.
//!
//! A MariaDB (its defaults, but 32 KiB files so that several are sealed and one is open)
//! takes a workload; `binlogd stream --exit-at-end` archives it into a real S3 server
//! (moto, or Garage with `BINLOGD_TEST_S3=garage`). Every command then reads the store
//! through a proxy that counts requests and holds each response back `--latency-ms` (a
//! real region's round trip), so that a cost that grows with age shows in the time as in
//! the count. The archive is measured fresh, then again after old-looking segment and
//! index keys — what one-second checkpoints leave under sealed files, placed directly —
//! bring it to each of `--ages` objects:
//! `list`, `timeline`, `search --latest` (a restore plan), `find --kind drop`, a login to
//! `binlogd serve` (`--logins` of them: median and p99), and the requests per second of a
//! `binlogd serve` dump waiting at the live tail (`mariadb-binlog --stop-never`).
//! Then the same of an archive whose one file has stayed open for `--open-checkpoints`
//! checkpoints (see `open_file_rows`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use binlogd_testkit::{
    Faults, HttpFaultProxy, MariaDbConfig, RequestCounts, S3Server, SysbenchLoad,
};

const BUCKET: &str = "bench-age";
const PREFIX: &str = "aged";
const OPEN_PREFIX: &str = "aged-open";
const USER: &str = "bench";
const PASSWORD: &str = "bench-Secret-1";

pub fn bench_age(args: &[String]) -> Result<()> {
    let mut binlogd = PathBuf::from("target/release/binlogd");
    let mut ages = vec![30_000usize, 300_000];
    let mut latency = Duration::from_millis(20);
    let mut logins = 20usize;
    let mut open_checkpoints = vec![300usize, 3_000];
    let mut open_compression = "zstd".to_owned();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binlogd" => binlogd = PathBuf::from(it.next().context("--binlogd needs a path")?),
            "--ages" => {
                let given = it.next().context("--ages needs numbers (or none)")?;
                ages = if given == "none" {
                    Vec::new()
                } else {
                    given.split(',').map(str::parse).collect::<Result<_, _>>()?
                };
            }
            "--latency-ms" => {
                latency = Duration::from_millis(it.next().context("--latency-ms")?.parse()?);
            }
            "--logins" => logins = it.next().context("--logins needs a number")?.parse()?,
            "--open-checkpoints" => {
                open_checkpoints = it
                    .next()
                    .context("--open-checkpoints needs numbers")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--open-compression" => {
                open_compression = it
                    .next()
                    .context("--open-compression needs a codec")?
                    .clone();
            }
            other => bail!(
                "unknown argument {other}: cargo run --release -p xtask -- bench-age \
                 [--binlogd PATH] [--ages N,N,...] [--open-checkpoints N,N,...] \
                 [--open-compression CODEC] [--latency-ms MS] [--logins N]"
            ),
        }
    }
    if !binlogd.is_file() {
        bail!("{} not found: cargo build --release", binlogd.display());
    }
    ages.sort_unstable();
    let s3 = S3Server::start_from_env()?;
    s3.create_bucket(BUCKET)?;
    let primary = MariaDbConfig {
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()?;
    primary.write_workload(400)?;
    let scratch = crate::tempfile_dir()?;
    let archive = format!("s3://{BUCKET}/{PREFIX}");
    println!(
        "==> binlogd stream --exit-at-end into {archive} ({})",
        s3.kind()
    );
    let streamed = Command::new(&binlogd)
        .args(["stream", "--exit-at-end", "--no-progress", "--source"])
        .arg(primary.replication_url())
        .args(["--archive", &archive, "--spool-dir"])
        .arg(scratch.join("spool"))
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .env("BINLOGD_LOG", "warn")
        .envs(s3.aws_env())
        .status()?;
    if !streamed.success() {
        bail!("binlogd stream failed: {streamed}");
    }
    let sealed = sealed_files(&binlogd, &s3, &archive)?;
    if sealed.is_empty() {
        bail!("nothing sealed to age");
    }
    let users = scratch.join("users");
    crate::bench_serve::make_users_file(&binlogd, &users, USER, PASSWORD)?;
    let proxy = HttpFaultProxy::start(
        s3.port(),
        Faults {
            slow_one_in: 1,
            slow_by: latency,
            ..Faults::default()
        },
    )?;
    let bench = Bench {
        binlogd: &binlogd,
        s3: &s3,
        proxy: &proxy,
        archive: &archive,
        users: &users,
        logins,
    };
    let open_archive = format!("s3://{BUCKET}/{OPEN_PREFIX}");
    println!("==> every request held back {latency:?}; objects under sealed files as labelled");
    let mut placed = 0;
    let mut rows = vec![("fresh".to_owned(), bench.measure()?)];
    for age in ages {
        let keys: Vec<String> = (placed..age)
            .map(|i| {
                let (epoch, name) = &sealed[i % sealed.len()];
                let start = (1u64 << 40) + (i as u64 / 2) * 4096;
                let kind = if i % 2 == 0 { "seg.zst" } else { "idx.zst" };
                format!(
                    "{PREFIX}/{epoch}/{name}/{start:020}-{:020}.{kind}",
                    start + 4096
                )
            })
            .collect();
        let began = Instant::now();
        s3.put_many(BUCKET, keys, 64)?;
        println!(
            "    placed {} old objects in {:.0?}",
            age - placed,
            began.elapsed()
        );
        placed = age;
        rows.push((format!("+{age} old objects"), bench.measure()?));
    }
    println!();
    print_table(&rows);
    open_checkpoints.sort_unstable();
    if !open_checkpoints.is_empty() {
        let bench = Bench {
            archive: &open_archive,
            ..bench
        };
        let rows = open_file_rows(&bench, &scratch, &open_checkpoints, &open_compression)?;
        println!();
        print_table(&rows);
    }
    Ok(())
}

/// A file open for a long time, as a quiet server with the usual 1 GiB files keeps one:
/// a MariaDB with its defaults takes a steady sysbench load while `binlogd stream`
/// checkpoints it every 20 ms (fifty times the default cadence, so that an hour of
/// one-second checkpoints takes about a minute) into its own prefix, consolidating every
/// 300 checkpoints as by default. Measured once the file has had each of `targets`
/// checkpoints (segments written), the stream stopped in between and resumed after.
fn open_file_rows(
    bench: &Bench<'_>,
    scratch: &Path,
    targets: &[usize],
    compression: &str,
) -> Result<Vec<(String, Row)>> {
    let server = MariaDbConfig::default().start()?;
    let spool = scratch.join("open-spool");
    let load = |seconds| SysbenchLoad {
        tables: 1,
        table_size: 1_000,
        threads: 1,
        seconds,
        events: 0,
    };
    server.sysbench(&SysbenchLoad {
        seconds: 1,
        ..load(1)
    })?;
    let checkpoints = |bench: &Bench<'_>| -> Result<usize> {
        Ok(bench
            .s3
            .list_keys(BUCKET, &format!("{OPEN_PREFIX}/"))?
            .iter()
            .filter(|k| k.contains(".seg."))
            .count())
    };
    let mut rows = Vec::new();
    for &target in targets {
        println!("==> the open file grows to {target} checkpoints");
        let metrics = binlogd_testkit::free_port()?;
        let mut stream = Reaped(
            Command::new(bench.binlogd)
                .args(["stream", "--no-progress", "--checkpoint-interval", "0.02"])
                .args(["--compression", compression])
                .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
                .arg("--source")
                .arg(server.replication_url())
                .args(["--archive", bench.archive, "--spool-dir"])
                .arg(&spool)
                .env("BINLOGD_SOURCE_PASSWORD", server.replication_password())
                .env("BINLOGD_LOG", "warn")
                .envs(bench.s3.aws_env())
                .spawn()?,
        );
        let began = Instant::now();
        let mut written = checkpoints(bench)?;
        while written < target {
            server.sysbench(&load(5))?;
            written = checkpoints(bench)?;
            println!("    {written} segments after {:.0?}", began.elapsed());
        }
        // What consolidating cost this run of the stream, beside what it shipped.
        let exported = metrics_text(metrics)?;
        let value = |name: &str| {
            exported
                .lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (consolidation, shipped) = (
            value("binlogd_compaction_bytes "),
            value("binlogd_uploaded_binlog_bytes "),
        );
        println!(
            "    consolidation put {consolidation:.0} bytes ({compression}) for {shipped:.0} \
             binlog bytes shipped: {:.2}x",
            consolidation / shipped.max(1.0)
        );
        stream.stop();
        rows.push((
            format!("open file, {written} checkpoints"),
            bench.measure()?,
        ));
    }
    Ok(rows)
}

/// What one archive state cost.
struct Row {
    /// `(command, requests, wall time)` for the one-shot commands.
    commands: Vec<(&'static str, RequestCounts, Duration)>,
    login_median: Duration,
    login_p99: Duration,
    /// Requests per second of a dump waiting at the live tail.
    tail_per_second: f64,
}

struct Bench<'a> {
    binlogd: &'a Path,
    s3: &'a S3Server,
    proxy: &'a HttpFaultProxy,
    archive: &'a str,
    users: &'a Path,
    logins: usize,
}

impl Bench<'_> {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.s3.aws_env();
        env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL", self.proxy.endpoint()));
        env
    }

    fn measure(&self) -> Result<Row> {
        let archive = self.archive;
        let commands: [(&'static str, Vec<&str>); 4] = [
            ("list", vec!["list", "--archive", archive]),
            ("timeline", vec!["timeline", "--archive", archive]),
            (
                "search --latest",
                vec!["search", "--archive", archive, "--latest"],
            ),
            (
                "find --kind drop",
                vec!["find", "--archive", archive, "--kind", "drop"],
            ),
        ];
        let mut measured = Vec::new();
        for (label, args) in commands {
            let before = self.proxy.counts();
            let began = Instant::now();
            let output = Command::new(self.binlogd)
                .args(&args)
                .envs(self.env())
                .env("BINLOGD_LOG", "warn")
                .output()?;
            let took = began.elapsed();
            if !output.status.success() {
                bail!(
                    "binlogd {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            measured.push((label, self.proxy.counts().since(before), took));
        }
        let port = binlogd_testkit::free_port()?;
        let mut serve = Reaped(
            Command::new(self.binlogd)
                .args(["serve", "--archive", archive])
                .args(["--listen", &format!("127.0.0.1:{port}"), "--users-file"])
                .arg(self.users)
                .envs(self.env())
                .env("BINLOGD_LOG", "warn")
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("binlogd serve did not listen");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut logins = Vec::new();
        for _ in 0..self.logins {
            let began = Instant::now();
            let output = Command::new("mariadb")
                .args(["--protocol=tcp", "-h", "127.0.0.1", "-P", &port.to_string()])
                .args(["-u", USER, &format!("--password={PASSWORD}")])
                .args(["--skip-ssl", "-N", "-e", "SELECT UNIX_TIMESTAMP()"])
                .output()?;
            logins.push(began.elapsed());
            if !output.status.success() {
                bail!("login: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        logins.sort();
        let login_median = logins[logins.len() / 2];
        let login_p99 = logins[(logins.len() * 99 / 100).min(logins.len() - 1)];
        // A dump that has read everything and waits: what the live tail asks of the store.
        let mut dump = Reaped(
            Command::new("mariadb-binlog")
                .args(["--read-from-remote-server", "--host=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--user={USER}"))
                .arg(format!("--password={PASSWORD}"))
                .args(["--raw", "--stop-never", "--to-last-log"])
                .arg(format!(
                    "--result-file={}/",
                    crate::tempfile_dir()?.display()
                ))
                .arg(first_file(self.binlogd, &self.env(), archive)?)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        // Time to read the archive to its end (an open file's segments since its last
        // consolidation are one GET each), so that the window sees only the tail.
        std::thread::sleep(Duration::from_secs(15));
        let before = self.proxy.counts();
        let window = Duration::from_secs(10);
        std::thread::sleep(window);
        let tail = self.proxy.counts().since(before);
        dump.stop();
        serve.stop();
        Ok(Row {
            commands: measured,
            login_median,
            login_p99,
            tail_per_second: tail.total() as f64 / window.as_secs_f64(),
        })
    }
}

fn print_table(rows: &[(String, Row)]) {
    let Some((_, fresh)) = rows.first() else {
        return;
    };
    print!("| command |");
    for (label, _) in rows {
        print!(" {label} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(rows.len()));
    for (at, (label, _, _)) in fresh.commands.iter().enumerate() {
        print!("| `{label}` |");
        for (_, row) in rows {
            let (_, counts, took) = &row.commands[at];
            print!(" {} req, {:.2} s |", counts.total(), took.as_secs_f64());
        }
        println!();
    }
    print!("| `serve` login, median / p99 |");
    for (_, row) in rows {
        print!(
            " {:.0} / {:.0} ms |",
            row.login_median.as_secs_f64() * 1000.0,
            row.login_p99.as_secs_f64() * 1000.0
        );
    }
    println!();
    print!("| `serve` live tail, requests/s |");
    for (_, row) in rows {
        print!(" {:.1} |", row.tail_per_second);
    }
    println!();
}

/// The text a `--metrics-addr` endpoint on `port` serves.
fn metrics_text(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// The sealed files, as `binlogd list --output json` names them.
fn sealed_files(binlogd: &Path, s3: &S3Server, archive: &str) -> Result<Vec<(String, String)>> {
    let output = Command::new(binlogd)
        .args(["list", "--archive", archive, "--output", "json"])
        .envs(s3.aws_env())
        .output()?;
    if !output.status.success() {
        bail!("binlogd list: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut sealed = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let file: serde_json::Value = serde_json::from_str(line)?;
        if file["state"] == "sealed" {
            let field = |name: &str| file[name].as_str().map(str::to_owned);
            if let (Some(epoch), Some(name)) = (field("epoch"), field("file")) {
                sealed.push((epoch, name));
            }
        }
    }
    Ok(sealed)
}

/// The archive's first file's name, for `mariadb-binlog`.
fn first_file(binlogd: &Path, env: &[(&'static str, String)], archive: &str) -> Result<String> {
    let output = Command::new(binlogd)
        .args(["list", "--archive", archive, "--output", "json"])
        .envs(env.iter().cloned())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().context("an empty archive")?)?;
    first["file"]
        .as_str()
        .map(str::to_owned)
        .context("a file without a name")
}

/// A child process stopped (SIGTERM, then waited for) when dropped.
struct Reaped(Child);

impl Reaped {
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}
