//! `binlogd serve` end to end: real replicas (MariaDB 10.11 and 11.8, MySQL 9.7),
//! configured as users configure them, replicate from an archive that a real `binlogd
//! stream` wrote — and is still writing — and end with the primary's data and GTIDs.

mod serve_common;
mod stream_common;

use std::path::Path;
use std::time::{Duration, Instant};

use serve_common::{PASSWORD, Serve, USER, users_file};

use binlogd_testkit::{
    BinlogSource, MariaDb, MariaDbConfig, MariaDbVersion, MySql, MySqlConfig, TestPki,
};
use stream_common::{Archive, Streamer, wait_for_quiet_binlogs};

/// `CHECKSUM TABLE` of the workload's table on a server.
fn checksum(db: &MariaDb) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

fn mysql_checksum(db: &MySql) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

/// Waits until a MySQL `replica` has applied everything `primary` wrote.
fn wait_for_mysql_replica(replica: &MySql, primary: &MySql, serve: &Serve) {
    let target = primary.gtid_executed().expect("primary gtids");
    if let Err(e) = replica.wait_for_gtids(&target, Duration::from_secs(90)) {
        let status = replica.sql("SHOW REPLICA STATUS\\G").unwrap_or_default();
        panic!("{e:#}\n{status}\nserve log:\n{}", serve.log());
    }
}

/// Waits until `replica` has applied everything `primary` wrote, or fails with the
/// replica's own words.
fn wait_for_replica(replica: &MariaDb, primary: &MariaDb, serve: &Serve) {
    let target = primary.gtid_binlog_pos().expect("primary pos");
    if let Err(e) = replica.wait_for_gtid(&target, Duration::from_secs(60)) {
        let status = replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default();
        panic!("{e:#}\n{status}\nserve log:\n{}", serve.log());
    }
}

