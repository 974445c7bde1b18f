//! Reading the transactions of one run of archived bytes: what each changes (tables,
//! kinds, rows) and says (statement texts), and whether it is one the filter wants.
//!
//! A transaction is read in one pass over its events: TABLE_MAP names the table of the
//! ROWS events after it, whose type says insert, update or delete; QUERY events carry
//! DDL and statement-format DML as text ([`crate::statement`]); ANNOTATE_ROWS (MariaDB)
//! and ROWS_QUERY (MySQL) carry the statement behind row events. Row images are walked
//! (to count rows) only for the changes a `--min-rows` filter is about, and, once a
//! transaction is known to match, in a second pass over its bytes for the report. A
//! MySQL TRANSACTION_PAYLOAD is decompressed and its events read the same way.

use std::collections::HashMap;

use binlogd_parser::events::row_image::{
    TableColumns, Value, column_names, count_rows, decode_value, for_each_image,
};
use binlogd_parser::events::{Query, StatementKind, decompress_mariadb};
use binlogd_parser::{Event, EventReader, EventType, Framer, Gtid, RawEvent, decode_event};
use binlogd_storage::TransactionEntry;

use crate::error::FindError;
use crate::filter::{ColumnRef, Filter, RowMatch};
use crate::statement::{Kind, read_statement};

/// What a change is made to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// A table.
    Table {
        /// Its schema.
        schema: String,
        /// Its name.
        table: String,
    },
    /// Every table of a schema (DROP DATABASE).
    Schema {
        /// The schema.
        schema: String,
    },
    /// No table (a view, a routine, an account, ...).
    Other,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Table { schema, table } => write!(f, "{schema}.{table}"),
            Target::Schema { schema } => write!(f, "{schema}.*"),
            Target::Other => f.write_str("-"),
        }
    }
}

/// One kind of change a transaction makes to one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What is changed.
    pub target: Target,
    /// How.
    #[serde(serialize_with = "kind_name")]
    pub kind: Kind,
    /// Rows changed, from the row events (`None`: by statement, or not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Whether the change was logged as a statement (its rows are not in the binlog).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub by_statement: bool,
    /// Whether one of its rows had the values `--row-match` asks for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub row_matched: bool,
}

fn kind_name<S: serde::Serializer>(kind: &Kind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.name())
}

/// A transaction that matched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// Its epoch (`0001-server1`).
    pub epoch: String,
    /// Its file.
    pub file: String,
    /// Where it starts in the file.
    pub start: u64,
    /// Just past its end.
    pub end: u64,
    /// Its GTID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<Gtid>,
    /// Commit time, µs since the epoch.
    pub commit_micros: u64,
    /// Whether the commit time is exact (MySQL) or whole seconds.
    pub exact_time: bool,
    /// `server_id` of the server that wrote it.
    pub server_id: u32,
    /// What it changes, in the order first seen.
    pub changes: Vec<Change>,
    /// Its statement texts (QUERY, ANNOTATE_ROWS, ROWS_QUERY), each cut to 1000
    /// characters, at most 20.
    pub statements: Vec<String>,
}

const MAX_STATEMENTS: usize = 20;
const MAX_STATEMENT_CHARS: usize = 1000;

/// Reads the transactions `entries` (in file order) from `bytes`, which start at offset
/// `at` of archived `file` (`epoch/name`), with `framer` holding the file's format;
/// returns those the filter wants, and the tables whose `--row-match` columns have no
/// names in the binlog (nor in `--columns`).
pub(crate) fn scan(
    file: &(String, String),
    bytes: &[u8],
    at: u64,
    framer: &Framer,
    entries: &[TransactionEntry],
    filter: &Filter,
) -> Result<(Vec<Found>, Vec<String>), FindError> {
    let id = format!("{}/{}", file.0, file.1);
    let mut found = Vec::new();
    let mut failure: Option<FindError> = None;
    // One reader over the whole run; a transaction ends where the next entry begins.
    let mut reading = Reading::new(filter, false);
    let mut current = 0usize;
    let mut finish = |reading: &mut Reading<'_>, index: usize, found: &mut Vec<Found>| {
        if failure.is_none()
            && reading.matches(filter)
            && let Some(entry) = entries.get(index)
        {
            match report(
                &id,
                file,
                bytes,
                at,
                framer,
                entry,
                filter,
                reading.server_id,
            ) {
                Ok(hit) => found.push(hit),
                Err(e) => failure = Some(e),
            }
        }
        reading.reset();
    };
    let walked = for_each_event(bytes, at, framer, &mut |offset, raw, event| {
        while entries.get(current).is_some_and(|e| offset >= e.end) {
            finish(&mut reading, current, &mut found);
            current += 1;
        }
        reading.event(raw, event);
    });
    walked.map_err(|e| FindError::corrupt(&id, &e))?;
    if current < entries.len() {
        finish(&mut reading, current, &mut found);
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok((found, reading.unnamed))
}

