//! `binlogd list`: what an archive holds, file by file.

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output};
use binlogd_storage::plan::format_micros;
use binlogd_storage::{ArchiveFile, GtidState};
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
struct Listed<'a> {
    epoch: &'a str,
    file: &'a str,
    /// sealed (closed and complete in the object store), closed, or open.
    state: &'static str,
    size: u64,
    transactions: u64,
    gtids_before: &'a GtidState,
    gtids_after: &'a GtidState,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_commit: Option<String>,
    source_server_id: u32,
}

impl<'a> From<&'a ArchiveFile> for Listed<'a> {
    fn from(file: &'a ArchiveFile) -> Listed<'a> {
        Listed {
            epoch: &file.epoch,
            file: &file.name,
            state: file.state.as_str(),
            size: file.size,
            transactions: file.transactions,
            gtids_before: &file.gtids_before,
            gtids_after: &file.gtids_after,
            first_commit: file.first_commit_micros.map(format_seconds),
            last_commit: file.last_commit_micros.map(format_seconds),
            source_server_id: file.source_server_id,
        }
    }
}

pub fn run(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let files = block_on(async {
        let archive = open_archive(&args.archive).await?;
        Ok(archive.files().await?)
    })?;
    let mut out = std::io::stdout().lock();
    match args.archive.output {
        Output::Json => {
            for file in &files {
                serde_json::to_writer(&mut out, &Listed::from(file))?;
                writeln!(out)?;
            }
        }
        Output::Text => {
            writeln!(
                out,
                "{:<14} {:<24} {:<7} {:>12} {:>8}  {:<20}  {:<20}  gtids after",
                "epoch", "file", "state", "size", "trx", "first commit", "last commit"
            )?;
            for file in &files {
                let f = Listed::from(file);
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

/// A commit time to the second, as the listing shows it.
fn format_seconds(micros: u64) -> String {
    format_micros(micros - micros % 1_000_000)
}
