//! `binlogd find` on archives of real servers: a workload of ordinary transactions with
//! planted accidents — a mass UPDATE, a DELETE of every row, a TRUNCATE, a DROP TABLE —
//! in each binlog format (MariaDB 10.11 ROW, MIXED — its default — and STATEMENT; 11.8
//! and MySQL 9.7 with their defaults), each found by the filters a user would try and
//! nothing else; rows found by the values of their columns; then the printed undo command
//! run against a restored base backup, and the dropped table back.

mod stream_common;

use binlogd_testkit::{
    BinlogFormat, BinlogSource, MariaDb, MariaDbConfig, MariaDbVersion, MySql, MySqlConfig,
};
use std::process::Output;
use stream_common::{Archive, binlogd};

/// The shop: orders and products with enough rows that a mass change stands out, a
/// customers table to drop, an audit table to truncate.
const SHOP: &str = "CREATE DATABASE shop;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT NOT NULL, total DECIMAL(10,2) NOT NULL, note VARCHAR(200));
CREATE TABLE shop.products (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL, price DECIMAL(10,2) NOT NULL, added DATETIME(3) NOT NULL, tags JSON);
CREATE TABLE shop.customers (id INT PRIMARY KEY AUTO_INCREMENT, name CHAR(40) NOT NULL, born DATE, vip ENUM('no','yes') NOT NULL DEFAULT 'no');
CREATE TABLE shop.audit (id BIGINT PRIMARY KEY AUTO_INCREMENT, what TEXT, at TIMESTAMP(6) NULL);";

/// `rows` INSERTs into each table, each a transaction of its own: literal values (a
/// server-side function would make MIXED log rows).
fn fill(rows: usize) -> String {
    let mut sql = String::new();
    for i in 0..rows {
        sql.push_str(&format!(
            "INSERT INTO shop.orders (customer, total, note) VALUES ({}, {}.50, 'order {i}');\n\
             INSERT INTO shop.products (name, price, added, tags) VALUES ('p{i}', {}.99, '2026-12-06 10:00:00.123', '[\"a\"]');\n\
             INSERT INTO shop.customers (name, born, vip) VALUES ('c{i}', '1990-01-0{}', 'yes');\n\
             INSERT INTO shop.audit (what, at) VALUES ('row {i}', NULL);\n",
            i % 50,
            i % 300,
            i % 50,
            1 + i % 9
        ));
    }
    sql
}

/// Ordinary work: small single-row changes of each kind.
fn ordinary(from: usize, count: usize) -> String {
    let mut sql = String::new();
    for i in from..from + count {
        sql.push_str(&format!(
            "UPDATE shop.orders SET note = 'changed {i}' WHERE id = {};\n\
             DELETE FROM shop.audit WHERE id = {};\n\
             INSERT INTO shop.audit (what, at) VALUES ('ordinary {i}', '2026-12-06 10:00:00.5');\n\
             UPDATE shop.products SET price = price + 1 WHERE id = {};\n",
            1 + i % 1000,
            1 + i,
            1 + i % 1000
        ));
    }
    sql
}

/// The planted accidents, in order, as run.
const MASS_UPDATE: &str = "UPDATE shop.products SET price = 0";
const DELETE_ALL: &str = "DELETE FROM shop.orders";
const TRUNCATE: &str = "TRUNCATE TABLE shop.audit";
const DROP: &str = "DROP TABLE shop.customers";

/// What the tests need of either server.
trait Server: BinlogSource {
    fn run(&self, sql: &str);
    fn last_gtid(&self) -> String;
}

impl Server for MariaDb {
    fn run(&self, sql: &str) {
        self.sql(sql).expect("sql");
    }
    fn last_gtid(&self) -> String {
        self.gtid_binlog_pos().expect("pos")
    }
}

impl Server for MySql {
    fn run(&self, sql: &str) {
        self.sql(sql).expect("sql");
    }
    fn last_gtid(&self) -> String {
        // The last GTID of the server's own UUID: `uuid:1-N` → `uuid:N`.
        let executed = self.gtid_executed().expect("gtids");
        let (uuid, range) = executed.split_once(':').expect("uuid:range");
        let last = range.rsplit(['-', ':']).next().expect("number");
        format!("{uuid}:{last}")
    }
}

/// The planted accidents' GTIDs, with the ordinary work around them.
struct Planted {
    mass_update: String,
    delete_all: String,
    truncate: String,
    drop: String,
}

fn plant(server: &impl Server) -> Planted {
    server.run(SHOP);
    server.run(&fill(1200));
    server.run(&ordinary(0, 300));
    server.run(MASS_UPDATE);
    let mass_update = server.last_gtid();
    server.run(&ordinary(300, 300));
    server.run(DELETE_ALL);
    let delete_all = server.last_gtid();
    server.run(&ordinary(600, 100));
    server.run(TRUNCATE);
    let truncate = server.last_gtid();
    server.run(&ordinary(700, 100));
    server.run(DROP);
    let drop = server.last_gtid();
    server.run(&ordinary(800, 100));
    Planted {
        mass_update,
        delete_all,
        truncate,
        drop,
    }
}

