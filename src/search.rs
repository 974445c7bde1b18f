//! `binlogd search`: which archived files, and which bytes of them, hold the transactions
//! from a start GTID state up to a GTID or a time — the plan a restore replays.

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output, TargetArgs, parse_gtids};
use anyhow::Context;
use binlogd_storage::GtidState;
use binlogd_storage::plan::{Plan, StopAt, format_micros, plan};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `binlogd search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    target: TargetArgs,
    /// Start from this GTID state (what the base backup holds: gtid_binlog_pos or
    /// gtid_executed); the archive's first state when not given.
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS")]
    from_gtid: Option<GtidState>,
}

pub fn run(args: &SearchArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.stop_at();
    let plan = block_on(async {
        let archive = open_archive(&args.archive).await?;
        let files = archive.files().await?;
        plan(&files, &archive, args.from_gtid.as_ref(), &target)
            .await
            .with_context(|| format!("searching {}", archive.location()))
    })?;
    let mut out = std::io::stdout().lock();
    match args.archive.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &plan)?;
            writeln!(out)?;
        }
        Output::Text => print_plan(&mut out, &plan, &target)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_plan(out: &mut impl Write, plan: &Plan, target: &StopAt) -> std::io::Result<()> {
    let start = if plan.start.is_empty() {
        "the archive's start".to_owned()
    } else {
        plan.start.to_string()
    };
    writeln!(
        out,
        "from {start} to {target}: {} transactions in {} ranges",
        plan.transactions,
        plan.pieces.len()
    )?;
    if !plan.pieces.is_empty() {
        writeln!(
            out,
            "{:<14} {:<24} {:>12} {:>12} {:>8}  last commit",
            "epoch", "file", "from", "to", "trx"
        )?;
    }
    for piece in &plan.pieces {
        writeln!(
            out,
            "{:<14} {:<24} {:>12} {:>12} {:>8}  {}",
            piece.epoch,
            piece.file,
            piece.start,
            piece.end,
            piece.transactions,
            piece
                .last_commit_micros
                .map_or("-".to_owned(), format_micros)
        )?;
    }
    match &plan.stop {
        Some(stop) => writeln!(
            out,
            "stop at {}/{}:{}{} (committed {}); GTID state then {}",
            stop.epoch,
            stop.file,
            stop.offset,
            stop.gtid.map(|g| format!(" after {g}")).unwrap_or_default(),
            format_micros(stop.commit_micros),
            plan.end
        )?,
        None => writeln!(
            out,
            "nothing to apply: the start already holds everything up to the target"
        )?,
    }
    if !plan.target_reached {
        writeln!(
            out,
            "note: the target is beyond the archive; this is as far as it goes"
        )?;
    }
    Ok(())
}
