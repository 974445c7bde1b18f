//! `binlogd stream` end to end against real MariaDB servers: byte-exact archives across
//! rotations, restarts, crashes (SIGKILL), cut connections and large transactions.

mod stream_common;

use binlogd_testkit::MariaDbConfig;
use std::time::Duration;
use stream_common::{
    Archive, Streamer, assert_identical_to_server, http_get, wait_for_quiet_binlogs,
};

#[test]
fn follows_a_live_server_across_rotations_byte_for_byte() {
    let db = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(50).expect("workload before streaming");
    let archive = Archive::new();
    let metrics_port = binlogd_testkit::free_port().expect("port");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let streamer = Streamer::start(&db, &archive, &["--metrics-addr", &metrics_addr]);
    db.write_workload(1500).expect("workload while streaming");
    db.rotate().expect("rotate");
    db.write_workload(10)
        .expect("workload after a manual rotation");
    archive.wait_caught_up(&db, Duration::from_secs(60));
    let files = db.binlog_names().expect("names");
    assert!(files.len() > 5, "the workload rotated only into {files:?}");
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);

    let (status, body) = http_get(&metrics_addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(&metrics_addr, "/metrics");
    assert_eq!(status, 200);
    let last_gtid = db.gtid_binlog_pos().expect("pos");
    for expected in [
        format!("binlogd_last_archived_gtid{{gtid=\"{last_gtid}\"}} 1"),
        "binlogd_source_connected 1".to_owned(),
        format!(
            "binlogd_source{{server_id=\"1\",address=\"127.0.0.1:{}\",version=\"{}\"}} 1",
            db.port(),
            db.query_value("SELECT @@version").expect("version")
        ),
        "binlogd_lag_seconds 0".to_owned(),
        format!(
            "binlogd_transactions_archived_total {}",
            stream_common::server_gtids(&db).len()
        ),
    ] {
        assert!(metrics.contains(&expected), "no {expected:?} in\n{metrics}");
    }
    // Caught up: recoverable to about now (heartbeats keep it so while the source is
    // quiet); a local archive has no upload, lease or retention metrics, but its disk.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let recoverable = value("binlogd_recoverable_until_timestamp_seconds");
    assert!(
        (now - 5.0..=now + 1.0).contains(&recoverable),
        "recoverable until {recoverable}, now {now}"
    );
    assert!(value("binlogd_spool_disk_size_bytes") >= value("binlogd_spool_disk_available_bytes"));
    assert!(value("binlogd_spool_disk_available_bytes") > 0.0);
    for absent in ["binlogd_upload", "binlogd_lease", "binlogd_purge"] {
        assert!(!metrics.contains(absent), "{absent} in\n{metrics}");
    }
    streamer.stop();
}

