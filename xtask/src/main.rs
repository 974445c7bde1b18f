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
use binlogd_parser::EventReader;
use binlogd_testkit::{BinlogChecksum, BinlogFormat, MariaDb, MariaDbConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("fuzz-seeds") => fuzz_seeds(),
        _ => {
            bail!("usage: cargo xtask demo [--seconds N] [--binlogd PATH] | cargo xtask fuzz-seeds")
        }
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
                binlog_format: BinlogFormat::Statement,
                binlog_checksum: BinlogChecksum::None,
                ..Default::default()
            },
        ),
        (
            "compressed-annotated",
            MariaDbConfig {
                log_bin_compress: true,
                binlog_annotate_row_events: true,
                ..Default::default()
            },
        ),
    ];
    let reader_dir = root.join("event_reader");
    let decoder_dir = root.join("event_decoder");
    std::fs::create_dir_all(&reader_dir)?;
    std::fs::create_dir_all(&decoder_dir)?;
    for (name, config) in configs {
        let crc = config.binlog_checksum == BinlogChecksum::Crc32;
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
    Ok(())
}

fn write_seeds(dir: &Path, seeds: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed)?;
    }
    Ok(())
}
