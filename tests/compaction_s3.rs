//! Compaction of sealed files in an S3 archive (moto, or Garage with
//! `BINLOGD_TEST_S3=garage`), and a writer killed at each of its steps.
//!
//! A real MariaDB (its defaults, but 32 KiB files so that several are sealed while the test
//! runs) writes a little at a time while `binlogd stream` follows it at its default 1 s
//! checkpoints, so every file is sealed with many small segments, as on a live server.
//! Each run but the last aborts the writer (`BINLOGD_CRASH_AT`) at one step of the first
//! compaction; `binlogd upload` then finishes with the same spool. Every time: `binlogd
//! verify` passes, every sealed file's manifest lists a few large segments, no small
//! segment or per-segment index object is left once the (zero) delete delay has passed,
//! and a replica of `binlogd serve` replicates the archive to the primary's checksum.
//! Then `verify` names a file whose index chunk was swapped for another file's.

mod serve_common;
mod stream_common;

use std::time::{Duration, Instant};

use binlogd_testkit::{MariaDb, MariaDbConfig, S3Server};
use serve_common::{Serve, replica_caught_up, users_file};
use stream_common::{Reaped, binlogd, wait_for_quiet_binlogs};

const BUCKET: &str = "binlogd-test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every key under `prefix/`.
fn keys_under(s3: &S3Server, prefix: &str) -> Vec<String> {
    s3.list_keys(BUCKET, &format!("{prefix}/")).expect("list")
}

fn object(s3: &S3Server, key: &str) -> serde_json::Value {
    serde_json::from_slice(&s3.get_object(BUCKET, key).expect("get")).expect("JSON")
}

fn checksum(db: &MariaDb) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

