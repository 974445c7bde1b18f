//! What `binlogd find` looks for. Every filter given must hold (they combine with AND);
//! the table, kind and row-count filters hold for one and the same change of the
//! transaction (a DELETE of at least 1000 rows *of that table*), the others for the
//! transaction as a whole.

use binlogd_parser::Gtid;
use regex::Regex;

use crate::error::FindError;
use crate::statement::Kind;

/// A `--table` pattern: `schema.table`, either part a glob (`*`, `?`); a bare `table`
/// means that table in any schema.
#[derive(Debug, Clone)]
pub struct TablePattern {
    text: String,
    schema: Regex,
    table: Regex,
}

impl TablePattern {
    /// Reads `db.tbl`, `db.*`, `*.orders`, `orders`.
    pub fn parse(text: &str) -> Result<TablePattern, FindError> {
        let (schema, table) = match split_unquoted_dot(text) {
            Some((schema, table)) => (schema, table),
            None => ("*", text),
        };
        if table.is_empty() || schema.is_empty() {
            return Err(FindError::Usage(format!(
                "--table {text:?}: want SCHEMA.TABLE, SCHEMA.*, *.TABLE or TABLE"
            )));
        }
        Ok(TablePattern {
            text: text.to_owned(),
            schema: glob(schema)?,
            table: glob(table)?,
        })
    }

    /// Whether the table `schema.table` matches; an empty `table` (every table of the
    /// schema: DROP DATABASE) matches when the schema does.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.is_match(schema) && (table.is_empty() || self.table.is_match(table))
    }
}

impl std::fmt::Display for TablePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `text` split at its first dot outside backticks, the backticks removed.
fn split_unquoted_dot(text: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '.' if !quoted => {
                return Some((text[..i].trim_matches('`'), text[i + 1..].trim_matches('`')));
            }
            _ => {}
        }
    }
    None
}

/// A glob (`*`: any run of characters, `?`: one) as an anchored regex.
fn glob(pattern: &str) -> Result<Regex, FindError> {
    let mut regex = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c => regex.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex.push('$');
    Regex::new(&regex).map_err(|e| FindError::Usage(format!("--table {pattern:?}: {e}")))
}

/// A `--kind`: one kind of change, or any DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFilter {
    /// Any DDL (drop, truncate, alter, create, rename, other).
    Ddl,
    /// This kind.
    Kind(Kind),
}

impl KindFilter {
    /// Reads `ddl`, `insert`, `update`, `delete`, `drop`, `truncate`, `alter`, `create`,
    /// `rename`.
    pub fn parse(text: &str) -> Result<KindFilter, FindError> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "ddl" => KindFilter::Ddl,
            "insert" => KindFilter::Kind(Kind::Insert),
            "update" => KindFilter::Kind(Kind::Update),
            "delete" => KindFilter::Kind(Kind::Delete),
            "drop" => KindFilter::Kind(Kind::Drop),
            "truncate" => KindFilter::Kind(Kind::Truncate),
            "alter" => KindFilter::Kind(Kind::Alter),
            "create" => KindFilter::Kind(Kind::Create),
            "rename" => KindFilter::Kind(Kind::Rename),
            other => {
                return Err(FindError::Usage(format!(
                    "--kind {other}: one of ddl, insert, update, delete, drop, truncate, \
                     alter, create, rename"
                )));
            }
        })
    }

    fn matches(self, kind: Kind) -> bool {
        match self {
            KindFilter::Ddl => kind.is_ddl(),
            KindFilter::Kind(wanted) => wanted == kind,
        }
    }
}

/// `--gtid-range FROM..TO`: GTIDs of one domain (MariaDB) or one server UUID and tag
/// (MySQL), both ends included; either end may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidRange {
    from: Option<Gtid>,
    to: Option<Gtid>,
}

