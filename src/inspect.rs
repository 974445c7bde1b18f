//! `binlogd inspect`: a binlog file's events or transactions, as text or JSON lines.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::inspect_output::{Output, write_event, write_indexed_transaction, write_transaction};
use anyhow::{Context, Result};
use binlogd_parser::header::FLAG_BINLOG_IN_USE;
use binlogd_parser::{
    BINLOG_MAGIC, ErrorKind, Event, FormatDescription, Frame, Framer, Incomplete, ParseError,
    RawEvent, TransactionTracker, decode_event,
};
use binlogd_storage::{LocalArchive, layout, read_index};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  binlogd inspect mariadb-bin.000042
  binlogd inspect --transactions binlog.000007
  binlogd inspect -t --json binlog.000007 | jq 'select(.ddl)'
  binlogd inspect -t /var/lib/binlogd        # every archived transaction, from the index

Every event's CRC32 is checked. Exit status: 0 when the whole file was read (a file the
server is still writing may end inside an event: that is reported, not an error); 1 when
an event is corrupt or undecodable, or a closed file is truncated (each problem is printed
with the file, byte offset and event type); 2 for bad arguments.")]
pub struct InspectArgs {
    /// The binlog or relay log file to read, or an archive directory made by
    /// `binlogd stream` (its transactions come from the index).
    file: PathBuf,
    /// What to list: every event, or one line per transaction (GTID, byte range,
    /// commit time, DDL text).
    #[arg(long, value_enum, default_value_t = View::Events)]
    view: View,
    /// Shorthand for `--view transactions`.
    #[arg(long, short = 't', conflicts_with = "view")]
    transactions: bool,
    /// Output format: aligned text for people, or one JSON object per line for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Shorthand for `--output json`.
    #[arg(long, conflicts_with = "output")]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum View {
    Events,
    Transactions,
}

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let view = if args.transactions {
        View::Transactions
    } else {
        args.view
    };
    let output = if args.json { Output::Json } else { args.output };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.file.is_dir() {
        return run_archive(&args.file, view, output, &mut out);
    }
    write_heading(&mut out, view, output, false)?;
    let failures = inspect_file(&args.file, None, view, output, &mut out)?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_heading(out: &mut impl Write, view: View, output: Output, archive: bool) -> Result<()> {
    if output == Output::Json {
        return Ok(());
    }
    match (view, archive) {
        (View::Events, _) => writeln!(
            out,
            "{:>10}  {:>10}  {:<22} {:>9}  {:>10}  {:<20}  detail",
            "offset", "end", "type", "size", "server_id", "time"
        )?,
        (View::Transactions, false) => writeln!(
            out,
            "{:<24}  {:>10}  {:>10}  {:<27}  detail",
            "gtid", "start", "end", "commit time"
        )?,
        (View::Transactions, true) => writeln!(
            out,
            "{:<36}  {:<24}  {:>10}  {:>10}  {:<27}  detail",
            "file", "gtid", "start", "end", "commit time"
        )?,
    }
    Ok(())
}

/// Lists one file; returns how many problems were reported. `label` names the file in
/// JSON output when several files are listed.
fn inspect_file(
    path: &Path,
    label: Option<&str>,
    view: View,
    output: Output,
    out: &mut impl Write,
) -> Result<usize> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut tracker = TransactionTracker::new();
    let mut failures = 0usize;
    let mut file_in_use = false;
    let ending = for_each_event(file, |raw, format| {
        let event = match decode_event(raw, format) {
            Ok(event) => event,
            Err(err) => {
                // Framing is intact, so the next event can still be read: report and go on.
                out.flush()?;
                eprintln!("binlogd: {}: {err}", path.display());
                failures += 1;
                return Ok(());
            }
        };
        if let Event::FormatDescription(_) = event {
            file_in_use |= raw.header.flags & FLAG_BINLOG_IN_USE != 0;
        }
        match view {
            View::Events => write_event(out, output, label, raw, &event),
            View::Transactions => match tracker.push(raw, &event) {
                Some(transaction) => write_transaction(out, output, &transaction),
                None => Ok(()),
            },
        }
    })
    .with_context(|| format!("read {}", path.display()))?;
    out.flush()?;
    let incomplete = match ending {
        Ending::Clean => None,
        Ending::Incomplete(incomplete) => Some(incomplete),
        Ending::Broken(err) => {
            eprintln!("binlogd: {}: {err}", path.display());
            return Ok(failures + 1);
        }
    };
    if let Some(incomplete) = incomplete {
        if file_in_use {
            eprintln!(
                "binlogd: {}: the server is still writing this file; it ends inside an event at offset {} \
                 ({} more bytes expected)",
                path.display(),
                incomplete.offset,
                incomplete.needed
            );
        } else {
            eprintln!(
                "binlogd: {}: truncated: the file ends inside an event at offset {} ({} more bytes needed)",
                path.display(),
                incomplete.offset,
                incomplete.needed
            );
            failures += 1;
        }
    }
    Ok(failures)
}

