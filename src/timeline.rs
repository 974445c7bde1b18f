//! `binlogd timeline`: how far the archive can take a database from a GTID state — the
//! last recoverable time, the gaps, and the server changes on the way.

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output, parse_gtids};
use anyhow::Context;
use binlogd_storage::GtidState;
use binlogd_storage::plan::timeline::{Event, Timeline};
use binlogd_storage::plan::{format_micros, timeline};
use std::io::Write;
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
}

pub fn run(args: &TimelineArgs) -> anyhow::Result<ExitCode> {
    let found = block_on(async {
        let archive = open_archive(&args.archive).await?;
        let files = archive.files().await?;
        timeline(&files, &archive, args.from_gtid.as_ref())
            .await
            .with_context(|| format!("reading {}", archive.location()))
    })?;
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
