//! The engine as a library, against a real MariaDB with its defaults: what `binlogd
//! serve` and other callers get without the command line — a typed end, a typed error,
//! and an observer told what happened.

use binlogd_protocol::ConnectOptions;
use binlogd_replica::{
    Archived, DurabilityPolicy, Observer, ReplicaConfig, ReplicaError, ResumeBy, SessionEnd,
    StreamConfig,
};
use binlogd_storage::retention::Retention;
use binlogd_storage::{LocalArchive, SourceIdentity};
use binlogd_testkit::{MariaDb, MariaDbConfig, REPLICATION_PASSWORD, REPLICATION_USER};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Everything the engine said, in order.
#[derive(Debug, Default)]
struct Heard {
    said: Mutex<Vec<String>>,
    transactions: Mutex<u64>,
    last_gtid: Mutex<Option<String>>,
}

impl Heard {
    fn said(&self) -> Vec<String> {
        self.said.lock().expect("lock").clone()
    }

    fn note(&self, line: String) {
        self.said.lock().expect("lock").push(line);
    }
}

impl Observer for Heard {
    fn connected(&self, connected: bool) {
        self.note(format!("connected {connected}"));
    }

    fn source(&self, identity: &SourceIdentity) {
        self.note(format!("source {}", identity.server_id));
    }

    fn archived(&self, archived: &Archived<'_>) {
        *self.transactions.lock().expect("lock") += archived.new_transactions;
        if let Some(gtid) = archived.last_transaction.and_then(|t| t.gtid) {
            *self.last_gtid.lock().expect("lock") = Some(gtid.to_string());
        }
    }

    fn ended(&self, how: &str) {
        self.note(format!("ended {how}"));
    }
}

fn config(
    db: &MariaDb,
    archive: &std::path::Path,
    password: &str,
    exit_at_end: bool,
) -> StreamConfig {
    StreamConfig {
        replica: ReplicaConfig {
            connect: ConnectOptions {
                host: "127.0.0.1".to_owned(),
                port: db.port(),
                user: REPLICATION_USER.to_owned(),
                password: password.to_owned(),
                tls: Default::default(),
                server_public_key: Default::default(),
            },
            server_id: binlogd_replica::default_server_id(archive),
            heartbeat: Duration::from_secs(1),
            net_timeout: Duration::from_secs(10),
            semi_sync: false,
            exit_at_end,
            resume_by: ResumeBy::Auto,
            start_file: None,
            max_retry_delay: Duration::from_secs(1),
            archive_encrypted: false,
            durability: DurabilityPolicy::default(),
        },
        local: archive.to_owned(),
        remote: None,
        retention: Retention::default(),
        purge_interval: Duration::from_secs(300),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_engine_archives_a_server_to_its_end_and_tells_its_observer() {
    let db = MariaDbConfig::default().start().expect("start MariaDB");
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)")
        .expect("schema");
    for id in 0..20 {
        db.sql(&format!("INSERT INTO shop.t VALUES ({id})"))
            .expect("insert");
    }
    let position = db.sql("SELECT @@gtid_binlog_pos").expect("gtid position");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let heard = Arc::new(Heard::default());
    let (stop, _) = watch::channel(false);
    let ended = runtime().block_on(binlogd_replica::stream(
        config(&db, &archive, REPLICATION_PASSWORD, true),
        heard.clone(),
        Arc::new(stop),
    ));
    assert_eq!(ended.expect("stream"), SessionEnd::CaughtUp);
    let said = heard.said();
    assert_eq!(
        said.first().map(String::as_str),
        Some("source 1"),
        "{said:?}"
    );
    assert!(said.contains(&"connected true".to_owned()), "{said:?}");
    assert_eq!(
        said.last().map(String::as_str),
        Some("ended caught up"),
        "{said:?}"
    );
    // 20 inserts and the two DDL statements.
    assert_eq!(*heard.transactions.lock().expect("lock"), 22);
    assert_eq!(
        heard.last_gtid.lock().expect("lock").as_deref(),
        Some(position.trim())
    );
    let epochs = LocalArchive::open(&archive)
        .expect("archive")
        .epochs()
        .expect("epochs");
    assert_eq!(epochs.len(), 1, "{epochs:?}");
}

#[test]
fn a_refused_login_is_a_typed_fatal_error_with_a_hint_and_a_stop_is_a_clean_end() {
    let db = MariaDbConfig::default().start().expect("start MariaDB");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let heard = Arc::new(Heard::default());
    let (stop, _) = watch::channel(false);
    let runtime = runtime();
    let err: ReplicaError = runtime
        .block_on(binlogd_replica::stream(
            config(&db, &archive, "not the password", true),
            heard.clone(),
            Arc::new(stop),
        ))
        .expect_err("a wrong password");
    assert!(err.is_fatal(), "{err:?}");
    assert!(!err.is_transient(), "{err:?}");
    assert!(
        err.hint().is_some_and(|hint| hint.contains("password")),
        "{err:?}"
    );
    assert_eq!(heard.said(), vec!["ended failed"]);

    // Following (no exit at the end) until asked to stop.
    let heard = Arc::new(Heard::default());
    let (stop, _) = watch::channel(false);
    let stop = Arc::new(stop);
    let ended = runtime.block_on(async {
        let following = tokio::spawn(binlogd_replica::stream(
            config(&db, &archive, REPLICATION_PASSWORD, false),
            heard.clone(),
            Arc::clone(&stop),
        ));
        while !heard.said().contains(&"connected true".to_owned()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).expect("the engine listens");
        following.await.expect("task")
    });
    assert_eq!(ended.expect("stream"), SessionEnd::Shutdown);
    assert_eq!(
        heard.said().last().map(String::as_str),
        Some("ended stopped")
    );
}