/// Lists an archive made by `binlogd stream`: its transactions from the index (no binlog
/// is read), or the events of every file in order.
fn run_archive(root: &Path, view: View, output: Output, out: &mut impl Write) -> Result<ExitCode> {
    if !root.join(layout::ARCHIVE_MARKER).is_file() {
        anyhow::bail!(
            "{} is a directory but not a binlogd archive (no {}); give a binlog file or an archive",
            root.display(),
            layout::ARCHIVE_MARKER
        );
    }
    let archive = LocalArchive::open(root).with_context(|| format!("open {}", root.display()))?;
    write_heading(out, view, output, true)?;
    let mut failures = 0;
    for epoch in archive.epochs()? {
        let epoch_name = epoch
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for name in epoch.binlog_files()? {
            let label = format!("{epoch_name}/{name}");
            match view {
                View::Events => {
                    if output == Output::Text {
                        writeln!(out, "# {label}")?;
                    }
                    failures +=
                        inspect_file(&epoch.data_path(&name), Some(&label), view, output, out)?;
                }
                View::Transactions => {
                    let index = read_index(&epoch.index_path(&name))?;
                    for t in &index.transactions {
                        write_indexed_transaction(out, output, &label, t)?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How reading a file ended.
enum Ending {
    /// On an event boundary.
    Clean,
    /// Inside an event.
    Incomplete(Incomplete),
    /// At bytes that are not a binlog event.
    Broken(ParseError),
}

/// Bytes read from the file at a time; a larger event grows the buffer to its size.
const CHUNK: usize = 8 << 20;

/// Frames the events of a binlog file as its chunks are read, calling `on_event` for each
/// with the format description in force, so that memory holds one chunk (or the largest
/// event), never the whole file.
fn for_each_event(
    mut file: impl Read,
    mut on_event: impl FnMut(&RawEvent<'_>, &FormatDescription) -> Result<()>,
) -> Result<Ending> {
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic)?;
    if magic[..got] != BINLOG_MAGIC[..got] {
        return Ok(Ending::Broken(ParseError {
            offset: 0,
            event_type: None,
            kind: ErrorKind::BadMagic,
        }));
    }
    if got < BINLOG_MAGIC.len() {
        return Ok(Ending::Incomplete(Incomplete {
            offset: 0,
            needed: BINLOG_MAGIC.len() - got,
        }));
    }
    let mut framer = Framer::new();
    let mut buffer = vec![0u8; CHUNK];
    let (mut start, mut end, mut offset) = (0usize, 0usize, BINLOG_MAGIC.len() as u64);
    loop {
        match framer.next_event(&buffer[start..end], offset) {
            Ok(Frame::Event(raw)) => {
                let len = raw.bytes.len();
                on_event(
                    &raw,
                    framer
                        .format()
                        .context("a format description precedes every event")?,
                )?;
                start += len;
                offset += len as u64;
            }
            Ok(Frame::Incomplete { needed }) => {
                buffer.copy_within(start..end, 0);
                end -= start;
                start = 0;
                if buffer.len() < end + needed {
                    buffer.resize(end + needed, 0);
                }
                let read = file.read(&mut buffer[end..])?;
                if read == 0 {
                    return Ok(if end == 0 {
                        Ending::Clean
                    } else {
                        Ending::Incomplete(Incomplete { offset, needed })
                    });
                }
                end += read;
            }
            Err(err) => return Ok(Ending::Broken(err)),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
