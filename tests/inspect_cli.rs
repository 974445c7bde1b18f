//! `binlogd inspect` end to end: the binary on a real MariaDB binlog and on bad files.

use std::process::Command;

use binlogd_testkit::MariaDb;

fn binlogd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_binlogd"))
}

#[test]
fn lists_transactions_of_a_live_mariadb_binlog_as_json() {
    let db = MariaDb::start_default().expect("start");
    db.write_workload(20).expect("workload");
    let file = db.binlog_files().expect("files").pop().expect("a binlog");
    let output = binlogd()
        .args(["inspect", "--transactions", "--json"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // CREATE DATABASE, CREATE TABLE, 20 transactions.
    assert_eq!(lines.len(), 22);
    assert_eq!(lines[0]["gtid"], "0-1-1");
    assert_eq!(lines[0]["ddl"], true);
    assert_eq!(lines[21]["gtid"], "0-1-22");
    assert_eq!(lines[21]["ddl"], false);
    // The live file's transactions end where the file ends.
    assert_eq!(
        lines[21]["end"].as_u64(),
        Some(std::fs::metadata(&file).expect("stat").len())
    );

    let events = binlogd().arg("inspect").arg(&file).output().expect("run");
    assert!(events.status.success());
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(
        text.contains("FORMAT_DESCRIPTION") && text.contains("GTID 0-1-22"),
        "{text}"
    );
}

#[test]
fn truncated_and_corrupt_files_fail_with_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start_default().expect("start");
    db.write_workload(3).expect("workload");
    db.rotate().expect("rotate");
    let closed = db.binlog_files().expect("files").remove(0);
    let bytes = std::fs::read(&closed).expect("read");

    let truncated = dir.path().join("truncated.000001");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).expect("write");
    let out = binlogd()
        .arg("inspect")
        .arg(&truncated)
        .output()
        .expect("run");
    assert!(!out.status.success(), "a closed file cut short is an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated.000001") && err.contains("truncated") && err.contains("offset"),
        "{err}"
    );

    let mut flipped = bytes.clone();
    let at = bytes.len() - 20;
    flipped[at] ^= 0xff;
    let corrupt = dir.path().join("corrupt.000001");
    std::fs::write(&corrupt, &flipped).expect("write");
    let out = binlogd()
        .arg("inspect")
        .arg(&corrupt)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains("corrupt.000001"),
        "{err}"
    );

    let not_binlog = dir.path().join("not-a-binlog");
    std::fs::write(&not_binlog, b"hello world").expect("write");
    let out = binlogd()
        .arg("inspect")
        .arg(&not_binlog)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a binlog file"));
}

#[test]
fn a_live_file_cut_mid_event_is_reported_but_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start_default().expect("start");
    db.write_workload(3).expect("workload");
    // The open file: its format description carries the in-use flag on disk.
    let live = db.binlog_files().expect("files").pop().expect("a binlog");
    let bytes = std::fs::read(&live).expect("read");
    let cut = dir.path().join("live.000001");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
    let out = binlogd().arg("inspect").arg(&cut).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("still writing") && err.contains("10 more bytes"),
        "{err}"
    );
}