impl GtidRange {
    /// Reads `0-1-100..0-1-200`, `..0-1-200`, `UUID:100..UUID:200`, or one GTID.
    pub fn parse(text: &str) -> Result<GtidRange, FindError> {
        let bad = |e: String| FindError::Usage(format!("--gtid-range {text:?}: {e}"));
        let (from, to) = match text.split_once("..") {
            Some((from, to)) => (from.trim(), to.trim()),
            None => (text.trim(), text.trim()),
        };
        let read = |part: &str| -> Result<Option<Gtid>, FindError> {
            if part.is_empty() {
                Ok(None)
            } else {
                part.parse::<Gtid>()
                    .map(Some)
                    .map_err(|e| bad(e.to_string()))
            }
        };
        let range = GtidRange {
            from: read(from)?,
            to: read(to)?,
        };
        if let (Some(a), Some(b)) = (range.from, range.to)
            && stream_of(&a) != stream_of(&b)
        {
            return Err(bad(
                "both ends must be of one domain (MariaDB) or one server UUID (MySQL)".to_owned(),
            ));
        }
        if range.from.is_none() && range.to.is_none() {
            return Err(bad("give at least one end".to_owned()));
        }
        Ok(range)
    }

    /// Whether `gtid` lies in the range.
    pub fn contains(&self, gtid: &Gtid) -> bool {
        let after_from = self.from.is_none_or(|from| {
            stream_of(&from) == stream_of(gtid) && number(&from) <= number(gtid)
        });
        let before_to = self
            .to
            .is_none_or(|to| stream_of(&to) == stream_of(gtid) && number(gtid) <= number(&to));
        after_from && before_to
    }
}

/// What orders GTIDs: the domain (MariaDB), the UUID and tag (MySQL).
fn stream_of(gtid: &Gtid) -> String {
    match gtid {
        Gtid::Mariadb(g) => format!("domain {}", g.domain_id),
        Gtid::Mysql(g) => format!("{}:{}", g.uuid, g.tag),
    }
}

fn number(gtid: &Gtid) -> u64 {
    match gtid {
        Gtid::Mariadb(g) => g.sequence,
        Gtid::Mysql(g) => g.gno,
    }
}

/// `--row-match COLUMN=VALUE`: a row image (inserted, deleted, or either side of an
/// UPDATE) whose column holds this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMatch {
    /// The column.
    pub column: ColumnRef,
    /// The value as typed: a number, a string, a date and time as MySQL prints them.
    pub value: String,
}

/// A column of a row: by name, or by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRef {
    /// Its name: from the binlog (`binlog_row_metadata=FULL`) or `--columns`.
    Name(String),
    /// `@N`: the Nth column, from 1, as `mysqlbinlog --verbose` numbers them.
    Position(usize),
}

impl RowMatch {
    /// Reads `id=42`, `@1=42`, `name=O'Brien` (everything after the first `=`).
    pub fn parse(text: &str) -> Result<RowMatch, FindError> {
        let bad = |why: &str| FindError::Usage(format!("--row-match {text:?}: {why}"));
        let (column, value) = text
            .split_once('=')
            .ok_or_else(|| bad("want COLUMN=VALUE"))?;
        let column = column.trim();
        let column = match column.strip_prefix('@') {
            Some(n) => ColumnRef::Position(
                n.parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("@N counts columns from 1"))?,
            ),
            None if column.is_empty() => return Err(bad("name a column, or @N")),
            None => ColumnRef::Name(column.trim_matches('`').to_owned()),
        };
        Ok(RowMatch {
            column,
            value: value.to_owned(),
        })
    }
}

/// `--columns SCHEMA.TABLE=a,b,c`: a table's column names in order, for a binlog that does
/// not carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    /// The table's schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// Its columns, in the table's order.
    pub names: Vec<String>,
}

impl ColumnNames {
    /// Reads `shop.orders=id,customer,total`.
    pub fn parse(text: &str) -> Result<ColumnNames, FindError> {
        let bad = || {
            FindError::Usage(format!(
                "--columns {text:?}: want SCHEMA.TABLE=COLUMN,COLUMN,..."
            ))
        };
        let (table, names) = text.split_once('=').ok_or_else(bad)?;
        let (schema, table) = split_unquoted_dot(table.trim()).ok_or_else(bad)?;
        let names: Vec<String> = names
            .split(',')
            .map(|n| n.trim().trim_matches('`').to_owned())
            .collect();
        if schema.is_empty() || table.is_empty() || names.iter().any(String::is_empty) {
            return Err(bad());
        }
        Ok(ColumnNames {
            schema: schema.to_owned(),
            table: table.to_owned(),
            names,
        })
    }
}

