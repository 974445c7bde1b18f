//! `binlogd find`: the transactions of an archive that match what a user remembers of
//! the one that broke their data — a table, a kind of change, a statement, a number of
//! rows, a time — each with the `binlogd restore` command line that undoes it
//! (`binlogd-find` does the work).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use binlogd_find::filter::{ColumnNames, GtidRange, KindFilter, RowMatch, TablePattern};
use binlogd_find::{Filter, Found};
use binlogd_storage::plan::format_micros;
use futures_util::StreamExt;

use crate::archive::{block_on, open_archive};
use crate::flags::{ArchiveArgs, Output, parse_time};

/// Flags of `binlogd find`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every filter given must hold. --table, --kind and --min-rows hold for \
    one and the same change (a DELETE of at least N rows of that table); the others for the \
    transaction. Examples:\n  \
    binlogd find --archive A --kind drop --table shop.orders\n  \
    binlogd find --archive A --table shop.orders --kind delete --min-rows 1000 --from 2026-12-06T14:00:00Z\n  \
    binlogd find --archive A --sql 'UPDATE\\s+products\\s+SET\\s+price\\s*=\\s*0'"
)]
pub struct FindArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// A table changed: SCHEMA.TABLE, either part a glob (shop.ord*, *.orders), or TABLE
    /// in any schema. Repeat for any of several.
    #[arg(long, value_name = "PATTERN", value_parser = parse_table)]
    table: Vec<TablePattern>,
    /// The kind of change: ddl, insert, update, delete, drop, truncate, alter, create,
    /// rename — from row events and from statements alike. Repeat (or separate with
    /// commas) for any of several. With DDL kinds only, only the transactions the index
    /// marks as DDL are read.
    #[arg(long, value_name = "KIND", value_delimiter = ',', value_parser = parse_kind)]
    kind: Vec<KindFilter>,
    /// A statement's text matches this regular expression (QUERY events, MariaDB's
    /// ANNOTATE_ROWS, MySQL's ROWS_QUERY). Case-sensitive unless it starts with (?i).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    sql: Option<regex::Regex>,
    /// The change touches at least this many rows (counted from row events; a change
    /// logged as a statement has no row count in the binlog and does not match).
    #[arg(long, value_name = "N")]
    min_rows: Option<u64>,
    /// A row of the change has this value (repeat: all in one row): COLUMN=VALUE by name
    /// (the binlog names columns with binlog_row_metadata=FULL, else give --columns) or
    /// @N=VALUE by position from 1, as mysqlbinlog --verbose shows them. Numbers, strings,
    /// DECIMALs, dates and times as MySQL prints them (UTC for TIMESTAMP), NULL. Row
    /// events only: a statement's rows are not in the binlog.
    #[arg(long, value_name = "COLUMN=VALUE", value_parser = parse_row_match)]
    row_match: Vec<RowMatch>,
    /// A table's column names, in order, for --row-match by name when the binlog does
    /// not carry them: SCHEMA.TABLE=COLUMN,COLUMN,... (repeat per table).
    #[arg(long, value_name = "SCHEMA.TABLE=COLUMNS", value_parser = parse_columns)]
    columns: Vec<ColumnNames>,
    /// Committed at or after this time (RFC 3339 with a zone).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    from: Option<u64>,
    /// Committed at or before this time.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    until: Option<u64>,
    /// GTIDs FROM..TO of one domain (MariaDB: 0-1-100..0-1-200) or one server UUID
    /// (MySQL: UUID:100..UUID:200), both included; either end may be left out.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_gtid_range)]
    gtid_range: Option<GtidRange>,
    /// Written by the server with this server_id.
    #[arg(long, value_name = "ID")]
    server_id: Option<u32>,
    /// Files read at once (their parsing runs in parallel).
    #[arg(long, value_name = "N", default_value_t = default_jobs())]
    jobs: usize,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

fn parse_table(text: &str) -> Result<TablePattern, String> {
    TablePattern::parse(text).map_err(|e| e.to_string())
}

fn parse_kind(text: &str) -> Result<KindFilter, String> {
    KindFilter::parse(text).map_err(|e| e.to_string())
}

fn parse_row_match(text: &str) -> Result<RowMatch, String> {
    RowMatch::parse(text).map_err(|e| e.to_string())
}

fn parse_columns(text: &str) -> Result<ColumnNames, String> {
    ColumnNames::parse(text).map_err(|e| e.to_string())
}

fn parse_regex(text: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| e.to_string())
}

fn parse_gtid_range(text: &str) -> Result<GtidRange, String> {
    GtidRange::parse(text).map_err(|e| e.to_string())
}

