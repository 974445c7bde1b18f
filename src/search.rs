//! `binlogd search`: which archived files, and which bytes of them, hold the transactions
//! from a start GTID state up to a GTID or a time — the plan a restore replays.

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output, parse_gtids, parse_time};
use anyhow::Context;
use binlogd_storage::GtidState;
use binlogd_storage::plan::{Plan, Target, format_micros, plan};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `binlogd search`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true)))]
pub struct SearchArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Up to and including these GTIDs: a MariaDB position (0-1-500,1-2-7) or a MySQL
    /// GTID set (uuid:1-500).
    #[arg(long, group = "target", value_parser = parse_gtids, value_name = "GTIDS")]
    gtid: Option<GtidState>,
    /// Up to the last transaction committed at or before this time (RFC 3339 with a zone);
    /// stops before the first transaction committed after it, as mariadb-binlog
    /// --stop-datetime does.
    #[arg(long, group = "target", value_parser = parse_time, value_name = "TIME")]
    time: Option<u64>,
    /// Everything before this transaction, leaving it out (the bad one).
    #[arg(long, group = "target", value_name = "GTID")]
    before_gtid: Option<binlogd_parser::Gtid>,
    /// Up to a transaction boundary of a file: FILE:OFFSET, or EPOCH/FILE:OFFSET when
    /// two epochs have a file of that name.
    #[arg(long, group = "target", value_parser = parse_position, value_name = "FILE:OFFSET")]
    position: Option<Target>,
    /// Everything archived.
    #[arg(long, group = "target")]
    latest: bool,
    /// Start from this GTID state (what the base backup holds: gtid_binlog_pos or
    /// gtid_executed); the archive's first state when not given.
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS")]
    from_gtid: Option<GtidState>,
}

impl SearchArgs {
    fn target(&self) -> Target {
        if let Some(gtids) = &self.gtid {
            Target::Gtids(gtids.clone())
        } else if let Some(time) = self.time {
            Target::Time(time)
        } else if let Some(gtid) = self.before_gtid {
            Target::BeforeGtid(gtid)
        } else if let Some(position) = &self.position {
            position.clone()
        } else {
            Target::Latest
        }
    }
}

/// Parses `FILE:OFFSET` or `EPOCH/FILE:OFFSET`.
pub fn parse_position(text: &str) -> Result<Target, String> {
    let (path, offset) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not FILE:OFFSET"))?;
    let offset = offset
        .parse()
        .map_err(|_| format!("{text:?}: the offset {offset:?} is not a number"))?;
    let (epoch, file) = match path.split_once('/') {
        Some((epoch, file)) => (Some(epoch.to_owned()), file.to_owned()),
        None => (None, path.to_owned()),
    };
    if file.is_empty() {
        return Err(format!("{text:?} names no file"));
    }
    Ok(Target::Position {
        epoch,
        file,
        offset,
    })
}

pub fn run(args: &SearchArgs) -> anyhow::Result<ExitCode> {
    let target = args.target();
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

pub fn print_plan(out: &mut impl Write, plan: &Plan, target: &Target) -> std::io::Result<()> {
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