fn find(archive: &Archive, args: &[&str]) -> Output {
    binlogd()
        .args(["find", "--archive"])
        .arg(archive.path())
        .args(args)
        .output()
        .expect("run binlogd find")
}

/// The GTIDs `binlogd find ARGS` prints (JSON output), in order.
fn found(archive: &Archive, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let output = find(archive, &all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
        let text = find(archive, args);
        eprintln!(
            "{args:?}:\n{}{stderr}",
            String::from_utf8_lossy(&text.stdout)
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn gtids(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["gtid"].as_str().expect("gtid").to_owned())
        .collect()
}

/// Every accident found by the filters a user would try, and nothing else.
fn each_accident_is_found(archive: &Archive, planted: &Planted, rows_logged: bool, sql_text: bool) {
    let drop = found(archive, &["--kind", "drop"]);
    assert_eq!(gtids(&drop), [planted.drop.as_str()], "--kind drop");
    assert_eq!(drop[0]["changes"][0]["target"]["table"], "customers");
    assert_eq!(
        gtids(&found(
            archive,
            &["--kind", "drop", "--table", "shop.customers"]
        )),
        [planted.drop.as_str()]
    );
    assert!(found(archive, &["--kind", "drop", "--table", "shop.orders"]).is_empty());
    // Narrowed by time, GTIDs and server: the index rules the rest out unread.
    let dropped_at = drop[0]["commit_time"].as_str().expect("time").to_owned();
    let micros = drop[0]["commit_micros"].as_u64().expect("micros");
    let long_before = format!(
        "{}Z",
        jiff::Timestamp::from_microsecond(micros as i64 - 600_000_000)
            .expect("time")
            .strftime("%Y-%m-%dT%H:%M:%S")
    );
    assert_eq!(
        gtids(&found(archive, &["--kind", "drop", "--from", &dropped_at])),
        [planted.drop.as_str()]
    );
    assert!(found(archive, &["--kind", "drop", "--until", &long_before]).is_empty());
    assert_eq!(
        gtids(&found(
            archive,
            &["--gtid-range", &planted.drop, "--server-id", "1"]
        )),
        [planted.drop.as_str()]
    );
    assert!(found(archive, &["--kind", "drop", "--server-id", "2"]).is_empty());
    assert_eq!(
        gtids(&found(archive, &["--kind", "truncate"])),
        [planted.truncate.as_str()]
    );
    // DDL: CREATE DATABASE, the four CREATE TABLEs, the TRUNCATE and the DROP.
    let ddl = found(archive, &["--kind", "ddl", "--table", "shop.*"]);
    assert_eq!(ddl.len(), 1 + 4 + 2, "{ddl:?}");
    // The DELETE of every row and the mass UPDATE: by their row counts where the binlog
    // has rows, by their text where it has statements.
    if rows_logged {
        let deletes = found(
            archive,
            &[
                "--table",
                "shop.orders",
                "--kind",
                "delete",
                "--min-rows",
                "1000",
            ],
        );
        assert_eq!(gtids(&deletes), [planted.delete_all.as_str()]);
        assert_eq!(deletes[0]["changes"][0]["rows"], 1200);
        let updates = found(
            archive,
            &[
                "--table",
                "shop.products",
                "--kind",
                "update",
                "--min-rows",
                "100",
            ],
        );
        assert_eq!(gtids(&updates), [planted.mass_update.as_str()]);
        assert_eq!(updates[0]["changes"][0]["rows"], 1200);
        // The ordinary single-row changes are below any such threshold.
        assert!(found(archive, &["--kind", "update", "--min-rows", "2"]).len() == 1);
    }
    if sql_text {
        assert_eq!(
            gtids(&found(archive, &["--sql", r"price\s*=\s*0\b"])),
            [planted.mass_update.as_str()]
        );
        assert_eq!(
            gtids(&found(
                archive,
                &["--sql", r"(?i)^delete from shop\.orders$"]
            )),
            [planted.delete_all.as_str()]
        );
    }
    // Every delete of the orders table: the mass one is among the kind's hits.
    let all_deletes = gtids(&found(
        archive,
        &["--table", "shop.orders", "--kind", "delete"],
    ));
    assert!(all_deletes.contains(&planted.delete_all), "{all_deletes:?}");
}

#[test]
fn accidents_are_found_in_each_mariadb_binlog_format() {
    for (format, rows_logged, sql_text) in [
        // ANNOTATE_ROWS (on by default) carries the statement text with the rows.
        (Some(BinlogFormat::Row), true, true),
        // The server's default: these statements are safe, so logged as text.
        (None, false, true),
        (Some(BinlogFormat::Statement), false, true),
    ] {
        let primary = MariaDbConfig {
            binlog_format: format,
            max_binlog_size: Some(256 << 10),
            // With rows, the binlog also names the columns (binlog_row_metadata=FULL;
            // the default, NO_LOG, does not): --row-match by name needs them.
            extra_args: if rows_logged {
                vec!["--binlog-row-metadata=FULL".to_owned()]
            } else {
                Vec::new()
            },
            ..MariaDbConfig::default()
        }
        .start()
        .expect("primary");
        let planted = plant(&primary);
        let archive = Archive::new();
        assert!(archive.run_to_end(&primary, &[]).status.success());
        each_accident_is_found(&archive, &planted, rows_logged, sql_text);
        if rows_logged {
            rows_are_found_by_their_values(&archive, &planted, true);
        }
    }
}

/// `--row-match`: rows found by the values of their columns, of each type the shop's
/// tables have (INT, DECIMAL, VARCHAR, CHAR, DATETIME(3), DATE, ENUM); by name when
/// the binlog names the columns, else with --columns, and by position.
fn rows_are_found_by_their_values(archive: &Archive, planted: &Planted, names_in_binlog: bool) {
    let orders_named = if names_in_binlog {
        Vec::new()
    } else {
        vec!["--columns", "shop.orders=id,customer,total,note"]
    };
    let mut args = vec![
        "--table",
        "shop.orders",
        "--kind",
        "delete",
        "--row-match",
        "id=17",
    ];
    args.extend(&orders_named);
    let hits = found(archive, &args);
    assert_eq!(gtids(&hits), [planted.delete_all.as_str()]);
    assert_eq!(hits[0]["changes"][0]["row_matched"], true);
    // By position, with no names at all.
    assert_eq!(
        gtids(&found(
            archive,
            &[
                "--table",
                "shop.orders",
                "--kind",
                "delete",
                "--row-match",
                "@1=17"
            ]
        )),
        [planted.delete_all.as_str()]
    );
    // The mass UPDATE: row 1200's after image has price 0 (the ordinary updates never
    // touch row 1200). DECIMAL typed without its scale's zeros.
    let mut args = vec![
        "--kind",
        "update",
        "--row-match",
        "@1=1200",
        "--row-match",
        "@3=0",
    ];
    args.extend(["--table", "shop.products"]);
    assert_eq!(
        gtids(&found(archive, &args)),
        [planted.mass_update.as_str()]
    );
    if names_in_binlog {
        for row_match in [
            // DECIMAL and VARCHAR: one INSERT.
            &["total=3.5", "note=order 303"][..],
            // DATETIME(3) and VARCHAR.
            &["added=2026-12-06 10:00:00.123", "name=p7"][..],
            // DATE, CHAR, ENUM (its index: 'yes' is 2).
            &["born=1990-01-06", "name=c5", "vip=2"][..],
        ] {
            let mut args = vec!["--kind", "insert"];
            for m in row_match {
                args.extend(["--row-match", m]);
            }
            let hits = found(archive, &args);
            assert_eq!(hits.len(), 1, "{row_match:?}: {hits:?}");
        }
    } else {
        // Names the binlog lacks: said, and nothing matched.
        let output = find(archive, &["--table", "shop.orders", "--row-match", "id=17"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(output.stdout.is_empty());
        assert!(
            stderr.contains("does not name shop.orders's columns"),
            "{stderr}"
        );
    }
}

#[test]
fn accidents_are_found_on_mariadb_11_8_and_mysql_9_7() {
    let mariadb = MariaDbConfig {
        version: MariaDbVersion::V11_8,
        max_binlog_size: Some(256 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("MariaDB 11.8");
    let planted = plant(&mariadb);
    let archive = Archive::new();
    assert!(archive.run_to_end(&mariadb, &[]).status.success());
    each_accident_is_found(&archive, &planted, false, true);

    // MySQL logs rows by default, without their statements (binlog_rows_query_log_events
    // is off): found by kind, table and row count.
    let mysql = MySqlConfig {
        max_binlog_size: Some(256 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("MySQL 9.7");
    let planted = plant(&mysql);
    let archive = Archive::new();
    assert!(archive.run_to_end(&mysql, &[]).status.success());
    each_accident_is_found(&archive, &planted, true, false);
    // binlog_row_metadata=MINIMAL, MySQL's default: no column names in the binlog.
    rows_are_found_by_their_values(&archive, &planted, false);
}

#[test]
fn the_printed_undo_command_brings_a_dropped_table_back() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(256 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.run(SHOP);
    primary.run(&fill(200));
    let backup = primary.backup(&primary.dir().join("base")).expect("backup");
    primary.run(&ordinary(0, 100));
    let customers = primary
        .query_value("CHECKSUM TABLE shop.customers")
        .expect("checksum");
    primary.run(DROP);
    primary.run(&ordinary(100, 100));
    let archive = Archive::new_in(primary.dir());
    assert!(archive.run_to_end(&primary, &[]).status.success());

    // The time is roughly known: since the backup.
    let output = find(&archive, &["--kind", "drop", "--table", "customers"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
        eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    }
    let undo = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("undo: binlogd "))
        .expect("an undo line");
    let undo: Vec<&str> = undo
        .split("  (")
        .next()
        .expect("command")
        .split(' ')
        .collect();
    assert_eq!(undo[0], "restore", "{stdout}");
    assert!(undo.windows(2).any(|w| w[0] == "--before-gtid"), "{stdout}");

    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        restore_from: Some(backup.dir.clone()),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target from the backup");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    let restored = binlogd()
        .args(&undo)
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
        ])
        .arg("--from-backup")
        .arg(&backup.dir)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run the undo command");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(
        target
            .query_value("CHECKSUM TABLE shop.customers")
            .expect("the table is back"),
        customers
    );
}

#[test]
fn bad_filters_and_a_damaged_archive_are_clear_errors() {
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.run(SHOP);
    primary.run(&fill(20));
    let archive = Archive::new();
    assert!(archive.run_to_end(&primary, &[]).status.success());
    for (args, expected) in [
        (&["--kind", "select"][..], "--kind select"),
        (&["--table", "shop."][..], "want SCHEMA.TABLE"),
        (&["--sql", "(unclosed"][..], "--sql"),
        (&["--gtid-range", "0-1-1..1-1-5"][..], "one domain"),
        (&["--from", "yesterday"][..], "not a time"),
    ] {
        let output = find(&archive, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // One flipped byte in an event a find reads: named with its file and offset.
    let epoch = archive.path().join("0001-server1");
    let victim = std::fs::read_dir(&epoch)
        .expect("epoch")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.to_string_lossy().ends_with(".jsonl"))
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .expect("a binlog");
    let mut bytes = std::fs::read(&victim).expect("read");
    // Inside a statement's text, so that it is the event's CRC32 that fails.
    let at = bytes
        .windows(9)
        .position(|w| w == b"'order 7'")
        .expect("the statement in the binlog")
        + 3;
    bytes[at] ^= 0x55;
    std::fs::write(&victim, bytes).expect("write");
    let output = find(&archive, &["--table", "shop.*"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let name = victim
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        stderr.contains(&format!("0001-server1/{name} at offset")) && stderr.contains("checksum"),
        "{stderr}"
    );
}

#[test]
fn s3_find_reads_an_object_archive_segment_by_segment() {
    // moto, or Garage with BINLOGD_TEST_S3=garage.
    let s3 = binlogd_testkit::S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket("binlogd-find").expect("bucket");
    let primary = MariaDbConfig {
        binlog_format: Some(BinlogFormat::Row),
        max_binlog_size: Some(256 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    let planted = plant(&primary);
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = "s3://binlogd-find/db1";
    // Small segments: a transaction is read across several, and a file's middle without
    // its other segments.
    let streamed = binlogd()
        .args([
            "stream",
            "--no-progress",
            "--exit-at-end",
            "--segment-size",
            "16KiB",
        ])
        .arg("--source")
        .arg(primary.replication_url())
        .args(["--archive", archive, "--spool-dir"])
        .arg(dir.path().join("spool"))
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .envs(s3.aws_env())
        .output()
        .expect("binlogd stream");
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let find_s3 = |args: &[&str]| -> Vec<serde_json::Value> {
        let output = binlogd()
            .args(["find", "--archive", archive, "--output", "json"])
            .args(args)
            .envs(s3.aws_env())
            .output()
            .expect("binlogd find");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    };
    assert_eq!(
        gtids(&find_s3(&["--kind", "drop"])),
        [planted.drop.as_str()]
    );
    let deletes = find_s3(&["--table", "shop.orders", "--min-rows", "1000"]);
    assert_eq!(gtids(&deletes), [planted.delete_all.as_str()]);
    assert_eq!(deletes[0]["changes"][0]["rows"], 1200);
    // The undo command names the same archive.
    let undo: Vec<String> = deletes[0]["undo"]
        .as_array()
        .expect("undo")
        .iter()
        .map(|a| a.as_str().expect("word").to_owned())
        .collect();
    assert_eq!(
        undo[..4],
        ["binlogd", "restore", "--archive", archive].map(String::from)
    );
    assert!(undo.ends_with(&["--before-gtid".to_owned(), planted.delete_all.clone()]));
}