#[test]
fn a_mariadb_replica_with_gtids_replicates_from_the_archive_and_follows_the_live_tail() {
    let primary = std::sync::Arc::new(
        MariaDbConfig {
            // Small files, so that the replica crosses many of them and their rotations.
            max_binlog_size: Some(64 << 10),
            ..MariaDbConfig::default()
        }
        .start()
        .expect("primary"),
    );
    primary.write_workload(300).expect("workload");
    let archive = Archive::new();
    let streamer = Streamer::start(&*primary, &archive, &[]);
    archive.wait_caught_up(&*primary, Duration::from_secs(60));
    let users = users_file(archive.path().parent().expect("dir"));
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let serve = Serve::start(&archive, &users, &["--metrics-addr", &metrics_addr]);

    // A replica needs a server_id of its own (the primary's events carry 1).
    let replica = MariaDbConfig {
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica
        .replicate_from_port(serve.port, USER, PASSWORD, "")
        .expect("CHANGE MASTER");
    wait_for_replica(&replica, &primary, &serve);
    assert_eq!(checksum(&replica), checksum(&primary));

    // The live tail, under load: what the primary writes while the replica follows
    // reaches it through the stream's archive.
    let load = stream_common::Workload::start(&primary);
    std::thread::sleep(Duration::from_secs(3));
    let (status, metrics) = stream_common::http_get(&metrics_addr, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        "binlogd_serve_replicas 1",
        "binlogd_serve_replica_sent_bytes{peer=",
        "server_id=\"2\"",
        "binlogd_serve_replica_position{",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }
    // As the operator reads it for `kubectl binlogd status`.
    let replicas = binlogd_operator::status::read_serve_metrics(&metrics);
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(
        (replicas[0].user.as_str(), replicas[0].server_id),
        (USER, 2)
    );
    assert!(
        replicas[0].file.starts_with("mariadb-bin.")
            && replicas[0].position > 4
            && replicas[0].sent_bytes > 0,
        "{replicas:?}"
    );
    if let Some(path) = std::env::var_os("BINLOGD_SAVE_SERVE_METRICS") {
        std::fs::write(path, &metrics).expect("save the metrics");
    }
    load.finish();
    wait_for_quiet_binlogs(&*primary);
    wait_for_replica(&replica, &primary, &serve);
    assert_eq!(checksum(&replica), checksum(&primary));
    assert_eq!(
        replica
            .query_value("SELECT @@gtid_slave_pos")
            .expect("slave pos"),
        primary.gtid_binlog_pos().expect("pos")
    );
    let (_, metrics) = stream_common::http_get(&metrics_addr, "/metrics");
    assert!(
        metrics.contains("binlogd_serve_replica_lag_seconds{") && metrics.contains("} 0.0"),
        "a replica that has everything is 0 s behind:\n{metrics}"
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    streamer.stop();
}

#[test]
fn mysql_replicas_replicate_over_tls_by_gtid_set_and_by_file_and_position() {
    let primary = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    let archive = Archive::new();
    let streamer = Streamer::start(&primary, &archive, &[]);
    archive.wait_caught_up(&primary, Duration::from_secs(90));
    let users = users_file(archive.path().parent().expect("dir"));
    // The replicas run from MySQL's root filesystem: the CA must be inside it.
    let pki = TestPki::generate_in(&MySql::scratch_dir().expect("scratch")).expect("pki");
    let tls = [
        "--tls-cert",
        pki.server_cert.to_str().expect("utf-8"),
        "--tls-key",
        pki.server_key.to_str().expect("utf-8"),
        "--require-tls",
    ];
    let serve = Serve::start(&archive, &users, &tls);
    let ca = MySql::path_for_server(&pki.ca_cert).expect("ca path");
    let verified_tls = format!(
        "SOURCE_SSL=1, SOURCE_SSL_CA='{}', SOURCE_SSL_VERIFY_SERVER_CERT=1",
        ca.display()
    );

    // GTID auto-positioning; caching_sha2_password: a full authentication over TLS.
    let by_gtids = MySqlConfig {
        server_id: Some(2),
        ..MySqlConfig::default()
    }
    .start()
    .expect("replica");
    by_gtids
        .replicate_from_port(
            serve.port,
            USER,
            PASSWORD,
            &format!("SOURCE_AUTO_POSITION=1, {verified_tls}"),
        )
        .expect("CHANGE REPLICATION SOURCE");
    wait_for_mysql_replica(&by_gtids, &primary, &serve);
    assert_eq!(mysql_checksum(&by_gtids), mysql_checksum(&primary));

    // By file and position from the first file; its login takes the fast path.
    let by_position = MySqlConfig {
        server_id: Some(3),
        ..MySqlConfig::default()
    }
    .start()
    .expect("replica");
    let first = primary.binlog_names().expect("names")[0].clone();
    by_position
        .replicate_from_port(
            serve.port,
            USER,
            PASSWORD,
            &format!(
                "SOURCE_AUTO_POSITION=0, SOURCE_LOG_FILE='{first}', SOURCE_LOG_POS=4, \
                 {verified_tls}"
            ),
        )
        .expect("CHANGE REPLICATION SOURCE");
    wait_for_mysql_replica(&by_position, &primary, &serve);

    // Both follow the live tail.
    primary.write_workload(200).expect("more");
    wait_for_mysql_replica(&by_gtids, &primary, &serve);
    wait_for_mysql_replica(&by_position, &primary, &serve);
    for replica in [&by_gtids, &by_position] {
        assert_eq!(mysql_checksum(replica), mysql_checksum(&primary));
        assert_eq!(
            replica.gtid_executed().expect("replica gtids"),
            primary.gtid_executed().expect("primary gtids")
        );
        replica.sql("STOP REPLICA").expect("stop");
    }
    serve.stop();
    streamer.stop();
}

#[test]
fn a_mariadb_11_8_replica_with_its_defaults_replicates_over_tls() {
    let version = MariaDbVersion::V11_8;
    let primary = MariaDbConfig {
        version,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(200).expect("workload");
    let archive = Archive::new();
    let streamer = Streamer::start(&primary, &archive, &[]);
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let users = users_file(archive.path().parent().expect("dir"));
    let replica = MariaDbConfig {
        version,
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    let pki = TestPki::generate_in(replica.dir()).expect("pki");
    let serve = Serve::start(
        &archive,
        &users,
        &[
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
        ],
    );
    // 11.8 replicas use TLS and check the certificate by default: given the CA, nothing
    // else is set.
    replica
        .replicate_from_port(
            serve.port,
            USER,
            PASSWORD,
            &format!(
                "MASTER_SSL_CA='{}'",
                replica.server_path(&pki.ca_cert).display()
            ),
        )
        .expect("CHANGE MASTER");
    wait_for_replica(&replica, &primary, &serve);
    primary.write_workload(100).expect("more");
    wait_for_replica(&replica, &primary, &serve);
    assert_eq!(checksum(&replica), checksum(&primary));
    assert!(
        serve.log().contains("tls=true"),
        "the replica did not use TLS:\n{}",
        serve.log()
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    streamer.stop();
}

/// Waits until a replica's IO thread has stopped on an error; returns its number and text.
fn io_error(status: impl Fn() -> std::collections::BTreeMap<String, String>) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status();
        let errno = status.get("Last_IO_Errno").cloned().unwrap_or_default();
        if !errno.is_empty() && errno != "0" {
            return (
                errno,
                status.get("Last_IO_Error").cloned().unwrap_or_default(),
            );
        }
        assert!(Instant::now() < deadline, "no IO error: {status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_mariadb_replica_that_needs_purged_transactions_gets_the_error_mariadb_gives() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    primary.rotate().expect("rotate");
    wait_for_quiet_binlogs(&primary);
    let newest = primary
        .binlog_names()
        .expect("names")
        .pop()
        .expect("a file");
    primary
        .sql(&format!("PURGE BINARY LOGS TO '{newest}'"))
        .expect("purge");
    // The archive starts where the primary's binlog now does.
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = users_file(archive.path().parent().expect("dir"));
    let serve = Serve::start(&archive, &users, &[]);

    let mut errors = Vec::new();
    for (port, user, password) in [
        (
            primary.port(),
            binlogd_testkit::REPLICATION_USER,
            binlogd_testkit::REPLICATION_PASSWORD,
        ),
        (serve.port, USER, PASSWORD),
    ] {
        // A new replica has nothing: it needs every transaction, the purged ones too.
        let replica = MariaDbConfig {
            server_id: 2,
            ..MariaDbConfig::default()
        }
        .start()
        .expect("replica");
        replica
            .replicate_from_port(port, user, password, "")
            .expect("CHANGE MASTER");
        errors.push(io_error(|| replica.replica_status().expect("status")));
    }
    assert_eq!(errors[1], errors[0], "binlogd serve, then MariaDB");
    assert_eq!(errors[0].0, "1236");
    assert!(
        errors[0]
            .1
            .contains("Could not find GTID state requested by slave"),
        "{errors:?}"
    );
    serve.stop();
}

#[test]
fn a_mysql_replica_that_needs_purged_transactions_gets_the_error_mysql_gives() {
    let primary = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    primary.rotate().expect("rotate");
    wait_for_quiet_binlogs(&primary);
    let newest = primary
        .binlog_names()
        .expect("names")
        .pop()
        .expect("a file");
    primary
        .sql(&format!("PURGE BINARY LOGS TO '{newest}'"))
        .expect("purge");
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = users_file(archive.path().parent().expect("dir"));
    let pki = TestPki::generate().expect("pki");
    let serve = Serve::start(
        &archive,
        &users,
        &[
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
        ],
    );
    let mut errors = Vec::new();
    for (port, user, password) in [
        (
            primary.port(),
            binlogd_testkit::REPLICATION_USER,
            binlogd_testkit::REPLICATION_PASSWORD,
        ),
        (serve.port, USER, PASSWORD),
    ] {
        let replica = MySqlConfig {
            server_id: Some(2),
            ..MySqlConfig::default()
        }
        .start()
        .expect("replica");
        replica
            .replicate_from_port(port, user, password, "SOURCE_AUTO_POSITION=1, SOURCE_SSL=1")
            .expect("CHANGE REPLICATION SOURCE");
        errors.push(io_error(|| replica.replica_status().expect("status")));
    }
    assert_eq!(errors[1], errors[0], "binlogd serve, then MySQL");
    assert_eq!(errors[0].0, "13114", "{errors:?}");
    assert!(
        errors[0]
            .1
            .contains("the source purged required binary logs"),
        "{errors:?}"
    );
    serve.stop();
}

#[test]
fn a_replica_of_binlogd_follows_the_archive_across_a_failover_into_the_new_epoch() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    // log_slave_updates: the standby logs the primary's transactions in its own binlog,
    // as a replica that may be promoted must (off by default).
    let standby = MariaDbConfig {
        server_id: 2,
        max_binlog_size: Some(64 << 10),
        log_slave_updates: Some(true),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("standby");
    standby.replicate_from(&primary).expect("replicate");
    primary.write_workload(200).expect("workload");
    let proxy = binlogd_testkit::TcpProxy::start(primary.port()).expect("proxy");
    let archive = Archive::new();
    let source = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let streamer = Streamer::start_with(&primary, &archive, &[], &source);
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let users = users_file(archive.path().parent().expect("dir"));
    let serve = Serve::start(&archive, &users, &[]);
    let downstream = MariaDbConfig {
        server_id: 3,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("downstream replica");
    downstream
        .replicate_from_port(serve.port, USER, PASSWORD, "")
        .expect("CHANGE MASTER");
    wait_for_replica(&downstream, &primary, &serve);
    standby
        .wait_for_gtid(
            &primary.gtid_binlog_pos().expect("pos"),
            Duration::from_secs(60),
        )
        .expect("standby caught up");

    // Fail over: promote the standby, move the address to it, write there.
    standby.sql("STOP SLAVE; RESET SLAVE ALL").expect("promote");
    proxy.retarget(standby.port());
    standby
        .write_workload(300)
        .expect("workload on the new primary");

    // binlogd's replica gets the new primary's transactions from the archive's second
    // epoch, without the ones it had from the first.
    wait_for_replica(&downstream, &standby, &serve);
    assert_eq!(checksum(&downstream), checksum(&standby));
    assert_eq!(
        downstream
            .query_value("SELECT @@gtid_slave_pos")
            .expect("slave pos"),
        standby.gtid_binlog_pos().expect("pos")
    );
    assert_eq!(archive.epochs().len(), 2, "{}", archive.log());
    downstream.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    streamer.stop();
}

/// Every file of `a` and `b` (two directories), as (name, bytes), in name order.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

/// The files pulled from the primary (first) and from binlogd (second) are the same,
/// byte for byte.
fn assert_same_pulls(pulled: &[Vec<(String, Vec<u8>)>]) {
    assert!(pulled[0].len() >= 3, "{} files", pulled[0].len());
    assert_eq!(
        pulled[1].iter().map(|(n, _)| n).collect::<Vec<_>>(),
        pulled[0].iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, ours), (_, theirs)) in pulled[1].iter().zip(&pulled[0]) {
        let first_difference = ours.iter().zip(theirs.iter()).position(|(a, b)| a != b);
        assert!(
            ours == theirs,
            "{name} differs ({} vs {} bytes), first at offset {first_difference:?}",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn mariadb_binlog_and_mysqlbinlog_pull_the_same_raw_files_from_binlogd_as_from_the_primary() {
    // MariaDB: mariadb-binlog --read-from-remote-server --raw --to-last-log.
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    wait_for_quiet_binlogs(&primary);
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = users_file(archive.path().parent().expect("dir"));
    let serve = Serve::start(&archive, &users, &[]);
    let first = primary.binlog_names().expect("names")[0].clone();
    let pulls = tempfile::tempdir().expect("tempdir");
    let tool = binlogd_testkit::find_tool(binlogd_testkit::Tool::MariadbBinlog).expect("tool");
    let mut pulled = Vec::new();
    for (name, port, user, password) in [
        (
            "primary",
            primary.port(),
            binlogd_testkit::REPLICATION_USER,
            binlogd_testkit::REPLICATION_PASSWORD,
        ),
        ("binlogd", serve.port, USER, PASSWORD),
    ] {
        let dir = pulls.path().join(name);
        std::fs::create_dir(&dir).expect("dir");
        let output = std::process::Command::new(&tool)
            .args([
                "--read-from-remote-server",
                "--raw",
                "--to-last-log",
                "--host=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .arg(format!("--result-file={}/", dir.display()))
            .arg(&first)
            .output()
            .expect("mariadb-binlog");
        assert!(
            output.status.success(),
            "from {name}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            serve.log()
        );
        pulled.push(files_of(&dir));
    }
    assert_same_pulls(&pulled);
    serve.stop();

    // MySQL: its own mysqlbinlog, over TLS, from its root filesystem.
    let primary = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("MySQL primary");
    primary.write_workload(300).expect("workload");
    wait_for_quiet_binlogs(&primary);
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = users_file(archive.path().parent().expect("dir"));
    let pki = TestPki::generate().expect("pki");
    let serve = Serve::start(
        &archive,
        &users,
        &[
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
        ],
    );
    let first = primary.binlog_names().expect("names")[0].clone();
    let pulls = tempfile::tempdir_in(primary.dir()).expect("tempdir");
    let mut pulled = Vec::new();
    for (name, port, user, password) in [
        (
            "primary",
            primary.port(),
            binlogd_testkit::REPLICATION_USER,
            binlogd_testkit::REPLICATION_PASSWORD,
        ),
        ("binlogd", serve.port, USER, PASSWORD),
    ] {
        let dir = pulls.path().join(name);
        std::fs::create_dir(&dir).expect("dir");
        let output = primary
            .own_tool(binlogd_testkit::Tool::Mysqlbinlog)
            .expect("mysqlbinlog")
            .args([
                "--read-from-remote-server",
                "--raw",
                "--to-last-log",
                "--host=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .arg(format!(
                "--result-file={}/",
                primary.server_path(&dir).display()
            ))
            .arg(&first)
            .output()
            .expect("mysqlbinlog");
        assert!(
            output.status.success(),
            "from {name}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            serve.log()
        );
        pulled.push(files_of(&dir));
    }
    assert_same_pulls(&pulled);
    serve.stop();
}
