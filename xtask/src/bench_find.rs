//! `cargo run --release -p xtask -- bench-find [--megabytes M] [--runs N]`: `binlogd find`
//! against `mariadb-binlog --verbose FILES | grep`, what people do today, on the same
//! archive of 1 GB of sysbench binlogs with planted accidents, in alternating runs;
//! prints each side's median and the ratio for two questions:
//!
//! - which transaction dropped a table: `find --kind drop` vs `grep -i 'DROP TABLE'`;
//! - which one deleted at least 1000 rows of a table: `find --table sbtest.sbtest1
//!   --kind delete --min-rows 1000` vs `grep -c '### DELETE FROM `sbtest`.`sbtest1`'`
//!   (which only counts rows: telling which transaction they belong to would take more).
//!
//! The primary logs rows (`binlog_format=ROW`): sysbench's statements are safe, so under
//! the default MIXED they would be logged as text with no rows to count. Both sides must
//! find the planted accidents, or the run fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use binlogd_testkit::{BinlogFormat, MariaDbConfig, SysbenchLoad, Tool, find_tool};

struct Args {
    binlogd: PathBuf,
    runs: usize,
    megabytes: u64,
    /// Keep the archive here afterwards (to profile against it).
    keep_archive: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        binlogd: PathBuf::from("target/release/binlogd"),
        runs: 5,
        megabytes: 1024,
        keep_archive: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--binlogd" => parsed.binlogd = PathBuf::from(value()?),
            "--runs" => parsed.runs = value()?.parse()?,
            "--megabytes" => parsed.megabytes = value()?.parse()?,
            "--keep-archive" => parsed.keep_archive = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown argument {other}: bench-find [--binlogd PATH] [--runs N] [--megabytes M] \
                 [--keep-archive DIR]"
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

/// One question, asked both ways.
struct Question {
    name: &'static str,
    find_args: Vec<String>,
    grep: String,
    /// What binlogd find's output must contain.
    expect: String,
}

pub fn bench_find(args: &[String]) -> Result<()> {
    let args = parse(args)?;
    let scratch = crate::tempfile_dir()?;
    let primary = MariaDbConfig {
        binlog_format: Some(BinlogFormat::Row),
        max_binlog_size: Some(256 << 20),
        ..MariaDbConfig::default()
    }
    .start()?;
    let load = |seconds| SysbenchLoad {
        tables: 4,
        table_size: 100_000,
        threads: 4,
        seconds,
        events: 0,
    };
    println!(
        "==> {} MB of sysbench oltp_write_only binlogs, accidents planted half-way",
        args.megabytes
    );
    primary.sysbench(&load(1))?;
    primary.sql(
        "CREATE TABLE sbtest.victim (id INT PRIMARY KEY); INSERT INTO sbtest.victim VALUES (1)",
    )?;
    let size = || -> Result<u64> {
        Ok(primary
            .binlog_files()?
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum())
    };
    let mut planted = None;
    while size()? < args.megabytes << 20 {
        primary.sysbench(&load(20))?;
        if planted.is_none() && size()? >= args.megabytes << 19 {
            primary.sql("DROP TABLE sbtest.victim")?;
            let dropped = primary.gtid_binlog_pos()?;
            primary.sql("DELETE FROM sbtest.sbtest1 WHERE id <= 5000")?;
            let deleted = primary.gtid_binlog_pos()?;
            planted = Some((dropped, deleted));
        }
        println!("    {} MB", size()? >> 20);
    }
    let (drop_gtid, delete_gtid) = planted.context("the accidents were not planted")?;
    primary.rotate()?;
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
    let epoch = archive.join("0001-server1");
    let mut files: Vec<String> = std::fs::read_dir(&epoch)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".jsonl"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let archived: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    // The primary's datadir goes; the archive stays.
    drop(primary);

    let reader = find_tool(Tool::MariadbBinlog)?.display().to_string();
    let questions = [
        Question {
            name: "which transaction dropped a table",
            find_args: vec!["--kind".into(), "drop".into()],
            grep: "grep -i 'DROP TABLE'".into(),
            expect: drop_gtid,
        },
        Question {
            name: "which one deleted 1000+ rows of sbtest1",
            find_args: [
                "--table",
                "sbtest.sbtest1",
                "--kind",
                "delete",
                "--min-rows",
                "1000",
            ]
            .map(String::from)
            .to_vec(),
            grep: "grep -c '### DELETE FROM `sbtest`.`sbtest1`'".into(),
            expect: delete_gtid,
        },
    ];
    println!(
        "==> {} MB archived in {} files; {} runs of each question, alternating",
        archived >> 20,
        files.len(),
        args.runs
    );
    for question in &questions {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in 0..args.runs {
            for turn in [run % 2, (run + 1) % 2] {
                let started = Instant::now();
                if turn == 0 {
                    let output = Command::new(&args.binlogd)
                        .arg("find")
                        .arg("--archive")
                        .arg(&archive)
                        .args(&question.find_args)
                        .output()?;
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    if !output.status.success() || !stdout.contains(&question.expect) {
                        bail!(
                            "binlogd find did not find {}: {stdout}{}",
                            question.expect,
                            String::from_utf8_lossy(&output.stderr)
                        );
                    }
                    ours.push(started.elapsed().as_secs_f64());
                } else {
                    let output = Command::new("sh")
                        .arg("-c")
                        .arg(format!(
                            "{reader} --verbose {} | {}",
                            files.join(" "),
                            question.grep
                        ))
                        .output()?;
                    if !output.status.success() {
                        bail!(
                            "{} found nothing: {}",
                            question.grep,
                            String::from_utf8_lossy(&output.stderr)
                        );
                    }
                    theirs.push(started.elapsed().as_secs_f64());
                }
            }
        }
        let (ours, theirs) = (median(&mut ours), median(&mut theirs));
        println!(
            "{}: binlogd find {ours:.2} s, mariadb-binlog --verbose | grep {theirs:.2} s \
             (medians of {}): {:.1}x as fast",
            question.name,
            args.runs,
            theirs / ours
        );
    }
    if let Some(keep) = &args.keep_archive {
        std::fs::rename(&archive, keep)
            .with_context(|| format!("keeping the archive in {}", keep.display()))?;
        println!("the archive is kept in {}", keep.display());
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