/// Everything `binlogd find` can be asked.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `--table`: a change to one of these tables.
    pub tables: Vec<TablePattern>,
    /// `--kind`: a change of one of these kinds.
    pub kinds: Vec<KindFilter>,
    /// `--min-rows`: a change of at least this many rows (row events only: a statement's
    /// row count is not in the binlog).
    pub min_rows: Option<u64>,
    /// `--row-match`: a row of the change with all these values (row events only).
    pub row_matches: Vec<RowMatch>,
    /// `--columns`: column names the binlog does not carry.
    pub columns: Vec<ColumnNames>,
    /// `--sql`: a statement text (QUERY, ANNOTATE_ROWS, ROWS_QUERY) that matches.
    pub sql: Option<Regex>,
    /// `--from`: committed at or after this time (µs since the epoch).
    pub from_micros: Option<u64>,
    /// `--until`: committed at or before this time.
    pub until_micros: Option<u64>,
    /// `--gtid-range`.
    pub gtids: Option<GtidRange>,
    /// `--server-id`: written by this server.
    pub server_id: Option<u32>,
}

impl Filter {
    /// Whether a change must be looked for at all (a table, kind, row-count or row
    /// filter).
    pub fn wants_changes(&self) -> bool {
        !self.tables.is_empty()
            || !self.kinds.is_empty()
            || self.min_rows.is_some()
            || !self.row_matches.is_empty()
    }

    /// Whether only DDL can match (every `--kind` is a DDL kind): then only the
    /// transactions the index marks as DDL need reading.
    pub fn only_ddl(&self) -> bool {
        !self.kinds.is_empty()
            && self.kinds.iter().all(|k| match k {
                KindFilter::Ddl => true,
                KindFilter::Kind(kind) => kind.is_ddl(),
            })
    }

    /// Whether row images must be walked (only then are they).
    pub fn walks_rows(&self) -> bool {
        self.min_rows.is_some() || !self.row_matches.is_empty()
    }

    /// The names `--columns` gives `schema.table`'s columns.
    pub fn column_names(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.columns
            .iter()
            .find(|c| c.schema == schema && c.table == table)
            .map(|c| c.names.as_slice())
    }

    /// Whether a transaction committed at `commit_micros` can match: decided from the
    /// index, before its bytes are read.
    pub fn time_allows(&self, commit_micros: u64) -> bool {
        self.from_micros.is_none_or(|from| commit_micros >= from)
            && self.until_micros.is_none_or(|until| commit_micros <= until)
    }

    /// Whether a transaction with `gtid` can match (the index knows it too).
    pub fn gtid_allows(&self, gtid: Option<&Gtid>) -> bool {
        match (&self.gtids, gtid) {
            (None, _) => true,
            (Some(range), Some(gtid)) => range.contains(gtid),
            (Some(_), None) => false,
        }
    }

