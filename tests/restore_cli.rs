//! `binlogd restore` end to end on real MariaDB servers: into a fresh server, to a GTID and
//! on to a time beyond the archive (the latest with a warning, or nothing with --strict);
//! from a mariadb-backup base backup to several recorded moments with 1, 2 and 4 workers
//! and to just before a DROP TABLE, each checked by CHECKSUM TABLE, and the same by
//! replication from a private `binlogd serve` (`--via-replication`); into a datadir with
//! a private server, to a point in the newest, still open, archived file; and bad inputs,
//! each one clear line with the server left as it was.

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig, MariaDbVersion, Tool, find_tool};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use stream_common::{Archive, Streamer, binlogd};

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

fn restore(target: &MariaDb, archive: &Archive, extra: &[&str]) -> Output {
    // Run from a folder of its own, which must stay empty: relay logs go where the server
    // keeps them, never where binlogd happens to run (they once landed there as .000001).
    let cwd = tempfile::tempdir().expect("a working directory");
    let output = binlogd()
        .current_dir(cwd.path())
        .args(["restore", "--archive"])
        .arg(archive.path())
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
        ])
        .args(if extra.contains(&"--parallel-workers") {
            &[][..]
        } else {
            &["--parallel-workers", "4"][..]
        })
        .args(extra)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run binlogd restore");
    let left: Vec<_> = std::fs::read_dir(cwd.path())
        .expect("the working directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "binlogd restore wrote {left:?} where it ran"
    );
    output
}

#[test]
fn restore_to_a_gtid_then_on_to_the_latest() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("first part");
    let cut = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_cut = primary.query_value(CHECKSUM).expect("checksum");
    primary.write_workload(200).expect("second part");
    let checksum_at_end = primary.query_value(CHECKSUM).expect("checksum");
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");

    // An empty server reports no GTID state: binlogd asks where to start.
    let output = restore(&target, &archive, &["--to-gtid", &cut]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--from-archive-start"), "{stderr}");

    // --dry-run prints the plan and changes nothing.
    let output = restore(
        &target,
        &archive,
        &["--to-gtid", &cut, "--from-archive-start", "--dry-run"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.contains(&format!("after {cut}")), "{plan}");
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        ""
    );

    let output = restore(
        &target,
        &archive,
        &["--to-gtid", &cut, "--from-archive-start"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!("restored to {cut}")),
        "{stdout}"
    );
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        cut
    );
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_cut
    );
    assert!(
        target
            .query_rows("SHOW ALL SLAVES STATUS")
            .expect("status")
            .is_empty(),
        "no replication left behind"
    );
    assert_eq!(
        target.query_value("SELECT @@server_id").expect("id"),
        "9",
        "the server_id the replay ran under is put back"
    );

    // A time beyond the archive: refused with --strict, else the latest, said loudly.
    let later = "2099-01-01T00:00:00Z";
    let output = restore(&target, &archive, &["--to-time", later, "--strict"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--strict restores nothing"), "{stderr}");
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        cut
    );
    let output = restore(&target, &archive, &["--to-time", later]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARNING: time 2099-01-01T00:00:00Z is beyond the archive"),
        "{stderr}"
    );
    // The last line says it too: what was reached, short of what was asked.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .trim_end()
            .ends_with("SHORT of the target time 2099-01-01T00:00:00Z: the archive ends there"),
        "{stdout}"
    );
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        primary.gtid_binlog_pos().expect("pos")
    );
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_end
    );

    // Nothing more to do.
    let output = restore(&target, &archive, &["--latest"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to apply"));
}

/// The next GTID of domain 0 after `pos` (`0-1-41` → `0-1-42`).
fn next_gtid(pos: &str) -> String {
    let (head, seq) = pos.rsplit_once('-').expect("gtid");
    format!("{head}-{}", seq.parse::<u64>().expect("seq") + 1)
}

/// `binlogd restore` run on the target's machine (in its root filesystem, for a chrooted
/// server), with the archive and backup paths as that machine sees them.
fn restore_beside(
    target: &MariaDb,
    archive: &Archive,
    from_backup: &Path,
    extra: &[&str],
) -> Output {
    // The binary goes where the server's machine can run it.
    let binlogd_copy = target.dir().join("binlogd");
    if !binlogd_copy.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_binlogd"), &binlogd_copy).expect("copy binlogd");
    }
    target
        .beside_server(&binlogd_copy)
        .args(["restore", "--archive"])
        .arg(target.server_path(&archive.path()))
        .arg("--from-backup")
        .arg(target.server_path(from_backup))
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
        ])
        .args(extra)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run binlogd restore")
}

