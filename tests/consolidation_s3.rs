//! Consolidation of a file that stays open, in an S3 archive (moto, or Garage with
//! `BINLOGD_TEST_S3=garage`), and a writer killed at each of its steps.
//!
//! A real MariaDB with its defaults (1 GiB files: the one file stays open for the whole
//! test, as on a quiet server for days) writes a little at a time while `binlogd stream`
//! follows it at its default 1 s checkpoints, consolidating every 5 of them
//! (`--consolidate-every 5`, so that a test sees in seconds what a server sees every five
//! minutes) with no delete delay. Each run but the last aborts the writer
//! (`BINLOGD_CRASH_AT`) at one step of its first consolidation; the same spool is then
//! carried on by a second stream. Every time: `binlogd verify` passes, the open file has a
//! partial manifest and, below its end, only what it names once the deletions are done,
//! `binlogd list` and a replica of `binlogd serve` read the open file to the primary's
//! checksum, and a reader's first look at the open file costs a few requests, however
//! many checkpoints the file has had.

mod serve_common;
mod stream_common;

use std::time::{Duration, Instant};

use binlogd_testkit::{MariaDb, MariaDbConfig, S3Server};
use serve_common::{Serve, replica_caught_up, users_file};
use stream_common::{Reaped, binlogd, wait_for_quiet_binlogs};

const BUCKET: &str = "binlogd-test";

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

/// `[start, end)` of a segment or index object's leaf, if it is one.
fn range_of(leaf: &str) -> Option<(u64, u64)> {
    let (range, _) = leaf.split_once('.')?;
    let (start, end) = range.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?))
}

/// The open file's newest partial manifest, and checks that below its end nothing is
/// left but what it names. Returns `(end, segments named, keys of the file)`.
fn assert_consolidated(s3: &S3Server, prefix: &str) -> (u64, usize, usize) {
    let keys = keys_under(s3, prefix);
    let partials: Vec<&String> = keys.iter().filter(|k| k.contains("/partial-")).collect();
    let newest = partials
        .iter()
        .max()
        .expect("no partial manifest was written");
    let partial = object(s3, newest);
    let end = partial["end"].as_u64().expect("end");
    let folder = &newest[..newest.rfind('/').expect("folder") + 1];
    let named: Vec<String> = partial["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| format!("{prefix}/{}", s["key"].as_str().expect("key")))
        .collect();
    let indexes: Vec<(u64, u64)> = partial["indexes"]
        .as_array()
        .expect("indexes")
        .iter()
        .map(|r| (r[0].as_u64().expect("start"), r[1].as_u64().expect("end")))
        .collect();
    let file_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with(folder)).collect();
    for key in &file_keys {
        let leaf = &key[folder.len()..];
        if leaf.starts_with("partial-") {
            assert_eq!(*key, *newest, "an older partial manifest is left");
            continue;
        }
        let Some((start, stop)) = range_of(leaf) else {
            continue;
        };
        if stop > end {
            continue;
        }
        let kept = if leaf.contains(".idx.") {
            indexes.contains(&(start, stop))
        } else {
            named.contains(key)
        };
        assert!(
            kept,
            "{key} is left below {end}, which {newest} does not name"
        );
    }
    assert!(
        keys.iter().all(|k| !k.contains("/deletions/")),
        "deletion records left: {keys:?}"
    );
    (end, named.len(), file_keys.len())
}

fn stream(
    primary: &MariaDb,
    s3: &S3Server,
    archive: &str,
    spool: &std::path::Path,
) -> std::process::Command {
    let mut command = binlogd();
    command
        .args([
            "stream",
            "--no-progress",
            "--consolidate-every",
            "5",
            "--delete-delay",
            "0s",
            "--source",
        ])
        .arg(primary.replication_url())
        .args(["--archive", archive, "--spool-dir"])
        .arg(spool)
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .envs(s3.aws_env());
    command
}