    /// Whether a change of `kind` to `schema.table` is one this filter looks for
    /// (without the row count).
    pub fn table_and_kind_match(&self, kind: Kind, schema: &str, table: &str) -> bool {
        (self.tables.is_empty() || self.tables.iter().any(|p| p.matches(schema, table)))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.matches(kind)))
    }

    /// Whether a change of `kind` is one `--kind` asks for (or there is no `--kind`).
    pub fn kind_matches(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k.matches(kind))
    }

    /// Whether a change also has the rows asked for: `rows` is `None` for a statement,
    /// whose row count the binlog does not hold.
    pub fn rows_match(&self, rows: Option<u64>) -> bool {
        self.min_rows
            .is_none_or(|min| rows.is_some_and(|rows| rows >= min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_patterns() {
        let exact = TablePattern::parse("shop.orders").expect("pattern");
        assert!(exact.matches("shop", "orders"));
        assert!(!exact.matches("shop", "orders2") && !exact.matches("crm", "orders"));
        assert!(
            exact.matches("shop", ""),
            "DROP DATABASE shop takes orders too"
        );
        let any_schema = TablePattern::parse("orders").expect("pattern");
        assert!(any_schema.matches("crm", "orders"));
        let glob = TablePattern::parse("shop.ord*").expect("pattern");
        assert!(glob.matches("shop", "orders") && glob.matches("shop", "ord"));
        assert!(!glob.matches("shop", "xorders"));
        let quoted = TablePattern::parse("`my.db`.t?").expect("pattern");
        assert!(quoted.matches("my.db", "t1") && !quoted.matches("my.db", "t12"));
        assert!(TablePattern::parse("shop.").is_err());
        assert!(TablePattern::parse(".t").is_err());
    }

    #[test]
    fn row_matches_and_column_names() {
        assert_eq!(
            RowMatch::parse("id=42").expect("by name"),
            RowMatch {
                column: ColumnRef::Name("id".into()),
                value: "42".into()
            }
        );
        assert_eq!(
            RowMatch::parse("@3=a=b").expect("by position"),
            RowMatch {
                column: ColumnRef::Position(3),
                value: "a=b".into()
            }
        );
        for bad in ["id", "=3", "@0=1", "@x=1"] {
            assert!(RowMatch::parse(bad).is_err(), "{bad}");
        }
        let names = ColumnNames::parse("shop.orders=id, customer,`total`").expect("names");
        assert_eq!(names.names, ["id", "customer", "total"]);
        assert!(ColumnNames::parse("orders=id").is_err());
        assert!(ColumnNames::parse("shop.orders=id,,x").is_err());
    }

    #[test]
    fn gtid_ranges() {
        let range = GtidRange::parse("0-1-100..0-1-200").expect("range");
        let at = |s: &str| s.parse::<Gtid>().expect("gtid");
        assert!(range.contains(&at("0-1-100")) && range.contains(&at("0-2-150")));
        assert!(!range.contains(&at("0-1-201")) && !range.contains(&at("1-1-150")));
        let open = GtidRange::parse("..0-1-5").expect("range");
        assert!(open.contains(&at("0-9-1")) && !open.contains(&at("0-1-6")));
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mysql = GtidRange::parse(&format!("{uuid}:10..{uuid}:20")).expect("range");
        assert!(mysql.contains(&at(&format!("{uuid}:15"))));
        assert!(!mysql.contains(&at("3e11fa47-71ca-11e1-9e33-c80aa9429563:15")));
        assert!(GtidRange::parse("0-1-1..1-1-5").is_err());
        assert!(GtidRange::parse("..").is_err());
        assert!(GtidRange::parse("x").is_err());
        let one = GtidRange::parse("0-1-7").expect("one");
        assert!(one.contains(&at("0-1-7")) && !one.contains(&at("0-1-8")));
    }

    #[test]
    fn only_ddl_kinds_read_only_ddl() {
        let kinds = |k: &[&str]| Filter {
            kinds: k
                .iter()
                .map(|k| KindFilter::parse(k).expect("kind"))
                .collect(),
            ..Filter::default()
        };
        assert!(kinds(&["drop", "truncate"]).only_ddl());
        assert!(kinds(&["ddl"]).only_ddl());
        assert!(!kinds(&["drop", "delete"]).only_ddl());
        assert!(!kinds(&[]).only_ddl());
    }

    #[test]
    fn kinds_and_rows() {
        let filter = Filter {
            kinds: vec![KindFilter::parse("DDL").expect("ddl")],
            min_rows: None,
            ..Filter::default()
        };
        assert!(filter.table_and_kind_match(Kind::Truncate, "a", "b"));
        assert!(!filter.table_and_kind_match(Kind::Delete, "a", "b"));
        assert!(KindFilter::parse("select").is_err());
        let rows = Filter {
            min_rows: Some(1000),
            ..Filter::default()
        };
        assert!(rows.rows_match(Some(1000)) && !rows.rows_match(Some(999)));
        assert!(!rows.rows_match(None), "a statement's rows are not known");
    }
}