#[test]
fn point_in_time_restores_from_a_base_backup_to_a_gtid_and_to_just_before_a_drop() {
    point_in_time_restores(MariaDbVersion::V10_11);
}

#[test]
fn point_in_time_restores_on_mariadb_11_8() {
    point_in_time_restores(MariaDbVersion::V11_8);
}

fn point_in_time_restores(version: MariaDbVersion) {
    let primary = MariaDbConfig {
        version,
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(200).expect("before the backup");
    // Backups and archive where the servers' own tools reach them.
    let backup = primary.backup(&primary.dir().join("base")).expect("backup");
    // Several moments after the backup, each with the table's checksum then.
    let mut moments = Vec::new();
    for batch in [40, 70, 90] {
        primary.write_workload(batch).expect("after the backup");
        moments.push((
            primary.gtid_binlog_pos().expect("pos"),
            primary.query_value(CHECKSUM).expect("checksum"),
        ));
    }
    let (last_moment, checksum_at_last) = moments.last().cloned().expect("moments");
    // The bad transaction, and work after it.
    primary
        .sql("DROP TABLE binlogd_test.workload")
        .expect("drop");
    let drop_gtid = next_gtid(&last_moment);
    assert_eq!(primary.gtid_binlog_pos().expect("pos"), drop_gtid);
    primary
        .sql("CREATE TABLE binlogd_test.after (id INT PRIMARY KEY); INSERT INTO binlogd_test.after VALUES (1)")
        .expect("later work");
    let archive = Archive::new_in(primary.dir());
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Each moment with 1, 2 and 4 workers, then just before the DROP with 4, then one
    // moment through mariadb-binlog | mariadb.
    let mut cases: Vec<(Vec<String>, &str, String, String)> = moments
        .iter()
        .zip(["1", "2", "4"])
        .map(|((gtid, checksum), workers)| {
            (
                vec!["--to-gtid".to_owned(), gtid.clone()],
                workers,
                gtid.clone(),
                checksum.clone(),
            )
        })
        .collect();
    cases.push((
        vec!["--before-gtid".to_owned(), drop_gtid.clone()],
        "4",
        last_moment.clone(),
        checksum_at_last.clone(),
    ));
    // The same through mariadb-binlog | mariadb, which must agree.
    cases.push((
        vec![
            "--to-gtid".to_owned(),
            moments[1].0.clone(),
            "--via-mysqlbinlog".to_owned(),
        ],
        "1",
        moments[1].0.clone(),
        moments[1].1.clone(),
    ));
    // By replication from a private binlogd serve: to a moment, and to just before the
    // DROP, which the archive holds and must not be served.
    cases.push((
        vec![
            "--to-gtid".to_owned(),
            moments[0].0.clone(),
            "--via-replication".to_owned(),
        ],
        "2",
        moments[0].0.clone(),
        moments[0].1.clone(),
    ));
    cases.push((
        vec![
            "--before-gtid".to_owned(),
            drop_gtid.clone(),
            "--via-replication".to_owned(),
        ],
        "4",
        last_moment.clone(),
        checksum_at_last.clone(),
    ));
    for (target_point, workers, expected_gtid, expected_checksum) in cases {
        let target = MariaDbConfig {
            version,
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
        let mut args: Vec<&str> = target_point.iter().map(String::as_str).collect();
        args.extend(["--parallel-workers", workers]);
        let output = restore_beside(&target, &archive, &backup.dir, &args);
        assert!(
            output.status.success(),
            "{target_point:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stdout);
        if target_point.iter().any(|a| a == "--via-replication") {
            assert!(said.contains("by replication from the archive"), "{said}");
            assert_eq!(
                target
                    .query_value(
                        "SELECT COUNT(*) FROM information_schema.processlist \
                         WHERE command LIKE 'Slave%'"
                    )
                    .expect("processlist"),
                "0",
                "no replication thread left"
            );
        }
        assert_eq!(
            target.query_value(CHECKSUM).expect("the table is there"),
            expected_checksum,
            "{target_point:?} with {workers} workers"
        );
        assert_eq!(
            target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
            expected_gtid
        );
        let later = target.query_value(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'after'",
        );
        assert_eq!(later.expect("count"), "0", "nothing after the target");
    }
}

#[test]
fn restore_into_a_datadir_runs_a_private_server_and_shuts_it_down_cleanly() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(100).expect("before the backup");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(100).expect("after the backup");
    // A live stream, and the target the newest transaction: it lies in the newest
    // archived file, which is still open (the server has not rotated away from it).
    let archive = Archive::new();
    let streamer = Streamer::start(&primary, &archive, &[]);
    primary.write_workload(30).expect("into the newest file");
    let moment = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_moment = primary.query_value(CHECKSUM).expect("checksum");
    archive.wait_caught_up(&primary, Duration::from_secs(60));

    let datadir = work.path().join("restored");
    let restore_datadir = |datadir: &Path, extra: &[&str]| -> Output {
        binlogd()
            .args(["restore", "--archive"])
            .arg(archive.path())
            .arg("--datadir")
            .arg(datadir)
            .arg("--mysqld")
            .arg(find_tool(Tool::Mariadbd).expect("mariadbd"))
            .args(["--no-defaults", "--parallel-workers", "2", "--from-backup"])
            // The datadir itself: --copy-back leaves xtrabackup_info there, which names
            // the backup's GTID (what a restore Job has on the database's volume).
            .arg(datadir)
            .args(extra)
            .output()
            .expect("run binlogd restore")
    };

    // Not a datadir: one clear line, nothing started.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).expect("empty dir");
    let output = restore_datadir(&empty, &["--to-gtid", &moment]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds no mysql schema"), "{stderr}");

    // As a database's datadir is: its server's user's, not root's (binlogd, as root, then
    // runs the server as that user, and gives it the relay logs it stages there).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let restored_datadir = |datadir: &Path| {
        backup.copy_back_to(datadir).expect("copy back");
        let chown = std::process::Command::new("chown")
            .args(["-R", "mysql:mysql"])
            .arg(datadir)
            .status()
            .expect("chown");
        assert!(chown.success());
    };
    restored_datadir(&datadir);
    // By replication too: the private server has networking off, which stops it listening,
    // not connecting to binlogd's private serve on 127.0.0.1.
    let replicated = work.path().join("replicated");
    restored_datadir(&replicated);
    let output = restore_datadir(&replicated, &["--to-gtid", &moment, "--via-replication"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = restore_datadir(&datadir, &["--to-gtid", &moment, "--log-format", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
    if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
        eprintln!("{stderr}");
    }
    // The JSON lines the operator follows a restore Job by.
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let said = |message: &str| {
        logged
            .iter()
            .find(|line| line["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message} line in\n{stderr}"))
            .clone()
    };
    assert_eq!(said("planned")["fields"]["target_gtid"], moment.as_str());
    assert_eq!(said("restored")["fields"]["reached_gtid"], moment.as_str());
    assert!(
        binlogd_testkit::pids_mentioning(&datadir).is_empty(),
        "no server is left running on the datadir"
    );
    streamer.stop();

    // The datadir now starts as the database at the moment. (The temporary server had
    // server_id 1, the primary's: the replay ran under another, or it would skip all.)
    let restored = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        adopt_datadir: Some(datadir),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("a server on the restored datadir");
    assert_eq!(
        restored.query_value(CHECKSUM).expect("checksum"),
        checksum_at_moment
    );
    assert_eq!(
        restored
            .query_value("SELECT @@gtid_slave_pos")
            .expect("pos"),
        moment
    );
    drop(restored);
    let restored = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        adopt_datadir: Some(replicated),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("a server on the datadir restored by replication");
    assert_eq!(
        restored.query_value(CHECKSUM).expect("checksum"),
        checksum_at_moment
    );
    assert_eq!(
        restored
            .query_value("SELECT @@gtid_slave_pos")
            .expect("pos"),
        moment
    );
}

/// Rewrites the server version in the FORMAT_DESCRIPTION event of every binlog copy in
/// `epoch` (and the event's CRC32): the archive another server would have written.
fn claim_written_by(epoch: &Path, version: &str) {
    for entry in std::fs::read_dir(epoch).expect("epoch") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if !name.starts_with("mariadb-bin.") || name.contains(".index") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("file");
        // After the magic: a 19-byte header (event size at 9), then binlog_version (2)
        // and server_version (50 bytes, NUL-padded); the CRC32 ends the event.
        let size = u32::from_le_bytes(bytes[13..17].try_into().expect("size")) as usize;
        let field = &mut bytes[4 + 19 + 2..4 + 19 + 52];
        field.fill(0);
        field[..version.len()].copy_from_slice(version.as_bytes());
        let crc_at = 4 + size - 4;
        let crc = crc32fast::hash(&bytes[4..crc_at]);
        bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, bytes).expect("write");
    }
}

/// A copy of `archive` to break.
fn copy_of(archive: &Archive, into: &Path) -> PathBuf {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(archive.path())
        .arg(into)
        .status()
        .expect("cp");
    assert!(status.success());
    into.to_owned()
}

#[test]
fn bad_inputs_are_one_clear_error_and_leave_the_server_untouched() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(100).expect("early work");
    let early = primary.gtid_binlog_pos().expect("pos");
    primary.write_workload(100).expect("before the backup");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(200).expect("after the backup");
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(output.status.success());
    let target = target_from(&backup);
    let checksum_before = target.query_value(CHECKSUM).expect("checksum");
    let run = |archive_dir: &Path, extra: &[&str]| -> String {
        let output = binlogd()
            .args(["restore", "--archive"])
            .arg(archive_dir)
            .args([
                "--target",
                &format!("mysql://restorer@127.0.0.1:{}", target.port()),
                "--from-backup",
            ])
            .arg(&backup.dir)
            .args(extra)
            .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
            .output()
            .expect("run binlogd restore");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        // One error line (a log line saying what was planned may come before it).
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("binlogd: "))
                .count(),
            1,
            "one error: {stderr}"
        );
        assert!(
            stderr
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("binlogd: ")),
            "{stderr}"
        );
        // Untouched: nothing applied, no channel, no relay logs left behind.
        assert_eq!(
            target.query_value(CHECKSUM).expect("checksum"),
            checksum_before
        );
        assert_eq!(
            target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
            ""
        );
        assert!(
            target
                .query_rows("SHOW ALL SLAVES STATUS")
                .expect("status")
                .is_empty()
        );
        let left: Vec<_> = std::fs::read_dir(target.relay_log_dir())
            .expect("relay dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "relay logs left behind: {left:?}");
        stderr
    };

    let stderr = run(archive.path().as_path(), &["--to-gtid", &early]);
    assert!(stderr.contains("is before the start point"), "{stderr}");

    // A gap: a file in the middle of what the replay needs is missing.
    let gap = copy_of(&archive, &work.path().join("gap"));
    let epoch = gap.join("0001-server1");
    let mut files: Vec<String> = std::fs::read_dir(&epoch)
        .expect("epoch")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mariadb-bin.") && !n.contains(".index"))
        .collect();
    files.sort();
    // The file before the newest: when the newest is empty (as a server's newest file
    // often is), only its GTID list shows what is missing.
    let middle = &files[files.len() - 2];
    std::fs::remove_file(epoch.join(middle)).expect("remove");
    std::fs::remove_file(epoch.join(format!("{middle}.index.jsonl"))).expect("remove index");
    let stderr = run(&gap, &["--latest"]);
    assert!(
        stderr.contains("transactions are missing before"),
        "{stderr}"
    );

    // A damaged archive: one byte flipped inside an event the replay needs.
    let damaged = copy_of(&archive, &work.path().join("damaged"));
    let victim = damaged.join("0001-server1").join(middle);
    let mut bytes = std::fs::read(&victim).expect("file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&victim, bytes).expect("write");
    let stderr = run(&damaged, &["--latest"]);
    assert!(
        stderr.contains(&format!("0001-server1/{middle} at offset"))
            && stderr.contains("checksum mismatch"),
        "{stderr}"
    );

    // Binlogs of a newer server, and of MySQL.
    let newer = copy_of(&archive, &work.path().join("newer"));
    claim_written_by(&newer.join("0001-server1"), "11.8.1-MariaDB-log");
    let stderr = run(&newer, &["--latest"]);
    assert!(
        stderr.contains("written by MariaDB 11.8.1-MariaDB-log, newer than the target's"),
        "{stderr}"
    );
    let mysql = copy_of(&archive, &work.path().join("mysql"));
    claim_written_by(&mysql.join("0001-server1"), "8.0.36");
    let stderr = run(&mysql, &["--latest"]);
    assert!(
        stderr.contains("a MariaDB server cannot apply MySQL binlogs"),
        "{stderr}"
    );

    // The damaged archive by replication: nothing is staged (checked) first, so what lies
    // before the damage is applied; the private serve checks each event's CRC32 before
    // sending it, and the error names the file and offset.
    let target = target_from(&backup);
    let output = binlogd()
        .args(["restore", "--archive"])
        .arg(&damaged)
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
            "--latest",
            "--via-replication",
            "--from-backup",
        ])
        .arg(&backup.dir)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run binlogd restore");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("0001-server1/{middle} at offset"))
            && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
        eprintln!("{stderr}");
    }
    assert!(
        target
            .query_rows("SHOW ALL SLAVES STATUS")
            .expect("status")
            .is_empty()
    );
}

