//! `binlogd stream` against a live MySQL 9.7, as MySQL ships (`gtid_mode=ON`, ROW,
//! CRC32, `caching_sha2_password` over TLS): byte-identical files across rotations, a
//! SIGKILL of binlogd in the middle of a load, connections cut anywhere (TLS handshake
//! included), resuming by GTID set or by position, TLS
//! and authentication, semi-sync, a settings matrix, purged files, and heartbeats keeping
//! an idle stream alive.

mod stream_common;

use binlogd_testkit::{BinlogSource, MySql, MySqlConfig};
use std::time::Duration;
use stream_common::{
    Archive, Streamer, assert_identical_to_server, http_get, wait_for_quiet_binlogs,
};

/// A MySQL 9.7 with its defaults, but 64 KiB files (the default is 1 GiB), so that a small
/// load rotates several times.
fn server() -> MySql {
    MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("start MySQL 9.7")
}

#[test]
fn follows_a_live_mysql_across_rotations_and_a_sigkill_byte_for_byte() {
    let db = server();
    db.write_workload(50).expect("before binlogd");
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &[]);
    db.write_workload(300).expect("while streaming");
    db.rotate().expect("rotate");
    streamer.kill();
    db.write_workload(100).expect("while binlogd is down");
    // The restart resumes by GTID set (COM_BINLOG_DUMP_GTID).
    let streamer = Streamer::start(&db, &archive, &[]);
    db.write_workload(50).expect("after the restart");
    archive.wait_caught_up(&db, Duration::from_secs(120));
    streamer.stop();
    let files = db.binlog_names().expect("names");
    assert!(files.len() > 4, "the load rotated only into {files:?}");
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    let log = archive.log();
    assert!(
        log.contains("Gtid(Mysql("),
        "the restart resumed by GTID set:\n{log}"
    );
    assert!(!log.contains("reconnecting"), "{log}");
}