/// A matching transaction, read again to count every change's rows for the report.
#[allow(clippy::too_many_arguments)]
fn report(
    id: &str,
    file: &(String, String),
    bytes: &[u8],
    at: u64,
    framer: &Framer,
    entry: &TransactionEntry,
    filter: &Filter,
    server_id: u32,
) -> Result<Found, FindError> {
    let start = usize::try_from(entry.start - at).unwrap_or(usize::MAX);
    let end = usize::try_from(entry.end - at).unwrap_or(usize::MAX);
    let Some(transaction) = bytes.get(start..end) else {
        return Err(FindError::Corrupt {
            file: id.to_owned(),
            offset: entry.end,
            event: String::new(),
            message: "the index names a transaction past the bytes read".to_owned(),
        });
    };
    let mut report = Reading::new(filter, true);
    for_each_event(transaction, entry.start, framer, &mut |_, raw, event| {
        report.event(raw, event)
    })
    .map_err(|e| FindError::corrupt(id, &e))?;
    Ok(Found {
        epoch: file.0.clone(),
        file: file.1.clone(),
        start: entry.start,
        end: entry.end,
        gtid: entry.gtid,
        commit_micros: entry.commit_micros,
        exact_time: entry.exact_time,
        server_id,
        changes: report
            .changes
            .into_iter()
            .map(|(change, _)| change)
            .collect(),
        statements: report.statements,
    })
}

/// Calls `on_event` with each event of `bytes` (at `offset` of their file) and its offset
/// in the file, and with each event inside a TRANSACTION_PAYLOAD (and the payload's
/// offset).
fn for_each_event(
    bytes: &[u8],
    offset: u64,
    framer: &Framer,
    on_event: &mut dyn FnMut(u64, &RawEvent<'_>, &Event<'_>),
) -> Result<(), binlogd_parser::ParseError> {
    let mut reader = EventReader::continue_at(bytes, offset, framer.clone());
    while let Some(raw) = reader.next() {
        let raw = raw?;
        let Some(format) = reader.format() else {
            break;
        };
        let event = decode_event(&raw, format)?;
        if let Event::TransactionPayload(payload) = &event {
            let inner = payload
                .decompress()
                .map_err(|kind| binlogd_parser::ParseError {
                    offset: raw.offset,
                    event_type: Some(EventType::TRANSACTION_PAYLOAD),
                    kind,
                })?;
            let mut events = EventReader::payload(&inner, format);
            while let Some(inner_raw) = events.next() {
                let inner_raw = inner_raw.map_err(|mut e| {
                    // Inner events have no positions of their own: name the payload's.
                    e.offset = raw.offset;
                    e
                })?;
                let Some(inner_format) = events.format() else {
                    break;
                };
                let inner_event = decode_event(&inner_raw, inner_format)?;
                on_event(raw.offset, &inner_raw, &inner_event);
            }
            continue;
        }
        on_event(raw.offset, &raw, &event);
    }
    if let Some(incomplete) = reader.incomplete() {
        return Err(binlogd_parser::ParseError {
            offset: incomplete.offset,
            event_type: None,
            kind: binlogd_parser::ErrorKind::Truncated {
                needed: incomplete.needed,
            },
        });
    }
    Ok(())
}

/// A mapped table: its name, its columns when its rows are to be walked (`Err` when its
/// row images cannot be: then they are not counted), and the column index each
/// `--row-match` names (`None`: the binlog does not name the column, nor `--columns`).
struct Mapped {
    schema: String,
    table: String,
    columns: Option<Result<TableColumns, ()>>,
    row_match_columns: Vec<Option<usize>>,
    /// Whether the table is one `--table` names (or there is no `--table`).
    table_wanted: bool,
    /// The TABLE_MAP's body: the next one for this table id is taken as it is when equal
    /// (servers map the same table before each statement).
    body: Vec<u8>,
}

