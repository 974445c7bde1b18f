//! `binlogd stream` into an S3 archive, against a real MariaDB and a real S3-compatible
//! server from the harness (moto, or Garage with `BINLOGD_TEST_S3=garage`): the files read
//! back from the store are the server's, byte for byte, for every compression.

mod stream_common;

use binlogd_storage::remote::read::{ArchivedFile, RemoteArchive};
use binlogd_storage::remote::s3::S3Store;
use binlogd_storage::remote::store::ObjectStore;
use binlogd_testkit::{MariaDb, MariaDbConfig, S3Server};
use std::path::Path;
use std::process::Output;
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
    let credentials = aws_sdk_s3::config::Credentials::new(
        s3.access_key(),
        s3.secret_key(),
        None,
        None,
        "binlogd-test",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(s3.region().to_owned()))
        .endpoint_url(s3.endpoint())
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn start_s3() -> S3Server {
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    runtime()
        .block_on(s3_client(&s3).create_bucket().bucket(BUCKET).send())
        .expect("create the bucket");
    s3
}

/// `binlogd stream --exit-at-end` into `s3://BUCKET/prefix`.
fn stream_to_s3(db: &MariaDb, s3: &S3Server, prefix: &str, spool: &Path, extra: &[&str]) -> Output {
    binlogd()
        .args(["stream", "--exit-at-end", "--no-progress", "--source"])
        .arg(db.replication_url())
        .arg("--archive")
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .arg("--spool-dir")
        .arg(spool)
        .args(extra)
        .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd")
}

/// The archive under `prefix`, read through the storage crate as any reader would.
fn open_archive(s3: &S3Server, prefix: &str) -> RemoteArchive {
    let store = S3Store::with_client(
        s3_client(s3),
        format!("s3://{BUCKET}/{prefix}").parse().expect("url"),
    );
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    runtime()
        .block_on(RemoteArchive::open(store))
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
    let sealed = files
        .iter()
        .filter(|f| matches!(f, ArchivedFile::Sealed(_)))
        .count();
    assert_eq!(
        sealed,
        files.len() - 1,
        "every file but the one the server still writes is sealed: {files:?}"
    );
    total
}

#[test]
fn s3_archives_hold_the_servers_files_byte_for_byte_in_every_compression() {
    let db = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    db.write_workload(400).expect("workload");
    // MariaDB writes a file's checkpoint event a moment after the rotation.
    wait_for_quiet_binlogs(&db);
    let s3 = start_s3();
    for codec in ["zstd", "gzip", "none"] {
        let spool = tempfile::tempdir().expect("spool");
        let output = stream_to_s3(&db, &s3, codec, spool.path(), &["--compression", codec]);
        assert!(
            output.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let archive = open_archive(&s3, codec);
        let bytes = assert_store_has_the_servers_files(&db, &archive);
        assert!(bytes > 5 * (64 << 10), "the workload rotated several times");
        // Sealed files leave the spool; the newest stays for the next resume.
        let spooled: Vec<_> = walk(spool.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("mariadb-bin."))
            .filter(|p| !p.to_string_lossy().ends_with(".index.jsonl"))
            .collect();
        assert_eq!(spooled.len(), 1, "{codec}: spool still holds {spooled:?}");
    }
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
