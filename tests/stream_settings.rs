//! `binlogd stream` against servers configured as users configure them: the server's own
//! defaults first, then one setting changed at a time, on MariaDB 10.11 and 11.8.
//!
//! Each case streams a live server under a write load that holds what applications write
//! (single statements, multi-statement transactions, savepoints, XA, temporary tables,
//! triggers, `LOAD DATA`), with a rotation and a SIGKILL and restart of binlogd in the
//! middle; then every file is compared byte for byte with the server's and every GTID of
//! the server is found once in the index.
//!
//! The matrix is the `settings_matrix!` table at the bottom: a new case is one line, and
//! becomes one test per server version (`cargo nextest run --test stream_settings tiny`).

mod stream_common;

use binlogd_testkit::{
    BinlogChecksum, BinlogFormat, MariaDb, MariaDbConfig, RowImage, Tool, find_tool,
};
use std::process::Command;
use std::time::Duration;
use stream_common::{Archive, Streamer, assert_identical_to_server, wait_for_quiet_binlogs};

/// What a case writes, in rounds: before binlogd starts, while it runs, while it is
/// killed, and after its restart.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// What applications write: see [`stream_common::application_round`].
    Applications,
    /// The same, each round alternating between GTID domains 0 and 1.
    TwoDomains,
    /// The same, with one transaction of 256 MB in the middle.
    HugeTransaction,
}

fn run_case(config: MariaDbConfig, load: Load) {
    let version = config.version;
    let db = config
        .start()
        .unwrap_or_else(|e| panic!("start {version}: {e:#}"));
    write_round(&db, load, 0);
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &[]);
    write_round(&db, load, 1);
    db.rotate().expect("rotate");
    write_round(&db, load, 2);
    // A crash in the middle of the load: the restart cuts back to the last whole
    // transaction and resumes.
    streamer.kill();
    write_round(&db, load, 3);
    let streamer = Streamer::start(&db, &archive, &[]);
    write_round(&db, load, 4);
    // The server writes on after its last transaction (a BINLOG_CHECKPOINT after a
    // rotation, from a background thread): let it finish before binlogd stops.
    wait_for_quiet_binlogs(&db);
    archive.wait_caught_up(&db, Duration::from_secs(240));
    streamer.stop();
    if db.config().encrypt_binlog == Some(true) {
        assert_as_a_replica_receives_it(&db, &archive);
    } else {
        assert_identical_to_server(&db, &archive);
    }
    archive.assert_index_lists_every_gtid_once(&db);
    if let Load::HugeTransaction = load {
        let largest = archive.largest_transaction();
        assert!(
            largest > 256 << 20,
            "the largest transaction indexed has {largest} bytes"
        );
    }
    let log = archive.log();
    assert!(
        !log.contains("reconnecting"),
        "binlogd lost the source on a healthy server:\n{log}"
    );
}

fn write_round(db: &MariaDb, load: Load, round: usize) {
    match load {
        Load::Applications => stream_common::application_round(db, round, None),
        Load::TwoDomains => {
            db.sql(&format!("SET GLOBAL gtid_domain_id = {}", round % 2))
                .expect("switch domain");
            stream_common::application_round(db, round, None);
        }
        Load::HugeTransaction => {
            stream_common::application_round(db, round, None);
            if round == 2 {
                huge_transaction(db);
            }
        }
    }
}

