//! `binlogd serve` over an S3 archive (moto, or Garage with `BINLOGD_TEST_S3=garage`): a
//! real replica replicates from the sealed files and follows the file a running `binlogd
//! stream` is uploading.

mod serve_common;
mod stream_common;

use std::time::Duration;

use binlogd_testkit::{Faults, HttpFaultProxy, MariaDb, MariaDbConfig, S3Server};
use serve_common::{PASSWORD, Serve, USER, replica_caught_up, users_file, wait_caught_up};
use stream_common::{binlogd, wait_for_quiet_binlogs};

const BUCKET: &str = "binlogd-test";

fn checksum(db: &MariaDb) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

/// Waits (60 s at most) until `binlogd list` finds something in `archive`: serve needs
/// the store to hold an archive.
fn wait_until_listed(s3: &S3Server, archive: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = binlogd()
            .args(["list", "--archive", archive])
            .envs(s3.aws_env())
            .output()
            .expect("list");
        if listed.status.success() && !listed.stdout.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nothing uploaded");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn s3_a_mariadb_replica_replicates_from_an_s3_archive_and_follows_its_uploads() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig {
        // Small files: many are sealed in the store before the replica starts.
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(400).expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = format!("s3://{BUCKET}/serve");
    // Small segments: a file is read back from several.
    let streamer = stream_common::Reaped(
        binlogd()
            .args([
                "stream",
                "--no-progress",
                "--segment-size",
                "16KiB",
                "--source",
            ])
            .arg(primary.replication_url())
            .args(["--archive", &archive, "--spool-dir"])
            .arg(dir.path().join("spool"))
            .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
            .envs(s3.aws_env())
            .stderr(std::fs::File::create(dir.path().join("stream.log")).expect("log"))
            .spawn()
            .expect("binlogd stream"),
    );
    let users = users_file(dir.path());
    // The store must hold something before serve starts: wait for the first upload.
    wait_until_listed(&s3, &archive);
    let serve = Serve::start_with(
        &archive,
        &users,
        &[],
        s3.aws_env(),
        dir.path().join("serve.log"),
    );
    let replica = MariaDbConfig {
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica
        .replicate_from_port(serve.port, USER, PASSWORD, "")
        .expect("CHANGE MASTER");
    let wait = |replica: &MariaDb| {
        let target = primary.gtid_binlog_pos().expect("pos");
        if let Err(e) = replica.wait_for_gtid(&target, Duration::from_secs(90)) {
            let status = replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default();
            panic!(
                "{e:#}\n{status}\nserve log:\n{}\nstream log:\n{}",
                serve.log(),
                std::fs::read_to_string(dir.path().join("stream.log")).unwrap_or_default()
            );
        }
    };
    wait(&replica);
    assert_eq!(checksum(&replica), checksum(&primary));
    // What the primary writes now reaches the replica as the stream uploads it.
    primary.write_workload(200).expect("more");
    wait_for_quiet_binlogs(&primary);
    wait(&replica);
    assert_eq!(checksum(&replica), checksum(&primary));
    assert_eq!(
        replica
            .query_value("SELECT @@gtid_slave_pos")
            .expect("slave pos"),
        primary.gtid_binlog_pos().expect("pos")
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    drop(streamer);
}

/// A store that fails every request for a while (503s past the SDK's own retries) delays a
/// replica at the live tail; it never ends its dump with an error the replica takes for
/// good (1236), and the replica catches up once the store is back.
#[test]
fn s3_a_store_that_fails_for_a_while_delays_a_serve_replica_and_never_stops_it() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.write_workload(100).expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = format!("s3://{BUCKET}/failing");
    let streamer = stream_common::Reaped(
        binlogd()
            .args(["stream", "--no-progress", "--source"])
            .arg(primary.replication_url())
            .args(["--archive", &archive, "--spool-dir"])
            .arg(dir.path().join("spool"))
            .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
            .envs(s3.aws_env())
            .stderr(std::fs::File::create(dir.path().join("stream.log")).expect("log"))
            .spawn()
            .expect("binlogd stream"),
    );
    wait_until_listed(&s3, &archive);
    // serve reads the store through a proxy that can fail every request.
    let proxy = HttpFaultProxy::start(s3.port(), Faults::default()).expect("proxy");
    let mut env = s3.aws_env();
    env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint()));
    let users = users_file(dir.path());
    let serve = Serve::start_with(&archive, &users, &[], env, dir.path().join("serve.log"));
    // A replica whose connection is closed reconnects after MASTER_CONNECT_RETRY: 1 s
    // rather than the default 60 s, only so that the test takes seconds.
    let wait = |replica: &MariaDb| {
        wait_caught_up(replica, &serve, &primary.gtid_binlog_pos().expect("pos"));
    };
    let replica = replica_caught_up(
        &serve,
        &primary.gtid_binlog_pos().expect("pos"),
        "MASTER_CONNECT_RETRY=1",
    );
    // Every request fails for 8 s while the primary writes on.
    proxy.set_faults(Faults {
        fail_one_in: 1,
        ..Faults::default()
    });
    primary.write_workload(50).expect("more");
    std::thread::sleep(Duration::from_secs(8));
    assert!(proxy.failed() > 0, "the proxy failed nothing");
    let told_fatal = |status: &std::collections::BTreeMap<String, String>| {
        status.get("Last_IO_Errno").map(String::as_str) == Some("1236")
    };
    let status = replica.replica_status().expect("status");
    assert!(
        !told_fatal(&status),
        "the replica was told of a fatal error: {status:?}\nserve log:\n{}",
        serve.log()
    );
    proxy.set_faults(Faults::default());
    primary.write_workload(50).expect("more");
    wait_for_quiet_binlogs(&primary);
    wait(&replica);
    assert_eq!(checksum(&replica), checksum(&primary));
    let status = replica.replica_status().expect("status");
    assert!(
        !told_fatal(&status) && status.get("Slave_IO_Running").map(String::as_str) == Some("Yes"),
        "{status:?}"
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    drop(streamer);
}
