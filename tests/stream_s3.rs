//! `binlogd stream` into an S3 archive, against a real MariaDB and a real S3-compatible
//! server from the harness (moto, or Garage with `BINLOGD_TEST_S3=garage`): the files read
//! back from the store are the server's, byte for byte, for every compression.

mod stream_common;

use binlogd_storage::remote::read::{RemoteArchive, RemoteFile};
use binlogd_storage::remote::s3::S3Store;
use binlogd_storage::remote::store::ObjectStore;
use binlogd_testkit::{MariaDb, MariaDbConfig, S3Server};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use stream_common::{binlogd, wait_for_quiet_binlogs};

const BUCKET: &str = "binlogd-test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn s3_client(s3: &S3Server) -> aws_sdk_s3::Client {
    s3.client()
}

fn start_s3() -> S3Server {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("create the bucket");
    s3
}

/// `binlogd stream` from `db` into the archive at `archive_url`, spooling in `spool`,
/// with the store's credentials in the environment; callers add the rest.
fn stream_command(db: &MariaDb, s3: &S3Server, archive_url: &str, spool: &Path) -> Command {
    let mut command = binlogd();
    command
        .args(["stream", "--no-progress", "--source"])
        .arg(db.replication_url())
        .args(["--archive", archive_url, "--spool-dir"])
        .arg(spool)
        .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
        .envs(s3.aws_env());
    command
}

/// `binlogd stream --exit-at-end` into `s3://BUCKET/prefix`.
fn stream_to_s3(db: &MariaDb, s3: &S3Server, prefix: &str, spool: &Path, extra: &[&str]) -> Output {
    stream_command(db, s3, &format!("s3://{BUCKET}/{prefix}"), spool)
        .arg("--exit-at-end")
        .args(extra)
        .output()
        .expect("run binlogd")
}