/// An encrypted binlog cannot be archived byte for byte: replicas receive its events
/// decrypted (and START_ENCRYPTION flagged ignorable). The archive must hold exactly what a
/// replica receives, at the server's offsets: every closed file equals the raw copy
/// `mariadb-binlog --read-from-remote-server --raw` makes, has the server's file's length,
/// and `mariadb-binlog` reads it.
fn assert_as_a_replica_receives_it(db: &MariaDb, archive: &Archive) {
    let names = db.binlog_names().expect("names");
    // The server's own mariadb-binlog (a newer server refuses an older one), writing
    // where the server's tools can reach.
    let copies = db.dir().join("replica-copies");
    std::fs::create_dir_all(&copies).expect("copies folder");
    let output = db
        .own_tool(Tool::MariadbBinlog)
        .expect("mariadb-binlog")
        .args([
            "--no-defaults",
            "--read-from-remote-server",
            "--raw",
            "--to-last-log",
        ])
        .args(["--host=127.0.0.1", &format!("--port={}", db.port())])
        .arg(format!("--user={}", binlogd_testkit::REPLICATION_USER))
        .arg(format!("--password={}", db.replication_password()))
        .arg(format!(
            "--result-file={}/",
            db.server_path(&copies).display()
        ))
        .arg(&names[0])
        .output()
        .expect("run mariadb-binlog");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (closed, _open) = names.split_at(names.len() - 1);
    assert!(!closed.is_empty(), "the load rotates");
    for name in closed {
        let ours = archive.copy_of(name).expect("archived");
        stream_common::assert_same_bytes(&copies.join(name), &ours);
        let servers = std::fs::metadata(db.binlog_dir().join(name)).expect("server file");
        assert_eq!(
            std::fs::metadata(&ours).expect("archived").len(),
            servers.len(),
            "{name}: the archive keeps the server's offsets"
        );
        let read = Command::new(find_tool(Tool::MariadbBinlog).expect("mariadb-binlog"))
            .arg("--no-defaults")
            .arg(&ours)
            .output()
            .expect("run mariadb-binlog");
        assert!(
            read.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        assert!(
            String::from_utf8_lossy(&read.stdout).contains("Xid ="),
            "{name}: mariadb-binlog decodes the transactions"
        );
    }
}

/// One transaction of 256 MB: 256 rows of 1 MiB. `UUID()` makes the statement unsafe to
/// log as a statement, so the default MIXED format logs its rows too.
fn huge_transaction(db: &MariaDb) {
    db.sql(
        "CREATE TABLE binlogd_test.huge (id INT PRIMARY KEY, b LONGBLOB);
         BEGIN; INSERT INTO binlogd_test.huge
           SELECT seq, CONCAT(UUID(), REPEAT('x', (1 << 20) - 36)) FROM binlogd_test.seq_1_to_256;
         COMMIT;",
    )
    .expect("a 256 MB transaction");
}

/// The server's defaults, and one setting changed.
fn config(change: impl FnOnce(&mut MariaDbConfig)) -> MariaDbConfig {
    let mut config = MariaDbConfig::default();
    change(&mut config);
    config
}

macro_rules! settings_matrix {
    ($($name:ident: $load:expr, $change:expr;)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn mariadb_10_11() {
                let mut config = config($change);
                config.version = binlogd_testkit::MariaDbVersion::V10_11;
                run_case(config, $load);
            }

            #[test]
            fn mariadb_11_8() {
                let mut config = config($change);
                config.version = binlogd_testkit::MariaDbVersion::V11_8;
                run_case(config, $load);
            }
        }
    )*};
}

// One line a case: the load, and the one setting it changes from the server's defaults.
settings_matrix! {
    server_defaults: Load::Applications, |_| {};
    row_format: Load::Applications, |c| c.binlog_format = Some(BinlogFormat::Row);
    statement_format: Load::Applications, |c| c.binlog_format = Some(BinlogFormat::Statement);
    mixed_format: Load::Applications, |c| c.binlog_format = Some(BinlogFormat::Mixed);
    row_format_without_annotations: Load::Applications, |c| {
        c.binlog_format = Some(BinlogFormat::Row);
        c.binlog_annotate_row_events = Some(false);
    };
    row_format_with_annotations: Load::Applications, |c| {
        c.binlog_format = Some(BinlogFormat::Row);
        c.binlog_annotate_row_events = Some(true);
    };
    minimal_row_image: Load::Applications, |c| {
        c.binlog_format = Some(BinlogFormat::Row);
        c.binlog_row_image = Some(RowImage::Minimal);
    };
    noblob_row_image: Load::Applications, |c| {
        c.binlog_format = Some(BinlogFormat::Row);
        c.binlog_row_image = Some(RowImage::Noblob);
    };
    full_row_metadata: Load::Applications, |c| {
        c.binlog_format = Some(BinlogFormat::Row);
        c.extra_args.push("--binlog-row-metadata=FULL".into());
    };
    compressed_events: Load::Applications, |c| c.log_bin_compress = Some(true);
    no_checksums: Load::Applications, |c| c.binlog_checksum = Some(BinlogChecksum::None);
    gtid_strict_mode: Load::Applications, |c| c.gtid_strict_mode = Some(true);
    two_gtid_domains: Load::TwoDomains, |_| {};
    tiny_files: Load::Applications, |c| c.max_binlog_size = Some(4096);
    huge_transaction: Load::HugeTransaction, |_| {};
    encrypted_binlog: Load::Applications, |c| c.encrypt_binlog = Some(true);
}