#[test]
fn exit_at_end_copies_what_the_server_has_and_a_rerun_adds_only_what_is_new() {
    let db = MariaDbConfig {
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(300).expect("workload");
    wait_for_quiet_binlogs(&db);
    let archive = Archive::new();
    let output = archive.run_to_end(&db, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_identical_to_server(&db, &archive);
    db.write_workload(200).expect("more");
    wait_for_quiet_binlogs(&db);
    let output = archive.run_to_end(&db, &["--resume-by", "position"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("number");
    kib * 1024
}

#[test]
fn a_20_mb_row_and_a_512_mb_transaction_stream_in_bounded_memory() {
    let db = MariaDbConfig {
        extra_args: vec!["--max-allowed-packet=64M".into()],
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.sql(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB",
    )
    .expect("schema");
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &[]);
    // One row event of 20 MB: the server sends it in two packets (16 MiB + rest).
    db.sql("INSERT INTO big.t VALUES (0, REPEAT('a', 20 << 20))")
        .expect("20 MB row");
    // One transaction of 512 rows of 1 MiB: 512 MiB between its GTID and its XID. UUID()
    // makes the statement unsafe, so the default MIXED format logs its rows.
    db.sql(
        "BEGIN; INSERT INTO big.t SELECT seq, CONCAT(UUID(), REPEAT('x', (1 << 20) - 36)) FROM big.seq_1_to_512; COMMIT",
    )
    .expect("512 MB transaction");
    archive.wait_caught_up(&db, Duration::from_secs(300));
    let peak = peak_rss_bytes(streamer.pid());
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    let big = archive.largest_transaction();
    assert!(
        big > 512 << 20,
        "the largest indexed transaction has {big} bytes"
    );
    eprintln!(
        "peak RSS of binlogd stream: {:.1} MiB",
        peak as f64 / 1048576.0
    );
    assert!(peak < 64 << 20, "binlogd used {peak} bytes at its peak");
    streamer.stop();
}

#[test]
fn streams_over_verified_tls_and_refuses_a_server_it_cannot_verify() {
    let pki = binlogd_testkit::TestPki::generate().expect("pki");
    let db = MariaDbConfig {
        extra_args: pki.server_args(),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(100).expect("workload");
    stream_common::wait_for_quiet_binlogs(&db);
    let archive = Archive::new();
    let ca = pki.ca_cert.display().to_string();
    let output = archive.run_to_end(&db, &["--tls-mode", "verify-identity", "--tls-ca", &ca]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_identical_to_server(&db, &archive);

    // A CA that did not sign the server's certificate: a clear, immediate failure.
    let other = Archive::new();
    let wrong_ca = pki.other_ca_cert.display().to_string();
    let output = other.run_to_end(
        &db,
        &["--tls-mode", "verify-identity", "--tls-ca", &wrong_ca],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[test]
fn refusals_end_binlogd_with_a_message_that_says_what_to_do() {
    let db = MariaDbConfig::default().start().expect("start");
    let archive = Archive::new();
    let output = stream_common::binlogd()
        .args(stream_common::stream_args(&db, &archive))
        .env("BINLOGD_SOURCE_PASSWORD", "wrong password")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1045") && stderr.contains("check the replication user and its password"),
        "{stderr}"
    );

    let output = stream_common::binlogd()
        .args([
            "stream",
            "--source",
            "mysql://repl:pw@127.0.0.1:1",
            "--archive",
        ])
        .arg(archive.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BINLOGD_SOURCE_PASSWORD"));
}

#[test]
fn resuming_by_gtid_continues_the_same_files_exactly() {
    let db = MariaDbConfig {
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(200).expect("workload");
    stream_common::wait_for_quiet_binlogs(&db);
    let archive = Archive::new();
    for round in 0..3 {
        if round > 0 {
            db.write_workload(100).expect("more");
            stream_common::wait_for_quiet_binlogs(&db);
        }
        let output = archive.run_to_end(&db, &["--resume-by", "gtid"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        if round > 0 {
            assert!(
                stderr.contains("Gtid"),
                "round {round} did not start by GTID: {stderr}"
            );
        }
        assert_identical_to_server(&db, &archive);
    }
    archive.assert_index_lists_every_gtid_once(&db);
}

#[test]
fn as_a_semi_sync_replica_every_commit_is_archived_before_it_returns() {
    let db = MariaDbConfig {
        extra_args: vec![
            "--rpl-semi-sync-master-enabled=1".to_owned(),
            // Long: a missing acknowledgement shows as a timed-out (no_tx) commit.
            "--rpl-semi-sync-master-timeout=10000".to_owned(),
            "--rpl-semi-sync-master-wait-no-slave=0".to_owned(),
        ],
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.sql("CREATE DATABASE zero_rpo; CREATE TABLE zero_rpo.t (id INT PRIMARY KEY)")
        .expect("schema");
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &["--semi-sync"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while semi_sync_status(&db, "Rpl_semi_sync_master_clients") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "binlogd never attached as a semi-sync replica:\n{}",
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The schema's commits, before binlogd attached, count as not acknowledged.
    let acknowledged_before = semi_sync_status(&db, "Rpl_semi_sync_master_yes_tx");
    let unacknowledged_before = semi_sync_status(&db, "Rpl_semi_sync_master_no_tx");
    let before = db.gtid_binlog_pos().expect("pos");
    let (domain_server, last) = before.rsplit_once('-').expect("one-domain GTID position");
    let last: u64 = last.parse().expect("sequence number");
    for id in 1..=20 {
        db.sql(&format!("INSERT INTO zero_rpo.t VALUES ({id})"))
            .expect("insert");
        // The commit returned, so the primary had binlogd's acknowledgement: the
        // transaction must already be durable and indexed in the archive. Look at once,
        // before a sync started after the acknowledgement could finish.
        let gtid = format!("{domain_server}-{}", last + id);
        assert!(
            archive.indexes_all_of(std::slice::from_ref(&gtid)),
            "commit {gtid} returned before it was archived"
        );
    }
    assert_eq!(
        semi_sync_status(&db, "Rpl_semi_sync_master_no_tx"),
        unacknowledged_before
    );
    assert!(semi_sync_status(&db, "Rpl_semi_sync_master_yes_tx") >= acknowledged_before + 20);
    streamer.stop();
}

fn semi_sync_status(db: &binlogd_testkit::MariaDb, name: &str) -> u64 {
    db.query_value(&format!(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
    ))
    .expect("status")
    .parse()
    .expect("a number")
}

#[test]
fn numbers_of_seconds_on_the_command_line_are_checked_not_trusted() {
    // `--max-retry-delay inf` used to panic making a Duration.
    for (command, flag, value) in [
        ("stream", "--max-retry-delay", "inf"),
        ("stream", "--checkpoint-interval", "-1"),
        ("stream", "--net-timeout", "NaN"),
        ("stream", "--heartbeat", "1e300"),
        ("upload", "--patience", "inf"),
    ] {
        let where_from: &[&str] = if command == "upload" {
            &["--spool-dir", "/nonexistent/spool", "--archive", "s3://b/p"]
        } else {
            &[
                "--source",
                "mysql://repl@127.0.0.1:1",
                "--archive",
                "/nonexistent",
            ]
        };
        let output = stream_common::binlogd()
            .arg(command)
            .args(where_from)
            .arg(format!("{flag}={value}"))
            .output()
            .expect("run binlogd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} {flag} {value}: {stderr}"
        );
        assert!(
            stderr.contains(flag) && stderr.contains("not between 0 and 4000000 seconds")
                || stderr.contains("is not a number of seconds"),
            "{command} {flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_archive_is_for_binlogds_user_and_group_and_open_secrets_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let db = MariaDbConfig::default().start().expect("start");
    db.write_workload(20).expect("workload");
    let archive = Archive::new();
    // A password file every user of the machine may read.
    let password_file = archive.path().with_file_name("password");
    std::fs::write(&password_file, db.replication_password()).expect("write");
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let run = |extra: &[&str]| {
        let mut args = stream_common::stream_args(&db, &archive);
        args.extend(["--exit-at-end".to_owned(), "--password-file".to_owned()]);
        args.push(password_file.display().to_string());
        stream_common::binlogd()
            .args(args)
            .args(extra)
            .env_remove("BINLOGD_SOURCE_PASSWORD")
            .output()
            .expect("run binlogd")
    };
    let refused = run(&["--strict-permissions"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("may be read by every user of this machine (mode 0644)")
            && stderr.contains("--strict-permissions refuses it"),
        "{stderr}"
    );
    let warned = run(&[]);
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(warned.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("chmod 600"),
        "{stderr}"
    );

    // Whatever umask binlogd was started with (the test's is 022): nothing of the
    // archive is for every user.
    let mut checked = 0;
    let mut dirs = vec![archive.path()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let path = entry.expect("entry").path();
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode & 0o007, 0, "{} is {mode:04o}", path.display());
            if path.is_dir() {
                dirs.push(path);
            }
            checked += 1;
        }
    }
    assert!(checked > 3, "only {checked} entries");
}