/// One transaction being read (the mapped tables kept from one to the next).
struct Reading<'f> {
    filter: &'f Filter,
    /// Count every change's rows (the report), not just those a filter is about.
    count_all: bool,
    tables: HashMap<u64, Mapped>,
    /// Changes with, for a `--min-rows` filter, whether it holds.
    changes: Vec<(Change, bool)>,
    statements: Vec<String>,
    sql_matched: bool,
    server_id: u32,
    /// Tables whose `--row-match` columns could not be found by name.
    unnamed: Vec<String>,
}

impl<'f> Reading<'f> {
    fn new(filter: &'f Filter, count_all: bool) -> Reading<'f> {
        Reading {
            filter,
            count_all,
            tables: HashMap::new(),
            changes: Vec::new(),
            statements: Vec::new(),
            sql_matched: false,
            server_id: 0,
            unnamed: Vec::new(),
        }
    }

    /// Ready for the next transaction: what it changes and says starts empty; the
    /// table mappings stay.
    fn reset(&mut self) {
        self.changes.clear();
        self.statements.clear();
        self.sql_matched = false;
        self.server_id = 0;
    }

    fn event(&mut self, raw: &RawEvent<'_>, event: &Event<'_>) {
        if self.server_id == 0 {
            self.server_id = raw.header.server_id;
        }
        match event {
            Event::Query(query) => self.query(query),
            // Kept for the report; matched when --sql asks (text is made only then: every
            // statement of a MariaDB binlog in ROW format has one).
            Event::AnnotateRows { sql } | Event::RowsQuery { sql }
                if self.count_all || self.filter.sql.is_some() =>
            {
                self.text(&String::from_utf8_lossy(sql));
            }
            Event::TableMap(map)
                if self
                    .tables
                    .get(&map.table_id)
                    .is_some_and(|known| known.body == raw.body()) => {}
            Event::TableMap(map) => {
                let schema = String::from_utf8_lossy(map.schema).into_owned();
                let table = String::from_utf8_lossy(map.table).into_owned();
                let table_wanted = self.filter.tables.is_empty()
                    || self
                        .filter
                        .tables
                        .iter()
                        .any(|p| p.matches(&schema, &table));
                let counted = self.count_all || (self.filter.walks_rows() && table_wanted);
                let row_match_columns = if counted && !self.filter.row_matches.is_empty() {
                    let names: Option<Vec<String>> = column_names(map)
                        .map(|names| {
                            names
                                .iter()
                                .map(|n| String::from_utf8_lossy(n).into_owned())
                                .collect()
                        })
                        .or_else(|| {
                            self.filter
                                .column_names(&schema, &table)
                                .map(<[String]>::to_vec)
                        });
                    let resolved: Vec<Option<usize>> = self
                        .filter
                        .row_matches
                        .iter()
                        .map(|m| column_index(m, names.as_deref(), map.column_types().len()))
                        .collect();
                    let name = format!("{schema}.{table}");
                    if resolved.iter().any(Option::is_none) && !self.unnamed.contains(&name) {
                        self.unnamed.push(name);
                    }
                    resolved
                } else {
                    Vec::new()
                };
                self.tables.insert(
                    map.table_id,
                    Mapped {
                        schema,
                        table,
                        columns: counted.then(|| TableColumns::from_table_map(map).map_err(|_| ())),
                        row_match_columns,
                        table_wanted,
                        body: raw.body().to_vec(),
                    },
                );
            }
            Event::Rows(rows) => {
                let event_type = raw.event_type();
                let kind = match event_type {
                    t if is_write(t) => Kind::Insert,
                    t if is_update(t) => Kind::Update,
                    _ => Kind::Delete,
                };
                let Some(mapped) = self.tables.get(&rows.table_id) else {
                    return;
                };
                let wanted = mapped.table_wanted && self.filter.kind_matches(kind);
                let mut row_matched = false;
                let rows_counted = if self.count_all || (wanted && self.filter.walks_rows()) {
                    match &mapped.columns {
                        Some(Ok(columns)) if wanted && !self.filter.row_matches.is_empty() => {
                            let wanted_values = &self.filter.row_matches;
                            let at = &mapped.row_match_columns;
                            for_each_image(event_type, rows, columns, &mut |values| {
                                if !row_matched && image_matches(columns, values, wanted_values, at)
                                {
                                    row_matched = true;
                                }
                            })
                            .ok()
                        }
                        Some(Ok(columns)) => count_rows(event_type, rows, columns).ok(),
                        _ => None,
                    }
                } else {
                    None
                };
                add_change(
                    &mut self.changes,
                    self.filter,
                    ChangeOf::Table(&mapped.schema, &mapped.table),
                    (kind, rows_counted, false),
                    wanted,
                    row_matched,
                );
            }
            _ => {}
        }
    }

    fn query(&mut self, query: &Query<'_>) {
        if !matches!(query.statement_kind(), StatementKind::Other) {
            // BEGIN, COMMIT, ROLLBACK: boundaries, not changes (and in every transaction).
            return;
        }
        let text = if query.compressed {
            match decompress_mariadb(query.sql) {
                Ok(text) => String::from_utf8_lossy(&text).into_owned(),
                Err(_) => return,
            }
        } else {
            String::from_utf8_lossy(query.sql).into_owned()
        };
        let schema = String::from_utf8_lossy(query.schema);
        let Some(statement) = read_statement(&text, &schema) else {
            // BEGIN, COMMIT, SET, ...: neither a change nor worth showing.
            return;
        };
        self.text(&text);
        let targets: Vec<Target> = if statement.tables.is_empty() {
            vec![Target::Other]
        } else {
            statement
                .tables
                .into_iter()
                .map(|t| {
                    if t.table.is_empty() {
                        Target::Schema { schema: t.schema }
                    } else {
                        Target::Table {
                            schema: t.schema,
                            table: t.table,
                        }
                    }
                })
                .collect()
        };
        for target in targets {
            let wanted = match &target {
                Target::Table { schema, table } => {
                    self.filter
                        .table_and_kind_match(statement.kind, schema, table)
                }
                Target::Schema { schema } => {
                    self.filter.table_and_kind_match(statement.kind, schema, "")
                }
                Target::Other => {
                    self.filter.tables.is_empty()
                        && self.filter.table_and_kind_match(statement.kind, "", "")
                }
            };
            add_change(
                &mut self.changes,
                self.filter,
                ChangeOf::Target(target),
                (statement.kind, None, true),
                wanted,
                false,
            );
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(sql) = &self.filter.sql
            && sql.is_match(text)
        {
            self.sql_matched = true;
        }
        // Only the report shows statements.
        if self.count_all && self.statements.len() < MAX_STATEMENTS {
            let mut shown: String = text.chars().take(MAX_STATEMENT_CHARS).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            self.statements.push(shown);
        }
    }

    /// Whether the transaction is one the filter wants (the transaction-level filters
    /// were applied from the index).
    fn matches(&self, filter: &Filter) -> bool {
        let changes_hold = !filter.wants_changes() || self.changes.iter().any(|(_, holds)| *holds);
        let sql_holds = filter.sql.is_none() || self.sql_matched;
        let server_holds = filter.server_id.is_none_or(|id| id == self.server_id);
        changes_hold && sql_holds && server_holds
    }
}

/// What a change is made to, as the reader has it: a mapped table's names (a target is
/// made of them only for a change not seen yet), or a target made already.
enum ChangeOf<'t> {
    Table(&'t str, &'t str),
    Target(Target),
}

impl ChangeOf<'_> {
    fn is(&self, target: &Target) -> bool {
        match (self, target) {
            (
                ChangeOf::Table(schema, table),
                Target::Table {
                    schema: s,
                    table: t,
                },
            ) => s == schema && t == table,
            (ChangeOf::Target(mine), target) => mine == target,
            _ => false,
        }
    }

