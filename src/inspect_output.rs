//! How `binlogd inspect` writes what it read: one aligned line of text per event or
//! transaction for people, or one JSON object per line for `jq` and scripts.

use anyhow::Result;
use binlogd_parser::{Event, RawEvent, Transaction};
use binlogd_storage::TransactionEntry;
use clap::ValueEnum;
use serde_json::json;
use std::io::Write;

/// Text for people or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn write_event(
    out: &mut impl Write,
    output: Output,
    file: Option<&str>,
    raw: &RawEvent<'_>,
    event: &Event<'_>,
) -> Result<()> {
    let detail = describe(event);
    let time = format_seconds(u64::from(raw.header.timestamp));
    match output {
        Output::Text => writeln!(
            out,
            "{:>10}  {:>10}  {:<22} {:>9}  {:>10}  {:<20}  {}",
            raw.offset,
            raw.end_offset(),
            raw.event_type().to_string(),
            raw.bytes.len(),
            raw.header.server_id,
            time,
            detail
        )?,
        Output::Json => {
            let mut line = json!({
                "offset": raw.offset,
                "end": raw.end_offset(),
                "type": raw.event_type().to_string(),
                "type_code": raw.event_type().0,
                "size": raw.bytes.len(),
                "server_id": raw.header.server_id,
                "timestamp": raw.header.timestamp,
                "log_pos": raw.header.log_pos,
                "flags": raw.header.flags,
                "detail": detail,
            });
            if let Some(file) = file {
                line["file"] = file.into();
            }
            writeln!(out, "{line}")?
        }
    }
    Ok(())
}

pub fn write_transaction(out: &mut impl Write, output: Output, t: &Transaction<'_>) -> Result<()> {
    let gtid = t
        .gtid
        .map(|g| g.to_string())
        .unwrap_or_else(|| "anonymous".to_owned());
    let time = format_micros(t.commit_time.micros, t.commit_time.exact);
    let ddl = match t.ddl_text() {
        None => None,
        Some(Ok(sql)) => Some(String::from_utf8_lossy(&sql).into_owned()),
        Some(Err(err)) => Some(format!("(statement unreadable: {err})")),
    };
    match output {
        Output::Text => writeln!(
            out,
            "{:<24}  {:>10}  {:>10}  {:<27}  {}",
            gtid,
            t.start,
            t.end,
            time,
            ddl.as_deref().map(one_line).unwrap_or_default()
        )?,
        Output::Json => writeln!(
            out,
            "{}",
            json!({
                "gtid": t.gtid.map(|g| g.to_string()),
                "start": t.start,
                "end": t.end,
                "commit_time": time,
                "commit_time_micros": t.commit_time.micros,
                "commit_time_exact": t.commit_time.exact,
                "ddl": t.is_ddl,
                "statement": ddl,
                "events": t.events,
            })
        )?,
    }
    Ok(())
}

