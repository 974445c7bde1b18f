//! Archived binlogs staged as genuine relay logs (`binlogd_restore::relay`) and applied by a
//! real MariaDB's parallel applier, driven over SQL (`binlogd_restore::apply`): the
//! groundwork of `binlogd restore`. A fresh server replays the primary's history from its
//! first binlog up to a GTID recorded mid-workload and stops exactly there; its table then
//! checksums as the primary's did at that moment.

mod stream_common;

use binlogd_restore::RestoreError;
use binlogd_restore::apply::{Target, TargetAddress};
use binlogd_restore::relay::{RelayLogSet, relay_log_head};
use binlogd_storage::archive::local_files;
use binlogd_storage::plan::{Target as PlanTarget, plan};
use binlogd_storage::{Archive, LocalArchive};
use binlogd_testkit::{MariaDb, MariaDbConfig};
use std::time::Duration;
use stream_common::Archive as TestArchive;

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

/// A user binlogd can drive the applier with, over TCP.
fn address_of(server: &MariaDb) -> TargetAddress {
    server
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    TargetAddress {
        host: "127.0.0.1".into(),
        port: server.port(),
        user: "restorer".into(),
        password: Some("restore-pw".into()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Stages the plan's pieces of `archive` as relay logs in `target`'s relay-log folder.
fn stage(
    archive: &TestArchive,
    plan: &binlogd_storage::plan::Plan,
    dir: &std::path::Path,
    basename: &str,
) -> RelayLogSet {
    let mut relay_logs = RelayLogSet::new(dir, basename);
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
    relay_logs
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
        .block_on(plan(&files, &view, None, &PlanTarget::Gtids(target_gtids)))
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
    let rt = runtime();
    let mut control = rt
        .block_on(Target::connect(&address_of(&target)))
        .expect("connect");
    let facts = rt.block_on(control.facts()).expect("facts");
    assert_eq!(facts.relay_log_dir, target.relay_log_dir());
    assert!(facts.executed.is_empty(), "a fresh server: {facts:?}");
    let relay_logs = stage(
        &archive,
        &plan,
        &facts.relay_log_dir,
        &facts.relay_log_basename,
    );
    rt.block_on(control.start(&relay_logs.files()[0], 4))
        .expect("start the applier");
    let mut looks = 0;
    let progress = rt
        .block_on(control.wait_for(&plan.end, Duration::from_secs(60), |_| looks += 1))
        .expect("applied to the cut");
    assert_eq!(progress.applied.to_string(), cut);
    assert!(looks >= 1);
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
    rt.block_on(control.clean_up())
        .expect("clean the channel up");
    assert!(
        target
            .query_rows("SHOW ALL SLAVES STATUS")
            .expect("status")
            .is_empty(),
        "the channel is gone"
    );
    assert_eq!(
        target
            .query_value("SELECT @@slave_parallel_threads")
            .expect("threads"),
        "0"
    );
}

/// A primary with a little history, archived; the plan of all of it.
fn archived_primary() -> (MariaDb, TestArchive, binlogd_storage::plan::Plan) {
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.write_workload(50).expect("workload");
    let archive = TestArchive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let local = LocalArchive::open(&archive.path()).expect("archive");
    let files = local_files(&local).expect("files");
    let plan = runtime()
        .block_on(plan(
            &files,
            &Archive::Local(local),
            None,
            &PlanTarget::Latest,
        ))
        .expect("plan");
    (primary, archive, plan)
}

#[test]
fn a_server_with_replication_configured_is_refused_and_left_as_it_was() {
    let (primary, _archive, _plan) = archived_primary();
    let target = MariaDbConfig {
        server_id: 9,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    target.replicate_from(&primary).expect("replicate");
    let rt = runtime();
    let mut control = rt
        .block_on(Target::connect(&address_of(&target)))
        .expect("connect");
    let err = rt.block_on(control.facts()).expect_err("refused");
    assert!(matches!(err, RestoreError::Unfit(_)), "{err}");
    assert!(
        err.to_string()
            .contains("already has replication configured"),
        "{err}"
    );
    let channels = target.query_rows("SHOW ALL SLAVES STATUS").expect("status");
    assert_eq!(channels.len(), 1, "its replication is untouched");
}

#[test]
fn an_apply_error_stops_the_restore_with_the_servers_words() {
    let (_primary, archive, _) = archived_primary();
    // A plan that starts after the schema was made, for a server that lacks it: the first
    // transaction cannot apply.
    let local = LocalArchive::open(&archive.path()).expect("archive");
    let files = local_files(&local).expect("files");
    let after_schema = "0-1-2".parse().expect("gtids");
    let plan = runtime()
        .block_on(plan(
            &files,
            &Archive::Local(local),
            Some(&after_schema),
            &PlanTarget::Latest,
        ))
        .expect("plan");
    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    let rt = runtime();
    let mut control = rt
        .block_on(Target::connect(&address_of(&target)))
        .expect("connect");
    let facts = rt.block_on(control.facts()).expect("facts");
    let relay_logs = stage(
        &archive,
        &plan,
        &facts.relay_log_dir,
        &facts.relay_log_basename,
    );
    rt.block_on(control.start(&relay_logs.files()[0], 2))
        .expect("start");
    let err = rt
        .block_on(control.wait_for(&plan.end, Duration::from_secs(30), |_| {}))
        .expect_err("the applier stops");
    eprintln!("{err}");
    match &err {
        RestoreError::ApplyFailed {
            errno,
            message,
            file,
            position,
            ..
        } => {
            // Where the first transaction after the schema starts in the archived file.
            let first = &plan.pieces[0];
            assert_eq!(
                (file.as_str(), *position),
                (first.file.as_str(), first.start),
                "{err}"
            );
            assert_eq!(*errno, 1146, "{err}");
            assert!(message.contains("binlogd_test.workload"), "{err}");
        }
        other => panic!("{other}"),
    }
    rt.block_on(control.clean_up())
        .expect("clean up after a failure too");
}
