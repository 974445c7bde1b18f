//! `binlogd timeline`: how far the archive can take a database from a GTID state — the
//! last recoverable time, the gaps, and the server changes on the way.

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output, parse_gtids};
use anyhow::Context;
use binlogd_storage::GtidState;
use binlogd_storage::plan::timeline::{Event, Timeline};
use binlogd_storage::plan::{format_micros, timeline};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `binlogd timeline`.
#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Start from this GTID state (a backup's gtid_binlog_pos or gtid_executed); the
    /// archive's first state when not given.
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS")]
    from_gtid: Option<GtidState>,
    /// Start where a base backup ends: a mariadb-backup or Percona XtraBackup folder
    /// (xtrabackup_binlog_info or mariadb_backup_binlog_info names its GTIDs).
    #[arg(long, value_name = "DIR", conflicts_with = "from_gtid")]
    from_backup: Option<PathBuf>,
    /// Also draw the timeline as an SVG picture into FILE: a lane per server the archive
    /// followed, failovers, gaps, the backup, and the recoverable range up to the last
    /// recoverable time. Open it in a browser, or `rsvg-convert FILE -o FILE.png`.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

pub fn run(args: &TimelineArgs) -> anyhow::Result<ExitCode> {
    let start = match &args.from_backup {
        Some(dir) => Some(binlogd_restore::start::backup_gtids(dir)?.with_context(|| {
            format!(
                "{} names no GTIDs (a MySQL clone keeps them in the server): give \
                     --from-gtid with the gtid_executed of a server started on it",
                dir.display()
            )
        })?),
        None => args.from_gtid.clone(),
    };
    let (found, location) = block_on(async {
        let archive = open_archive(&args.archive).await?;
        let files = archive.files().await?;
        let found = timeline(&files, &archive, start.as_ref())
            .await
            .with_context(|| format!("reading {}", archive.location()))?;
        anyhow::Ok((found, archive.location()))
    })?;
    if let Some(path) = &args.svg {
        let picture = crate::timeline_svg::render(&found, &location.to_string());
        write_atomically(path, picture.as_bytes())
            .with_context(|| format!("writing the picture to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match args.archive.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &found)?;
            writeln!(out)?;
        }
        Output::Text => print_timeline(&mut out, &found)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` beside `path` and renames it into place: a reader never sees half a
/// picture.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "timeline.svg".into(), |n| n.to_os_string());
    let mut partial = name.clone();
    partial.push(".partial");
    let partial = path.with_file_name(partial);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

fn time(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), format_micros)
}

fn print_timeline(out: &mut impl Write, found: &Timeline) -> std::io::Result<()> {
    let start = if found.start.is_empty() {
        "the archive's start".to_owned()
    } else {
        found.start.to_string()
    };
    writeln!(out, "from {start}")?;
    writeln!(
        out,
        "recoverable to {} (last commit {})",
        found.recoverable_to,
        time(found.last_recoverable_micros)
    )?;
    for event in &found.history {
        print_event(out, event)?;
    }
    Ok(())
}

fn print_event(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    match event {
        Event::Stretch(stretch) => writeln!(
            out,
            "  {} (server {}) {}..{}: {} transactions, {} .. {}, GTIDs {} -> {}",
            stretch.epoch,
            stretch.source_server_id,
            stretch.first_file,
            stretch.last_file,
            stretch.transactions,
            time(stretch.first_commit_micros),
            time(stretch.last_commit_micros),
            stretch.from,
            stretch.to
        ),
        Event::Gap(gap) => writeln!(
            out,
            "  GAP before {}/{}: missing {} (reached {}, the file follows {})",
            gap.epoch, gap.file, gap.missing, gap.reached, gap.needed
        ),
        Event::ServerChange {
            from_epoch,
            to_epoch,
            to_server_id,
            at,
            lost,
            first_commit_micros,
        } => {
            write!(
                out,
                "  server change {from_epoch} -> {to_epoch} (server {to_server_id}) at {at}, first commit {}",
                time(*first_commit_micros)
            )?;
            if lost.is_empty() {
                writeln!(out)
            } else {
                writeln!(out, "; lost in the change: {lost}")
            }
        }
    }
}
