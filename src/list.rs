//! `binlogd list`: what an archive holds, file by file.

use crate::archive::{ArchiveArgs, Location, Output, block_on, open_local, open_remote};
use crate::upload::S3Args;
use anyhow::Context;
use binlogd_storage::index::read_index;
use binlogd_storage::remote::read::ArchivedFile;
use binlogd_storage::remote::s3::S3Url;
use binlogd_storage::{FileIndex, GtidState};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `binlogd list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
}

/// One file, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    epoch: String,
    file: String,
    /// sealed (closed and complete in the object store), closed, or open.
    state: &'static str,
    size: u64,
    transactions: u64,
    gtids_before: GtidState,
    gtids_after: GtidState,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_commit: Option<String>,
    source_server_id: u32,
}

pub fn run(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let files = match args.archive.location()? {
        Location::Remote(url) => block_on(list_remote(url, &args.archive.s3))?,
        Location::Local(root) => list_local(&root)?,
    };
    let mut out = std::io::stdout().lock();
    match args.archive.output {
        Output::Json => {
            for file in &files {
                serde_json::to_writer(&mut out, file)?;
                writeln!(out)?;
            }
        }
        Output::Text => {
            writeln!(
                out,
                "{:<14} {:<24} {:<7} {:>12} {:>8}  {:<20}  {:<20}  gtids after",
                "epoch", "file", "state", "size", "trx", "first commit", "last commit"
            )?;
            for f in &files {
                writeln!(
                    out,
                    "{:<14} {:<24} {:<7} {:>12} {:>8}  {:<20}  {:<20}  {}",
                    f.epoch,
                    f.file,
                    f.state,
                    f.size,
                    f.transactions,
                    f.first_commit.as_deref().unwrap_or("-"),
                    f.last_commit.as_deref().unwrap_or("-"),
                    f.gtids_after
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_local(root: &std::path::Path) -> anyhow::Result<Vec<Listed>> {
    let archive = open_local(root)?;
    let mut listed = Vec::new();
    for epoch in archive.epochs()? {
        let epoch_name = binlogd_storage::remote::upload::epoch_name(&epoch);
        for name in epoch.binlog_files()? {
            let index = read_index(&epoch.index_path(&name))?;
            let size = std::fs::metadata(epoch.data_path(&name))
                .with_context(|| format!("{}", epoch.data_path(&name).display()))?
                .len();
            let state = if index.closed.is_some() {
                "closed"
            } else {
                "open"
            };
            listed.push(describe(
                &epoch_name,
                &name,
                state,
                size,
                &index,
                epoch.source.server_id,
            ));
        }
    }
    Ok(listed)
}

async fn list_remote(url: S3Url, s3: &S3Args) -> anyhow::Result<Vec<Listed>> {
    let archive = open_remote(&url, s3).await?;
    let mut listed = Vec::new();
    for file in archive.files().await? {
        match file {
            ArchivedFile::Sealed(summary) => listed.push(Listed {
                epoch: summary.epoch.clone(),
                file: summary.name.clone(),
                state: "sealed",
                size: summary.size,
                transactions: summary.transactions,
                gtids_before: summary.gtids_before.clone(),
                gtids_after: summary.gtids_after.clone(),
                first_commit: summary.first_commit_micros.map(format_micros),
                last_commit: summary.last_commit_micros.map(format_micros),
                source_server_id: summary.source.server_id,
            }),
            ArchivedFile::Open { epoch, name, size } => {
                let index = archive.file_index(&epoch, &name).await?;
                let server_id = epoch
                    .split_once("-server")
                    .and_then(|(_, id)| id.parse().ok())
                    .unwrap_or(0);
                listed.push(describe(&epoch, &name, "open", size, &index, server_id));
            }
        }
    }
    Ok(listed)
}

fn describe(
    epoch: &str,
    name: &str,
    state: &'static str,
    size: u64,
    index: &FileIndex,
    server_id: u32,
) -> Listed {
    Listed {
        epoch: epoch.to_owned(),
        file: name.to_owned(),
        state,
        size,
        transactions: index.transactions.len() as u64,
        gtids_before: index.gtids_before.clone().unwrap_or_default(),
        gtids_after: index.gtids_after(),
        first_commit: index
            .transactions
            .first()
            .map(|t| format_micros(t.commit_micros)),
        last_commit: index
            .transactions
            .last()
            .map(|t| format_micros(t.commit_micros)),
        source_server_id: server_id,
    }
}

fn format_micros(micros: u64) -> String {
    jiff::Timestamp::from_microsecond(micros as i64)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|_| micros.to_string())
}
