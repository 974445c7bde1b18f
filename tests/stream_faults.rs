//! `binlogd stream` under faults: SIGKILL at random moments, connections cut mid-event.
//! After each, the archive must still equal the server's files byte for byte, and its
//! index must list every GTID exactly once.

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig, TcpProxy};
use std::sync::Arc;
use std::time::Duration;
use stream_common::{Archive, Random, Streamer, Workload, assert_identical_to_server};

/// The source URL of the replication user, reached through `proxy`.
fn through(proxy: &TcpProxy) -> String {
    format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    )
}

fn server() -> Arc<MariaDb> {
    Arc::new(
        MariaDbConfig {
            max_binlog_size: Some(64 << 10),
            ..MariaDbConfig::default()
        }
        .start()
        .expect("start"),
    )
}

#[test]
fn twenty_sigkills_during_a_workload_lose_and_duplicate_nothing() {
    let db = server();
    db.write_workload(10).expect("schema");
    let archive = Archive::new();
    let workload = Workload::start(&db);
    let mut random = Random::from_time();
    for _ in 0..20 {
        let streamer = Streamer::start(&db, &archive, &[]);
        std::thread::sleep(Duration::from_millis(100 + random.below(400)));
        streamer.kill();
    }
    workload.finish();
    let streamer = Streamer::start(&db, &archive, &[]);
    archive.wait_caught_up(&db, Duration::from_secs(60));
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    streamer.stop();
    let log = archive.log();
    eprintln!(
        "{} of 20 restarts cut an unfinished transaction",
        log.matches("cut an unfinished transaction").count()
    );
    assert!(
        !log.contains("ERROR") && !log.contains("panicked"),
        "binlogd log:\n{log}"
    );
}

#[test]
fn connections_cut_mid_event_are_resumed_without_a_trace() {
    let db = server();
    db.write_workload(10).expect("schema");
    let archive = Archive::new();
    let proxy = TcpProxy::start(db.port()).expect("proxy");
    let source = through(&proxy);
    let streamer = Streamer::start_with(&db, &archive, &[], &source);
    let workload = Workload::start(&db);
    let mut random = Random::from_time();
    for _ in 0..15 {
        // Cut the next connection after a random number of bytes: inside the handshake,
        // a packet header, an event header or an event body.
        proxy.cut_after(1 + random.below(200_000));
        std::thread::sleep(Duration::from_millis(100 + random.below(300)));
        proxy.cut_all();
    }
    workload.finish();
    archive.wait_caught_up(&db, Duration::from_secs(60));
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    // A cut during a backoff pause finds no connection to cut: not every cut counts.
    assert!(
        proxy.accepted() > 5,
        "binlogd reconnected {} times",
        proxy.accepted()
    );
    streamer.stop();
}

#[test]
fn a_dump_thread_stuck_writing_to_a_vanished_connection_does_not_hold_up_the_next() {
    let db = server();
    db.write_workload(10).expect("schema");
    // The server gives up on a blocked write only after net_write_timeout, which sessions
    // copy when they connect. Make it longer than this test may take: only binlogd's own
    // remedy can then free the next dump in time.
    db.sql("SET GLOBAL net_write_timeout = 900")
        .expect("net_write_timeout");
    let archive = Archive::new();
    let proxy = TcpProxy::start(db.port()).expect("proxy");
    let source = through(&proxy);
    let streamer = Streamer::start_with(
        &db,
        &archive,
        &["--net-timeout", "3", "--heartbeat", "1"],
        &source,
    );
    archive.wait_caught_up(&db, Duration::from_secs(60));
    // The connection goes silent without closing, as when binlogd's host drops off the
    // network. binlogd hears nothing, gives up on it and reconnects; the server's dump
    // thread for the old connection is left blocked once the socket buffers fill (a few
    // MiB on loopback: the 24 MB transaction below fills them), and MariaDB does not
    // start a new dump for the same replica server_id until the old thread is gone.
    proxy.stall_all();
    db.sql(
        "INSERT INTO binlogd_test.workload (k, c, pad) \
         SELECT seq, 'big', REPEAT('y', 60000) FROM binlogd_test.seq_1_to_400",
    )
    .expect("a large transaction");
    db.sql("INSERT INTO binlogd_test.workload (k, c) VALUES (1, 'after')")
        .expect("one more transaction");
    archive.wait_caught_up(&db, Duration::from_secs(60));
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    streamer.stop();
    let log = archive.log();
    assert!(
        log.contains("closed the dump thread of an earlier connection"),
        "binlogd log:\n{log}"
    );
}

