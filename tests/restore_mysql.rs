//! `binlogd restore` into live MySQL 9.7, as it ships (GTIDs on, binary log on, parallel
//! applier): from a `CLONE LOCAL DATA DIRECTORY` base, to recorded moments named every way
//! a restore can be (a GTID set, just before a GTID, a time, a file position, the latest,
//! a time beyond the archive with and without --strict) with 1, 2 and 4 workers, each
//! checked by `CHECKSUM TABLE` and `@@gtid_executed` against what was recorded; through
//! `mysqlbinlog | mysql`; by replication from a private `binlogd serve`; into a datadir with
//! a private `mysqld` (by relay logs and by replication); bad inputs, each one
//! clear error with the server left as it was; and a failover (a replica promoted behind
//! the address binlogd follows) archived in two epochs and restored across.
//!
//! binlogd runs where the server runs (inside MySQL's root filesystem), because it writes
//! the relay logs into the server's own folder.

mod stream_common;

use binlogd_testkit::{BinlogSource, MariaDbConfig, MySql, MySqlConfig};
use std::path::{Path, PathBuf};
use std::process::Output;
use stream_common::Archive;

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

/// A moment of the source: its GTIDs, its table's checksum, and where its binlog was.
#[derive(Debug, Clone)]
struct Moment {
    gtids: String,
    checksum: String,
    file: String,
    position: String,
}

fn moment(source: &MySql) -> Moment {
    let status = source
        .query_rows("SHOW BINARY LOG STATUS")
        .expect("binlog status");
    Moment {
        gtids: source.gtid_executed().expect("gtids"),
        checksum: source.query_value(CHECKSUM).expect("checksum"),
        file: status[0][0].clone(),
        position: status[0][1].clone(),
    }
}

/// The source's time now, as --to-time takes it.
fn server_time(source: &MySql) -> String {
    source
        .query_value("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")
        .expect("time")
}

/// A server started on a copy of the clone, with an account for binlogd over TCP.
fn target_from(clone: &Path) -> MySql {
    let copy = clone.with_file_name(format!(
        "copy-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    ));
    copy_dir(clone, &copy);
    let target = MySqlConfig {
        server_id: Some(9),
        adopt_datadir: Some(copy),
        ..MySqlConfig::default()
    }
    .start()
    .expect("target from the clone");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    target
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// `binlogd restore` run beside the target (in its root filesystem), from `archive`.
fn restore_beside(target: &MySql, archive: &Path, extra: &[&str]) -> Output {
    let binlogd_copy = target.dir().join("binlogd");
    if !binlogd_copy.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_binlogd"), &binlogd_copy).expect("copy binlogd");
    }
    target
        .beside_server(&binlogd_copy)
        .args(["restore", "--archive"])
        .arg(target.server_path(archive))
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
        ])
        .args(extra)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run binlogd restore")
}

/// The GTID after the last one of `set` (`uuid:1-41` → `uuid:42`).
fn next_gtid(set: &str) -> String {
    let (uuid, ranges) = set.split_once(':').expect("a uuid:ranges set");
    assert!(!set.contains(','), "one source uuid: {set}");
    let last: u64 = ranges
        .rsplit(['-', ':'])
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number");
    format!("{uuid}:{}", last + 1)
}

