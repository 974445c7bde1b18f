//! Indexing speed: walk a sysbench binlog of at least 200 MB, verify every CRC32, and
//! extract every GTID, commit time and transaction boundary — with binlogd's parser and,
//! in the same run on the same bytes, with the `mysql_common` crate's binlog reader.
//!
//! `mysql_common` cannot read MariaDB GTID events (it returns them as unknown) and does
//! not check CRCs, so its side does what it can: iterate every event and decode the event
//! data it knows. The ratio is therefore in its favour.
//!
//! Run: `cargo bench --bench index` (the first run generates the binlog with sysbench on a
//! private MariaDB, about a minute; set BINLOGD_BENCH_BINLOG=FILE to use another binlog).

use std::hint::black_box;
use std::path::PathBuf;

use binlogd_parser::{EventReader, TransactionTracker, decode_event};
use binlogd_testkit::{MariaDbConfig, SysbenchLoad};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIN_BYTES: u64 = 200 << 20;

/// The benchmark binlog: given, cached from an earlier run, or generated now.
fn binlog() -> Vec<u8> {
    if let Some(path) = std::env::var_os("BINLOGD_BENCH_BINLOG") {
        return std::fs::read(&path).expect("read BINLOGD_BENCH_BINLOG");
    }
    let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data/sysbench-oltp-write-only.binlog");
    if cached.metadata().is_ok_and(|m| m.len() >= MIN_BYTES) {
        return std::fs::read(&cached).expect("read cached binlog");
    }
    eprintln!(
        "generating a sysbench binlog of at least 200 MB into {} ...",
        cached.display()
    );
    let db = MariaDbConfig::default().start().expect("start MariaDB");
    // Small tables so that `prepare` adds little; then OLTP writes until the file is big.
    let mut load = SysbenchLoad {
        tables: 4,
        table_size: 10_000,
        threads: 4,
        seconds: 20,
        events: 0,
    };
    while db
        .binlog_files()
        .expect("files")
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum::<u64>()
        < MIN_BYTES
    {
        db.sysbench(&load).expect("sysbench");
        load.seconds = 10;
    }
    let files = db.binlog_files().expect("files");
    assert_eq!(files.len(), 1, "one binlog file (max_binlog_size is 1 GiB)");
    std::fs::create_dir_all(cached.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&files[0], &cached).expect("copy binlog");
    std::fs::read(&cached).expect("read generated binlog")
}

/// binlogd: frame, verify CRC32, decode, and group into transactions.
fn index_with_binlogd(bytes: &[u8]) -> (u64, u64) {
    let mut reader = EventReader::new(bytes);
    let mut tracker = TransactionTracker::new();
    let (mut transactions, mut last_commit) = (0u64, 0u64);
    while let Some(raw) = reader.next() {
        let raw = raw.expect("frame");
        let event = decode_event(&raw, reader.format().expect("format")).expect("decode");
        if let Some(t) = tracker.push(&raw, &event) {
            transactions += 1;
            last_commit = t.commit_time.micros.max(last_commit) + t.end - t.start;
        }
    }
    (transactions, last_commit)
}

/// mysql_common: iterate every event and decode the data of those it knows.
fn index_with_mysql_common(bytes: &[u8]) -> u64 {
    let mut events = 0u64;
    // It reads the magic itself, from any BufRead.
    let file = mysql_common::binlog::BinlogFile::new(
        mysql_common::binlog::consts::BinlogVersion::Version4,
        bytes,
    )
    .expect("open");
    for event in file {
        let event = event.expect("event");
        let _ = black_box(event.read_data());
        events += 1;
    }
    events
}

fn bench(c: &mut Criterion) {
    let bytes = binlog();
    eprintln!("binlog: {} MB", bytes.len() >> 20);
    let (transactions, _) = index_with_binlogd(&bytes);
    eprintln!("binlogd finds {transactions} transactions");
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(10);
    group.bench_function("binlogd", |b| {
        b.iter(|| black_box(index_with_binlogd(black_box(&bytes))))
    });
    group.bench_function("mysql_common", |b| {
        b.iter(|| black_box(index_with_mysql_common(black_box(&bytes))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