#[test]
fn exit_at_end_resumes_by_position_and_by_gtid_set() {
    let db = server();
    db.write_workload(200).expect("load");
    wait_for_quiet_binlogs(&db);
    let archive = Archive::new();
    for (round, resume_by) in ["gtid", "position", "gtid"].into_iter().enumerate() {
        let output = archive.run_to_end(&db, &["--resume-by", resume_by]);
        assert!(
            output.status.success(),
            "round {round} by {resume_by}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_identical_to_server(&db, &archive);
        db.write_workload(100).expect("more");
        wait_for_quiet_binlogs(&db);
    }
    let output = archive.run_to_end(&db, &[]);
    assert!(output.status.success());
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
}

#[test]
fn caching_sha2_logs_in_fully_and_fast_with_and_without_tls_and_verifies_the_server() {
    // The server's certificate from a CA the test makes (--ssl-* name the files; the
    // server would otherwise use certificates it generates).
    let pki = binlogd_testkit::TestPki::generate_in(&MySql::scratch_dir().expect("scratch"))
        .expect("pki");
    let in_root = |p: &std::path::Path| {
        MySql::path_for_server(p)
            .expect("path")
            .display()
            .to_string()
    };
    let db = MySqlConfig {
        extra_args: vec![
            format!("--ssl-ca={}", in_root(&pki.ca_cert)),
            format!("--ssl-cert={}", in_root(&pki.server_cert)),
            format!("--ssl-key={}", in_root(&pki.server_key)),
        ],
        ..MySqlConfig::default()
    }
    .start()
    .expect("start MySQL 9.7");
    db.write_workload(30).expect("load");
    wait_for_quiet_binlogs(&db);
    let ca = pki.ca_cert.display().to_string();
    let archive = Archive::new();
    let run = |args: &[&str]| {
        let output = archive.run_to_end(&db, args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The account has logged in over TCP never: full authentication. Without TLS the
    // password goes encrypted with the server's RSA key, which binlogd neither takes from
    // the wire nor has unless told: refused, saying how to go on.
    let (code, stderr) = run(&["--tls-mode", "disabled"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("wants the password in full")
            && stderr.contains("--server-public-key-file")
            && stderr.contains("--get-server-public-key"),
        "{stderr}"
    );
    // The key the user trusts: the server's own file.
    let key_file = db.datadir().join("public_key.pem");
    let key = key_file.display().to_string();
    let (code, stderr) = run(&["--tls-mode", "disabled", "--server-public-key-file", &key]);
    assert_eq!(code, Some(0), "full, pinned key: {stderr}");
    // The key asked for, after FLUSH PRIVILEGES emptied the server's cache; then the fast
    // path from the cache, which needs no key.
    db.sql("FLUSH PRIVILEGES").expect("flush");
    let (code, stderr) = run(&["--tls-mode", "disabled", "--get-server-public-key"]);
    assert_eq!(code, Some(0), "full, key fetched: {stderr}");
    let (code, stderr) = run(&["--tls-mode", "disabled"]);
    assert_eq!(code, Some(0), "fast: {stderr}");
    // FLUSH PRIVILEGES empties the cache: full authentication again, in clear over TLS;
    // over TLS whose certificate nobody checked, binlogd says that it did so.
    for mode in ["required", "verify-ca", "verify-identity"] {
        db.sql("FLUSH PRIVILEGES").expect("flush");
        let (code, stderr) = run(&["--tls-mode", mode, "--tls-ca", &ca]);
        assert_eq!(code, Some(0), "{mode}: {stderr}");
        assert_eq!(
            stderr.contains("over TLS whose certificate was not verified"),
            mode == "required",
            "{mode}: {stderr}"
        );
    }
    db.write_workload(10).expect("more");
    wait_for_quiet_binlogs(&db);
    let (code, stderr) = run(&["--tls-mode", "verify-identity", "--tls-ca", &ca]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    // A CA that did not sign the server's certificate: one clear failure.
    let wrong_ca = pki.other_ca_cert.display().to_string();
    let (code, stderr) = run(&["--tls-mode", "verify-ca", "--tls-ca", &wrong_ca]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
    // A wrong password: refused, with what to do.
    let output = stream_common::binlogd()
        .args(stream_common::stream_args(&db, &archive))
        .arg("--exit-at-end")
        .env("BINLOGD_SOURCE_PASSWORD", "wrong")
        .output()
        .expect("run binlogd");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Access denied"), "{stderr}");
}

fn status(db: &MySql, name: &str) -> u64 {
    db.query_value(&format!(
        "SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = '{name}'"
    ))
    .expect("status")
    .parse()
    .unwrap_or(0)
}

#[test]
fn as_a_semi_sync_replica_of_mysql_every_commit_is_archived_before_it_returns() {
    // Semi-sync is a plugin MySQL ships but does not load: the test loads it and turns it
    // on, with a long timeout so that a missing acknowledgement shows as a timed-out
    // (no_tx) commit rather than as a quick fall-back to asynchronous.
    let db = MySqlConfig {
        extra_args: vec![
            "--plugin-load-add=semisync_source.so".to_owned(),
            "--rpl-semi-sync-source-enabled=ON".to_owned(),
            "--rpl-semi-sync-source-timeout=10000".to_owned(),
        ],
        ..MySqlConfig::default()
    }
    .start()
    .expect("start MySQL 9.7");
    db.sql("CREATE DATABASE zero_rpo; CREATE TABLE zero_rpo.t (id INT PRIMARY KEY)")
        .expect("schema");
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &["--semi-sync"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status(&db, "Rpl_semi_sync_source_clients") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "binlogd never attached as a semi-sync replica:\n{}",
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let unacknowledged_before = status(&db, "Rpl_semi_sync_source_no_tx");
    let acknowledged_before = status(&db, "Rpl_semi_sync_source_yes_tx");
    let uuid = db.query_value("SELECT @@server_uuid").expect("uuid");
    for id in 1..=20 {
        db.sql(&format!("INSERT INTO zero_rpo.t VALUES ({id})"))
            .expect("insert");
        // The commit returned, so the primary had binlogd's acknowledgement (after the
        // binlog's fsync: AFTER_SYNC is the default): it must be archived already.
        let last = db.gtid_executed().expect("gtid_executed");
        let n = last
            .rsplit(':')
            .next()
            .and_then(|range| range.rsplit('-').next())
            .expect("uuid:first-last")
            .to_owned();
        let gtid = format!("{uuid}:{n}");
        assert!(
            archive.indexes_all_of(std::slice::from_ref(&gtid)),
            "commit {gtid} returned before it was archived"
        );
    }
    assert_eq!(
        status(&db, "Rpl_semi_sync_source_no_tx"),
        unacknowledged_before
    );
    assert!(status(&db, "Rpl_semi_sync_source_yes_tx") >= acknowledged_before + 20);
    streamer.stop();
}

/// A MySQL setting case: the server's defaults and `args`, a load with a rotation and a
/// SIGKILL of binlogd, every file byte for byte and every GTID once in the index.
fn run_mysql_case(args: &[&str], tag: Option<&str>, huge: bool) {
    let db = MySqlConfig {
        extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..MySqlConfig::default()
    }
    .start()
    .expect("start MySQL 9.7");
    stream_common::application_round(&db, 0, tag);
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &[]);
    stream_common::application_round(&db, 1, tag);
    db.rotate().expect("rotate");
    if huge {
        db.sql(
            "CREATE TABLE binlogd_test.huge (id INT PRIMARY KEY, b LONGBLOB);
             INSERT INTO binlogd_test.huge WITH RECURSIVE seq (n) AS
               (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 256)
               SELECT n, REPEAT(CHAR(65 + n % 26), 1 << 20) FROM seq;",
        )
        .expect("a 256 MB transaction");
    }
    stream_common::application_round(&db, 2, tag);
    streamer.kill();
    stream_common::application_round(&db, 3, tag);
    let streamer = Streamer::start(&db, &archive, &[]);
    stream_common::application_round(&db, 4, tag);
    // The server writes on after its last transaction (a BINLOG_CHECKPOINT after a
    // rotation, from a background thread): let it finish before binlogd stops.
    wait_for_quiet_binlogs(&db);
    archive.wait_caught_up(&db, Duration::from_secs(240));
    streamer.stop();
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    if huge {
        let largest = archive.largest_transaction();
        assert!(
            largest > 256 << 20,
            "the largest transaction indexed has {largest} bytes"
        );
    }
    let log = archive.log();
    assert!(
        !log.contains("reconnecting"),
        "binlogd lost a healthy source:\n{log}"
    );
}

// One line a case: the setting it changes from MySQL 9.7's defaults.
macro_rules! mysql_settings_matrix {
    ($($name:ident: $args:expr, $tag:expr, $huge:expr;)*) => {$(
        #[test]
        fn $name() {
            run_mysql_case(&$args, $tag, $huge);
        }
    )*};
}

mysql_settings_matrix! {
    mysql_server_defaults: [], None, false;
    mysql_transaction_compression: ["--binlog-transaction-compression=ON"], None, false;
    mysql_tagged_gtids: [], Some("binlogd"), false;
    mysql_rows_query_events: ["--binlog-rows-query-log-events=ON"], None, false;
    mysql_minimal_row_image: ["--binlog-row-image=MINIMAL"], None, false;
    mysql_full_row_metadata: ["--binlog-row-metadata=FULL"], None, false;
    mysql_no_checksums: ["--binlog-checksum=NONE"], None, false;
    mysql_statement_format: ["--binlog-format=STATEMENT"], None, false;
    mysql_tiny_files: ["--max-binlog-size=4096"], None, false;
    mysql_huge_transaction: [], None, true;
}

#[test]
fn files_the_source_purged_before_binlogd_read_them_are_one_clear_error() {
    // binlog_expire_logs_seconds: files older than a second go at the next rotation, as a
    // short expiry does to a binlogd that was down for longer.
    let db = MySqlConfig {
        extra_args: vec!["--binlog-expire-logs-seconds=1".to_owned()],
        ..MySqlConfig::default()
    }
    .start()
    .expect("start MySQL 9.7");
    db.write_workload(20).expect("load");
    let archive = Archive::new();
    let output = archive.run_to_end(&db, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archived_last = db.binlog_names().expect("names").pop().expect("a file");
    for _ in 0..3 {
        db.write_workload(20).expect("more");
        std::thread::sleep(Duration::from_millis(1100));
        db.rotate().expect("rotate: the expired files go");
    }
    let names = db.binlog_names().expect("names");
    assert!(
        !names.contains(&archived_last),
        "{archived_last} was not purged: {names:?}"
    );
    for resume_by in ["gtid", "position"] {
        let started = std::time::Instant::now();
        let output = archive.run_to_end(&db, &["--resume-by", resume_by]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{resume_by}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{resume_by}: {stderr}"
        );
        // The server says "purged" by GTID; by position, binlogd names the file it asked for.
        let names_it = match resume_by {
            "gtid" => stderr.contains("purged"),
            _ => stderr.contains(&format!("at {archived_last}:")),
        };
        assert!(names_it, "{resume_by}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("binlogd:")).count(),
            1,
            "one error line: {stderr}"
        );
    }
}

#[test]
fn an_idle_mysql_keeps_the_stream_alive_with_heartbeats() {
    // A source with nothing to write: only its heartbeats (every second) keep binlogd from
    // taking the quiet connection for a dead one (after 3 s) and reconnecting.
    let db = server();
    db.write_workload(10).expect("load");
    let archive = Archive::new();
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let streamer = Streamer::start(
        &db,
        &archive,
        &[
            "--heartbeat",
            "1",
            "--net-timeout",
            "3",
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    archive.wait_caught_up(&db, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(8));
    let (status, body) = http_get(&metrics_addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http_get(&metrics_addr, "/metrics");
    for expected in [
        "binlogd_reconnects_total 0",
        "binlogd_source_connected 1",
        "binlogd_lag_bytes 0",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }
    // And what arrives after the quiet spell is archived at once.
    db.write_workload(5).expect("after the quiet spell");
    archive.wait_caught_up(&db, Duration::from_secs(30));
    streamer.stop();
    let log = archive.log();
    assert!(!log.contains("reconnecting"), "{log}");
}

#[test]
fn connections_to_mysql_cut_anywhere_are_resumed_without_a_trace() {
    // Cuts inside the TLS handshake, the login, a packet or an event, under a load.
    let db = std::sync::Arc::new(server());
    db.write_workload(10).expect("schema");
    let archive = Archive::new();
    let proxy = binlogd_testkit::TcpProxy::start(db.port()).expect("proxy");
    let address = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let streamer = Streamer::start_with(&*db, &archive, &[], &address);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                db.write_workload(5).expect("load");
            }
        })
    };
    let mut random = stream_common::Random::from_time();
    for _ in 0..15 {
        proxy.cut_after(1 + random.below(200_000));
        std::thread::sleep(Duration::from_millis(100 + random.below(300)));
        proxy.cut_all();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("the load");
    archive.wait_caught_up(&*db, Duration::from_secs(60));
    streamer.stop();
    assert_identical_to_server(&*db, &archive);
    archive.assert_index_lists_every_gtid_once(&*db);
    assert!(
        proxy.accepted() > 5,
        "binlogd reconnected {} times",
        proxy.accepted()
    );
}