#[test]
fn a_failover_behind_the_same_address_is_followed_by_gtid_into_a_new_epoch() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    // log_slave_updates: the replica logs the primary's transactions in its own binlog,
    // as a replica that may be promoted must (off by default).
    let replica = MariaDbConfig {
        server_id: 2,
        max_binlog_size: Some(64 << 10),
        log_slave_updates: Some(true),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica.replicate_from(&primary).expect("replicate");
    primary
        .write_workload(300)
        .expect("workload on the primary");
    let proxy = TcpProxy::start(primary.port()).expect("proxy");
    let source = through(&proxy);
    let archive = Archive::new();
    let streamer = Streamer::start_with(&primary, &archive, &[], &source);
    // The replica's newest file will begin before the failover point: the new epoch then
    // starts with transactions the archive already has.
    replica
        .wait_for_gtid(
            &primary.gtid_binlog_pos().expect("pos"),
            Duration::from_secs(60),
        )
        .expect("replica caught up");
    replica.rotate().expect("rotate the replica's binlog");
    primary.write_workload(20).expect("more on the primary");
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let before = primary.gtid_binlog_pos().expect("pos");
    replica
        .wait_for_gtid(&before, Duration::from_secs(60))
        .expect("replica caught up");

    // Promote the replica, move the address to it, and write there.
    replica.sql("STOP SLAVE; RESET SLAVE ALL").expect("promote");
    proxy.retarget(replica.port());
    replica
        .write_workload(300)
        .expect("workload on the new primary");

    // The new server's files land in a second epoch, from the file that holds the
    // failover point on: byte for byte its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let new_epoch = loop {
        let epochs = archive.epochs();
        if epochs.len() == 2 {
            let epoch = epochs[1].clone();
            let caught_up = replica.binlog_files().expect("files").iter().all(|f| {
                let copy = epoch.join(f.file_name().expect("name"));
                !copy.exists()
                    || std::fs::metadata(&copy).map(|m| m.len()).ok()
                        == std::fs::metadata(f).map(|m| m.len()).ok()
            }) && replica
                .binlog_files()
                .expect("files")
                .last()
                .is_some_and(|f| epoch.join(f.file_name().expect("name")).exists());
            if caught_up {
                break epoch;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no caught-up second epoch: {:?}\n{}",
            archive.epochs(),
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(new_epoch.to_string_lossy().ends_with("0002-server2"));
    // The old server's last file is closed as it stands: retention and the object store
    // can move past it.
    let old_epoch = archive.epochs()[0].clone();
    let mut old_indexes: Vec<_> = std::fs::read_dir(&old_epoch)
        .expect("old epoch")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".index.jsonl"))
        .collect();
    old_indexes.sort();
    let last_index = std::fs::read_to_string(old_indexes.last().expect("an index")).expect("read");
    assert!(
        last_index
            .lines()
            .any(|l| l.contains("\"record\":\"closed\"")),
        "the old epoch's last file is still open:\n{last_index}"
    );
    let verified = stream_common::binlogd()
        .args(["verify", "--archive"])
        .arg(archive.path())
        .output()
        .expect("verify");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let mut copied = 0;
    for file in replica.binlog_files().expect("files") {
        let copy = new_epoch.join(file.file_name().expect("name"));
        if copy.exists() {
            stream_common::assert_same_bytes(&file, &copy);
            copied += 1;
        } else {
            assert_eq!(copied, 0, "{} missing after copied files", file.display());
        }
    }
    assert!(copied > 0);

    // Every GTID of both servers' histories is indexed once; what the new primary's
    // binlog repeats from the old one is marked.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut repeated = 0;
    for line in archive.index_lines() {
        if line["record"] != "transaction" {
            continue;
        }
        if line["repeated"] == true {
            repeated += 1;
            continue;
        }
        *seen
            .entry(line["gtid"].as_str().expect("gtid").to_owned())
            .or_default() += 1;
    }
    let last_old: u64 = before.rsplit('-').next().expect("seq").parse().expect("n");
    let last_new: u64 = replica
        .gtid_binlog_pos()
        .expect("pos")
        .rsplit('-')
        .next()
        .expect("seq")
        .parse()
        .expect("n");
    let expected: Vec<String> = (1..=last_old)
        .map(|n| format!("0-1-{n}"))
        .chain((last_old + 1..=last_new).map(|n| format!("0-2-{n}")))
        .collect();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected_sorted);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    // Exactly the old primary's transactions in the new epoch are marked repeated (how
    // many there are depends on where the replica's binlog rotated).
    let mut old_in_new_epoch = 0;
    for entry in std::fs::read_dir(&new_epoch).expect("epoch") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".index.jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("index").lines() {
            let line: serde_json::Value = serde_json::from_str(line).expect("json");
            if line["record"] == "transaction" {
                let old = line["gtid"].as_str().is_some_and(|g| g.starts_with("0-1-"));
                assert_eq!(old, line["repeated"] == true, "{line}");
                old_in_new_epoch += usize::from(old);
            }
        }
    }
    assert_eq!(repeated, old_in_new_epoch);
    assert!(repeated > 0, "no repeated transaction is marked");
    eprintln!("the new epoch repeats {repeated} transactions of the old primary");
    streamer.stop();
}

