//! `cargo xtask demo` (what `scripts/demo` runs): a sandbox MariaDB under a write load,
//! with binlogd indexing its live binlog as it grows.
//!
//! The sandbox is the test harness's private instance (temporary datadir, loopback port),
//! so the demo touches nothing else on the machine and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use binlogd_testkit::{MariaDb, MariaDbConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        _ => bail!("usage: cargo xtask demo [--seconds N] [--binlogd PATH]"),
    }
}

struct DemoArgs {
    seconds: Option<u64>,
    binlogd: PathBuf,
}

fn parse_demo_args(args: &[String]) -> Result<DemoArgs> {
    let mut parsed = DemoArgs {
        seconds: None,
        binlogd: PathBuf::from("target/release/binlogd"),
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
            "-h" | "--help" => {
                println!(
                    "cargo xtask demo [--seconds N] [--binlogd PATH]\n\n\
                     Starts a sandbox MariaDB, writes to it, and shows binlogd indexing the live\n\
                     binlog every second. Runs until Ctrl-C (or N seconds)."
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

    println!("==> starting a sandbox MariaDB (private datadir, 127.0.0.1 only)");
    let db = MariaDbConfig {
        max_binlog_size: Some(1 << 20),
        ..MariaDbConfig::default()
    }
    .start()?;
    println!(
        "    ready: {}  (password: {})",
        db.replication_url(),
        db.replication_password()
    );
    println!("    binlogs: {}", db.binlog_dir().display());
    println!(
        "==> writing transactions; binlogd indexes the live binlog every second (Ctrl-C to stop)"
    );

    let started = Instant::now();
    let mut written = 0usize;
    while !stop.load(Ordering::SeqCst)
        && args
            .seconds
            .is_none_or(|s| started.elapsed() < Duration::from_secs(s))
    {
        let tick = Instant::now();
        // Ctrl-C in a terminal reaches the whole process group, the SQL client too: a
        // batch cut short by it is the user stopping the demo, not a failure.
        if let Err(err) = db.write_workload(50) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            return Err(err);
        }
        written += 50;
        let (transactions, last) = index(&args.binlogd, &db)?;
        println!(
            "    {:>5.1}s  server wrote {:>6} txns ({} files)  binlogd indexed {:>6} txns, last {}",
            started.elapsed().as_secs_f64(),
            written,
            db.binlog_names()?.len(),
            transactions,
            last
        );
        if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    println!("==> stopping the sandbox");
    let files = db.binlog_files()?;
    drop(db);
    println!("\nNext:");
    println!(
        "  binlogd inspect --transactions FILE   transactions of any binlog (add --json for scripts)"
    );
    println!("  binlogd --help                        every command");
    println!("  scripts/test                          the whole test suite against real servers");
    println!(
        "(the sandbox wrote {} binlog files; they were removed with it)",
        files.len()
    );
    Ok(())
}

/// Runs `binlogd inspect --transactions --json` over every binlog file of the sandbox and
/// returns how many transactions it found and the last GTID.
fn index(binlogd: &Path, db: &MariaDb) -> Result<(usize, String)> {
    let mut count = 0;
    let mut last = String::from("-");
    for file in db.binlog_files()? {
        let output = Command::new(binlogd)
            .args(["inspect", "--transactions", "--json"])
            .arg(&file)
            .output()
            .context("run binlogd inspect")?;
        if !output.status.success() {
            bail!(
                "binlogd inspect {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            count += 1;
            if let Some(gtid) = record["gtid"].as_str() {
                last = gtid.to_owned();
            }
        }
    }
    Ok((count, last))
}
