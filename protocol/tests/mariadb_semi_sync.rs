//! binlogd as a semi-synchronous replica of a real MariaDB primary: every transaction is
//! acknowledged, and the primary counts each one as acknowledged rather than timed out.

mod common;

use binlogd_parser::header::FLAG_ARTIFICIAL;
use binlogd_parser::{EventType, HEADER_LEN};
use binlogd_protocol::{Connection, ProtocolError};
use binlogd_testkit::{MariaDb, MariaDbConfig};
use common::replication_options;

fn status(db: &MariaDb, name: &str) -> u64 {
    let rows = db
        .query_rows(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .expect("status");
    rows.first()
        .and_then(|r| r.get(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_is_acknowledged_as_a_semi_sync_replica() {
    let db = std::sync::Arc::new(
        MariaDbConfig {
            // A long timeout: a missing acknowledgement shows up as a no_tx count.
            extra_args: vec![
                "--rpl-semi-sync-master-enabled=1".to_owned(),
                "--rpl-semi-sync-master-timeout=5000".to_owned(),
                // Setup commits, before any replica attaches, need not wait.
                "--rpl-semi-sync-master-wait-no-slave=0".to_owned(),
            ],
            ..Default::default()
        }
        .start()
        .expect("start"),
    );
    db.write_workload(1).expect("create the table");
    let file = db.binlog_names().expect("names").pop().expect("a file");
    let position = std::fs::metadata(db.binlog_dir().join(&file))
        .expect("stat")
        .len() as u32;

    let mut conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    conn.request_semi_sync().await.expect("semi-sync on");
    conn.register_replica(4400).await.expect("register");
    let mut stream = conn
        .binlog_dump(4400, &file, position, 0)
        .await
        .expect("dump");

    // Acknowledge every event the primary waits on, as soon as it arrives.
    let transactions = 20u64;
    let reader = tokio::spawn(async move {
        let mut current = String::new();
        let mut acks = 0u64;
        while acks < transactions {
            let event = common::next_event(&mut stream)
                .await
                .expect("event")
                .expect("blocking stream");
            let flags = u16::from_le_bytes([event[17], event[18]]);
            if EventType(event[4]) == EventType::ROTATE && flags & FLAG_ARTIFICIAL != 0 {
                current =
                    String::from_utf8_lossy(&event[HEADER_LEN + 8..event.len() - 4]).into_owned();
                continue;
            }
            if stream.ack_requested() {
                let end = u32::from_le_bytes([event[13], event[14], event[15], event[16]]);
                stream
                    .acknowledge(&current, u64::from(end))
                    .await
                    .expect("ack");
                acks += 1;
            }
        }
        acks
    });
    let (yes_before, no_before) = (
        status(&db, "Rpl_semi_sync_master_yes_tx"),
        status(&db, "Rpl_semi_sync_master_no_tx"),
    );
    let writer = std::sync::Arc::clone(&db);
    tokio::task::spawn_blocking(move || writer.write_workload(transactions as usize))
        .await
        .expect("join")
        .expect("load");
    assert_eq!(reader.await.expect("reader"), transactions);
    assert_eq!(
        status(&db, "Rpl_semi_sync_master_yes_tx") - yes_before,
        transactions,
        "acknowledged commits"
    );
    assert_eq!(
        status(&db, "Rpl_semi_sync_master_no_tx") - no_before,
        0,
        "no commit waited out its timeout"
    );
}

#[tokio::test]
async fn semi_sync_on_a_primary_without_it_is_a_clear_error() {
    let db = MariaDb::start_default().expect("start");
    let mut conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let err = conn
        .request_semi_sync()
        .await
        .expect_err("semi-sync is off");
    assert!(
        matches!(&err, ProtocolError::Unsupported(m) if m.contains("rpl_semi_sync_master_enabled")),
        "{err}"
    );
}
