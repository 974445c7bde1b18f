//! `cargo xtask fixture-previous-release --binlogd PATH`: an S3 archive written by an
//! earlier binlogd, kept in `testdata/` so that the tests can check that this release
//! reads, serves and restores it unchanged.
//!
//! A private MariaDB 10.11 (its defaults, but 32 KiB files) writes a little at a time
//! while the given `binlogd stream` follows it into moto at its default 1 s checkpoints:
//! sealed files of many small segments, and one still open when the stream stops. Every
//! object of the archive (key, user metadata, body) is then written under `--out`, with
//! what the database held: its `CHECKSUM TABLE` and GTID position.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use binlogd_testkit::{MariaDbConfig, S3Kind, S3Server};

const BUCKET: &str = "fixture";
const PREFIX: &str = "archive";

pub fn fixture_previous_release(args: &[String]) -> Result<()> {
    let mut binlogd = None;
    let mut out = PathBuf::from("testdata/archive-previous-release");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binlogd" => binlogd = Some(PathBuf::from(it.next().context("--binlogd PATH")?)),
            "--out" => out = PathBuf::from(it.next().context("--out DIR")?),
            other => bail!(
                "unknown argument {other}: cargo xtask fixture-previous-release --binlogd PATH \
                 [--out DIR]"
            ),
        }
    }
    let binlogd = binlogd.context("--binlogd PATH: the earlier release's binary")?;
    let version = Command::new(&binlogd).arg("--version").output()?;
    let s3 = S3Server::start(S3Kind::Moto)?;
    s3.create_bucket(BUCKET)?;
    let primary = MariaDbConfig {
        max_binlog_size: Some(32 << 10),
        ..MariaDbConfig::default()
    }
    .start()?;
    primary.write_workload(5)?;
    let scratch = crate::tempfile_dir()?;
    let mut stream = Command::new(&binlogd)
        .args(["stream", "--no-progress", "--source"])
        .arg(primary.replication_url())
        .args([
            "--archive",
            &format!("s3://{BUCKET}/{PREFIX}"),
            "--spool-dir",
        ])
        .arg(scratch.join("spool"))
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .envs(s3.aws_env())
        .spawn()?;
    for _ in 0..12 {
        primary.write_workload(12)?;
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &stream.id().to_string()])
        .status()?;
    let stopped = stream.wait()?;
    if !stopped.success() {
        bail!("binlogd stream ended with {stopped}");
    }
    let checksum = primary.query_value("CHECKSUM TABLE binlogd_test.workload")?;
    let gtid_pos = primary.gtid_binlog_pos()?;

    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(out.join("objects"))?;
    let client = s3.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listed = rt.block_on(
        client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(format!("{PREFIX}/"))
            .send(),
    )?;
    let mut objects = Vec::new();
    for (number, key) in listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|key| *key != format!("{PREFIX}/lease.json"))
        .enumerate()
    {
        let object = rt.block_on(client.get_object().bucket(BUCKET).key(key).send())?;
        let metadata: std::collections::BTreeMap<String, String> = object
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let body = rt.block_on(object.body.collect())?.into_bytes();
        let file = format!("objects/{number:04}.bin");
        std::fs::write(out.join(&file), &body)?;
        objects.push(serde_json::json!({
            "key": key.trim_start_matches(&format!("{PREFIX}/")),
            "metadata": metadata,
            "body": file,
        }));
    }
    let described = serde_json::json!({
        "written_by": String::from_utf8_lossy(&version.stdout).trim(),
        "mariadb": primary.query_value("SELECT VERSION()")?,
        "checksum": checksum,
        "gtid_binlog_pos": gtid_pos,
        "objects": objects,
    });
    std::fs::write(
        out.join("archive.json"),
        serde_json::to_vec_pretty(&described)?,
    )?;
    println!(
        "{} objects of an archive written by {} into {}",
        objects.len(),
        described["written_by"],
        out.display()
    );
    Ok(())
}