/// What a compacted archive holds: each sealed file's manifest compacted (or with nothing
/// to gain), and under each file only what its manifest names.
fn assert_compacted(s3: &S3Server, prefix: &str) -> usize {
    let keys = keys_under(s3, prefix);
    let manifests: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    assert!(!manifests.is_empty(), "no sealed file");
    let mut compacted = 0;
    for key in manifests {
        let manifest = object(s3, key);
        let folder = key.trim_end_matches("manifest.json");
        let listed: Vec<&str> = manifest["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| s["key"].as_str().expect("key"))
            .collect();
        if manifest["compacted"] == true {
            compacted += 1;
        }
        for leftover in keys.iter().filter(|k| k.starts_with(folder)) {
            let leaf = &leftover[folder.len()..];
            let named = leaf == "manifest.json"
                || leaf.starts_with("index-")
                || listed.iter().any(|l| format!("{prefix}/{l}") == *leftover);
            assert!(
                named || manifest["compacted"] != true,
                "{leftover} is left beside a compacted manifest listing {listed:?}"
            );
        }
    }
    assert!(
        keys.iter().all(|k| !k.contains("/deletions/")),
        "deletion records left: {keys:?}"
    );
    compacted
}

#[test]
fn s3_sealed_files_are_compacted_and_a_writer_killed_at_each_step_loses_nothing() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig {
        // Small files: several are sealed while the test runs.
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(5).expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = users_file(dir.path());
    let steps = [
        Some("compaction:segments"),
        Some("compaction:deletion-recorded"),
        Some("compaction:manifest"),
        Some("compaction:some-deleted"),
        None,
    ];
    for (run, crash_at) in steps.into_iter().enumerate() {
        let prefix = format!("compaction{run}");
        let archive = format!("s3://{BUCKET}/{prefix}");
        let spool = dir.path().join(format!("spool{run}"));
        let log = dir.path().join(format!("stream{run}.log"));
        let mut command = binlogd();
        command
            .args([
                "stream",
                "--no-progress",
                "--delete-delay",
                "0s",
                "--source",
            ])
            .arg(primary.replication_url())
            .args(["--archive", &archive, "--spool-dir"])
            .arg(&spool)
            .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
            .envs(s3.aws_env())
            .stderr(std::fs::File::create(&log).expect("log"));
        if let Some(step) = crash_at {
            command.env("BINLOGD_CRASH_AT", step);
        }
        let mut stream = Reaped(command.spawn().expect("binlogd stream"));
        // A little at a time, as a live server writes: many small segments per file.
        let deadline = Instant::now() + Duration::from_secs(90);
        let crashed = loop {
            if let Ok(Some(status)) = stream.0.try_wait() {
                break Some(status);
            }
            if crash_at.is_none() && Instant::now() > deadline - Duration::from_secs(75) {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "{crash_at:?} was never reached:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            primary.write_workload(12).expect("workload");
            std::thread::sleep(Duration::from_millis(700));
        };
        if let Some(status) = crashed {
            assert!(
                !status.success() && crash_at.is_some(),
                "the stream ended ({status}) without being told to:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(said.contains("BINLOGD_CRASH_AT"), "{said}");
        }
        drop(stream);
        wait_for_quiet_binlogs(&primary);
        // The same spool, carried on: first the stream to the primary's end, then the
        // upload that finishes the compactions and the deletions.
        let caught_up = binlogd()
            .args([
                "stream",
                "--no-progress",
                "--exit-at-end",
                "--delete-delay",
                "0s",
                "--source",
            ])
            .arg(primary.replication_url())
            .args(["--archive", &archive, "--spool-dir"])
            .arg(&spool)
            .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
            .envs(s3.aws_env())
            .output()
            .expect("binlogd stream --exit-at-end");
        assert!(
            caught_up.status.success(),
            "{}",
            String::from_utf8_lossy(&caught_up.stderr)
        );
        let uploaded = binlogd()
            .args([
                "upload",
                "--delete-delay",
                "0s",
                "--archive",
                &archive,
                "--spool-dir",
            ])
            .arg(&spool)
            .envs(s3.aws_env())
            .output()
            .expect("binlogd upload");
        assert!(
            uploaded.status.success(),
            "{}",
            String::from_utf8_lossy(&uploaded.stderr)
        );
        let verified = binlogd()
            .args(["verify", "--archive", &archive])
            .envs(s3.aws_env())
            .output()
            .expect("binlogd verify");
        assert!(
            verified.status.success(),
            "after {crash_at:?}: {}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        );
        let compacted = assert_compacted(&s3, &prefix);
        assert!(compacted >= 1, "after {crash_at:?}: nothing was compacted");
        eprintln!("after {crash_at:?}: {compacted} files compacted, verify passes");
        // The archive, replicated from binlogd serve, is the primary's data.
        let serve = Serve::start_with(
            &archive,
            &users,
            &[],
            s3.aws_env(),
            dir.path().join(format!("serve{run}.log")),
        );
        let target = primary.gtid_binlog_pos().expect("pos");
        let replica = replica_caught_up(&serve, &target, "");
        assert_eq!(checksum(&replica), checksum(&primary), "after {crash_at:?}");
        replica.sql("STOP SLAVE").expect("stop slave");
        serve.stop();
    }

    // verify reads each sealed file's index as a restore would: one file's index chunk
    // replaced by another file's is named, though every segment is intact.
    let prefix = format!("compaction{}", steps.len() - 1);
    let chunks: Vec<String> = keys_under(&s3, &prefix)
        .into_iter()
        .filter(|k| k.contains("/index-"))
        .collect();
    assert!(chunks.len() >= 2, "index chunks: {chunks:?}");
    let rt = runtime();
    let client = s3.client();
    let donor = rt
        .block_on(client.get_object().bucket(BUCKET).key(&chunks[1]).send())
        .expect("get");
    let donor = rt
        .block_on(donor.body.collect())
        .expect("body")
        .into_bytes();
    rt.block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(&chunks[0])
            .body(donor.into())
            .send(),
    )
    .expect("put");
    let verified = binlogd()
        .args(["verify", "--archive", &format!("s3://{BUCKET}/{prefix}")])
        .envs(s3.aws_env())
        .output()
        .expect("binlogd verify");
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert_eq!(verified.status.code(), Some(1), "{said}");
    let victim = chunks[0].split('/').nth(2).expect("file");
    assert!(
        said.contains(victim) && said.contains("its index"),
        "{said}"
    );
}
