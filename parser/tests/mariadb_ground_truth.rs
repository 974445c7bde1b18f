//! The parser against real MariaDB binlogs, with `mariadb-binlog` as the judge.
//!
//! Each test starts a private MariaDB server with one combination of the settings that
//! change binlog bytes, runs a workload that covers the transaction shapes the server
//! writes (row and statement DML, DDL, non-transactional writes, XA, two GTID domains,
//! rotation), and then for every binlog file checks that:
//! - the GTIDs we find, in order, are the GTIDs `mariadb-binlog` prints;
//! - each transaction starts at the `# at` offset of its GTID event and ends at the
//!   `end_log_pos` of the event that `mariadb-binlog` shows closing it;
//! - each commit time is the time `mariadb-binlog` prints for that closing event.

use std::path::Path;
use std::process::Command;

use binlogd_parser::{EventReader, Transaction, TransactionTracker, decode_event};
use binlogd_testkit::{BinlogChecksum, BinlogFormat, MariaDbConfig, RowImage, Tool, find_tool};

/// One event as `mariadb-binlog` prints it.
#[derive(Debug)]
struct PrintedEvent {
    at: u64,
    end_log_pos: u64,
    /// Seconds since the epoch (printed in UTC because we run it with TZ=UTC).
    time: u64,
    /// The words after `end_log_pos N [CRC32 0x...]`: `GTID 0-1-2 ddl`, `Query ...`, `Xid = 12`.
    description: String,
    /// The lines after the header line, up to the next event.
    text: Vec<String>,
}

/// A transaction as read from `mariadb-binlog`'s output.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    gtid: String,
    start: u64,
    end: u64,
    commit_seconds: u64,
    /// The statement of a single-statement group (DDL), as printed.
    statement: Option<String>,
}