#[test]
fn a_source_that_encrypts_its_binlogs_is_restored_from_what_a_replica_receives() {
    // encrypt_binlog=ON: the archive holds the events decrypted, at the server's offsets.
    let primary = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        encrypt_binlog: Some(true),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(150).expect("first part");
    let cut = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_cut = primary.query_value(CHECKSUM).expect("checksum");
    primary.write_workload(100).expect("second part");
    let checksum_at_end = primary.query_value(CHECKSUM).expect("checksum");
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("this archive holds them in plaintext"),
        "{stderr}"
    );

    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    let output = restore(
        &target,
        &archive,
        &["--to-gtid", &cut, "--from-archive-start"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_cut
    );
    let output = restore(&target, &archive, &["--latest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_end
    );
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        primary.gtid_binlog_pos().expect("pos")
    );
}

#[test]
fn a_gtid_domain_the_replay_does_not_touch_is_kept_in_the_restored_state() {
    // Domain 1 is written once, before the backup, and never again: the replay has
    // nothing of it to apply, and must neither wait for it nor lose it.
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(50).expect("domain 0");
    primary
        .sql(
            "SET gtid_domain_id = 1; CREATE TABLE binlogd_test.other (id INT PRIMARY KEY); \
             SET gtid_domain_id = 0",
        )
        .expect("domain 1");
    primary.write_workload(50).expect("domain 0 again");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(100).expect("after the backup");
    let end = primary.gtid_binlog_pos().expect("pos");
    assert!(end.contains("1-1-1"), "two domains: {end}");
    let checksum = primary.query_value(CHECKSUM).expect("checksum");
    let archive = Archive::new();
    assert!(archive.run_to_end(&primary, &[]).status.success());
    let target = target_from(&backup);
    let output = binlogd()
        .args(["restore", "--archive"])
        .arg(archive.path())
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
            "--latest",
            "--stall-timeout",
            "20",
            "--from-backup",
        ])
        .arg(&backup.dir)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .output()
        .expect("run binlogd restore");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.query_value(CHECKSUM).expect("checksum"), checksum);
    // Every domain, as on the source: as a replica, it would fetch nothing twice.
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        end
    );
}

