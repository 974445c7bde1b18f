//! `binlogd serve` end to end: real replicas (MariaDB 10.11 and 11.8, MySQL 9.7),
//! configured as users configure them, replicate from an archive that a real `binlogd
//! stream` wrote — and is still writing — and end with the primary's data and GTIDs.

mod stream_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use binlogd_testkit::{MariaDb, MariaDbConfig};
use stream_common::{Archive, Streamer, binlogd, wait_for_quiet_binlogs};

/// The account replicas log in to `binlogd serve` with.
const USER: &str = "replica";
const PASSWORD: &str = "Serve-Secret-7";

/// A users file with [`USER`], written by `binlogd serve-user`.
fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users");
    let mut child = binlogd()
        .args(["serve-user", USER, "--users-file"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve-user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    let output = child.wait_with_output().expect("serve-user");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// `binlogd serve` in the background; killed when dropped.
struct Serve {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Serve {
    fn start(archive: &Archive, users: &Path, extra: &[&str]) -> Serve {
        let port = binlogd_testkit::free_port().expect("port");
        let log = archive.log_path().with_file_name("serve.log");
        let child = binlogd()
            .args(["serve", "--archive"])
            .arg(archive.path())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--users-file"])
            .arg(users)
            .args(extra)
            .env("BINLOGD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn binlogd serve");
        let serve = Serve { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not listen:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and a clean exit expected.
    fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "serve exited with {status}:\n{}",
            self.log()
        );
        if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
            eprintln!("serve log:\n{}", self.log());
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CHECKSUM TABLE` of the workload's table on a server.
fn checksum(db: &MariaDb) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

/// Waits until `replica` has applied everything `primary` wrote, or fails with the
/// replica's own words.
fn wait_for_replica(replica: &MariaDb, primary: &MariaDb, serve: &Serve) {
    let target = primary.gtid_binlog_pos().expect("primary pos");
    if let Err(e) = replica.wait_for_gtid(&target, Duration::from_secs(60)) {
        let status = replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default();
        panic!("{e:#}\n{status}\nserve log:\n{}", serve.log());
    }
}

#[test]
fn a_mariadb_replica_with_gtids_replicates_from_the_archive_and_follows_the_live_tail() {
    let primary = MariaDbConfig {
        // Small files, so that the replica crosses many of them and their rotations.
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    let archive = Archive::new();
    let streamer = Streamer::start(&primary, &archive, &[]);
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let users = users_file(archive.path().parent().expect("dir"));
    let serve = Serve::start(&archive, &users, &[]);

    // A replica needs a server_id of its own (the primary's events carry 1).
    let replica = MariaDbConfig {
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica
        .replicate_from_port(serve.port, USER, PASSWORD, "")
        .expect("CHANGE MASTER");
    wait_for_replica(&replica, &primary, &serve);
    assert_eq!(checksum(&replica), checksum(&primary));

    // The live tail: what the primary writes now reaches the replica through the stream's
    // archive.
    primary.write_workload(200).expect("more");
    wait_for_quiet_binlogs(&primary);
    wait_for_replica(&replica, &primary, &serve);
    assert_eq!(checksum(&replica), checksum(&primary));
    assert_eq!(
        replica
            .query_value("SELECT @@gtid_slave_pos")
            .expect("slave pos"),
        primary.gtid_binlog_pos().expect("pos")
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    streamer.stop();
}
