//! `binlogd verify`: re-reads an archive and checks it: every segment's and event's CRC32,
//! every file whole and of the size its manifest says, and each file's GTID state
//! continuing the previous file's.

use crate::archive::{block_on, open_local, open_remote};
use crate::flags::{ArchiveArgs, Location, Output, S3Args};
use binlogd_parser::EventReader;
use binlogd_storage::GtidState;
use binlogd_storage::index::read_index;
use binlogd_storage::remote::read::RemoteFile;
use binlogd_storage::remote::s3::S3Url;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `binlogd verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
}

/// One file's verdict.
#[derive(Debug, Serialize)]
struct Verdict {
    epoch: String,
    file: String,
    size: u64,
    events: u64,
    problems: Vec<String>,
}

/// A file to check: its bytes and what the archive says of it.
struct Checked {
    epoch: String,
    name: String,
    bytes: Result<Vec<u8>, String>,
    /// The size its index or manifest gives once it is closed.
    promised_size: Option<u64>,
    /// The CRC32 its manifest gives (sealed files of an object archive).
    promised_crc: Option<String>,
    /// Still being written: may end inside an event.
    open: bool,
    gtids_before: GtidState,
    gtids_after: GtidState,
    /// Where its index disagrees with what the catalogue says of it.
    index_problems: Vec<String>,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let files = match args.archive.location()? {
        Location::Remote(url) => block_on(remote_files(url, &args.archive.s3))?,
        Location::Local(root) => local_files(&root)?,
    };
    let output = args.archive.output;
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    let mut previous: Option<&Checked> = None;
    for file in &files {
        let verdict = check(file, previous);
        bad += usize::from(!verdict.problems.is_empty());
        match output {
            Output::Json => {
                serde_json::to_writer(&mut out, &verdict)?;
                writeln!(out)?;
            }
            Output::Text if verdict.problems.is_empty() => writeln!(
                out,
                "ok       {}/{}  {} bytes, {} events",
                verdict.epoch, verdict.file, verdict.size, verdict.events
            )?,
            Output::Text => {
                for problem in &verdict.problems {
                    writeln!(
                        out,
                        "PROBLEM  {}/{}: {problem}",
                        verdict.epoch, verdict.file
                    )?;
                }
            }
        }
        previous = Some(file);
    }
    if output == Output::Text {
        writeln!(out, "{} files checked, {bad} with problems", files.len())?;
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(file: &Checked, previous: Option<&Checked>) -> Verdict {
    let mut verdict = Verdict {
        epoch: file.epoch.clone(),
        file: file.name.clone(),
        size: 0,
        events: 0,
        problems: file.index_problems.clone(),
    };
    if let Some(previous) = previous
        && previous.epoch == file.epoch
        && previous.gtids_after != file.gtids_before
    {
        verdict.problems.push(format!(
            "GTID state before it ({}) does not continue {} ({}): transactions are missing",
            file.gtids_before, previous.name, previous.gtids_after
        ));
    }
    let bytes = match &file.bytes {
        Ok(bytes) => bytes,
        Err(problem) => {
            verdict.problems.push(problem.clone());
            return verdict;
        }
    };
    verdict.size = bytes.len() as u64;
    if let Some(size) = file.promised_size
        && size != verdict.size
    {
        verdict.problems.push(format!(
            "{} bytes, but the archive says {size}",
            verdict.size
        ));
    }
    if let Some(crc) = &file.promised_crc {
        let actual = format!("{:08x}", crc32fast::hash(bytes));
        if actual != *crc {
            verdict
                .problems
                .push(format!("CRC32 {actual}, but its manifest says {crc}"));
        }
    }
    let mut reader = EventReader::new(bytes);
    for event in reader.by_ref() {
        match event {
            Ok(_) => verdict.events += 1,
            Err(e) => {
                verdict.problems.push(e.to_string());
                return verdict;
            }
        }
    }
    if let Some(incomplete) = reader.incomplete()
        && !file.open
    {
        verdict.problems.push(format!(
            "ends inside the event at offset {} ({} bytes missing)",
            incomplete.offset, incomplete.needed
        ));
    }
    verdict
}

fn local_files(root: &std::path::Path) -> anyhow::Result<Vec<Checked>> {
    let archive = open_local(root)?;
    let mut files = Vec::new();
    for epoch in archive.epochs()? {
        let epoch_name = binlogd_storage::remote::format::epoch_name(&epoch);
        for name in epoch.binlog_files()? {
            let index = read_index(&epoch.index_path(&name))?;
            let path = epoch.data_path(&name);
            files.push(Checked {
                epoch: epoch_name.clone(),
                bytes: std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display())),
                promised_size: index.closed.as_ref().map(|(size, _)| *size),
                promised_crc: None,
                open: index.closed.is_none(),
                gtids_before: index.gtids_before.clone().unwrap_or_default(),
                gtids_after: index.gtids_after(),
                index_problems: Vec::new(),
                name,
            });
        }
    }
    Ok(files)
}

async fn remote_files(url: S3Url, s3: &S3Args) -> anyhow::Result<Vec<Checked>> {
    let archive = open_remote(&url, s3).await?;
    let mut files = Vec::new();
    for file in archive.files().await? {
        let (epoch, name) = file.id();
        let (epoch, name) = (epoch.to_owned(), name.to_owned());
        let bytes = archive
            .read_file(&epoch, &name)
            .await
            .map_err(|e| e.to_string());
        let checked = match file {
            RemoteFile::Sealed(summary) => {
                // The index a restore plans from (the manifest's chunks, or an earlier
                // release's per-segment objects) must say what the catalogue says.
                let index_problems = match archive.file_index(&epoch, &name).await {
                    Ok(index) => index_disagreements(&index, &summary),
                    Err(e) => vec![format!("its index cannot be read: {e}")],
                };
                Checked {
                    promised_size: Some(summary.size),
                    promised_crc: Some(summary.crc32.clone()),
                    open: false,
                    gtids_before: summary.gtids_before.clone(),
                    gtids_after: summary.gtids_after.clone(),
                    index_problems,
                    epoch,
                    name,
                    bytes,
                }
            }
            RemoteFile::Open { unsealed, .. } => {
                let index = unsealed.index();
                Checked {
                    promised_size: None,
                    promised_crc: None,
                    open: true,
                    gtids_before: index.gtids_before.clone().unwrap_or_default(),
                    gtids_after: index.gtids_after(),
                    index_problems: Vec::new(),
                    epoch,
                    name,
                    bytes,
                }
            }
        };
        files.push(checked);
    }
    Ok(files)
}

/// Where a sealed file's index disagrees with its catalogue entry.
fn index_disagreements(
    index: &binlogd_storage::FileIndex,
    summary: &binlogd_storage::remote::format::FileSummary,
) -> Vec<String> {
    let mut problems = Vec::new();
    if index.transactions.len() as u64 != summary.transactions {
        problems.push(format!(
            "its index lists {} transactions; the catalogue says {}",
            index.transactions.len(),
            summary.transactions
        ));
    }
    let before = index.gtids_before.clone().unwrap_or_default();
    if before != summary.gtids_before {
        problems.push(format!(
            "its index starts from GTID state {before}; the catalogue says {}",
            summary.gtids_before
        ));
    }
    if index.gtids_after() != summary.gtids_after {
        problems.push(format!(
            "its index ends at GTID state {}; the catalogue says {}",
            index.gtids_after(),
            summary.gtids_after
        ));
    }
    if index.closed.as_ref().map(|(size, _)| *size) != Some(summary.size) {
        problems.push(format!(
            "its index closes it at {:?} bytes; the catalogue says {}",
            index.closed.as_ref().map(|(size, _)| *size),
            summary.size
        ));
    }
    problems
}
