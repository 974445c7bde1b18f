//! `binlogd purge` and `binlogd stream --retention/--keep-after-gtid` on a local archive of
//! a real MariaDB: only whole files the policy lets go are deleted, from the oldest end,
//! and what stays is still a verifiable, searchable history.

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};
use stream_common::{Archive, Streamer, binlogd};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = binlogd().args(args).output().expect("run binlogd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let (code, stdout, stderr) = run(&[args, &["--output", "json"]].concat());
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).expect("JSON")
}

fn listed(archive: &str) -> Vec<String> {
    let (code, stdout, stderr) = run(&["list", "--archive", archive, "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            v["file"].as_str().expect("file").to_owned()
        })
        .collect()
}

/// Two rounds of work two seconds apart, each in its own binlog files. Returns the GTID
/// position after the first round and the time its last commit was surely done.
fn two_rounds(db: &MariaDb) -> (String, SystemTime) {
    db.write_workload(120).expect("round 1");
    db.rotate().expect("rotate");
    let first_round = db.gtid_binlog_pos().expect("pos");
    let first_done = SystemTime::now();
    std::thread::sleep(Duration::from_millis(2100));
    db.write_workload(120).expect("round 2");
    (first_round, first_done)
}

/// The server's files holding transactions of the first round only.
fn first_round_files(db: &MariaDb, archive: &Archive, first_round: &str) -> Vec<String> {
    let index_ends: Vec<String> = db
        .binlog_names()
        .expect("names")
        .into_iter()
        .filter(|name| {
            let index = archive
                .copy_of(&format!("{name}.index.jsonl"))
                .expect("index");
            let text = std::fs::read_to_string(index).expect("read");
            let last_seq = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v["gtid"].as_str().map(str::to_owned))
                .filter_map(|g| g.rsplit('-').next()?.parse::<u64>().ok())
                .max();
            let round_end: u64 = first_round
                .rsplit('-')
                .next()
                .expect("seq")
                .parse()
                .expect("n");
            last_seq.is_some_and(|s| s <= round_end)
        })
        .collect();
    index_ends
}

#[test]
fn purge_deletes_the_old_prefix_and_leaves_a_clean_history() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    let (first_round, first_done) = two_rounds(&db);
    let archive = Archive::new();
    let output = archive.run_to_end(&db, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = archive.path().display().to_string();
    let before = listed(&path);
    let expected_gone = first_round_files(&db, &archive, &first_round);
    assert!(
        expected_gone.len() >= 2,
        "round 1 spans files: {expected_gone:?}"
    );

    // An age that falls between the rounds: exactly the first round's files are older.
    let age = first_done.elapsed().expect("clock").as_secs_f64() - 1.0;
    let retention = format!("{}ms", (age * 1000.0) as u64);
    let dry = json(&[
        "purge",
        "--archive",
        &path,
        "--retention",
        &retention,
        "--dry-run",
    ]);
    let would: Vec<&str> = dry["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["file"].as_str().expect("file"))
        .collect();
    assert_eq!(would, expected_gone, "{dry}");
    assert_eq!(listed(&path), before, "a dry run deletes nothing");

    // A backup from the middle of round 1 still needs the file it falls in: the policy
    // with both rules keeps it.
    let middle = format!("0-1-{}", 60);
    let both = json(&[
        "purge",
        "--archive",
        &path,
        "--retention",
        &retention,
        "--keep-after-gtid",
        &middle,
        "--dry-run",
    ]);
    let kept_for_backup = both["files"].as_array().expect("files").len();
    assert!(kept_for_backup < expected_gone.len(), "{both}");

    let done = json(&["purge", "--archive", &path, "--retention", &retention]);
    assert_eq!(
        done["files"].as_array().expect("files").len(),
        expected_gone.len()
    );
    let after = listed(&path);
    assert_eq!(
        after,
        before[expected_gone.len()..],
        "only the oldest files went"
    );
    let bytes: u64 = expected_gone
        .iter()
        .map(|name| {
            std::fs::metadata(db.binlog_dir().join(name))
                .expect("stat")
                .len()
        })
        .sum();
    assert_eq!(done["bytes"], bytes);

    // What stays verifies, and replays from the first round's end to the server's state.
    let (code, _, stderr) = run(&["verify", "--archive", &path]);
    assert_eq!(code, 0, "{stderr}");
    let plan = json(&[
        "search",
        "--archive",
        &path,
        "--from-gtid",
        &first_round,
        "--latest",
    ]);
    assert_eq!(plan["end"]["gtids"], db.gtid_binlog_pos().expect("pos"));
    // From before the purge point, the archive says what is missing.
    let (code, _, stderr) = run(&[
        "search",
        "--archive",
        &path,
        "--from-gtid",
        "0-1-5",
        "--latest",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("transactions are missing"), "{stderr}");

    // Again: nothing more is old enough.
    let again = json(&["purge", "--archive", &path, "--retention", &retention]);
    assert_eq!(again["files"], serde_json::json!([]));
}

#[test]
fn stream_applies_retention_while_it_runs() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    let (first_round, _) = two_rounds(&db);
    let archive = Archive::new();
    let expected_after = {
        let streamer = Streamer::start(&db, &archive, &[]);
        archive.wait_caught_up(&db, Duration::from_secs(60));
        streamer.stop();
        let gone = first_round_files(&db, &archive, &first_round);
        listed(&archive.path().display().to_string())[gone.len()..].to_vec()
    };
    let streamer = Streamer::start(
        &db,
        &archive,
        &["--keep-after-gtid", &first_round, "--purge-interval", "0.2"],
    );
    let path = archive.path().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed(&path) != expected_after {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            listed(&path),
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stream goes on: everything from the first kept file on is the server's.
    db.write_workload(50).expect("more");
    let newest = db.gtid_binlog_pos().expect("pos");
    let kept: Vec<String> = db
        .binlog_names()
        .expect("names")
        .into_iter()
        .skip_while(|name| *name != expected_after[0])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(archive.indexes_all_of(std::slice::from_ref(&newest)) && listed(&path) == kept) {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            listed(&path),
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    streamer.stop();
    for name in &kept {
        let server = db.binlog_dir().join(name);
        let ours = archive.copy_of(name).expect("kept");
        stream_common::assert_same_bytes(&server, &ours);
    }
    assert!(
        archive
            .log()
            .contains("retention: deleted old archived files")
    );
}
