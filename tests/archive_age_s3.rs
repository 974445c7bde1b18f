//! An S3 archive at any age (moto, or Garage with `BINLOGD_TEST_S3=garage`): what reading
//! it costs does not grow with the objects it has ever written.
//!
//! A real MariaDB (its defaults, but small files so that several are sealed) is streamed
//! into S3; then the objects four hours of 1 s checkpoints leave under sealed files are
//! placed beside them (old-looking segment and index keys: the bulk, placed directly).
//! Every read command makes exactly the requests it made on the fresh archive, counted by
//! a proxy in front of the store, and a replica of `binlogd serve` logs in within a second
//! and replicates to equal checksums.

mod serve_common;
mod stream_common;

use std::process::Output;
use std::time::{Duration, Instant};

use binlogd_storage::remote::read::{RemoteArchive, RemoteFile};
use binlogd_storage::remote::s3::S3Store;
use binlogd_storage::remote::store::ObjectStore;
use binlogd_testkit::{
    Faults, HttpFaultProxy, MariaDb, MariaDbConfig, RequestCounts, S3Kind, S3Server,
};
use serve_common::{PASSWORD, Serve, USER, replica_caught_up, users_file};
use std::sync::Arc;
use stream_common::binlogd;

const BUCKET: &str = "binlogd-test";
const PREFIX: &str = "aged";

/// Old objects placed under the sealed files: at one segment and one index object per
/// second, what ~14 hours of writes leave behind — on Garage, which takes them in about a
/// minute. moto stores a few hundred objects a second, so there the test places 3,000 (any
/// listing they cost would show in the request counts just the same).
/// `BINLOGD_TEST_OLD_OBJECTS` sets another number.
fn old_objects(s3: &S3Server) -> usize {
    std::env::var("BINLOGD_TEST_OLD_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(match s3.kind() {
            S3Kind::Garage => 100_000,
            S3Kind::Moto => 3_000,
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A binlogd command against the archive, its S3 requests going through `proxy`.
fn through(proxy: &HttpFaultProxy, s3: &S3Server, args: &[&str]) -> (Output, RequestCounts) {
    let before = proxy.counts();
    let output = binlogd()
        .args(args)
        .envs(s3.aws_env())
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .expect("run binlogd");
    assert!(
        output.status.success(),
        "binlogd {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output, proxy.counts().since(before))
}

/// Names like those of the segments and index objects one-second checkpoints leave,
/// under the sealed files' prefixes, past the files' real bytes: what a reader that lists
/// would wade through, and a reader that follows the manifests never looks at.
fn old_object_keys(sealed: &[(String, String)], count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let (epoch, name) = &sealed[i % sealed.len()];
            let start = (1u64 << 40) + (i as u64 / 2) * 4096;
            let kind = if i % 2 == 0 { "seg.zst" } else { "idx.zst" };
            format!(
                "{PREFIX}/{epoch}/{name}/{start:020}-{:020}.{kind}",
                start + 4096
            )
        })
        .collect()
}

/// The archive's files as a reader sees them: `(epoch, name)` of the sealed ones, and
/// whether one is still open.
fn files_of(s3: &S3Server) -> (Vec<(String, String)>, bool) {
    let store = S3Store::with_client(
        s3.client(),
        format!("s3://{BUCKET}/{PREFIX}").parse().expect("url"),
    );
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let files = runtime().block_on(async {
        let archive = RemoteArchive::open(store, None).await.expect("open");
        archive.files().await.expect("files")
    });
    let mut sealed = Vec::new();
    let mut open = false;
    for file in files {
        match file {
            RemoteFile::Sealed(summary) => sealed.push((summary.epoch, summary.name)),
            RemoteFile::Open { .. } => open = true,
        }
    }
    (sealed, open)
}

fn checksum(db: &MariaDb) -> String {
    db.query_value("CHECKSUM TABLE binlogd_test.workload")
        .expect("checksum")
}

/// How long a client takes to log in to `binlogd serve` on `port` and ask one question
/// (the `mariadb` client: connect, greeting, authentication, its own setup query).
fn login_time(port: u16) -> Duration {
    let began = Instant::now();
    let output = std::process::Command::new("mariadb")
        .args(["--protocol=tcp", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args(["-u", USER, &format!("--password={PASSWORD}")])
        .args(["--skip-ssl", "-N", "-e", "SELECT UNIX_TIMESTAMP()"])
        .output()
        .expect("mariadb client");
    let took = began.elapsed();
    assert!(
        output.status.success(),
        "login: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

#[test]
fn s3_an_archive_full_of_old_objects_reads_and_serves_as_a_fresh_one_does() {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let primary = MariaDbConfig {
        // Small files: several sealed files to hide old objects under, and an open one.
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(300).expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = format!("s3://{BUCKET}/{PREFIX}");
    let streamed = binlogd()
        .args(["stream", "--no-progress", "--exit-at-end", "--source"])
        .arg(primary.replication_url())
        .args(["--archive", &archive, "--spool-dir"])
        .arg(dir.path().join("spool"))
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .envs(s3.aws_env())
        .output()
        .expect("binlogd stream");
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let (sealed, open) = files_of(&s3);
    assert!(sealed.len() >= 3 && open, "sealed {sealed:?}, open: {open}");

    let proxy = HttpFaultProxy::start(s3.port(), Faults::default()).expect("proxy");
    let commands: [&[&str]; 4] = [
        &["list", "--archive", &archive],
        &["timeline", "--archive", &archive],
        &["search", "--archive", &archive, "--latest"],
        &["find", "--archive", &archive, "--kind", "drop"],
    ];
    let fresh: Vec<(Vec<u8>, RequestCounts)> = commands
        .iter()
        .map(|args| {
            let (output, counts) = through(&proxy, &s3, args);
            (output.stdout, counts)
        })
        .collect();

    let count = old_objects(&s3);
    let began = Instant::now();
    s3.put_many(BUCKET, old_object_keys(&sealed, count), 64)
        .expect("place old objects");
    eprintln!("placed {count} old objects in {:?}", began.elapsed());

    for (args, (fresh_output, fresh_counts)) in commands.iter().zip(&fresh) {
        let (output, counts) = through(&proxy, &s3, args);
        eprintln!("binlogd {}: fresh {fresh_counts}, aged {counts}", args[0]);
        assert_eq!(
            &counts, fresh_counts,
            "binlogd {args:?} costs more with {count} old objects"
        );
        assert_eq!(
            &output.stdout, fresh_output,
            "binlogd {args:?} says otherwise"
        );
    }

    // A replica of `binlogd serve` on the aged archive: logs in within a second, and
    // replicates everything.
    let users = users_file(dir.path());
    let mut env = s3.aws_env();
    env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint()));
    let serve = Serve::start_with(&archive, &users, &[], env, dir.path().join("serve.log"));
    let mut logins: Vec<Duration> = (0..5).map(|_| login_time(serve.port)).collect();
    logins.sort();
    eprintln!("logins: {logins:?}");
    assert!(
        logins[logins.len() - 1] < Duration::from_secs(1),
        "logins took {logins:?}\n{}",
        serve.log()
    );
    let target = primary.gtid_binlog_pos().expect("pos");
    let replica = replica_caught_up(&serve, &target, "");
    assert_eq!(checksum(&replica), checksum(&primary));
    replica.sql("STOP SLAVE").expect("stop slave");
    serve.stop();
}
