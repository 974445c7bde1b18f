//! `binlogd purge`: deletes whole archived files that a retention policy lets go, oldest
//! first (the retention flags, shared with `binlogd stream`, are in [`crate::flags`]).

use crate::archive::{block_on, open_local};
use crate::flags::{ArchiveArgs, Location, Output, RetentionArgs, now_micros};
use anyhow::Context;
use binlogd_storage::archive::local_files;
use binlogd_storage::plan::format_micros;
use binlogd_storage::remote::lease::{Lease, LeaseKeeper};
use binlogd_storage::remote::read::RemoteArchive;
use binlogd_storage::remote::s3::S3Store;
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::retention::{purge_local, purge_remote};
use binlogd_storage::{Archive, ArchiveFile, StorageError};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `binlogd purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Say what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What a purge did.
#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    files: Vec<Purged>,
    bytes: u64,
    /// The oldest file kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_kept: Option<String>,
}

#[derive(Debug, Serialize)]
struct Purged {
    epoch: String,
    file: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_commit: Option<String>,
}

/// How long purge's lease outlives a purge that died.
const PURGE_LEASE_TTL: Duration = Duration::from_secs(60);

pub fn run(args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let policy = args.retention.policy();
    if !policy.is_active() {
        anyhow::bail!("say what may go: --retention AGE, --keep-after-gtid GTIDS, or both");
    }
    let now = now_micros();
    let (victims, kept, bytes) = match args.archive.location()? {
        Location::Local(root) => {
            let archive = open_local(&root)?;
            let files = local_files(&archive)?;
            let victims = policy.purgeable(&files, now).to_vec();
            let kept = files.get(victims.len()).cloned();
            let bytes = if args.dry_run {
                victims.iter().map(|f| f.size).sum()
            } else {
                purge_local(&archive, &victims)
                    .with_context(|| format!("purging {}", root.display()))?
            };
            (victims, kept, bytes)
        }
        Location::Remote(url) => block_on(async {
            let mut store = S3Store::connect(url.clone(), &args.archive.s3.options()?).await;
            store
                .probe()
                .await
                .with_context(|| format!("checking {url}"))?;
            let store: Arc<dyn ObjectStore> = Arc::new(store);
            // The stream that writes the archive rewrites its catalogue: purge only while
            // no stream holds it, and hold its lease meanwhile.
            let lease = if args.dry_run {
                None
            } else {
                let id = format!("purge-{}", std::process::id());
                Some(
                    Lease::acquire(Arc::clone(&store), &id, PURGE_LEASE_TTL)
                        .await
                        .map_err(|e| match e {
                            StorageError::LeaseHeld { .. } => anyhow::Error::new(e).context(
                                "a binlogd stream writes this archive: give it --retention / \
                                 --keep-after-gtid instead, or stop it first",
                            ),
                            e => e.into(),
                        })
                        .with_context(|| format!("taking the lease of {url}"))?,
                )
            };
            let key = args.archive.s3.client_key()?;
            let remote = RemoteArchive::open(Arc::clone(&store), key.clone())
                .await
                .with_context(|| format!("opening {url}"))?;
            let (mut catalogue, mut version) = remote.catalogue_for_update();
            let files = Archive::Remote(remote).files().await?;
            let victims = policy.purgeable(&files, now).to_vec();
            let kept = files.get(victims.len()).cloned();
            let bytes = match lease {
                None => victims.iter().map(|f| f.size).sum(),
                Some(lease) => {
                    // Renewed while files are deleted: a purge of many files outlasts a TTL.
                    let keeper = LeaseKeeper::start(lease, PURGE_LEASE_TTL);
                    let deleted = purge_remote(
                        store.as_ref(),
                        &mut catalogue,
                        &mut version,
                        key.as_ref(),
                        &victims,
                    )
                    .await;
                    if keeper.lost() {
                        return Err(anyhow::Error::new(keeper.loss().await).context(format!(
                            "purging {url}: another writer took the lease meanwhile"
                        )));
                    }
                    let deleted = deleted.with_context(|| format!("purging {url}"))?;
                    keeper.release().await.context("releasing the lease")?;
                    deleted
                }
            };
            Ok((victims, kept, bytes))
        })?,
    };
    let report = Report {
        dry_run: args.dry_run,
        files: victims
            .iter()
            .map(|f| Purged {
                epoch: f.epoch.clone(),
                file: f.name.clone(),
                size: f.size,
                last_commit: f.last_commit_micros.map(format_micros),
            })
            .collect(),
        bytes,
        oldest_kept: kept.map(|f: ArchiveFile| format!("{}/{}", f.epoch, f.name)),
    };
    let mut out = std::io::stdout().lock();
    match args.archive.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
        }
        Output::Text => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            for file in &report.files {
                writeln!(
                    out,
                    "{verb} {}/{} ({} bytes, last commit {})",
                    file.epoch,
                    file.file,
                    file.size,
                    file.last_commit.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                out,
                "{verb} {} files, {} bytes; the archive now starts at {}",
                report.files.len(),
                report.bytes,
                report.oldest_kept.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