    fn into_target(self) -> Target {
        match self {
            ChangeOf::Table(schema, table) => Target::Table {
                schema: schema.to_owned(),
                table: table.to_owned(),
            },
            ChangeOf::Target(target) => target,
        }
    }
}

/// Adds `rows` to the change `(kind, rows, by_statement)` of `of` in `changes` (a new one
/// if first seen), with whether the filter holds for it: `wanted` says whether its table
/// and kind do, `row_matched` whether one of its rows had the values `--row-match` asks for.
fn add_change(
    changes: &mut Vec<(Change, bool)>,
    filter: &Filter,
    of: ChangeOf<'_>,
    (kind, rows, by_statement): (Kind, Option<u64>, bool),
    wanted: bool,
    row_matched: bool,
) {
    let any_row = filter.row_matches.is_empty();
    let existing = changes
        .iter_mut()
        .find(|(c, _)| c.kind == kind && c.by_statement == by_statement && of.is(&c.target));
    match existing {
        Some((change, holds)) => {
            change.rows = match (change.rows, rows) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            change.row_matched |= row_matched;
            *holds = wanted && filter.rows_match(change.rows) && (any_row || change.row_matched);
        }
        None => {
            let holds = wanted && filter.rows_match(rows) && (any_row || row_matched);
            changes.push((
                Change {
                    target: of.into_target(),
                    kind,
                    rows,
                    by_statement,
                    row_matched,
                },
                holds,
            ));
        }
    }
}