/// The statement a QUERY event prints: the lines after its `SET ...`/`use ...` preamble,
/// up to the `/*!*/;` terminator.
fn printed_statement(event: &PrintedEvent) -> String {
    let preamble_end = event
        .text
        .iter()
        .rposition(|l| {
            l.starts_with("SET ")
                || l.starts_with("use ")
                || (l.starts_with("/*!") && l != "/*!*/;")
        })
        .map_or(0, |i| i + 1);
    event.text[preamble_end..]
        .iter()
        .take_while(|l| l.as_str() != "/*!*/;")
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_binlog(file: &Path) -> Vec<PrintedEvent> {
    let output = Command::new(find_tool(Tool::MariadbBinlog).expect("mariadb-binlog"))
        .arg("--no-defaults")
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .expect("run mariadb-binlog");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut events: Vec<PrintedEvent> = Vec::new();
    // Around ANNOTATE_ROWS it prints several `# at` lines before their header lines, so
    // offsets queue up and each header line takes the oldest.
    let mut offsets = std::collections::VecDeque::new();
    for line in text.lines() {
        if let Some(at) = line.strip_prefix("# at ") {
            offsets.push_back(at.parse::<u64>().expect("offset"));
        } else if is_header_line(line) {
            let at = offsets.pop_front().expect("a # at line before each header");
            events.push(parse_header(at, line));
        } else if let Some(event) = events.last_mut() {
            event.text.push(line.to_owned());
        }
    }
    assert!(offsets.is_empty(), "every # at has a header");
    events
}

/// `#261123  1:20:54 server id ...`
fn is_header_line(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() > 8
        && bytes[0] == b'#'
        && bytes[1..7].iter().all(u8::is_ascii_digit)
        && line.contains(" server id ")
}

fn parse_header(at: u64, line: &str) -> PrintedEvent {
    // #261123  1:20:54 server id 1  end_log_pos 487 CRC32 0x7b35f0d2 	GTID 0-1-2 ddl
    let words: Vec<&str> = line.split_whitespace().collect();
    let date = words[0].strip_prefix('#').expect("#date");
    let (yy, mm, dd) = (&date[0..2], &date[2..4], &date[4..6]);
    let hms: Vec<u64> = words[1]
        .split(':')
        .map(|p| p.parse().expect("time"))
        .collect();
    let days = days_from_civil(
        2000 + yy.parse::<i64>().expect("yy"),
        mm.parse().expect("mm"),
        dd.parse().expect("dd"),
    );
    let time = days as u64 * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    assert_eq!(words[5], "end_log_pos", "{line}");
    let end_log_pos = words[6].parse().expect("end_log_pos");
    let rest = if words.get(7) == Some(&"CRC32") {
        &words[9..]
    } else {
        &words[7..]
    };
    PrintedEvent {
        at,
        end_log_pos,
        time,
        description: rest.join(" "),
        text: Vec::new(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Transactions by `mariadb-binlog`'s account. A GTID followed by a printed
/// `START TRANSACTION` or `XA START` line opens a transaction that ends at an `Xid`/`XID`
/// event or a `COMMIT`/`ROLLBACK` query; any other GTID group is its first query.
fn expected_transactions(events: &[PrintedEvent]) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let event = &events[i];
        let Some(gtid) = event.description.strip_prefix("GTID ") else {
            i += 1;
            continue;
        };
        let gtid = gtid.split_whitespace().next().expect("gtid").to_owned();
        let multi_statement = event
            .text
            .iter()
            .any(|l| l.starts_with("START TRANSACTION") || l.starts_with("XA START"));
        let mut j = i + 1;
        let closing = loop {
            let e = events
                .get(j)
                .unwrap_or_else(|| panic!("transaction {gtid} never ends"));
            let is_query = e.description.starts_with("Query");
            let statement = e
                .text
                .iter()
                .rev()
                .find(|l| !l.starts_with("/*") && !l.starts_with("SET ") && !l.is_empty());
            let ends = if multi_statement {
                e.description.starts_with("Xid")
                    || e.description.starts_with("XID")
                    || (is_query
                        && statement
                            .is_some_and(|s| s.starts_with("COMMIT") || s.starts_with("ROLLBACK")))
            } else {
                is_query
            };
            if ends {
                break e;
            }
            j += 1;
        };
        // mariadb-binlog marks DDL groups `GTID d-s-n ddl`; their statement is compared
        // with our (decompressed) DDL text.
        let is_ddl = event.description.split_whitespace().any(|w| w == "ddl");
        let statement = is_ddl.then(|| printed_statement(closing));
        out.push(Expected {
            gtid,
            start: event.at,
            end: closing.end_log_pos,
            commit_seconds: closing.time,
            statement,
        });
        i = j + 1;
    }
    out
}

fn our_transactions(bytes: &[u8]) -> Vec<Expected> {
    let mut reader = EventReader::new(bytes);
    let mut tracker = TransactionTracker::new();
    let mut found: Vec<Transaction<'_>> = Vec::new();
    while let Some(raw) = reader.next() {
        let raw = raw.expect("frame");
        let event = decode_event(&raw, reader.format().expect("format")).expect("decode");
        // log_bin_compress: the row images of compressed ROWS events decompress whole.
        if let binlogd_parser::Event::Rows(rows) = &event {
            let images = rows
                .row_images()
                .expect("row images (decompressed if compressed)");
            assert!(!images.is_empty(), "at offset {}", raw.offset);
        }
        found.extend(tracker.push(&raw, &event));
    }
    reader.finish().expect("file ends on an event boundary");
    assert_eq!(tracker.abandoned(), 0);
    assert_eq!(tracker.open_since(), None, "no transaction left open");
    found
        .into_iter()
        .map(|t| Expected {
            gtid: t.gtid.expect("MariaDB transactions have GTIDs").to_string(),
            start: t.start,
            end: t.end,
            commit_seconds: t.commit_time.seconds(),
            statement: t.ddl_text().map(|text| {
                String::from_utf8(text.expect("statement decompresses").into_owned())
                    .expect("utf-8")
            }),
        })
        .collect()
}

/// Writes every transaction shape we know of, across a rotation and two domains.
fn workload(db: &binlogd_testkit::MariaDb) {
    let long = "x".repeat(400); // long enough for log_bin_compress to compress
    db.sql(&format!(
        "CREATE DATABASE gt;
         CREATE TABLE gt.t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(500), c TEXT) ENGINE=InnoDB;
         CREATE TABLE gt.m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM;
         INSERT INTO gt.t (a, b, c) VALUES (1, '{long}', 'first');
         BEGIN; INSERT INTO gt.t (a, b) VALUES (2, 'two'); UPDATE gt.t SET a = a + 10 WHERE a < 5; COMMIT;
         BEGIN; INSERT INTO gt.t (a, b, c) VALUES (3, '{long}', '{long}'); SAVEPOINT s1;
           INSERT INTO gt.t (a) VALUES (4); ROLLBACK TO s1; COMMIT;
         INSERT INTO gt.m VALUES (1, 1);
         BEGIN; INSERT INTO gt.t (a) VALUES (5); INSERT INTO gt.m VALUES (2, 2); ROLLBACK;
         XA START 'xa1'; INSERT INTO gt.t (a) VALUES (6); XA END 'xa1'; XA PREPARE 'xa1'; XA COMMIT 'xa1';
         SET SESSION gtid_domain_id = 7;
         BEGIN; INSERT INTO gt.t (a, b) VALUES (7, 'other domain'); DELETE FROM gt.t WHERE a = 2; COMMIT;
         SET SESSION gtid_domain_id = DEFAULT;
         ALTER TABLE gt.t ADD COLUMN d INT;
         FLUSH BINARY LOGS;
         UPDATE gt.t SET d = id, c = '{long}';
         DELETE FROM gt.t WHERE a = 7;
         DROP TABLE gt.m;"
    ))
    .expect("workload");
    db.write_workload(30).expect("more transactions");
}

fn check(config: MariaDbConfig) {
    let default_domain = config.gtid_domain_id.unwrap_or(0).to_string();
    let db = config.start().expect("start server");
    workload(&db);
    let files = db.binlog_files().expect("binlog files");
    assert!(files.len() >= 2, "the workload rotates");
    let mut total = 0;
    let mut domains = std::collections::BTreeSet::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read binlog");
        let expected = expected_transactions(&print_binlog(file));
        let ours = our_transactions(&bytes);
        assert_eq!(ours, expected, "{}", file.display());
        total += ours.len();
        domains.extend(
            ours.iter()
                .map(|t| t.gtid.split('-').next().unwrap_or_default().to_owned()),
        );
    }
    // 3 DDL, 4 single-row or multi-row DML, 2 XA groups, 1 other-domain, ALTER, 3 more,
    // and write_workload's 2 DDL + 30.
    assert!(total >= 45, "found {total} transactions");
    let expected_domains: std::collections::BTreeSet<String> =
        [default_domain, "7".to_owned()].into();
    assert_eq!(domains, expected_domains);
}

