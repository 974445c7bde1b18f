//! An S3 archive written by the previous release (moto, or Garage with
//! `BINLOGD_TEST_S3=garage`): read, verified, searched and served by this one unchanged.
//!
//! `testdata/archive-previous-release/` holds every object such an archive had (see
//! `testdata/README.md`): two sealed files whose manifests name no whole index and whose
//! segments are one per checkpoint, and one file still open. The objects are put into a
//! store as they were, and this release's commands must read them as that release did:
//! `verify` passes, `list` sees the same files, `search --latest` finds the last
//! transaction, and both a replica of `binlogd serve` and a relay-log restore reach the
//! database's checksum.

mod serve_common;
mod stream_common;

use std::path::PathBuf;

use binlogd_testkit::{MariaDbConfig, S3Server};
use serve_common::{Serve, replica_caught_up, users_file};
use stream_common::binlogd;

const BUCKET: &str = "binlogd-test";
const PREFIX: &str = "previous";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/archive-previous-release")
}

/// Puts every object of the fixture into the store under `PREFIX`, metadata and all.
fn load_fixture(s3: &S3Server) -> serde_json::Value {
    let described: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture().join("archive.json")).expect("testdata/archive-previous-release"),
    )
    .expect("JSON");
    let client = s3.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for object in described["objects"].as_array().expect("objects") {
        let key = object["key"].as_str().expect("key");
        let body = std::fs::read(fixture().join(object["body"].as_str().expect("body")))
            .expect("an object's body");
        let metadata = object["metadata"]
            .as_object()
            .expect("metadata")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_owned()))
            .collect();
        rt.block_on(
            client
                .put_object()
                .bucket(BUCKET)
                .key(format!("{PREFIX}/{key}"))
                .set_metadata(Some(metadata))
                .body(body.into())
                .send(),
        )
        .expect("put");
    }
    described
}

fn run(s3: &S3Server, args: &[&str]) -> String {
    let output = binlogd()
        .args(args)
        .envs(s3.aws_env())
        .output()
        .expect("binlogd");
    assert!(
        output.status.success(),
        "binlogd {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn s3_an_archive_the_previous_release_wrote_is_read_served_and_restored_unchanged() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let described = load_fixture(&s3);
    let archive = format!("s3://{BUCKET}/{PREFIX}");
    run(&s3, &["verify", "--archive", &archive]);
    let listed = run(&s3, &["list", "--archive", &archive, "--output", "json"]);
    let states: Vec<String> = listed
        .lines()
        .map(|line| {
            let file: serde_json::Value = serde_json::from_str(line).expect("JSON");
            format!(
                "{} {}",
                file["file"].as_str().expect("file"),
                file["state"].as_str().expect("state")
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            "mariadb-bin.000001 sealed",
            "mariadb-bin.000002 sealed",
            "mariadb-bin.000003 open"
        ]
    );
    let last = described["gtid_binlog_pos"].as_str().expect("pos");
    let latest = run(&s3, &["search", "--archive", &archive, "--latest"]);
    assert!(
        latest.contains(last),
        "search --latest does not reach {last}:\n{latest}"
    );
    run(&s3, &["find", "--archive", &archive, "--kind", "drop"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let users = users_file(dir.path());
    let serve = Serve::start_with(
        &archive,
        &users,
        &[],
        s3.aws_env(),
        dir.path().join("serve.log"),
    );
    let replica = replica_caught_up(&serve, last, "");
    assert_eq!(
        replica
            .query_value("CHECKSUM TABLE binlogd_test.workload")
            .expect("checksum"),
        described["checksum"].as_str().expect("checksum")
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();

    // And restored by relay-log replay into an empty server, to the last transaction.
    let target = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("target");
    target
        .create_tcp_admin("restorer", "restore-pw")
        .expect("user");
    let restored = binlogd()
        .current_dir(dir.path())
        .args(["restore", "--archive", &archive, "--to-gtid", last])
        .args(["--from-archive-start", "--target"])
        .arg(format!("mysql://restorer@127.0.0.1:{}", target.port()))
        .env("BINLOGD_TARGET_PASSWORD", "restore-pw")
        .envs(s3.aws_env())
        .output()
        .expect("binlogd restore");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(
        target
            .query_value("CHECKSUM TABLE binlogd_test.workload")
            .expect("checksum"),
        described["checksum"].as_str().expect("checksum")
    );
}