/// Waits until the binlogd serving `metrics_addr` says it is healthy (streaming, its
/// archive open); fails with `log()` after 30 s.
fn wait_until_healthy(metrics_addr: &str, log: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(metrics_addr).is_err()
        || stream_common::http_get(metrics_addr, "/healthz").0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "binlogd did not start:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The one `binlogd: ...` line a failing run printed.
fn the_error_line(stderr: &str) -> &str {
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("binlogd:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    error_lines[0]
}

/// The archive under `prefix`, read through the storage crate as any reader would.
fn open_archive(s3: &S3Server, prefix: &str) -> RemoteArchive {
    open_archive_with_key(s3, prefix, None)
}

/// An S3 archive opened for reading, with a client key.
fn open_archive_with_key(
    s3: &S3Server,
    prefix: &str,
    key: Option<binlogd_storage::remote::crypt::ClientKey>,
) -> RemoteArchive {
    let store = S3Store::with_client(
        s3_client(s3),
        format!("s3://{BUCKET}/{prefix}").parse().expect("url"),
    );
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    runtime()
        .block_on(RemoteArchive::open(store, key))
        .expect("open the archive")
}

/// Every binlog file of the server, compared with the copy read back from the store.
fn assert_store_has_the_servers_files(db: &MariaDb, archive: &RemoteArchive) -> u64 {
    let rt = runtime();
    let files = rt.block_on(archive.files()).expect("list the archive");
    let mut total = 0;
    for file in db.binlog_files().expect("server files") {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let ours = files
            .iter()
            .find(|f| f.id().1 == name)
            .unwrap_or_else(|| panic!("{name} is not in the object archive: {files:?}"));
        let (epoch, _) = ours.id();
        let bytes = rt
            .block_on(archive.read_file(epoch, &name))
            .expect("read back");
        let server = std::fs::read(&file).expect("server file");
        assert!(
            bytes == server,
            "{name}: {} bytes read back, the server has {} (first difference at {:?})",
            bytes.len(),
            server.len(),
            bytes.iter().zip(&server).position(|(a, b)| a != b)
        );
        total += server.len() as u64;
    }
    let unsealed: Vec<_> = files
        .iter()
        .filter(|f| !matches!(f, RemoteFile::Sealed(_)))
        .map(RemoteFile::id)
        .collect();
    assert_eq!(
        unsealed.len(),
        1,
        "every file but the one the server still writes is sealed: {unsealed:?} are not"
    );
    total
}

#[test]
fn s3_archives_hold_the_servers_files_byte_for_byte_in_every_compression() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(400).expect("workload");
    // MariaDB writes a file's checkpoint event a moment after the rotation.
    wait_for_quiet_binlogs(&db);
    let s3 = start_s3();
    for codec in ["zstd", "gzip", "bzip2", "none"] {
        let spool = tempfile::tempdir().expect("spool");
        // One run with small segments several at a time, one with one at a time.
        let parallel: &[&str] = match codec {
            "none" => &["--segment-size", "8KiB", "--max-parallel", "8"],
            "gzip" => &["--max-parallel", "1"],
            _ => &[],
        };
        let mut args = vec!["--compression", codec];
        args.extend_from_slice(parallel);
        let output = stream_to_s3(&db, &s3, codec, spool.path(), &args);
        assert!(
            output.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let archive = open_archive(&s3, codec);
        let bytes = assert_store_has_the_servers_files(&db, &archive);
        assert!(bytes > 5 * (16 << 10), "the workload rotated several times");
        // Sealed files leave the spool; the newest stays for the next resume.
        let spooled: Vec<_> = walk(spool.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("mariadb-bin."))
            .filter(|p| !p.to_string_lossy().ends_with(".index.jsonl"))
            .collect();
        assert_eq!(spooled.len(), 1, "{codec}: spool still holds {spooled:?}");
        if codec == "none" {
            let segments = keys_under(&s3, codec, "0001-server1/mariadb-bin.000001/")
                .iter()
                .filter(|k| k.contains(".seg."))
                .count();
            assert!(segments >= 2, "16 KiB in 8 KiB segments: {segments}");
        }
    }
    assert_list_matches_the_server(&db, &s3, "zstd");
    assert_search_plans_from_the_catalogue(&db, &s3, "zstd");
    assert_verify_finds_the_archive_clean_then_a_damaged_segment(&db, &s3, "gzip");

    // Another, empty spool cannot continue that archive: it would start over beside it.
    let empty = tempfile::tempdir().expect("spool");
    let output = stream_to_s3(&db, &s3, "zstd", empty.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error_line = the_error_line(&stderr);
    assert!(error_line.contains("this spool is empty"), "{stderr}");
}

/// `binlogd list --output json` names every file of the server with its size, and the
/// newest file's GTID state is the server's.
fn assert_list_matches_the_server(db: &MariaDb, s3: &S3Server, prefix: &str) {
    let output = binlogd()
        .args(["list", "--output", "json", "--archive"])
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let server_files = db.binlog_files().expect("files");
    assert_eq!(listed.len(), server_files.len(), "{listed:?}");
    for (entry, file) in listed.iter().zip(&server_files) {
        let name = file.file_name().expect("name").to_string_lossy();
        assert_eq!(entry["file"], name.as_ref());
        assert_eq!(
            entry["size"].as_u64(),
            Some(std::fs::metadata(file).expect("stat").len()),
            "{entry}"
        );
    }
    let states: Vec<&str> = listed.iter().filter_map(|e| e["state"].as_str()).collect();
    assert!(
        states[..states.len() - 1].iter().all(|s| *s == "sealed"),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&"open"));
    let last = listed.last().expect("a file");
    assert_eq!(
        last["gtids_after"]["gtids"]
            .as_str()
            .or(last["gtids_after"].as_str()),
        Some(db.gtid_binlog_pos().expect("pos").as_str()),
        "{last}"
    );
}

/// `binlogd search` on an object archive: sealed files are decided from the catalogue, so
/// a plan across many files reads at most the indexes of the two files it cuts.
fn assert_search_plans_from_the_catalogue(db: &MariaDb, s3: &S3Server, prefix: &str) {
    let search = |args: &[&str]| -> serde_json::Value {
        let output = binlogd()
            .args(["search", "--output", "json", "--archive"])
            .arg(format!("s3://{BUCKET}/{prefix}"))
            .args(args)
            .envs(s3.aws_env())
            .output()
            .expect("run binlogd search");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let last = sequence_of(&db.gtid_binlog_pos().expect("pos"));
    let target = format!("0-1-{}", last - 10);
    let plan = search(&["--from-gtid", "0-1-10", "--gtid", &target]);
    assert_eq!(plan["transactions"], last - 20, "{plan}");
    assert_eq!(plan["stop"]["gtid"], target.as_str());
    assert!(
        plan["pieces"].as_array().expect("pieces").len() >= 4,
        "{plan}"
    );
    assert!(plan["indexes_read"].as_u64().expect("n") <= 2, "{plan}");
    let plan = search(&["--latest"]);
    assert_eq!(plan["end"]["gtids"], db.gtid_binlog_pos().expect("pos"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The highest sequence number of domain 0 that the archive lists as readable. The
/// newest file's segment may be up a moment before its index object: then the file
/// before it says how far the archive reaches.
fn archived_sequence(archive: &RemoteArchive) -> u64 {
    let rt = runtime();
    let files = rt.block_on(archive.files()).expect("list");
    for file in files.iter().rev() {
        let gtids = match file {
            RemoteFile::Sealed(summary) => summary.gtids_after.to_string(),
            // The index as the listing's look read it.
            RemoteFile::Open { unsealed, .. } => unsealed.index().gtids_after().to_string(),
        };
        let sequence = sequence_of(&gtids);
        if sequence > 0 {
            return sequence;
        }
    }
    0
}

/// `0-1-42` (one domain) -> 42.
fn sequence_of(gtid_pos: &str) -> u64 {
    gtid_pos
        .split(',')
        .find(|g| g.starts_with("0-"))
        .and_then(|g| g.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[test]
fn s3_live_stream_keeps_a_two_second_rpo_and_uploads_each_byte_once() {
    let db = Arc::new(
        MariaDbConfig {
            max_binlog_size: Some(1 << 20),
            ..MariaDbConfig::default()
        }
        .start()
        .expect("start"),
    );
    db.sysbench(&binlogd_testkit::SysbenchLoad {
        tables: 4,
        table_size: 2_000,
        threads: 1,
        seconds: 1,
        events: 0,
    })
    .expect("prepare");
    let s3 = start_s3();
    let spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let mut streamer = stream_command(&db, &s3, &format!("s3://{BUCKET}/live"), spool.path())
        .args(["--compression", "none", "--checkpoint-interval", "1"])
        .args(["--metrics-addr", &metrics_addr])
        .stderr(std::fs::File::create(logs.path().join("binlogd.log")).expect("log file"))
        .spawn()
        .expect("spawn binlogd");
    let log = || std::fs::read_to_string(logs.path().join("binlogd.log")).unwrap_or_default();
    // Streaming (and the archive created) before the load starts.
    wait_until_healthy(&metrics_addr, log);
    let load_db = Arc::clone(&db);
    let load = std::thread::spawn(move || {
        load_db.sysbench(&binlogd_testkit::SysbenchLoad {
            tables: 4,
            table_size: 2_000,
            threads: 2,
            seconds: 12,
            events: 0,
        })
    });
    // While the load runs: every commit older than 2 s must be readable from the store.
    let mut samples: Vec<(std::time::Instant, u64)> = Vec::new();
    let mut checks = 0;
    while !load.is_finished() {
        let now = std::time::Instant::now();
        samples.push((now, sequence_of(&db.gtid_binlog_pos().expect("pos"))));
        let due = samples
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) > std::time::Duration::from_secs(2))
            .map(|(_, seq)| *seq);
        if let Some(due) = due {
            // Opened anew each time, as each command a user runs does.
            let archive = open_archive(&s3, "live");
            let archived = archived_sequence(&archive);
            assert!(
                archived >= due,
                "transaction 0-1-{due}, committed more than 2 s ago, is not in the object archive \
                 (it reaches 0-1-{archived}): {:?}\n{}",
                runtime().block_on(archive.files()),
                log()
            );
            checks += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    load.join().expect("load thread").expect("sysbench");
    assert!(checks >= 10, "only {checks} RPO checks ran");

    // Caught up: every file in the store is the server's.
    wait_for_quiet_binlogs(&db);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let target = sequence_of(&db.gtid_binlog_pos().expect("pos"));
    while archived_sequence(&open_archive(&s3, "live")) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the archive did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // One more checkpoint for the trailing events after the last transaction.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (_, metrics) = stream_common::http_get(&metrics_addr, "/metrics");
    let put = metric(&metrics, "binlogd_upload_bytes");
    let shipped = metric(&metrics, "binlogd_uploaded_binlog_bytes");
    let compaction = metric(&metrics, "binlogd_compaction_bytes");
    let _ = streamer.kill();
    let _ = streamer.wait();
    let total = assert_store_has_the_servers_files(&db, &open_archive(&s3, "live"));
    assert_eq!(shipped as u64, total, "every binlog byte shipped once");
    let amplification = put / shipped;
    eprintln!(
        "upload amplification with 1 s checkpoints, no compression: {put} bytes PUT for {shipped} \
         binlog bytes = {amplification:.3} ({checks} RPO checks passed); beside it, compaction \
         and whole indexes of the sealed files: {compaction} bytes = {:.3} of the binlog bytes",
        compaction / shipped
    );
    assert!(amplification <= 1.1, "amplification {amplification:.3}");
}

#[test]
fn s3_a_second_writer_is_refused_and_the_first_goes_on() {
    let db = MariaDbConfig::default().start().expect("start");
    db.write_workload(20).expect("workload");
    let s3 = start_s3();
    let first_spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let mut first = stream_command(
        &db,
        &s3,
        &format!("s3://{BUCKET}/shared"),
        first_spool.path(),
    )
    .args(["--metrics-addr", &metrics_addr])
    .stderr(std::fs::File::create(logs.path().join("first.log")).expect("log"))
    .spawn()
    .expect("spawn binlogd");
    wait_until_healthy(&metrics_addr, || {
        std::fs::read_to_string(logs.path().join("first.log")).unwrap_or_default()
    });
    let writer_id = std::fs::read_to_string(first_spool.path().join("binlogd-writer-id"))
        .expect("the first writer's id");

    let second_spool = tempfile::tempdir().expect("spool");
    let second = stream_to_s3(&db, &s3, "shared", second_spool.path(), &[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second writer was let in:\n{stderr}"
    );
    let error_line = the_error_line(&stderr);
    assert!(
        error_line.contains("is being written by") && error_line.contains(writer_id.trim()),
        "{stderr}"
    );

    // The first goes on: new transactions still reach the archive.
    db.write_workload(5).expect("more work");
    wait_for_quiet_binlogs(&db);
    let target = sequence_of(&db.gtid_binlog_pos().expect("pos"));
    let archive = open_archive(&s3, "shared");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while archived_sequence(&archive) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the first writer stopped archiving:\n{}",
            std::fs::read_to_string(logs.path().join("first.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = first.kill();
    let _ = first.wait();
}

/// A second writer whose clock is two minutes ahead reads the first writer's lease as
/// long stale. It must not take over on that reading: it watches the lease for a TTL on
/// its own clock, sees it renewed, and is refused; the first writer goes on.
#[test]
fn s3_a_second_writer_with_a_clock_two_minutes_ahead_does_not_take_a_live_lease() {
    let db = MariaDbConfig::default().start().expect("start");
    db.write_workload(20).expect("workload");
    let s3 = start_s3();
    let first_spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let first_log = logs.path().join("first.log");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let mut first = stream_command(
        &db,
        &s3,
        &format!("s3://{BUCKET}/skewed"),
        first_spool.path(),
    )
    .args(["--lease-ttl", "6", "--metrics-addr", &metrics_addr])
    .stderr(std::fs::File::create(&first_log).expect("log"))
    .spawn()
    .expect("spawn binlogd");
    wait_until_healthy(&metrics_addr, || {
        std::fs::read_to_string(&first_log).unwrap_or_default()
    });

    // The same command line, under faketime.
    let second_spool = tempfile::tempdir().expect("spool");
    let template = stream_command(
        &db,
        &s3,
        &format!("s3://{BUCKET}/skewed"),
        second_spool.path(),
    );
    let mut skewed = Command::new("faketime");
    skewed
        .args(["-f", "+2m"])
        .arg(template.get_program())
        .args(template.get_args())
        .args(["--lease-ttl", "6", "--exit-at-end"])
        .envs(
            template
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        );
    let second = skewed.output().expect("run binlogd under faketime");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        second.status.code(),
        Some(1),
        "a second writer was let in:\n{stderr}"
    );
    assert!(
        stderr.contains("watching it for its TTL") && stderr.contains("is being written by"),
        "{stderr}"
    );

    // The first goes on: it still holds the lease, and archives what comes.
    db.write_workload(5).expect("more work");
    wait_for_quiet_binlogs(&db);
    let target = sequence_of(&db.gtid_binlog_pos().expect("pos"));
    let archive = open_archive(&s3, "skewed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while archived_sequence(&archive) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the first writer stopped archiving:\n{}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        first.try_wait().expect("wait").is_none(),
        "the first writer stopped"
    );
    let log = std::fs::read_to_string(&first_log).unwrap_or_default();
    assert!(!log.contains("ERROR"), "{log}");
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn s3_a_missing_bucket_fails_at_once_with_one_clear_line() {
    let db = MariaDbConfig::default().start().expect("start");
    let s3 = start_s3();
    let spool = tempfile::tempdir().expect("spool");
    let output = stream_command(&db, &s3, "s3://no-such-bucket/x", spool.path())
        .arg("--exit-at-end")
        .output()
        .expect("run binlogd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error_line = the_error_line(&stderr);
    assert!(
        error_line.contains("s3://no-such-bucket/x") && error_line.contains("NoSuchBucket"),
        "{stderr}"
    );
}

#[test]
fn s3_sigkills_and_a_minute_without_the_store_lose_nothing() {
    let db = server_with_workload_schema(1 << 20);
    let s3 = start_s3();
    // The store is reached through a proxy that can make it vanish.
    let store_port = s3.port();
    let proxy = binlogd_testkit::TcpProxy::start(store_port).expect("proxy");
    let endpoint = format!("http://127.0.0.1:{}", proxy.port());
    let spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let log_path = logs.path().join("binlogd.log");
    let start = || {
        stream_command(&db, &s3, &format!("s3://{BUCKET}/faults"), spool.path())
            .args(["--max-retry-delay", "0.5", "--s3-endpoint", &endpoint])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .expect("log"),
            )
            .spawn()
            .expect("spawn binlogd")
    };
    let workload = stream_common::Workload::start_paced(&db, std::time::Duration::from_millis(100));
    let mut random = stream_common::Random::from_time();
    for _ in 0..8 {
        let mut streamer = start();
        std::thread::sleep(std::time::Duration::from_millis(600 + random.below(1400)));
        let _ = streamer.kill();
        let _ = streamer.wait();
    }
    let mut streamer = start();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // A minute without the store: new connections to it are refused, open ones cut.
    let dead_port = binlogd_testkit::free_port().expect("port");
    proxy.retarget(dead_port);
    std::thread::sleep(std::time::Duration::from_secs(60));
    proxy.retarget(store_port);
    std::thread::sleep(std::time::Duration::from_secs(2));
    workload.finish();
    wait_for_quiet_binlogs(&db);

    wait_until_archived(&db, &s3, "faults", 90, &log_path);
    let _ = streamer.kill();
    let _ = streamer.wait();
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "faults"));
    let verified = verify(&s3, "faults");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("uploading failed; the spool keeps the stream"),
        "the outage was not noticed:\n{log}"
    );
    assert!(
        !log.contains("ERROR") && !log.contains("panicked"),
        "binlogd log:\n{log}"
    );
}

/// A server with binlog files of at most `max_binlog_size` bytes, holding the workload's
/// schema, to be shared with a `Workload` thread.
fn server_with_workload_schema(max_binlog_size: u64) -> Arc<MariaDb> {
    let db = Arc::new(
        MariaDbConfig {
            max_binlog_size: Some(max_binlog_size),
            ..MariaDbConfig::default()
        }
        .start()
        .expect("start"),
    );
    db.write_workload(10).expect("schema");
    db
}

/// Waits (up to `seconds`) until the archive under `prefix` holds the server's newest
/// transaction, then a checkpoint more for the events after it; fails with binlogd's log.
fn wait_until_archived(db: &MariaDb, s3: &S3Server, prefix: &str, seconds: u64, log: &Path) {
    let archive = open_archive(s3, prefix);
    let target = sequence_of(&db.gtid_binlog_pos().expect("pos"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while archived_sequence(&archive) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the archive did not catch up:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

fn verify(s3: &S3Server, prefix: &str) -> Output {
    verify_with(s3, prefix, &[])
}

/// `binlogd verify` passes the archive as written, then names the file whose segment was
/// overwritten with other bytes, and exits 1.
fn assert_verify_finds_the_archive_clean_then_a_damaged_segment(
    db: &MariaDb,
    s3: &S3Server,
    prefix: &str,
) {
    let clean = verify(s3, prefix);
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let files = db.binlog_files().expect("files").len();
    assert!(
        text.contains(&format!("{files} files checked, 0 with problems")),
        "{text}"
    );

    // Replace the second file's last segment with a segment of the same length and
    // codec holding other bytes.
    let client = s3_client(s3);
    let rt = runtime();
    let listed = rt
        .block_on(
            client
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("{prefix}/0001-server1/mariadb-bin.000002/"))
                .send(),
        )
        .expect("list");
    let key = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .rfind(|k| k.contains(".seg."))
        .expect("a segment")
        .to_owned();
    let original = rt
        .block_on(client.get_object().bucket(BUCKET).key(&key).send())
        .expect("get");
    let metadata = original.metadata().cloned().unwrap_or_default();
    let length: usize = metadata["binlogd-length"].parse().expect("length");
    let mut damaged = Vec::new();
    {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::GzEncoder::new(&mut damaged, flate2::Compression::default());
        encoder.write_all(&vec![0x5a; length]).expect("gzip");
        encoder.finish().expect("gzip");
    }
    rt.block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .set_metadata(Some(metadata))
            .body(damaged.into())
            .send(),
    )
    .expect("overwrite the segment");
    let damaged = verify(s3, prefix);
    let text = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].contains("mariadb-bin.000002") && problems[0].contains("CRC32"),
        "{text}"
    );
}

/// Keys of the object archive under `prefix/sub`.
fn keys_under(s3: &S3Server, prefix: &str, sub: &str) -> Vec<String> {
    let listed = runtime()
        .block_on(
            s3_client(s3)
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("{prefix}/{sub}"))
                .send(),
        )
        .expect("list");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// `binlogd list` of an S3 archive: the files' names.
fn listed_names(s3: &S3Server, prefix: &str) -> Vec<String> {
    let output = binlogd()
        .args(["list", "--output", "json", "--archive"])
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v["file"].as_str().expect("file").to_owned()
        })
        .collect()
}

fn purge_s3(s3: &S3Server, prefix: &str, args: &[&str]) -> Output {
    binlogd()
        .args(["purge", "--output", "json", "--archive"])
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .args(args)
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd purge")
}

#[test]
fn s3_retention_deletes_old_sealed_files_in_an_order_that_survives_a_crash() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(300).expect("workload");
    let backup = db.gtid_binlog_pos().expect("pos");
    db.rotate().expect("rotate");
    // The files from here on hold transactions the backup lacks.
    let after_backup = db.binlog_names().expect("names").len() - 1;
    db.write_workload(30).expect("more");
    wait_for_quiet_binlogs(&db);
    let names = db.binlog_names().expect("names");
    assert!(after_backup >= 4, "{names:?}");
    let s3 = start_s3();
    let spool = tempfile::tempdir().expect("spool");
    let output = stream_to_s3(&db, &s3, "retention", spool.path(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(listed_names(&s3, "retention"), names);

    // A standalone purge for a backup at the second file's end.
    let first_files_end = {
        let archive = open_archive(&s3, "retention");
        let files = runtime().block_on(archive.files()).expect("files");
        match &files[1] {
            RemoteFile::Sealed(summary) => summary.gtids_after.to_string(),
            other => panic!("{other:?}"),
        }
    };
    let output = purge_s3(&s3, "retention", &["--keep-after-gtid", &first_files_end]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(listed_names(&s3, "retention"), names[2..]);
    for gone in &names[..2] {
        assert_eq!(
            keys_under(&s3, "retention", &format!("0001-server1/{gone}/")),
            Vec::<String>::new()
        );
    }
    assert!(verify(&s3, "retention").status.success());

    // A purge that stopped after taking a file out of the catalogue: the file is not
    // listed (not even as an unsealed one), and the next purge deletes its objects.
    let client = s3_client(&s3);
    let rt = runtime();
    let catalogue_key = "retention/catalogue.json";
    let body = rt
        .block_on(client.get_object().bucket(BUCKET).key(catalogue_key).send())
        .expect("get");
    let body = rt.block_on(body.body.collect()).expect("read").into_bytes();
    let mut catalogue: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let entry = catalogue["files"].as_array_mut().expect("files").remove(0);
    catalogue["purging"] = serde_json::json!([{"epoch": entry["epoch"], "name": entry["name"]}]);
    rt.block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(catalogue_key)
            .body(serde_json::to_vec(&catalogue).expect("JSON").into())
            .send(),
    )
    .expect("put");
    let half_purged = &names[2];
    assert_eq!(listed_names(&s3, "retention"), names[3..]);
    assert!(!keys_under(&s3, "retention", &format!("0001-server1/{half_purged}/")).is_empty());
    let output = purge_s3(&s3, "retention", &["--keep-after-gtid", &first_files_end]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        keys_under(&s3, "retention", &format!("0001-server1/{half_purged}/")),
        Vec::<String>::new()
    );

    // A stream with --keep-after-gtid purges as it goes, and a standalone purge is
    // refused meanwhile: the stream owns the catalogue.
    let logs = tempfile::tempdir().expect("logs");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let log_path = logs.path().join("binlogd.log");
    let mut streamer = KillOnDrop(
        stream_command(&db, &s3, &format!("s3://{BUCKET}/retention"), spool.path())
            .args(["--metrics-addr", &metrics_addr])
            .args(["--keep-after-gtid", &backup, "--purge-interval", "0.2"])
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("spawn binlogd"),
    );
    wait_until_healthy(&metrics_addr, || {
        std::fs::read_to_string(&log_path).unwrap_or_default()
    });
    let refused = purge_s3(&s3, "retention", &["--retention", "1s"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{stderr}{}\n{}",
        String::from_utf8_lossy(&refused.stdout),
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert!(
        the_error_line(&stderr).contains("a binlogd stream writes this archive"),
        "{stderr}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while listed_names(&s3, "retention") != names[after_backup..] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            listed_names(&s3, "retention"),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &streamer.0.id().to_string()])
        .status();
    assert!(streamer.0.wait().expect("wait").success());
    assert!(verify(&s3, "retention").status.success());
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("retention: deleted old files from the object archive"),
        "{log}"
    );
}

/// A child process killed (and reaped) if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn s3_client_side_encryption_round_trips_and_a_wrong_or_missing_key_is_one_clear_line() {
    let db = server_with_300_transactions_in_16k_files();
    let s3 = start_s3();
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("archive.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).expect("key");
    let other_key = keys.path().join("other.key");
    std::fs::write(&other_key, [7u8; 32]).expect("key");
    let key_arg = key_file.display().to_string();
    let spool = tempfile::tempdir().expect("spool");
    // No compression, so that plain text would show in the objects if it were there.
    let output = stream_to_s3(
        &db,
        &s3,
        "encrypted",
        spool.path(),
        &["--compression", "none", "--encryption-key-file", &key_arg],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Read back with the key: the server's files, byte for byte.
    let key = binlogd_storage::remote::crypt::ClientKey::from_file(&key_file).expect("key");
    let archive = open_archive_with_key(&s3, "encrypted", Some(key.clone()));
    assert_store_has_the_servers_files(&db, &archive);
    // The objects hold no plain text: the workload's table name is in every file's rows.
    let client = s3_client(&s3);
    let rt = runtime();
    let segments: Vec<String> = keys_under(&s3, "encrypted", "0001-server1/")
        .into_iter()
        .filter(|k| k.contains(".seg."))
        .collect();
    assert!(segments.len() > 5);
    for segment in &segments {
        let object = rt
            .block_on(client.get_object().bucket(BUCKET).key(segment).send())
            .expect("get");
        let metadata = object.metadata().cloned().unwrap_or_default();
        assert_eq!(metadata["binlogd-encryption"], "aes-256-gcm");
        assert_eq!(metadata["binlogd-key-check"], key.check());
        let body = rt
            .block_on(object.body.collect())
            .expect("body")
            .into_bytes();
        assert!(
            !body.windows(b"workload".len()).any(|w| w == b"workload"),
            "{segment} holds plain text"
        );
    }
    // Manifests record it, so readers know what they need.
    let manifest = manifest_of(&s3, "encrypted", "mariadb-bin.000001");
    assert_eq!(manifest["encryption"]["client"], "aes-256-gcm");
    assert_eq!(manifest["encryption"]["key_check"], key.check());

    // verify with the key is clean; without it, or with another, one line says why.
    let clean = verify_with(&s3, "encrypted", &["--encryption-key-file", &key_arg]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let without = verify_with(&s3, "encrypted", &[]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&without.stdout)
            .contains("give the key with --encryption-key-file"),
        "{}",
        String::from_utf8_lossy(&without.stdout)
    );
    let wrong = verify_with(
        &s3,
        "encrypted",
        &["--encryption-key-file", &other_key.display().to_string()],
    );
    assert_eq!(wrong.status.code(), Some(1));
    // The catalogue, authenticated with the archive's key, is the first thing to say so.
    let said = output_text(&wrong);
    assert!(
        said.contains("with another key") && said.contains(key.check()),
        "{said}"
    );
    // Planning needs no key: the indexes are in the clear.
    assert_search_plans_from_the_catalogue(&db, &s3, "encrypted");

    // Going on with another key, or none, is refused before anything is written.
    db.write_workload(5).expect("more");
    for extra in [
        vec!["--encryption-key-file", other_key.to_str().expect("path")],
        vec![],
    ] {
        let output = stream_to_s3(&db, &s3, "encrypted", spool.path(), &extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let line = the_error_line(&stderr);
        assert!(line.contains("encrypted"), "{stderr}");
    }

    // Someone who may write to the bucket but has no key swaps a segment for one in
    // clear: a reader with the key refuses it.
    let forged = "CREATE USER intruder".as_bytes();
    rt.block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(&segments[0])
            .body(forged.to_vec().into())
            .metadata("binlogd-length", forged.len().to_string())
            .metadata("binlogd-crc32", format!("{:08x}", crc32fast::hash(forged)))
            .send(),
    )
    .expect("put the forged segment");
    let refused = verify_with(&s3, "encrypted", &["--encryption-key-file", &key_arg]);
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("not encrypted, though a key was given"),
        "{said}"
    );
}

/// A MariaDB whose binlog holds 300 workload transactions in files of about 16 KiB.
fn server_with_300_transactions_in_16k_files() -> MariaDb {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(300).expect("workload");
    wait_for_quiet_binlogs(&db);
    db
}

/// Runs `binlogd verify` on an S3 archive with extra arguments.
fn verify_with(s3: &S3Server, prefix: &str, extra: &[&str]) -> Output {
    binlogd()
        .args(["verify", "--archive"])
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .args(extra)
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd verify")
}

/// The JSON manifest of a file.
fn manifest_of(s3: &S3Server, prefix: &str, file: &str) -> serde_json::Value {
    let rt = runtime();
    let object = rt
        .block_on(
            s3_client(s3)
                .get_object()
                .bucket(BUCKET)
                .key(format!("{prefix}/0001-server1/{file}/manifest.json"))
                .send(),
        )
        .expect("manifest");
    let body = rt
        .block_on(object.body.collect())
        .expect("body")
        .into_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

#[test]
fn s3_server_side_encryption_is_asked_for_recorded_and_needed_to_read() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(200).expect("workload");
    wait_for_quiet_binlogs(&db);
    let s3 = start_s3();
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("sse-c.key");
    std::fs::write(&key_file, [0x42u8; 32]).expect("key");
    let wrong_key = keys.path().join("wrong.key");
    std::fs::write(&wrong_key, [0x43u8; 32]).expect("key");
    let key_arg = key_file.display().to_string();

    // SSE-C: the store encrypts segments with our key; reading needs it.
    let spool = tempfile::tempdir().expect("spool");
    let output = stream_to_s3(
        &db,
        &s3,
        "sse-c",
        spool.path(),
        &["--sse-c-key-file", &key_arg],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = manifest_of(&s3, "sse-c", "mariadb-bin.000001");
    assert_eq!(manifest["encryption"]["server"]["mode"], "sse-c");
    assert_eq!(
        manifest["encryption"]["server"]["key"],
        binlogd_storage::remote::s3::customer_key_md5(&[0x42; 32])
    );
    let clean = verify_with(&s3, "sse-c", &["--sse-c-key-file", &key_arg]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let store = S3Store::with_client(
        s3_client(&s3),
        format!("s3://{BUCKET}/sse-c").parse().expect("url"),
    )
    .with_server_side(Some(
        binlogd_storage::remote::s3::ServerSideEncryption::CustomerKey([0x42; 32]),
    ));
    let archive = runtime()
        .block_on(RemoteArchive::open(Arc::new(store), None))
        .expect("open");
    assert_store_has_the_servers_files(&db, &archive);
    // Going on with another SSE-C key, or none, is refused before anything is written.
    for extra in [
        vec!["--sse-c-key-file", wrong_key.to_str().expect("path")],
        vec![],
    ] {
        let output = stream_to_s3(&db, &s3, "sse-c", spool.path(), &extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(the_error_line(&stderr).contains("SSE-C"), "{stderr}");
    }
    // The store holds the segments as SSE-C objects.
    let segment = keys_under(&s3, "sse-c", "0001-server1/mariadb-bin.000001/")
        .into_iter()
        .find(|k| k.contains(".seg."))
        .expect("a segment");
    let (algorithm, encoded, md5) = {
        use base64::Engine;
        let key = [0x42u8; 32];
        (
            "AES256",
            base64::engine::general_purpose::STANDARD.encode(key),
            binlogd_storage::remote::s3::customer_key_md5(&key),
        )
    };
    // (moto stores the headers but neither checks keys nor reports them on reads.)
    let is_garage = s3.kind() == binlogd_testkit::S3Kind::Garage;
    let got = runtime()
        .block_on(
            s3_client(&s3)
                .get_object()
                .bucket(BUCKET)
                .key(&segment)
                .sse_customer_algorithm(algorithm)
                .sse_customer_key(encoded)
                .sse_customer_key_md5(md5)
                .send(),
        )
        .expect("get");
    if is_garage {
        assert_eq!(got.sse_customer_algorithm(), Some("AES256"));
    }
    // list and search need no key.
    assert_search_plans_from_the_catalogue(&db, &s3, "sse-c");
    if is_garage {
        // Garage enforces SSE-C.
        for (extra, hint) in [
            (vec![], "give --sse-c-key-file"),
            (
                vec!["--sse-c-key-file", wrong_key.to_str().expect("path")],
                "the key this segment was written with",
            ),
        ] {
            let refused = verify_with(&s3, "sse-c", &extra);
            let stdout = String::from_utf8_lossy(&refused.stdout);
            assert_eq!(refused.status.code(), Some(1), "{stdout}");
            assert!(stdout.contains(hint), "{stdout}");
        }
    }

    // SSE-KMS: asked for on every object, recorded, and transparent to readers.
    let spool = tempfile::tempdir().expect("spool");
    let output = stream_to_s3(
        &db,
        &s3,
        "sse-kms",
        spool.path(),
        &["--sse-kms", "--sse-kms-key-id", "alias/binlogd-test"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if is_garage {
        // Garage takes the SSE-KMS headers and stores objects in the clear: binlogd finds
        // out at start and refuses, rather than promise encryption it does not get.
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            the_error_line(&stderr).contains("the store does not apply SSE-KMS"),
            "{stderr}"
        );
        return;
    }
    assert!(output.status.success(), "{stderr}");
    let manifest = manifest_of(&s3, "sse-kms", "mariadb-bin.000001");
    assert_eq!(manifest["encryption"]["server"]["mode"], "aws:kms");
    assert_eq!(
        manifest["encryption"]["server"]["key"],
        "alias/binlogd-test"
    );
    for key in keys_under(&s3, "sse-kms", "") {
        let head = runtime()
            .block_on(s3_client(&s3).head_object().bucket(BUCKET).key(&key).send())
            .expect("head");
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
    }
    assert!(verify_with(&s3, "sse-kms", &[]).status.success());
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "sse-kms"));
}

#[test]
fn s3_errors_and_slow_responses_from_the_store_lose_nothing() {
    let db = server_with_workload_schema(256 << 10);
    let s3 = start_s3();
    let store_port = s3.port();
    // One request in three answered 503 Slow Down, one response in five held back 1.5 s.
    let proxy = binlogd_testkit::HttpFaultProxy::start(
        store_port,
        binlogd_testkit::Faults {
            fail_one_in: 3,
            slow_one_in: 5,
            slow_by: std::time::Duration::from_millis(1500),
        },
    )
    .expect("proxy");
    let endpoint = proxy.endpoint();
    let spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let log_path = logs.path().join("binlogd.log");
    let streamer = KillOnDrop(
        stream_command(&db, &s3, &format!("s3://{BUCKET}/flaky"), spool.path())
            .args(["--s3-endpoint", &endpoint])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("spawn binlogd"),
    );
    let workload = stream_common::Workload::start_paced(&db, std::time::Duration::from_millis(10));
    std::thread::sleep(std::time::Duration::from_secs(10));
    workload.finish();
    wait_for_quiet_binlogs(&db);
    let (failed, slowed, requests) = (proxy.failed(), proxy.slowed(), proxy.requests());
    // The store recovers; the spool drains.
    proxy.set_faults(binlogd_testkit::Faults::default());
    wait_until_archived(&db, &s3, "flaky", 60, &log_path);
    drop(streamer);
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "flaky"));
    assert!(verify(&s3, "flaky").status.success());
    eprintln!("{requests} requests through the proxy: {failed} answered 503, {slowed} slowed");
    assert!(
        failed >= 5 && slowed >= 2,
        "{failed} failed, {slowed} slowed"
    );
    assert!(
        db.binlog_names().expect("names").len() >= 3,
        "the workload rotated"
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log.contains("panicked") && !log.contains("ERROR"), "{log}");
}

#[test]
fn s3_credentials_that_stop_working_end_the_stream_with_one_line_and_lose_nothing() {
    let mut s3 = start_s3();
    if s3.kind() != binlogd_testkit::S3Kind::Garage {
        // Not silent: moto accepts any credentials, so only the Garage run can revoke them
        // (scripts/test runs every S3 test against Garage too).
        eprintln!("skipped with moto, which does not check credentials");
        return;
    }
    let db = MariaDbConfig::default().start().expect("start");
    db.write_workload(50).expect("workload");
    let spool = tempfile::tempdir().expect("spool");
    let logs = tempfile::tempdir().expect("logs");
    let log_path = logs.path().join("binlogd.log");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let mut streamer = KillOnDrop(
        stream_command(&db, &s3, &format!("s3://{BUCKET}/creds"), spool.path())
            .args(["--metrics-addr", &metrics_addr])
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("spawn binlogd"),
    );
    wait_until_healthy(&metrics_addr, || {
        std::fs::read_to_string(&log_path).unwrap_or_default()
    });
    let old_env = s3.aws_env();
    s3.rotate_credentials(BUCKET)
        .expect("revoke the credentials");
    db.write_workload(50)
        .expect("more work, which only the spool can take");

    // The next upload is refused: binlogd stops with one line naming the problem.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = streamer.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binlogd kept running on refused credentials:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{log}");
    let line = the_error_line(&log);
    eprintln!("with revoked credentials: {line}");
    assert!(
        line.contains("InvalidAccessKeyId")
            || line.contains("AccessDenied")
            || line.contains("Forbidden"),
        "{log}"
    );
    // Readers with the old credentials: one line too.
    let listed = binlogd()
        .args(["list", "--archive", &format!("s3://{BUCKET}/creds")])
        .envs(old_env)
        .output()
        .expect("run binlogd list");
    assert_eq!(listed.status.code(), Some(1));
    the_error_line(&String::from_utf8_lossy(&listed.stderr));

    // Nothing was lost: with working credentials the spool goes up, and the archive is the
    // server's files.
    wait_for_quiet_binlogs(&db);
    let output = stream_to_s3(&db, &s3, "creds", spool.path(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "creds"));
}

/// `binlogd upload` on the spool of a stream killed before its next checkpoint: refused
/// while the stream runs, then everything goes up, and a second run finds nothing to do.
#[test]
fn s3_upload_pushes_what_a_killed_streams_spool_holds() {
    let db = server_with_workload_schema(64 << 10);
    let s3 = start_s3();
    let (streamer, spool, newest) = stream_with_a_backlog(&db, &s3, "killed", 300);
    let upload = |extra: &[&str]| {
        binlogd()
            .args(["upload", "--spool-dir"])
            .arg(spool.path())
            .args(["--archive", &format!("s3://{BUCKET}/killed")])
            .args(extra)
            .envs(s3.aws_env())
            .output()
            .expect("run binlogd upload")
    };
    let refused = upload(&[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        the_error_line(&stderr).contains("another binlogd (stream or upload) is writing"),
        "{stderr}"
    );
    drop(streamer);
    let target = sequence_of(&newest);
    assert!(
        archived_sequence(&open_archive(&s3, "killed")) < target,
        "the store already had everything: the test shows nothing"
    );
    // As a SIGKILL between writing the data and indexing it leaves the spool: the newest
    // file's last transactions are in the file, not in its index.
    let unindexed = drop_last_index_lines(spool.path(), 3);
    assert_eq!(
        unindexed, 3,
        "the newest spooled file had too few transactions"
    );

    // The store away: exit 1, and the spool keeps what it holds.
    let dead = format!(
        "http://127.0.0.1:{}",
        binlogd_testkit::free_port().expect("port")
    );
    let away = upload(&["--s3-endpoint", &dead, "--patience", "3"]);
    assert_eq!(away.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&away.stderr);
    let line = the_error_line(&stderr);
    assert!(
        line.contains("the spool") && line.contains("keeps everything"),
        "{line}"
    );
    assert!(
        stderr.contains("does not answer; retrying"),
        "--patience: {stderr}"
    );

    let uploaded = upload(&[]);
    let stdout = String::from_utf8_lossy(&uploaded.stdout);
    assert!(
        uploaded.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    assert!(
        stdout.contains("everything the spool holds is in the store"),
        "{stdout}"
    );
    assert_eq!(archived_sequence(&open_archive(&s3, "killed")), target);
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "killed"));
    let verified = verify(&s3, "killed");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let again = upload(&[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && stdout.starts_with("uploaded 0 binlog bytes"),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// A writer whose checkpoint takes longer than its lease's TTL (a large backlog through a
/// slow store) keeps the lease: a second writer arriving after the TTL is refused, and the
/// first one finishes.
#[test]
fn s3_a_checkpoint_longer_than_the_lease_keeps_it() {
    let db = server_with_workload_schema(64 << 10);
    let s3 = start_s3();
    let prefix = "long-checkpoint";
    let (streamer, spool, _) = stream_with_a_backlog(&db, &s3, prefix, 400);
    drop(streamer);
    let logs = tempfile::tempdir().expect("logs");

    // Every response from the store 1 s late: the upload takes many times its 9 s lease
    // (which must exceed a renewal's own two slow round trips, read and write, and the
    // third of it between renewals).
    let proxy = binlogd_testkit::HttpFaultProxy::start(
        s3.port(),
        binlogd_testkit::Faults {
            fail_one_in: 0,
            slow_one_in: 1,
            slow_by: std::time::Duration::from_secs(1),
        },
    )
    .expect("proxy");
    let began = std::time::Instant::now();
    let mut upload = KillOnDrop(
        binlogd()
            .args(["upload", "--lease-ttl", "9", "--spool-dir"])
            .arg(spool.path())
            .args(["--archive", &format!("s3://{BUCKET}/{prefix}")])
            .args(["--s3-endpoint", &proxy.endpoint()])
            .envs(s3.aws_env())
            .stdout(std::fs::File::create(logs.path().join("upload.out")).expect("out"))
            .stderr(std::fs::File::create(logs.path().join("upload.log")).expect("log"))
            .spawn()
            .expect("spawn binlogd upload"),
    );
    // Once the upload has held the lease for well over its TTL, a second writer comes.
    let lease_key = format!("{prefix}/lease.json");
    let client = s3.client();
    let rt = runtime();
    let lease_taken = || {
        rt.block_on(client.head_object().bucket(BUCKET).key(&lease_key).send())
            .is_ok_and(|head| {
                head.last_modified()
                    .is_some_and(|at| at.secs() >= began_unix(began))
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lease_taken() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload took no lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(14));
    assert!(
        upload.0.try_wait().expect("wait").is_none(),
        "the upload ended before the second writer came: the test shows nothing"
    );
    let second_spool = tempfile::tempdir().expect("spool");
    let second = stream_to_s3(&db, &s3, prefix, second_spool.path(), &["--lease-ttl", "9"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        the_error_line(&stderr).contains("is being written by"),
        "the lease was taken over mid-upload: {stderr}"
    );
    // The rest goes up at full speed.
    proxy.set_faults(binlogd_testkit::Faults::default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let status = loop {
        if let Some(status) = upload.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let read = |name: &str| std::fs::read_to_string(logs.path().join(name)).unwrap_or_default();
    assert!(
        status.success(),
        "{}{}",
        read("upload.out"),
        read("upload.log")
    );
    eprintln!(
        "the upload took {:.1} s through the slow store, with a 9 s lease",
        began.elapsed().as_secs_f64()
    );
    assert_store_has_the_servers_files(&db, &open_archive(&s3, prefix));
}

/// The Unix second at `began` (an Instant taken now-ish).
fn began_unix(began: std::time::Instant) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    now - began.elapsed().as_secs() as i64 - 1
}

/// A stream into `s3://BUCKET/prefix` that uploaded once at its start and will not again
/// for an hour, after `transactions` more: its spool holds them, the store does not. Returns
/// the running stream, its spool and the server's newest GTID.
/// Removes the last `n` transaction lines from the index of the newest file of the
/// newest epoch of `spool`; returns how many it removed.
fn drop_last_index_lines(spool: &Path, n: usize) -> usize {
    let mut epochs: Vec<_> = std::fs::read_dir(spool)
        .expect("spool")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    epochs.sort();
    let epoch = epochs.last().expect("an epoch");
    let mut indexes: Vec<_> = std::fs::read_dir(epoch)
        .expect("epoch")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".index.jsonl"))
        .collect();
    indexes.sort();
    let index = indexes.last().expect("an index");
    let text = std::fs::read_to_string(index).expect("index");
    let mut lines: Vec<&str> = text.lines().collect();
    let mut removed = 0;
    while removed < n {
        match lines
            .iter()
            .rposition(|l| l.contains("\"record\":\"transaction\""))
        {
            Some(at) => {
                lines.remove(at);
                removed += 1;
            }
            None => break,
        }
    }
    std::fs::write(index, lines.join("\n") + "\n").expect("write");
    removed
}

fn stream_with_a_backlog(
    db: &MariaDb,
    s3: &S3Server,
    prefix: &str,
    transactions: usize,
) -> (KillOnDrop, tempfile::TempDir, String) {
    let spool = tempfile::tempdir().expect("spool");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let streamer = KillOnDrop(
        stream_command(db, s3, &format!("s3://{BUCKET}/{prefix}"), spool.path())
            .args(["--checkpoint-interval", "3600", "--checkpoint-size", "1GiB"])
            .args(["--metrics-addr", &metrics_addr])
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("spawn binlogd"),
    );
    let read_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    wait_until_healthy(&metrics_addr, read_log);
    db.write_workload(transactions).expect("workload");
    wait_for_quiet_binlogs(db);
    let newest = db.gtid_binlog_pos().expect("pos");
    let spooled = format!("binlogd_last_archived_gtid{{gtid=\"{newest}\"}}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !stream_common::http_get(&metrics_addr, "/metrics")
        .1
        .contains(&spooled)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not spooled:\n{}",
            read_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (streamer, spool, newest)
}

/// What a batch of parallel uploads leaves when one PUT fails and the batch is retried,
/// cut anew: a shorter segment beside the longer one that replaced it, both starting at
/// the same offset. Readers take each byte from the segment that reaches furthest, and
/// see no hole.
#[test]
fn s3_a_shorter_segment_left_beside_its_retried_one_is_no_hole() {
    let db = server_with_workload_schema(64 << 10);
    let s3 = start_s3();
    db.write_workload(100).expect("workload");
    let spool = tempfile::tempdir().expect("spool");
    let output = stream_to_s3(
        &db,
        &s3,
        "overlap",
        spool.path(),
        &[
            "--segment-size",
            "4KiB",
            "--max-parallel",
            "4",
            "--compression",
            "none",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A segment in the middle of the first file, and the leftover of its first try.
    let segments: Vec<String> = keys_under(&s3, "overlap", "0001-server1/mariadb-bin.000001/")
        .into_iter()
        .filter(|k| k.ends_with(".seg.raw"))
        .collect();
    assert!(segments.len() > 3, "{segments:?}");
    let chosen = &segments[segments.len() / 2];
    let leaf = chosen.rsplit('/').next().expect("leaf");
    let (start, end) = leaf
        .split_once(".seg")
        .and_then(|(range, _)| range.split_once('-'))
        .map(|(a, b)| {
            (
                a.parse::<u64>().expect("start"),
                b.parse::<u64>().expect("end"),
            )
        })
        .expect("a segment key");
    assert!(start > 0 && end - start > 100, "{chosen}");
    let client = s3_client(&s3);
    let rt = runtime();
    let object = rt
        .block_on(client.get_object().bucket(BUCKET).key(chosen).send())
        .expect("get");
    let body = rt
        .block_on(object.body.collect())
        .expect("body")
        .into_bytes();
    let stale = &body[..50];
    let stale_key = format!(
        "overlap/{}",
        binlogd_storage::remote::keys::segment(
            "0001-server1",
            "mariadb-bin.000001",
            start,
            start + 50,
            binlogd_storage::remote::keys::Codec::Raw,
        )
    );
    rt.block_on(
        client
            .put_object()
            .bucket(BUCKET)
            .key(&stale_key)
            .body(stale.to_vec().into())
            .metadata("binlogd-length", "50")
            .metadata("binlogd-crc32", format!("{:08x}", crc32fast::hash(stale)))
            .send(),
    )
    .expect("put the leftover");
    assert_store_has_the_servers_files(&db, &open_archive(&s3, "overlap"));
    let verified = verify(&s3, "overlap");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// An object of the S3 archive as stored: its bytes and user metadata.
fn raw_object(s3: &S3Server, key: &str) -> (Vec<u8>, std::collections::HashMap<String, String>) {
    let rt = runtime();
    let object = rt
        .block_on(s3_client(s3).get_object().bucket(BUCKET).key(key).send())
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    let metadata = object.metadata().cloned().unwrap_or_default();
    let body = rt
        .block_on(object.body.collect())
        .expect("body")
        .into_bytes()
        .to_vec();
    (body, metadata)
}

/// Stores an object as someone with write access to the bucket would.
fn put_raw_object(
    s3: &S3Server,
    key: &str,
    body: Vec<u8>,
    metadata: &std::collections::HashMap<String, String>,
) {
    runtime()
        .block_on(
            s3_client(s3)
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .set_metadata(Some(metadata.clone()))
                .send(),
        )
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn s3_with_a_key_a_truncated_file_forged_into_the_catalogue_or_index_is_refused() {
    // Someone who may write to the bucket, but has no key, cuts the tail off a file: they
    // delete its last segment and make the catalogue agree (size and CRC32 of what is left,
    // which they can work out from the database). Encrypted segments alone cannot show
    // that; the catalogue's and manifests' MACs must.
    let db = server_with_300_transactions_in_16k_files();
    let s3 = start_s3();
    let keys = tempfile::tempdir().expect("keys");
    let key_file = keys.path().join("archive.key");
    std::fs::write(&key_file, "3c".repeat(32)).expect("key");
    let key_arg = key_file.display().to_string();
    let spool = tempfile::tempdir().expect("spool");
    let prefix = "authentic";
    let output = stream_to_s3(
        &db,
        &s3,
        prefix,
        spool.path(),
        &["--encryption-key-file", &key_arg, "--segment-size", "4KiB"],
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let with_key = ["--encryption-key-file", key_arg.as_str()];
    let clean = verify_with(&s3, prefix, &with_key);
    assert!(clean.status.success(), "{}", output_text(&clean));

    // The cut: file 000002 loses its last segment, the catalogue is made to agree.
    let file = "mariadb-bin.000002";
    let manifest = manifest_of(&s3, prefix, file);
    let segments = manifest["segments"].as_array().expect("segments");
    assert!(segments.len() >= 3, "{manifest}");
    let last = &segments[segments.len() - 1];
    let cut_at = last["start"].as_u64().expect("start");
    let server_bytes = std::fs::read(db.binlog_dir().join(file)).expect("server's file");
    let catalogue_key = format!("{prefix}/catalogue.json");
    let (genuine_catalogue, genuine_metadata) = raw_object(&s3, &catalogue_key);
    let mut forged: serde_json::Value =
        serde_json::from_slice(&genuine_catalogue).expect("catalogue JSON");
    for entry in forged["files"].as_array_mut().expect("files") {
        if entry["name"] == file {
            entry["size"] = cut_at.into();
            entry["crc32"] =
                format!("{:08x}", crc32fast::hash(&server_bytes[..cut_at as usize])).into();
        }
    }
    let forged = serde_json::to_vec(&forged).expect("JSON");
    let last_key = format!("{prefix}/{}", last["key"].as_str().expect("key"));
    let (last_body, last_metadata) = raw_object(&s3, &last_key);
    runtime()
        .block_on(
            s3_client(&s3)
                .delete_object()
                .bucket(BUCKET)
                .key(&last_key)
                .send(),
        )
        .expect("delete");
    put_raw_object(&s3, &catalogue_key, forged.clone(), &Default::default());
    let refused = verify_with(&s3, prefix, &with_key);
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("catalogue.json") && said.contains("not authenticated"),
        "{said}"
    );
    // Without the key nothing can be checked, and list still works (the documented
    // trade: planning needs no key).
    assert!(listed_names(&s3, prefix).contains(&file.to_owned()));

    // The same forgery with the genuine catalogue's MAC copied onto it.
    put_raw_object(&s3, &catalogue_key, forged, &genuine_metadata);
    let refused = verify_with(&s3, prefix, &with_key);
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("authentication failed"), "{said}");

    // The genuine catalogue back, the segment still gone: the manifest names it.
    put_raw_object(&s3, &catalogue_key, genuine_catalogue, &genuine_metadata);
    let refused = verify_with(&s3, prefix, &with_key);
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains(file) && said.contains(last["key"].as_str().expect("key")),
        "{said}"
    );
    put_raw_object(&s3, &last_key, last_body, &last_metadata);
    let clean = verify_with(&s3, prefix, &with_key);
    assert!(clean.status.success(), "{}", output_text(&clean));

    // A manifest that skips a segment (the reader would otherwise take the file from the
    // listing, or from whatever the manifest names).
    let manifest_key = format!("{prefix}/0001-server1/{file}/manifest.json");
    let (genuine_manifest, manifest_metadata) = raw_object(&s3, &manifest_key);
    let mut shorter = manifest.clone();
    shorter["segments"].as_array_mut().expect("segments").pop();
    shorter["size"] = cut_at.into();
    put_raw_object(
        &s3,
        &manifest_key,
        serde_json::to_vec(&shorter).expect("JSON"),
        &manifest_metadata,
    );
    let refused = verify_with(&s3, prefix, &with_key);
    let said = output_text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("manifest.json") && said.contains("authentication failed"),
        "{said}"
    );
    put_raw_object(&s3, &manifest_key, genuine_manifest, &manifest_metadata);

    // A sealed file's index chunk swapped for another file's: both genuine, but not for
    // this key.
    let index_keys: Vec<String> = keys_under(&s3, prefix, "0001-server1/")
        .into_iter()
        .filter(|k| k.contains("/index-"))
        .collect();
    let of_file = |name: &str| {
        index_keys
            .iter()
            .find(|k| k.contains(&format!("/{name}/")))
            .expect("an index object")
            .clone()
    };
    let (victim, donor) = (of_file("mariadb-bin.000003"), of_file(file));
    let (donor_body, donor_metadata) = raw_object(&s3, &donor);
    let (victim_body, victim_metadata) = raw_object(&s3, &victim);
    put_raw_object(&s3, &victim, donor_body, &donor_metadata);
    let key = binlogd_storage::remote::crypt::ClientKey::from_file(&key_file).expect("key");
    let archive = open_archive_with_key(&s3, prefix, Some(key.clone()));
    let victim_leaf = victim.trim_start_matches(&format!("{prefix}/"));
    let mut parts = victim_leaf.split('/');
    let (epoch, name) = (parts.next().expect("epoch"), parts.next().expect("name"));
    let err = runtime()
        .block_on(archive.file_index(epoch, name))
        .expect_err("a moved index object");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    put_raw_object(&s3, &victim, victim_body, &victim_metadata);
    runtime()
        .block_on(archive.file_index(epoch, name))
        .expect("the genuine index object");

    // A writer without the key may not replace the authenticated catalogue.
    let archive = open_archive(&s3, prefix);
    let (mut catalogue, mut version) = archive.catalogue_for_update();
    catalogue.files.pop();
    let err = runtime()
        .block_on(binlogd_storage::remote::catalogue::write(
            archive.store().as_ref(),
            &catalogue,
            &mut version,
            None,
        ))
        .expect_err("no key");
    assert!(err.to_string().contains("--encryption-key-file"), "{err}");
    let clean = verify_with(&s3, prefix, &with_key);
    assert!(clean.status.success(), "{}", output_text(&clean));
}

#[test]
fn s3_a_catalogue_write_over_a_version_it_did_not_read_changes_nothing() {
    // A writer that read the catalogue, then paused past its lease while another writer
    // went on, must not put its stale copy back over the other's.
    let s3 = start_s3();
    let rt = runtime();
    let mut store = S3Store::with_client(
        s3_client(&s3),
        format!("s3://{BUCKET}/fenced").parse().expect("url"),
    );
    rt.block_on(store.probe()).expect("probe");
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    use binlogd_storage::remote::catalogue;
    let (none, mut first) = rt
        .block_on(catalogue::read(store.as_ref(), None))
        .expect("read");
    assert!(none.is_none());
    let mut second = first.clone();
    let mut written = binlogd_storage::remote::format::Catalogue {
        version: 1,
        ..Default::default()
    };
    rt.block_on(catalogue::write(store.as_ref(), &written, &mut first, None))
        .expect("the first write");
    // `second` read before the first write: both "create if absent" and "replace if
    // unchanged" must fail for it.
    written
        .purging
        .push(binlogd_storage::remote::format::FileRef {
            epoch: "0001-server1".into(),
            name: "stale".into(),
        });
    let conditions = store.honours_conditions();
    let result = rt.block_on(catalogue::write(
        store.as_ref(),
        &written,
        &mut second,
        None,
    ));
    let (now, _) = rt
        .block_on(catalogue::read(store.as_ref(), None))
        .expect("read");
    if conditions {
        let err = result.expect_err("stale");
        assert!(
            err.to_string()
                .contains("changed since this writer read it"),
            "{err}"
        );
        assert!(now.expect("catalogue").purging.is_empty(), "overwritten");
        // A writer that read the current version goes on.
        let (_, mut current) = rt
            .block_on(catalogue::read(store.as_ref(), None))
            .expect("read");
        rt.block_on(catalogue::write(
            store.as_ref(),
            &written,
            &mut current,
            None,
        ))
        .expect("a write over the version read");
        let err = rt
            .block_on(catalogue::write(store.as_ref(), &written, &mut first, None))
            .expect_err("stale");
        assert!(err.to_string().contains("changed since"), "{err}");
    } else {
        // Garage ignores conditional writes: the lease alone guards it there.
        result.expect("an unconditional write");
        assert_eq!(
            s3.kind(),
            binlogd_testkit::S3Kind::Garage,
            "only Garage ignores them"
        );
    }
}