pub fn run(args: &FindArgs) -> anyhow::Result<ExitCode> {
    let filter = Arc::new(Filter {
        tables: args.table.clone(),
        kinds: args.kind.clone(),
        min_rows: args.min_rows,
        row_matches: args.row_match.clone(),
        columns: args.columns.clone(),
        sql: args.sql.clone(),
        from_micros: args.from,
        until_micros: args.until,
        gtids: args.gtid_range,
        server_id: args.server_id,
    });
    let began = Instant::now();
    block_on(async {
        let archive = open_archive(&args.archive).await?;
        let plan = binlogd_find::plan(&archive, &filter)
            .await
            .with_context(|| format!("reading the indexes of {}", archive.location()))?;
        let (bytes, files, files_in_archive) = (plan.bytes, plan.files(), plan.files_in_archive);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "reading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let progress: Arc<dyn Fn(u64) + Send + Sync> = match &bar {
            Some(bar) => {
                let bar = bar.clone();
                Arc::new(move |n| bar.inc(n))
            }
            None => Arc::new(|_| {}),
        };
        let mut results = Box::pin(binlogd_find::run(
            &archive,
            plan,
            Arc::clone(&filter),
            args.jobs,
            progress,
        ));
        let undo = UndoCommand::new(&args.archive);
        let mut matched = 0u64;
        let (mut transactions, mut bytes_read) = (0u64, 0u64);
        let mut unnamed: Vec<String> = Vec::new();
        let mut out = std::io::stdout().lock();
        while let Some(file) = results.next().await {
            let file = file.with_context(|| format!("reading {}", archive.location()))?;
            transactions += file.transactions;
            bytes_read += file.bytes;
            for table in file.unnamed_tables {
                if !unnamed.contains(&table) {
                    unnamed.push(table);
                }
            }
            for hit in &file.found {
                matched += 1;
                if let Some(bar) = &bar {
                    bar.suspend(|| print_hit(&mut out, args.archive.output, hit, &undo))?;
                } else {
                    print_hit(&mut out, args.archive.output, hit, &undo)?;
                }
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        out.flush()?;
        for table in &unnamed {
            eprintln!(
                "WARNING: the binlog does not name {table}'s columns (binlog_row_metadata=FULL \
                 does): --row-match by name skipped its rows; give --columns {table}=COLUMN,... \
                 or match by position (@N=VALUE)"
            );
        }
        let seconds = began.elapsed().as_secs_f64();
        eprintln!(
            "{matched} matching transaction{} of {transactions} read ({:.1} MB of {files} of \
             {files_in_archive} files) in {seconds:.1} s",
            if matched == 1 { "" } else { "s" },
            bytes_read as f64 / 1e6,
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The `binlogd restore` command line that undoes a transaction: the archive flags as
/// given here, then the stop point just before it.
struct UndoCommand {
    archive_args: Vec<String>,
}

impl UndoCommand {
    fn new(archive: &ArchiveArgs) -> UndoCommand {
        let mut archive_args = vec!["--archive".to_owned(), archive.archive.clone()];
        let s3 = &archive.s3;
        let mut add = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                archive_args.extend([flag.to_owned(), value]);
            }
        };
        add("--s3-endpoint", s3.s3_endpoint.clone());
        add("--s3-region", s3.s3_region.clone());
        add(
            "--encryption-key-file",
            s3.encryption_key_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        add(
            "--sse-c-key-file",
            s3.sse_c_key_file.as_ref().map(|p| p.display().to_string()),
        );
        UndoCommand { archive_args }
    }

    /// The arguments after `binlogd restore` that stop just before `hit`.
    fn args(&self, hit: &Found) -> Vec<String> {
        let mut args = vec!["restore".to_owned()];
        args.extend(self.archive_args.iter().cloned());
        match hit.gtid {
            Some(gtid) => args.extend(["--before-gtid".to_owned(), gtid.to_string()]),
            // Without GTIDs: up to the transaction's start, a transaction boundary.
            None => args.extend([
                "--to-position".to_owned(),
                format!("{}/{}:{}", hit.epoch, hit.file, hit.start),
            ]),
        }
        args
    }
}

/// `text` as one shell word.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn print_hit(
    out: &mut impl Write,
    output: Output,
    hit: &Found,
    undo: &UndoCommand,
) -> std::io::Result<()> {
    let undo_args = undo.args(hit);
    match output {
        Output::Json => {
            let mut value = serde_json::to_value(hit).map_err(std::io::Error::other)?;
            value["commit_time"] = format_micros(hit.commit_micros).into();
            let mut command = vec!["binlogd".to_owned()];
            command.extend(undo_args);
            value["undo"] = command.into();
            serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other)?;
            writeln!(out)
        }
        Output::Text => {
            writeln!(
                out,
                "{}  {}  {}/{}:{}-{}  server {}",
                hit.gtid.map_or("-".to_owned(), |g| g.to_string()),
                format_micros(hit.commit_micros),
                hit.epoch,
                hit.file,
                hit.start,
                hit.end,
                hit.server_id
            )?;
            for change in &hit.changes {
                let rows = match (change.by_statement, change.rows) {
                    (true, _) if change.kind.is_ddl() => String::new(),
                    (true, _) => "  (a statement: rows not in the binlog)".to_owned(),
                    (false, Some(1)) => "  (1 row)".to_owned(),
                    (false, Some(n)) => format!("  ({n} rows)"),
                    (false, None) => "  (rows not counted)".to_owned(),
                };
                writeln!(out, "    {:<8} {}{rows}", change.kind.name(), change.target)?;
            }
            for statement in &hit.statements {
                let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
                writeln!(out, "    > {one_line}")?;
            }
            let words: Vec<String> = undo_args.iter().map(|a| shell_word(a)).collect();
            writeln!(
                out,
                "    undo: binlogd {}  (add --target URL or --datadir DIR, and --from-backup DIR)",
                words.join(" ")
            )
        }
    }
}
