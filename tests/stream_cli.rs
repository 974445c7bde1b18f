//! `binlogd stream` end to end against real MariaDB servers: byte-exact archives across
//! rotations, restarts, crashes (SIGKILL), cut connections and large transactions.

mod stream_common;

use binlogd_testkit::MariaDbConfig;
use std::time::Duration;
use stream_common::{Archive, Streamer, assert_identical_to_server, wait_for_quiet_binlogs};

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
    let streamer = Streamer::start(&db, &archive, &[]);
    db.write_workload(1500).expect("workload while streaming");
    db.rotate().expect("rotate");
    db.write_workload(10)
        .expect("workload after a manual rotation");
    archive.wait_caught_up(&db, Duration::from_secs(60));
    let files = db.binlog_names().expect("names");
    assert!(files.len() > 5, "the workload rotated only into {files:?}");
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
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
    let output = archive.run_to_end(&db, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
}