#[test]
fn a_second_restore_on_a_restored_server_applies_nothing_twice() {
    // What a second PointInTimeRestore of the same volume does: --from-backup names the
    // base backup again, while the server already holds the first restore's transactions.
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(50).expect("before the backup");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(60).expect("after the backup");
    let first = primary.gtid_binlog_pos().expect("pos");
    primary.write_workload(60).expect("more");
    let second = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_second = primary.query_value(CHECKSUM).expect("checksum");
    let archive = Archive::new();
    assert!(archive.run_to_end(&primary, &[]).status.success());
    let target = target_from(&backup);
    let run = |to: &str, from_gtid: Option<&str>| -> Output {
        let mut args = vec!["--to-gtid", to];
        match from_gtid {
            Some(gtid) => args.extend(["--from-gtid", gtid]),
            None => args.extend(["--from-backup", backup.dir.to_str().expect("utf-8")]),
        }
        restore(&target, &archive, &args)
    };
    for (to, what) in [(&first, "the first"), (&second, "the second, further")] {
        let output = run(to, None);
        assert!(
            output.status.success(),
            "{what} restore: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
            *to
        );
    }
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_second
    );
    // Again to where it is: nothing to do.
    let output = run(&second, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("the server already holds"), "{stderr}");
    // A start that contradicts the server's state: refused, nothing changed.
    let output = run(&second, Some("0-1-5,7-1-3"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("neither is a safe start"), "{stderr}");
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_second
    );
}