/// The column a `--row-match` names, given the table's column `names` when known.
fn column_index(wanted: &RowMatch, names: Option<&[String]>, columns: usize) -> Option<usize> {
    match &wanted.column {
        ColumnRef::Position(n) => (*n <= columns).then(|| n - 1),
        ColumnRef::Name(name) => names?.iter().position(|n| n.eq_ignore_ascii_case(name)),
    }
}

/// Whether one row image has every value `wanted` asks for (`at`: each one's column).
fn image_matches(
    columns: &TableColumns,
    values: &[Option<&[u8]>],
    wanted: &[RowMatch],
    at: &[Option<usize>],
) -> bool {
    wanted.iter().zip(at).all(|(wanted, at)| {
        let Some(index) = *at else {
            return false;
        };
        let Some(Some(bytes)) = values.get(index) else {
            // Absent from this image, or NULL: matches `NULL` only.
            return values.get(index).is_some_and(Option::is_none)
                && wanted.value.eq_ignore_ascii_case("NULL");
        };
        decode_value(columns, index, bytes).is_some_and(|value| value_is(&value, &wanted.value))
    })
}

/// Whether a decoded `value` is what the user typed.
fn value_is(value: &Value<'_>, typed: &str) -> bool {
    match value {
        Value::Integer { signed, unsigned } => typed
            .trim()
            .parse::<i128>()
            .is_ok_and(|n| n == i128::from(*signed) || n == i128::from(*unsigned)),
        Value::Float(f) => typed
            .trim()
            .parse::<f64>()
            .is_ok_and(|t| t == *f || (t - f).abs() <= f.abs().max(t.abs()) * 1e-6),
        Value::Decimal(text) => {
            normal_decimal(text).is_some_and(|d| Some(d) == normal_decimal(typed))
        }
        Value::Temporal(text) => {
            text == typed.trim() || text.split('.').next() == Some(typed.trim())
        }
        Value::Bytes(bytes) => *bytes == typed.as_bytes(),
        _ => false,
    }
}

/// A decimal's text without sign noise, leading or trailing zeros: `-012.50` → `-12.5`.
fn normal_decimal(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if integer.is_empty() && fraction.is_empty()
        || !integer
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let zero = integer.is_empty() && fraction.is_empty();
    Some(format!(
        "{}{}{}{}",
        if negative && !zero { "-" } else { "" },
        if integer.is_empty() { "0" } else { integer },
        if fraction.is_empty() { "" } else { "." },
        fraction
    ))
}

fn is_write(t: EventType) -> bool {
    matches!(
        t,
        EventType::WRITE_ROWS
            | EventType::WRITE_ROWS_V1
            | EventType::PRE_GA_WRITE_ROWS
            | EventType::MARIADB_WRITE_ROWS_COMPRESSED
            | EventType::MARIADB_WRITE_ROWS_COMPRESSED_V1
    )
}

fn is_update(t: EventType) -> bool {
    matches!(
        t,
        EventType::UPDATE_ROWS
            | EventType::UPDATE_ROWS_V1
            | EventType::PRE_GA_UPDATE_ROWS
            | EventType::PARTIAL_UPDATE_ROWS
            | EventType::MARIADB_UPDATE_ROWS_COMPRESSED
            | EventType::MARIADB_UPDATE_ROWS_COMPRESSED_V1
    )
}
