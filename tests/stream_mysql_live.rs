//! `binlogd stream` against a live MySQL 9.7, as MySQL ships (`gtid_mode=ON`, ROW,
//! CRC32, `caching_sha2_password` over TLS): byte-identical files across rotations, a
//! SIGKILL of binlogd in the middle of a load, and resuming by GTID set or by position.

mod stream_common;

use binlogd_testkit::{MySql, MySqlConfig};
use std::time::Duration;
use stream_common::{Archive, Streamer, assert_identical_to_server, wait_for_quiet_binlogs};

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
