//! Archived binlogs staged as genuine relay logs (`binlogd_storage::relay`) replay on a real
//! MariaDB's parallel applier, and stop exactly at the plan's cut: the groundwork of
//! `binlogd restore`. A fresh server replays the primary's history from its first binlog
//! up to a GTID recorded mid-workload; its table then checksums as the primary's did then.

mod stream_common;

use binlogd_storage::archive::local_files;
use binlogd_storage::plan::{Target, plan};
use binlogd_storage::relay::{RelayLogSet, relay_log_head};
use binlogd_storage::{Archive, LocalArchive};
use binlogd_testkit::{MariaDb, MariaDbConfig};
use std::time::{Duration, Instant};
use stream_common::Archive as TestArchive;

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

fn wait_for_gtid(target: &MariaDb, gtid: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let applied = target.query_value("SELECT @@gtid_slave_pos").expect("pos");
        if applied == gtid {
            return;
        }
        let status = target.query_rows("SHOW SLAVE STATUS").expect("status");
        assert!(
            Instant::now() < deadline,
            "the applier stopped at {applied}, not {gtid}: {status:?}\n{}",
            target.error_log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn staged_relay_logs_replay_in_parallel_and_stop_at_the_cut() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(400).expect("first part");
    let cut = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_cut = primary.query_value(CHECKSUM).expect("checksum");
    primary.write_workload(200).expect("second part");
    let archive = TestArchive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let local = LocalArchive::open(&archive.path()).expect("archive");
    let files = local_files(&local).expect("files");
    assert!(files.len() >= 4, "several binlog files");
    let target_gtids = cut.parse().expect("gtids");
    let view = Archive::Local(local.clone());
    let plan = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(plan(&files, &view, None, &Target::Gtids(target_gtids)))
        .expect("plan");
    assert!(plan.pieces.len() >= 3);

    // A fresh server that only applies: no binlog of its own.
    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    let mut relay_logs = RelayLogSet::new(&target.relay_log_dir(), "relay-bin");
    for piece in &plan.pieces {
        let bytes = std::fs::read(archive.path().join(&piece.epoch).join(&piece.file))
            .expect("archived file");
        let fde_len = u32::from_le_bytes(bytes[13..17].try_into().expect("size")) as usize;
        let fde_end = 4 + fde_len as u64;
        let head =
            relay_log_head(&bytes[4..4 + fde_len], &piece.file, piece.start, 9).expect("head");
        let from = piece.start.max(fde_end) as usize;
        relay_logs
            .add(&head, &bytes[from..piece.end as usize])
            .expect("relay log");
    }
    relay_logs.write_index().expect("index");

    target
        .sql(&format!(
            "SET GLOBAL slave_parallel_threads = 4; \
             SET GLOBAL slave_parallel_mode = 'optimistic'; \
             CHANGE MASTER TO MASTER_HOST = 'binlogd-archive', \
               RELAY_LOG_FILE = '{}', RELAY_LOG_POS = 4, MASTER_USE_GTID = no; \
             START SLAVE SQL_THREAD",
            relay_logs.files()[0]
        ))
        .expect("start the applier");
    wait_for_gtid(&target, &cut);
    // It stays there: nothing past the cut was staged.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        target.query_value("SELECT @@gtid_slave_pos").expect("pos"),
        cut
    );
    assert_eq!(
        target.query_value(CHECKSUM).expect("checksum"),
        checksum_at_cut
    );
    target
        .sql("STOP SLAVE; RESET SLAVE ALL")
        .expect("clean the channel up");
}