#[test]
fn server_defaults() {
    check(MariaDbConfig::default());
}

#[test]
fn row_format_with_crc32() {
    // binlog_format=ROW: every DML a row event, not only the unsafe ones MIXED turns to rows.
    check(MariaDbConfig {
        binlog_format: Some(BinlogFormat::Row),
        ..MariaDbConfig::default()
    });
}

#[test]
fn statement_format_without_checksums() {
    check(MariaDbConfig {
        binlog_checksum: Some(BinlogChecksum::None),
        binlog_format: Some(BinlogFormat::Statement),
        ..MariaDbConfig::default()
    });
}

#[test]
fn mixed_format_minimal_image_with_annotations() {
    check(MariaDbConfig {
        binlog_format: Some(BinlogFormat::Mixed),
        binlog_row_image: Some(RowImage::Minimal),
        binlog_annotate_row_events: Some(true),
        ..MariaDbConfig::default()
    });
}

#[test]
fn compressed_events_noblob_image() {
    check(MariaDbConfig {
        log_bin_compress: Some(true),
        binlog_row_image: Some(RowImage::Noblob),
        binlog_annotate_row_events: Some(true),
        ..MariaDbConfig::default()
    });
}

#[test]
fn compressed_statements_without_checksums() {
    check(MariaDbConfig {
        log_bin_compress: Some(true),
        binlog_format: Some(BinlogFormat::Statement),
        binlog_checksum: Some(BinlogChecksum::None),
        gtid_domain_id: Some(3),
        server_id: 9,
        ..MariaDbConfig::default()
    });
}
