//! Archived binlogs staged as genuine relay logs (`binlogd_restore::stage`, `relay`) and
//! applied by a real MariaDB's parallel applier, driven over SQL (`binlogd_restore::apply`):
//! the pieces under `binlogd restore`. A fresh server replays the primary's history from
//! its first binlog up to a GTID recorded mid-workload and stops exactly there; its table
//! then checksums as the primary's did at that moment.

mod stream_common;

use binlogd_restore::RestoreError;
use binlogd_restore::apply::{Endpoint, Feed, ReplayServer, ServerAddress};
use binlogd_restore::relay::RelayLogSet;
use binlogd_restore::stage::stage_plan;
use binlogd_storage::archive::local_files;
use binlogd_storage::plan::{Plan, StopAt, plan};
use binlogd_storage::{Archive, GtidState, LocalArchive};
use binlogd_testkit::{MariaDb, MariaDbConfig};
use std::time::Duration;
use stream_common::Archive as TestArchive;

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A primary (64 KiB binlog files) that ran `before` workload transactions, then `after`
/// more, archived by `binlogd stream`: the primary, the archive, and the GTID state and
/// table checksum between the two parts.
fn archived_primary(before: usize, after: usize) -> (MariaDb, TestArchive, String, String) {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(before).expect("first part");
    let cut = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_cut = primary.query_value(CHECKSUM).expect("checksum");
    if after > 0 {
        primary.write_workload(after).expect("second part");
    }
    let archive = TestArchive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (primary, archive, cut, checksum_at_cut)
}

/// The plan over `archive` from `start` to `target`.
fn plan_of(archive: &TestArchive, start: Option<&GtidState>, target: &StopAt) -> Plan {
    let local = LocalArchive::open(&archive.path()).expect("archive");
    let files = local_files(&local).expect("files");
    runtime()
        .block_on(plan(&files, &Archive::Local(local), start, target))
        .expect("plan")
}

/// A server (binlog off when `skip_log_bin`) and binlogd's control connection to it, on
/// `rt` (the connection lives on the runtime that made it).
fn target_server(rt: &tokio::runtime::Runtime, skip_log_bin: bool) -> (MariaDb, ReplayServer) {
    let server = MariaDbConfig {
        server_id: 9,
        skip_log_bin,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    server
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    let address = ServerAddress {
        endpoint: Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: server.port(),
        },
        user: "restorer".into(),
        password: Some("restore-pw".into()),
    };
    let control = rt
        .block_on(ReplayServer::connect(&address))
        .expect("connect");
    (server, control)
}

/// Stages `plan` into the relay-log folder the server reports.
fn stage(
    rt: &tokio::runtime::Runtime,
    archive: &TestArchive,
    plan: &Plan,
    control: &mut ReplayServer,
) -> RelayLogSet {
    let facts = rt.block_on(control.facts()).expect("facts");
    let local = LocalArchive::open(&archive.path()).expect("archive");
    rt.block_on(stage_plan(&Archive::Local(local), plan, &facts, |_, _| {}))
        .expect("staged")
}

#[test]
fn staged_relay_logs_replay_in_parallel_and_stop_at_the_cut() {
    let (_primary, archive, cut, checksum_at_cut) = archived_primary(400, 200);
    let plan = plan_of(&archive, None, &StopAt::Gtids(cut.parse().expect("gtids")));
    assert!(plan.pieces.len() >= 3, "several files");

    // A fresh server that only applies: no binlog of its own.
    let rt = runtime();
    let (target, mut control) = target_server(&rt, true);
    let facts = rt.block_on(control.facts()).expect("facts");
    assert_eq!(facts.relay_logs.dir, target.relay_log_dir());
    assert!(facts.executed.is_empty(), "a fresh server: {facts:?}");
    let relay_logs = stage(&rt, &archive, &plan, &mut control);
    rt.block_on(control.start(
        Feed::RelayLogs {
            first: &relay_logs.files()[0],
        },
        4,
        &plan.start,
    ))
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

#[test]
fn a_server_with_replication_configured_is_refused_and_left_as_it_was() {
    let (primary, _archive, _, _) = archived_primary(50, 0);
    let rt = runtime();
    let (target, mut control) = target_server(&rt, false);
    target.replicate_from(&primary).expect("replicate");
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
    let (_primary, archive, _, _) = archived_primary(50, 0);
    // A plan that starts after the schema was made, for a server that lacks it: the first
    // transaction cannot apply.
    let after_schema = "0-1-2".parse().expect("gtids");
    let plan = plan_of(&archive, Some(&after_schema), &StopAt::Latest);
    let rt = runtime();
    let (_target, mut control) = target_server(&rt, true);
    let relay_logs = stage(&rt, &archive, &plan, &mut control);
    rt.block_on(control.start(
        Feed::RelayLogs {
            first: &relay_logs.files()[0],
        },
        2,
        &plan.start,
    ))
    .expect("start");
    let err = rt
        .block_on(control.wait_for(&plan.end, Duration::from_secs(30), |_| {}))
        .expect_err("the applier stops");
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