#[test]
fn s3_an_open_file_is_consolidated_and_a_writer_killed_at_each_step_loses_nothing() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.write_workload(5).expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = users_file(dir.path());
    let steps = [
        Some("consolidation:segments"),
        Some("consolidation:deletion-recorded"),
        Some("consolidation:partial"),
        None,
    ];
    for (run, crash_at) in steps.into_iter().enumerate() {
        let prefix = format!("consolidation{run}");
        let archive = format!("s3://{BUCKET}/{prefix}");
        let spool = dir.path().join(format!("spool{run}"));
        let log = dir.path().join(format!("stream{run}.log"));
        let mut command = stream(&primary, &s3, &archive, &spool);
        command.stderr(std::fs::File::create(&log).expect("log"));
        if let Some(step) = crash_at {
            command.env("BINLOGD_CRASH_AT", step);
        }
        let mut first = Reaped(command.spawn().expect("binlogd stream"));
        // A little at a time, as a quiet server writes: a checkpoint a second.
        let deadline = Instant::now() + Duration::from_secs(60);
        let crashed = loop {
            if let Ok(Some(status)) = first.0.try_wait() {
                break Some(status);
            }
            if crash_at.is_none() && Instant::now() > deadline - Duration::from_secs(40) {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "{crash_at:?} was never reached:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            primary.write_workload(3).expect("workload");
            std::thread::sleep(Duration::from_millis(600));
        };
        if let Some(status) = crashed {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                !status.success() && said.contains("BINLOGD_CRASH_AT"),
                "the stream ended ({status}) without being told to:\n{said}"
            );
        }
        drop(first);
        // The same spool, carried on by a new writer while the server writes on: it
        // finds where the first one stopped from the partial manifest (if any) and goes
        // on consolidating.
        let log2 = dir.path().join(format!("stream{run}-again.log"));
        let mut again = stream(&primary, &s3, &archive, &spool);
        again.stderr(std::fs::File::create(&log2).expect("log"));
        let second = Reaped(again.spawn().expect("binlogd stream"));
        for _ in 0..15 {
            primary.write_workload(3).expect("workload");
            std::thread::sleep(Duration::from_millis(600));
        }
        wait_for_quiet_binlogs(&primary);
        // Ten checkpoints with nothing new: the last consolidation's deletions are done.
        std::thread::sleep(Duration::from_secs(4));
        let target = primary.gtid_binlog_pos().expect("pos");
        let log_of = |path| std::fs::read_to_string(path).unwrap_or_default();
        let verified = binlogd()
            .args(["verify", "--archive", &archive])
            .envs(s3.aws_env())
            .output()
            .expect("binlogd verify");
        assert!(
            verified.status.success(),
            "after {crash_at:?}: {}{}\n{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr),
            log_of(&log2)
        );
        drop(second);
        let (end, named, file_keys) = assert_consolidated(&s3, &prefix);
        eprintln!(
            "after {crash_at:?}: consolidated to {end}, {named} segments named, {file_keys} \
             keys under the open file; verify passes"
        );
        // `list` reads the open file's index through the partial manifest: the newest
        // GTID is the primary's.
        let listed = binlogd()
            .args(["list", "--archive", &archive])
            .envs(s3.aws_env())
            .output()
            .expect("binlogd list");
        let listed_text = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.status.success(), "{listed_text}");
        assert!(
            listed_text.contains(target.rsplit(',').next().unwrap_or(&target)),
            "after {crash_at:?}: list does not reach {target}:\n{listed_text}"
        );
        // The archive, replicated from binlogd serve, is the primary's data.
        let serve = Serve::start_with(
            &archive,
            &users,
            &[],
            s3.aws_env(),
            dir.path().join(format!("serve{run}.log")),
        );
        let replica = replica_caught_up(&serve, &target, "");
        assert_eq!(checksum(&replica), checksum(&primary), "after {crash_at:?}");
        replica.sql("STOP SLAVE").expect("stop slave");
        serve.stop();
    }
}

/// A `binlogd serve` that watched the open file checkpoint by checkpoint while its
/// checkpoints' segments were consolidated and deleted (no delete delay) still serves it
/// whole to a replica that starts from its beginning: the segments it was told of are
/// gone (it asks for the file's segments again instead of ending the dump), and the
/// holes its looks found where checkpoints were deleted before it saw them are filled
/// from the partial manifest. Fails with "segment … vanished" without the first.
#[test]
fn s3_a_replica_of_serve_reads_an_open_file_consolidated_and_deleted_under_it() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.write_workload(5).expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = users_file(dir.path());
    let archive = format!("s3://{BUCKET}/under-serve");
    let spool = dir.path().join("spool");
    let mut command = stream(&primary, &s3, &archive, &spool);
    command.stderr(std::fs::File::create(dir.path().join("stream.log")).expect("log"));
    let streaming = Reaped(command.spawn().expect("binlogd stream"));
    // Something to serve, then serve, which lists the open file's checkpoints.
    for _ in 0..3 {
        primary.write_workload(3).expect("workload");
        std::thread::sleep(Duration::from_millis(600));
    }
    let serve = Serve::start_with(
        &archive,
        &users,
        &[],
        s3.aws_env(),
        dir.path().join("serve.log"),
    );
    let early = replica_caught_up(&serve, &primary.gtid_binlog_pos().expect("pos"), "");
    early.sql("STOP SLAVE").expect("stop slave");
    // Consolidations replace those checkpoints, and their segments are deleted at once,
    // while clients keep logging in (so serve keeps its listing of the open file fresh,
    // checkpoint by checkpoint).
    let first_partial = Instant::now();
    loop {
        primary.write_workload(3).expect("workload");
        let login = std::process::Command::new("mariadb")
            .args([
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                &serve.port.to_string(),
            ])
            .args([
                "-u",
                serve_common::USER,
                &format!("--password={}", serve_common::PASSWORD),
            ])
            .args(["--skip-ssl", "-N", "-e", "SELECT 1"])
            .output()
            .expect("mariadb");
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
        std::thread::sleep(Duration::from_millis(600));
        let deleted = s3
            .list_keys(BUCKET, "under-serve/")
            .expect("list")
            .iter()
            .filter(|k| k.contains("/partial-"))
            .count()
            > 0
            && first_partial.elapsed() > Duration::from_secs(12);
        if deleted {
            break;
        }
        assert!(
            first_partial.elapsed() < Duration::from_secs(60),
            "no consolidation"
        );
    }
    wait_for_quiet_binlogs(&primary);
    std::thread::sleep(Duration::from_secs(3));
    let target = primary.gtid_binlog_pos().expect("pos");
    // A new replica from the start of the open file.
    let replica = replica_caught_up(&serve, &target, "");
    assert_eq!(checksum(&replica), checksum(&primary));
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
    drop(streaming);
}