/// The server rotates after the last transaction binlogd archived and before binlogd reads
/// the ROTATE (here: between two runs). A dump by GTID then begins in the next file; the
/// rest of the archived one (its ROTATE) must still be fetched, or its copy stays short.
#[test]
fn a_file_the_server_rotated_away_from_between_sessions_is_completed() {
    let db = server();
    db.write_workload(20).expect("workload");
    let archive = Archive::new();
    let first = archive.run_to_end(&db, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let unfinished = db.binlog_names().expect("names").pop().expect("a file");
    db.rotate().expect("FLUSH BINARY LOGS");
    db.write_workload(5).expect("into the next file");
    let second = archive.run_to_end(&db, &[]);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{log}");
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    assert!(
        log.contains(&format!("{unfinished}: the source resumed in")),
        "the dump by GTID did not begin past {unfinished}, so this test shows nothing:\n{log}"
    );
}

/// CPU time (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// A source whose dump leaves a hole that no reconnect mends: `init_connect` (a setting
/// this test adds, because it is how a server filters a replica's dump for good) sets
/// `skip_replication` for binlogd's account, so every dump leaves out the transaction
/// written with `@@skip_replication=1`, while the file holds it.
fn server_with_a_hole() -> MariaDb {
    let db = MariaDbConfig {
        extra_args: vec!["--init-connect=SET skip_replication=1".to_owned()],
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(5).expect("before the hole");
    db.sql(
        "SET skip_replication = 1; INSERT INTO binlogd_test.workload (k, c) VALUES (1, 'hidden'); \
         SET skip_replication = 0;",
    )
    .expect("the transaction the dump leaves out");
    db.write_workload(5).expect("after the hole");
    db
}

#[test]
fn a_hole_in_every_dump_is_told_once_marks_the_stream_unhealthy_and_does_not_spin() {
    let db = server_with_a_hole();

    // --exit-at-end: an error naming the place and the likely cause, and a non-zero exit.
    let archive = Archive::new();
    let output = archive.run_to_end(&db, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let file = db.binlog_names().expect("names").remove(0);
    for expected in [
        "the stream is stuck",
        file.as_str(),
        "every dump leaves out",
        "skip_replication",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }

    // Following the source: said once, /healthz unhealthy, a metric, retries with backoff.
    let archive = Archive::new();
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let streamer = Streamer::start(&db, &archive, &["--metrics-addr", &metrics_addr]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = if std::net::TcpStream::connect(&metrics_addr).is_ok() {
            stream_common::http_get(&metrics_addr, "/healthz")
        } else {
            (0, "not listening yet".to_owned())
        };
        if status == 503 && body.contains("stuck") {
            assert!(body.contains(&file), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz still says {status} {body}; log:\n{}",
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = stream_common::http_get(&metrics_addr, "/metrics");
    assert!(metrics.contains("binlogd_stuck 1"), "{metrics}");
    let cpu_before = cpu_seconds(streamer.pid());
    std::thread::sleep(Duration::from_secs(5));
    let cpu = cpu_seconds(streamer.pid()) - cpu_before;
    eprintln!("CPU while stuck: {cpu} s in 5 s");
    assert!(cpu < 0.5, "binlogd used {cpu} s of CPU in 5 s while stuck");
    let log = archive.log();
    assert_eq!(
        log.matches("the stream is stuck").count(),
        1,
        "told more than once:\n{log}"
    );
    streamer.stop();
}

/// A primary that shuts down (a restart, a maintenance window) ends binlogd's dump with
/// an end-of-file, as if it had nothing more to say. binlogd must follow it when it is
/// back, not exit 0 as if asked to stop at the end (which a supervisor that restarts
/// only failures would leave stopped).
#[test]
fn a_source_that_shuts_down_and_comes_back_is_followed() {
    let mut db = MariaDb::start_default().expect("start");
    db.write_workload(10).expect("workload");
    let archive = Archive::new();
    let mut streamer = Streamer::start(&db, &archive, &[]);
    archive.wait_caught_up(&db, Duration::from_secs(30));
    db.shutdown().expect("shut the source down");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        streamer.is_running(),
        "binlogd stopped when the source did:\n{}",
        archive.log()
    );
    db.start_again().expect("start the source again");
    db.write_workload(10).expect("workload after the restart");
    archive.wait_caught_up(&db, Duration::from_secs(30));
    assert!(streamer.is_running(), "{}", archive.log());
    assert!(
        archive.log().contains("the source ended the binlog dump"),
        "{}",
        archive.log()
    );
    streamer.stop();
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
}