/// One line of detail per event: what a person looks for first.
fn describe(event: &Event<'_>) -> String {
    let text = |b: &[u8]| one_line(&String::from_utf8_lossy(b));
    match event {
        Event::FormatDescription(f) => format!(
            "server {} binlog v{} checksum {:?}",
            f.server_version, f.binlog_version, f.checksum
        ),
        Event::Rotate {
            position,
            next_file,
        } => format!("next {}:{position}", text(next_file)),
        Event::Stop => "server stopped".to_owned(),
        Event::Xid { xid } => format!("COMMIT xid={xid}"),
        Event::Query(q) if q.compressed => format!(
            "[{}] (compressed statement, {} bytes)",
            text(q.schema),
            q.sql.len()
        ),
        Event::Query(q) => format!("[{}] {}", text(q.schema), text(q.sql)),
        Event::Heartbeat { file } => format!("heartbeat {}", text(file)),
        Event::HeartbeatV2 { file, position } => format!(
            "heartbeat {}:{}",
            text(file),
            position.map_or("?".into(), |p| p.to_string())
        ),
        Event::TableMap(t) => format!(
            "table {}.{} id={} columns={}",
            text(t.schema),
            text(t.table),
            t.table_id,
            t.column_types().len()
        ),
        Event::Rows(r) => format!("table id={} {} bytes of rows", r.table_id, r.rows.len()),
        Event::RowsQuery { sql } | Event::AnnotateRows { sql } => text(sql),
        Event::XaPrepare(x) => format!(
            "XA PREPARE gtrid={} one_phase={}",
            text(x.gtrid),
            x.one_phase
        ),
        Event::MysqlGtid(g) => match g.gtid {
            Some(gtid) => format!("GTID {gtid}"),
            None => "anonymous GTID".to_owned(),
        },
        Event::TransactionPayload(p) => format!(
            "{:?} payload, {} → {} bytes",
            p.compression,
            p.payload.len(),
            p.uncompressed_size
        ),
        Event::PreviousGtids { encoded } => format!("previous GTIDs ({} bytes)", encoded.len()),
        Event::MariadbGtid(g) => {
            let mut s = format!("GTID {}", g.gtid);
            if g.is_standalone() {
                s.push_str(" standalone");
            }
            if g.is_ddl() {
                s.push_str(" ddl");
            }
            if let Some(cid) = g.commit_id {
                s.push_str(&format!(" cid={cid}"));
            }
            s
        }
        Event::GtidList(list) => {
            let gtids: Vec<String> = list.gtids().map(|g| g.to_string()).collect();
            format!("GTID list [{}]", gtids.join(","))
        }
        Event::BinlogCheckpoint(c) => format!("checkpoint {}", text(c.file)),
        Event::StartEncryption {
            scheme,
            key_version,
            starts_encryption: true,
        } => format!("encrypted from here (scheme {scheme}, key version {key_version})"),
        Event::StartEncryption {
            scheme,
            key_version,
            starts_encryption: false,
        } => format!(
            "ignorable: the source's file is encrypted from here (scheme {scheme}, key version \
             {key_version}); these events were received decrypted"
        ),
        Event::Other { body, .. } => format!("{} bytes", body.len()),
    }
}

fn one_line(text: &str) -> String {
    const MAX: usize = 160;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX {
        format!("{}…", flat.chars().take(MAX).collect::<String>())
    } else {
        flat
    }
}

fn format_seconds(seconds: u64) -> String {
    jiff::Timestamp::from_second(seconds as i64)
        .map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

fn format_micros(micros: u64, exact: bool) -> String {
    if !exact {
        return format_seconds(micros / 1_000_000);
    }
    jiff::Timestamp::from_microsecond(micros as i64)
        .map_or_else(|_| micros.to_string(), |t| t.to_string())
}

pub fn write_indexed_transaction(
    out: &mut impl Write,
    output: Output,
    file: &str,
    t: &TransactionEntry,
) -> Result<()> {
    let gtid = t
        .gtid
        .map(|g| g.to_string())
        .unwrap_or_else(|| "anonymous".to_owned());
    let time = format_micros(t.commit_micros, t.exact_time);
    match output {
        Output::Text => writeln!(
            out,
            "{:<36}  {:<24}  {:>10}  {:>10}  {:<27}  {}{}",
            file,
            gtid,
            t.start,
            t.end,
            time,
            if t.ddl { "DDL" } else { "" },
            if t.repeated {
                " (repeated by a new primary)"
            } else {
                ""
            }
        )?,
        Output::Json => writeln!(
            out,
            "{}",
            json!({
                "file": file,
                "gtid": t.gtid.map(|g| g.to_string()),
                "start": t.start,
                "end": t.end,
                "commit_time": time,
                "commit_time_micros": t.commit_micros,
                "commit_time_exact": t.exact_time,
                "ddl": t.ddl,
                "events": t.events,
                "repeated": t.repeated,
            })
        )?,
    }
    Ok(())
}