fn no_channel_left(target: &MySql) {
    assert_eq!(
        target
            .query_value(
                "SELECT COUNT(*) FROM performance_schema.replication_connection_configuration"
            )
            .expect("channels"),
        "0",
        "the replay's channel is removed"
    );
    let left: Vec<_> = std::fs::read_dir(target.datadir())
        .expect("datadir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("relay-bin"))
        .collect();
    assert!(left.is_empty(), "relay logs left behind: {left:?}");
}

#[test]
fn point_in_time_restores_into_mysql_from_a_clone() {
    let source = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("source");
    source.write_workload(200).expect("before the clone");
    let clone = source.dir().join("base");
    source.clone_to(&clone).expect("clone");
    // Recorded moments after the clone, a quiet second either side of the one --to-time
    // names.
    let mut moments = Vec::new();
    let mut time_between = String::new();
    for batch in [40, 70, 90] {
        source.write_workload(batch).expect("after the clone");
        moments.push(moment(&source));
        if moments.len() == 2 {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            time_between = server_time(&source);
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
    let last = moments.last().cloned().expect("moments");
    // The bad transaction, and work after it.
    source
        .sql("DROP TABLE binlogd_test.workload")
        .expect("drop");
    let drop_gtid = next_gtid(&last.gtids);
    source
        .sql("CREATE TABLE binlogd_test.after (id INT PRIMARY KEY); INSERT INTO binlogd_test.after VALUES (1)")
        .expect("later work");
    let everything = source.gtid_executed().expect("gtids");
    let archive = Archive::new_in(source.dir());
    let output = archive.run_to_end(&source, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let position = format!("{}:{}", moments[2].file, moments[2].position);
    let cases: Vec<(Vec<&str>, &str, &Moment)> = vec![
        (vec!["--to-gtid", &moments[0].gtids], "1", &moments[0]),
        (vec!["--to-time", &time_between], "2", &moments[1]),
        (vec!["--to-position", &position], "4", &moments[2]),
        (vec!["--before-gtid", &drop_gtid], "4", &last),
        (
            vec!["--to-gtid", &moments[1].gtids, "--via-mysqlbinlog"],
            "1",
            &moments[1],
        ),
        // By replication from a private binlogd serve: to a time, and to just before
        // the DROP, which the archive holds and must not be served.
        (
            vec!["--to-time", &time_between, "--via-replication"],
            "2",
            &moments[1],
        ),
        (
            vec!["--before-gtid", &drop_gtid, "--via-replication"],
            "4",
            &last,
        ),
    ];
    for (target_point, workers, expected) in cases {
        let target = target_from(&clone);
        let mut args = target_point.clone();
        args.extend(["--parallel-workers", workers, "--from-backup"]);
        let clone_arg = target.server_path(&clone).display().to_string();
        args.push(&clone_arg);
        let output = restore_beside(&target, &archive.path(), &args);
        assert!(
            output.status.success(),
            "{target_point:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if target_point.contains(&"--via-replication") {
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(said.contains("by replication from the archive"), "{said}");
        }
        assert_eq!(
            target.query_value(CHECKSUM).expect("the table is there"),
            expected.checksum,
            "{target_point:?} with {workers} workers"
        );
        assert_eq!(
            target.gtid_executed().expect("gtids"),
            expected.gtids,
            "{target_point:?}"
        );
        assert_eq!(
            target
                .query_value(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'after'"
                )
                .expect("count"),
            "0",
            "nothing after the target"
        );
        assert_eq!(
            target
                .query_value("SELECT @@replica_parallel_workers, @@server_id")
                .expect("settings"),
            "4\t9",
            "the applier's settings are put back"
        );
        no_channel_left(&target);
    }

    // On one server: beyond the archive with --strict (nothing), then the latest.
    let target = target_from(&clone);
    let before = target.gtid_executed().expect("gtids");
    let output = restore_beside(
        &target,
        &archive.path(),
        &["--to-time", "2099-01-01T00:00:00Z", "--strict"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--strict restores nothing"), "{stderr}");
    assert_eq!(target.gtid_executed().expect("gtids"), before);
    let output = restore_beside(&target, &archive.path(), &["--latest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.gtid_executed().expect("gtids"), everything);
    assert_eq!(
        target
            .query_value("SELECT COUNT(*) FROM binlogd_test.after")
            .expect("later work is there"),
        "1"
    );
    no_channel_left(&target);
}

#[test]
fn restore_into_a_mysql_datadir_runs_a_private_mysqld() {
    let source = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("source");
    source.write_workload(100).expect("before the clone");
    let clone = source.dir().join("base");
    source.clone_to(&clone).expect("clone");
    source.write_workload(100).expect("after the clone");
    let at = moment(&source);
    source.write_workload(30).expect("after the moment");
    let archive = Archive::new_in(source.dir());
    let output = archive.run_to_end(&source, &[]);
    assert!(output.status.success());

    let binlogd_copy = source.dir().join("binlogd");
    std::fs::copy(env!("CARGO_BIN_EXE_binlogd"), &binlogd_copy).expect("copy binlogd");
    // From staged relay logs, and by replication (the private mysqld has networking off,
    // which stops it listening, not connecting to binlogd's private serve on 127.0.0.1).
    for (name, how) in [
        ("restored", None),
        ("replicated", Some("--via-replication")),
    ] {
        let datadir = source.dir().join(name);
        copy_dir(&clone, &datadir);
        let output = source
            .beside_server(&binlogd_copy)
            .args(["restore", "--archive"])
            .arg(source.server_path(&archive.path()))
            .arg("--datadir")
            .arg(source.server_path(&datadir))
            .args(["--no-defaults", "--parallel-workers", "2", "--from-backup"])
            .arg(source.server_path(&datadir))
            // The root filesystem has only MySQL's core package, without the folder its
            // full package makes for LOAD DATA (secure_file_priv's default): what
            // --mysqld-arg is for.
            .arg("--mysqld-arg=--secure-file-priv=")
            .args(["--to-gtid", &at.gtids, "--log-format", "json"])
            .args(how)
            .output()
            .expect("run binlogd restore");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("shut down cleanly"), "{stderr}");
        assert!(
            stderr.contains("--skip-replica-start") && stderr.contains("--mysqlx=OFF"),
            "MySQL's own options: {stderr}"
        );
        assert!(
            binlogd_testkit::pids_mentioning(&source.server_path(&datadir)).is_empty(),
            "no server is left running on the datadir"
        );

        let restored = MySqlConfig {
            adopt_datadir: Some(datadir),
            ..MySqlConfig::default()
        }
        .start()
        .expect("a server on the restored datadir");
        assert_eq!(
            restored.query_value(CHECKSUM).expect("checksum"),
            at.checksum,
            "{name}"
        );
        assert_eq!(restored.gtid_executed().expect("gtids"), at.gtids, "{name}");
        no_channel_left(&restored);
    }
}

/// A copy of the archive at `into`.
fn copy_of(archive: &Archive, into: &Path) -> PathBuf {
    copy_dir(&archive.path(), into);
    into.to_owned()
}

#[test]
fn bad_inputs_into_mysql_are_one_clear_error_and_leave_the_server_untouched() {
    let source = MySqlConfig {
        max_binlog_size: Some(16 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("source");
    source.write_workload(100).expect("early work");
    let early = source.gtid_executed().expect("gtids");
    source.write_workload(100).expect("before the clone");
    let clone = source.dir().join("base");
    source.clone_to(&clone).expect("clone");
    source.write_workload(200).expect("after the clone");
    // The last transaction will not apply on the target, which has the table already.
    let before_conflict = source.gtid_executed().expect("gtids");
    source
        .sql("CREATE TABLE binlogd_test.conflict (id INT PRIMARY KEY)")
        .expect("create");
    let archive = Archive::new_in(source.dir());
    assert!(archive.run_to_end(&source, &[]).status.success());
    let target = target_from(&clone);
    target
        .sql("SET sql_log_bin = 0; CREATE TABLE binlogd_test.conflict (id INT PRIMARY KEY)")
        .expect("the target's own table");
    let checksum_before = target.query_value(CHECKSUM).expect("checksum");
    let gtids_before = target.gtid_executed().expect("gtids");
    let run = |archive_dir: &Path, extra: &[&str]| -> String {
        let output = restore_beside(&target, archive_dir, extra);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("binlogd: "))
                .count(),
            1,
            "one error: {stderr}"
        );
        assert_eq!(
            target.query_value(CHECKSUM).expect("checksum"),
            checksum_before
        );
        assert_eq!(target.gtid_executed().expect("gtids"), gtids_before);
        no_channel_left(&target);
        stderr
    };

    let stderr = run(&archive.path(), &["--to-gtid", &early]);
    assert!(stderr.contains("is before the start point"), "{stderr}");

    // A damaged archive: one byte flipped inside an event the replay needs.
    let epoch = std::fs::read_dir(archive.path())
        .expect("archive")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("an epoch");
    let epoch_name = epoch
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<String> = std::fs::read_dir(&epoch)
        .expect("epoch")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("binlog.") && !n.contains(".index"))
        .collect();
    files.sort();
    let middle = files[files.len() - 2].clone();
    let damaged = copy_of(&archive, &source.dir().join("damaged"));
    let victim = damaged.join(&epoch_name).join(&middle);
    let mut bytes = std::fs::read(&victim).expect("file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&victim, bytes).expect("write");
    let stderr = run(&damaged, &["--latest"]);
    assert!(
        stderr.contains(&format!("{epoch_name}/{middle} at offset"))
            && stderr.contains("checksum mismatch"),
        "{stderr}"
    );

    // A gap: a file the replay needs is missing.
    let gap = copy_of(&archive, &source.dir().join("gap"));
    std::fs::remove_file(gap.join(&epoch_name).join(&middle)).expect("remove");
    std::fs::remove_file(gap.join(&epoch_name).join(format!("{middle}.index.jsonl")))
        .expect("remove index");
    let stderr = run(&gap, &["--latest"]);
    assert!(
        stderr.contains("transactions are missing before"),
        "{stderr}"
    );

    // A transaction the server refuses: everything before it is applied, and the error
    // names it, where it is, and the server's own words.
    let output = restore_beside(&target, &archive.path(), &["--latest"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let conflict_gtid = next_gtid(&before_conflict);
    assert!(
        stderr.contains(&format!("transaction {conflict_gtid} (binlog."))
            && stderr.contains("failed to apply: error 1050")
            && stderr.contains("'conflict' already exists"),
        "{stderr}"
    );
    assert_eq!(target.gtid_executed().expect("gtids"), before_conflict);
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        source.query_value(CHECKSUM).expect("checksum")
    );
    no_channel_left(&target);

    // The same by replication: the same transaction named, from the same place.
    let output = restore_beside(&target, &archive.path(), &["--latest", "--via-replication"]);
    let by_replication = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{by_replication}");
    let named = |text: &str| {
        text.lines()
            .find(|l| l.contains("failed to apply"))
            .and_then(|l| l.split(": error").next())
            .map(str::to_owned)
    };
    assert!(named(&stderr).is_some(), "{stderr}");
    assert_eq!(named(&by_replication), named(&stderr), "{by_replication}");
    assert_eq!(target.gtid_executed().expect("gtids"), before_conflict);
    no_channel_left(&target);
}

#[test]
fn mariadb_binlogs_are_refused_by_mysql() {
    let mariadb = MariaDbConfig::default().start().expect("MariaDB");
    mariadb.write_workload(20).expect("work");
    let target = MySql::start_default().expect("MySQL");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    let archive = Archive::new_in(target.dir());
    assert!(archive.run_to_end(&mariadb, &[]).status.success());
    let output = restore_beside(
        &target,
        &archive.path(),
        &["--latest", "--from-archive-start"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a MySQL server cannot apply MariaDB binlogs"),
        "{stderr}"
    );
    assert_eq!(target.gtid_executed().expect("gtids"), "");
    no_channel_left(&target);
}

/// The server's binlog files that the archive's `epoch` holds, each at the server's
/// length: the epoch has caught up with the server.
fn epoch_caught_up(epoch: &Path, db: &MySql) -> bool {
    let files = db.binlog_files().expect("files");
    files
        .last()
        .is_some_and(|newest| epoch.join(newest.file_name().expect("name")).exists())
        && files.iter().all(|file| {
            let copy = epoch.join(file.file_name().expect("name"));
            !copy.exists()
                || std::fs::metadata(&copy).map(|m| m.len()).ok()
                    == std::fs::metadata(file).map(|m| m.len()).ok()
        })
}

#[test]
fn a_mysql_failover_is_archived_once_across_two_epochs_and_restored_across() {
    let primary = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("primary");
    // A replica as MySQL ships one: log_replica_updates is on, so its binlog holds the
    // primary's transactions too, with their GTIDs.
    let replica = MySqlConfig {
        server_id: Some(2),
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("replica");
    replica.replicate_from(&primary).expect("replicate");
    primary.write_workload(100).expect("before the clone");
    let clone = primary.dir().join("base");
    primary.clone_to(&clone).expect("clone");
    primary.write_workload(200).expect("on the primary");

    // binlogd follows the database's address, which moves to the replica at the failover.
    let proxy = binlogd_testkit::TcpProxy::start(primary.port()).expect("proxy");
    let address = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let archive = Archive::new_in(primary.dir());
    let streamer = stream_common::Streamer::start_with(&primary, &archive, &[], &address);
    primary.write_workload(20).expect("more on the primary");
    archive.wait_caught_up(&primary, std::time::Duration::from_secs(60));
    let before = primary.gtid_executed().expect("gtids");
    replica
        .wait_for_gtids(&before, std::time::Duration::from_secs(60))
        .expect("the replica caught up");

    // Promote the replica, move the address, and write there.
    replica
        .sql("STOP REPLICA; RESET REPLICA ALL")
        .expect("promote");
    proxy.retarget(replica.port());
    replica.write_workload(200).expect("on the new primary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let new_epoch = loop {
        let epochs = archive.epochs();
        if epochs.len() == 2
            && epoch_caught_up(&epochs[1], &replica)
            && archive.indexes_all_of(&stream_common::server_gtids(&replica))
        {
            break epochs[1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no caught-up second epoch: {:?}\n{}",
            archive.epochs(),
            archive.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    streamer.stop();
    assert!(
        new_epoch.to_string_lossy().ends_with("0002-server2"),
        "{}",
        new_epoch.display()
    );
    for file in replica.binlog_files().expect("files") {
        let copy = new_epoch.join(file.file_name().expect("name"));
        if copy.exists() {
            stream_common::assert_same_bytes(&file, &copy);
        }
    }
    // Every GTID of the new primary's history (the old primary's and its own) once.
    archive.assert_index_lists_every_gtid_once(&replica);

    // The timeline names the change of server.
    let output = stream_common::binlogd()
        .args(["timeline", "--output", "json", "--archive"])
        .arg(archive.path())
        .output()
        .expect("timeline");
    assert!(output.status.success());
    let timeline: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let everything = replica.gtid_executed().expect("gtids");
    assert_eq!(timeline["recoverable_to"]["gtids"], everything.as_str());
    let change = timeline["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|event| event.get("to_epoch").is_some())
        .unwrap_or_else(|| panic!("no server change in {timeline}"));
    assert_eq!(change["to_server_id"], 2, "{change}");
    assert_eq!(change["lost"], "", "nothing lost in the change: {change}");
    assert!(
        change["from_epoch"]
            .as_str()
            .is_some_and(|e| e.ends_with("server1")),
        "{change}"
    );

    // A restore from the old primary's clone across the failover, to the newest state.
    let target = target_from(&clone);
    let output = restore_beside(&target, &archive.path(), &["--latest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.gtid_executed().expect("gtids"), everything);
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        replica.query_value(CHECKSUM).expect("checksum")
    );
    no_channel_left(&target);
}
