//! Self-tests of the MariaDB side of the harness: real servers, real binlogs, no leftovers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use binlogd_testkit::{
    BinlogChecksum, MariaDb, MariaDbConfig, SysbenchLoad, Tool, find_tool, pids_mentioning, reap,
};

/// GTIDs `mariadb-binlog` prints for a file, as `domain-server-seq` strings.
fn gtids_in(file: &PathBuf) -> Vec<String> {
    let tool = find_tool(Tool::MariadbBinlog).expect("mariadb-binlog");
    let out = Command::new(tool)
        .arg(file)
        .output()
        .expect("run mariadb-binlog");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once("\tGTID ").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn two_instances_run_at_once_write_gtid_binlogs_and_leave_no_process() {
    let first = MariaDb::start_default().expect("start first");
    let second = MariaDbConfig {
        server_id: 2,
        gtid_domain_id: Some(5),
        binlog_checksum: Some(BinlogChecksum::None),
        max_binlog_size: Some(4096),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start second");
    assert_ne!(first.port(), second.port());

    first.write_workload(30).expect("workload on first");
    first.rotate().expect("rotate first");
    first.write_workload(10).expect("more workload on first");
    second.write_workload(40).expect("workload on second");

    // The first server: two files, GTIDs of domain 0 from server 1, one per transaction.
    let files = first.binlog_files().expect("first binlog files");
    assert_eq!(files.len(), 2, "FLUSH BINARY LOGS makes a second file");
    let gtids: Vec<String> = files.iter().flat_map(gtids_in).collect();
    // CREATE DATABASE, CREATE TABLE, then 40 transactions.
    assert_eq!(gtids.len(), 42, "{gtids:?}");
    assert_eq!(gtids.first().map(String::as_str), Some("0-1-1"));
    assert_eq!(gtids.last().map(String::as_str), Some("0-1-42"));
    assert_eq!(first.gtid_binlog_pos().expect("gtid pos"), "0-1-42");

    // The second server: domain 5, server 2, and a tiny max_binlog_size makes many files.
    let files = second.binlog_files().expect("second binlog files");
    assert!(
        files.len() > 3,
        "max_binlog_size=4096 rotates often, got {}",
        files.len()
    );
    let gtids: Vec<String> = files.iter().flat_map(gtids_in).collect();
    assert_eq!(gtids.len(), 42);
    assert!(gtids.iter().all(|g| g.starts_with("5-2-")), "{gtids:?}");

    let dirs = [first.dir().to_owned(), second.dir().to_owned()];
    for dir in &dirs {
        assert!(
            !pids_mentioning(dir).is_empty(),
            "a server runs for {}",
            dir.display()
        );
    }
    drop(first);
    drop(second);
    for dir in &dirs {
        assert_eq!(
            pids_mentioning(dir),
            Vec::<u32>::new(),
            "process left for {}",
            dir.display()
        );
        assert!(!dir.exists(), "{} removed", dir.display());
    }
}

#[test]
fn replication_user_has_only_replication_privileges() {
    let db = MariaDb::start_default().expect("start");
    let grants = db
        .sql(&format!(
            "SHOW GRANTS FOR '{}'@'127.0.0.1'",
            binlogd_testkit::REPLICATION_USER
        ))
        .expect("show grants");
    assert!(
        grants.contains("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*"),
        "{grants}"
    );
    assert_eq!(grants.lines().count(), 1, "{grants}");
}

#[test]
fn primary_and_replica_replicate_by_gtid() {
    let primary = MariaDb::start_default().expect("start primary");
    // log_slave_updates (off by default): the replica logs what it applies.
    let replica = MariaDbConfig {
        server_id: 2,
        log_slave_updates: Some(true),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start replica");
    replica.replicate_from(&primary).expect("replicate");
    primary.write_workload(25).expect("workload");
    let pos = primary.gtid_binlog_pos().expect("primary pos");
    replica
        .wait_for_gtid(&pos, Duration::from_secs(30))
        .expect("replica catches up");
    let count = |db: &MariaDb| {
        db.query_value("SELECT COUNT(*) FROM binlogd_test.workload")
            .expect("count")
    };
    assert_eq!(count(&primary), count(&replica));
    // log_slave_updates: the replica's binlog holds the primary's GTIDs, ready for failover.
    assert_eq!(replica.gtid_binlog_pos().expect("replica pos"), pos);
}

#[test]
fn backup_restores_into_a_fresh_instance_at_its_binlog_position() {
    let source = MariaDb::start_default().expect("start source");
    source.write_workload(20).expect("workload before backup");
    let rows_at_backup = source
        .query_value("SELECT COUNT(*) FROM binlogd_test.workload")
        .expect("count");
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let target = backup_dir.path().join("backup");
    let backup = source.backup(&target).expect("backup");
    assert_eq!(backup.gtid, source.gtid_binlog_pos().expect("pos"));
    let binlog_size = std::fs::metadata(source.binlog_dir().join(&backup.binlog_file))
        .expect("stat")
        .len();
    assert_eq!(
        backup.binlog_position, binlog_size,
        "backup taken at the end of the binlog"
    );

    source.write_workload(20).expect("workload after backup");
    let restored = MariaDbConfig {
        restore_from: Some(target),
        server_id: 3,
        skip_log_bin: true,
        ..Default::default()
    }
    .start()
    .expect("start restored");
    let rows = restored
        .query_value("SELECT COUNT(*) FROM binlogd_test.workload")
        .expect("count restored");
    assert_eq!(rows, rows_at_backup);
}

#[test]
fn sysbench_write_load_runs() {
    let db = MariaDb::start_default().expect("start");
    let before = db.gtid_binlog_pos().expect("pos");
    db.sysbench(&SysbenchLoad {
        tables: 2,
        table_size: 500,
        threads: 2,
        seconds: 0,
        events: 300,
    })
    .expect("sysbench");
    let after = db.gtid_binlog_pos().expect("pos");
    let seq = |pos: &str| {
        pos.rsplit('-')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // 300 oltp_write_only events are 300 transactions, plus the prepare step's writes.
    assert!(seq(&after) >= seq(&before) + 300, "{before} -> {after}");
}

#[test]
fn orphans_of_a_dead_test_process_are_reaped() {
    let root = reap::instances_root();
    std::fs::create_dir_all(&root).expect("root");
    let dir = tempfile::Builder::new()
        .prefix("orphan-")
        .tempdir_in(&root)
        .expect("dir")
        .keep();
    // A process that existed and is gone: its pid is the dead owner.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead_pid = gone.id();
    gone.wait().expect("wait true");
    // Owned by this live process while the stand-in starts: reapers in other test
    // processes running at the same time must not take it early.
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).expect("owner");
    // The "server": one long-lived process that names the folder on its command line.
    let server = Command::new("tail")
        .arg("-f")
        .arg(dir.join("owner.pid"))
        .spawn()
        .expect("spawn server stand-in");
    let pid = server.id();
    std::mem::forget(server);
    // Until the child has exec'd tail its command line is still ours.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pids_mentioning(&dir) != [pid] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pids_mentioning(&dir), vec![pid]);

    // Now its owner is dead; whichever reaper runs first (ours here, or another test
    // process's) must kill the stand-in and remove the folder.
    std::fs::write(dir.join("owner.pid"), dead_pid.to_string()).expect("owner");
    reap::reap_orphans();
    // The killed process stays our zombie until this test exits; a zombie has no command
    // line, so pids_mentioning already does not count it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pids_mentioning(&dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pids_mentioning(&dir), Vec::<u32>::new());
    assert!(!dir.exists());
}