#[test]
fn a_restore_interrupted_while_applying_removes_its_channel_and_runs_again() {
    interrupted_while_applying(&[], "relay logs staged");
}

#[test]
fn a_restore_by_replication_interrupted_removes_its_channel_and_runs_again() {
    interrupted_while_applying(
        &["--via-replication"],
        "serving the archive to the server up to the target",
    );
}

/// SIGTERM to `binlogd restore EXTRA` once it has logged `started` and the applier waits
/// on a locked table; then the same restore again.
fn interrupted_while_applying(extra: &[&str], started: &str) {
    // What a deleted restore Job does to binlogd: SIGTERM, in the middle of the replay.
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(50).expect("before the backup");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(200).expect("after the backup");
    let end = primary.gtid_binlog_pos().expect("pos");
    let checksum = primary.query_value(CHECKSUM).expect("checksum");
    let archive = Archive::new();
    assert!(archive.run_to_end(&primary, &[]).status.success());
    let target = target_from(&backup);

    // A session holds the table, so the replay is surely under way, and stuck, when the
    // signal comes.
    let mut holder = std::process::Command::new(find_tool(Tool::MariadbClient).expect("client"))
        .args(["--no-defaults", "--user=root"])
        .arg(format!("--socket={}", target.socket().display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("a client");
    let mut hold = holder.stdin.take().expect("stdin");
    use std::io::Write;
    writeln!(hold, "LOCK TABLES binlogd_test.workload READ;").expect("lock");
    hold.flush().expect("flush");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while target
        .query_value("SHOW OPEN TABLES FROM binlogd_test WHERE In_use > 0")
        .expect("open tables")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was not taken"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut restore = binlogd()
        .args(["restore", "--archive"])
        .arg(archive.path())
        .args([
            "--target",
            &format!("mysql://restorer@127.0.0.1:{}", target.port()),
            "--latest",
            "--from-backup",
        ])
        .arg(&backup.dir)
        .args(extra)
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start binlogd restore");
    let stderr = restore.stderr.take().expect("stderr");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let started = started.to_owned();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(&started) {
                let _ = started_tx.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    started_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the replay started");
    // The applier has started, and waits on the table.
    std::thread::sleep(Duration::from_secs(1));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &restore.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // MariaDB's STOP SLAVE lets a worker finish the transaction it is in: let it go.
    std::thread::sleep(Duration::from_secs(1));
    writeln!(hold, "UNLOCK TABLES;").expect("unlock");
    drop(hold);
    holder.wait().expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = restore.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binlogd did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = reader.join().expect("reader");
    assert_eq!(exit.code(), Some(1), "{said}");
    assert!(
        said.contains("interrupted by SIGTERM: the applier is stopped and replication removed"),
        "{said}"
    );
    // No channel, no relay logs, settings back, and the error says what the server holds.
    assert!(
        target
            .query_rows("SHOW ALL SLAVES STATUS")
            .expect("status")
            .is_empty()
    );
    let left: Vec<_> = std::fs::read_dir(target.relay_log_dir())
        .expect("relay dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "relay logs left behind: {left:?}");
    assert_eq!(target.query_value("SELECT @@server_id").expect("id"), "9");
    let holds = target.query_value("SELECT @@gtid_slave_pos").expect("pos");
    assert!(
        said.contains(&format!("the server holds {holds} (the target was {end})")),
        "{said}"
    );

    // The same restore again goes on to the end.
    let mut again = vec!["--latest"];
    again.extend(extra);
    let output = restore_from_backup(&target, &archive, &backup.dir, &again);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.query_value(CHECKSUM).expect("checksum"), checksum);
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        end
    );
}

/// `binlogd restore` from `backup` into `target`, with `extra`.
fn restore_from_backup(
    target: &MariaDb,
    archive: &Archive,
    backup: &Path,
    extra: &[&str],
) -> Output {
    let mut args = vec!["--from-backup", backup.to_str().expect("utf-8")];
    args.extend(extra);
    restore(target, archive, &args)
}

/// A server restored from `backup` (binary log off, its own server id), with the account
/// the restores log in as.
fn target_from(backup: &binlogd_testkit::Backup) -> MariaDb {
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
    target
}
