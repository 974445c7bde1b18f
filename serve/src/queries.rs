//! Answers to the queries replicas send before a dump.
//!
//! A replica's IO thread asks its source a fixed set of questions and sets a few user
//! variables that the dump then reads (`testdata/replica-setup/` has what MariaDB 10.11,
//! 11.8 and MySQL 9.7 replicas send, recorded). Those forms are understood here: `SELECT`
//! of system variables (`@@GLOBAL.SERVER_ID`), user variables, `UNIX_TIMESTAMP()` and
//! `VERSION()`; `SET @var = value, ...`; `SHOW VARIABLES LIKE 'pattern'`; and, for tools,
//! `SHOW BINARY LOGS` and `SHOW MASTER STATUS`. Anything else is refused with
//! `ER_NOT_SUPPORTED_YET`, naming the statement: binlogd is a binlog server, not a
//! database.

use std::collections::HashMap;

use binlogd_parser::Flavour;

/// What the archive's server is, as the setup queries report it.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    /// Which kind of server wrote the archive.
    pub flavour: Flavour,
    /// `@@server_id` of the archive's newest source.
    pub server_id: u32,
    /// `@@server_uuid` (MySQL).
    pub server_uuid: Option<String>,
    /// The source's version, without MariaDB's `5.5.5-` prefix (`10.11.19-MariaDB-log`).
    pub version: String,
    /// `@@binlog_checksum` of the newest file: `CRC32` or `NONE`.
    pub binlog_checksum: &'static str,
    /// `@@gtid_domain_id` (MariaDB): the domain of the newest GTID.
    pub gtid_domain_id: u32,
    /// Whether the archive holds GTIDs (`@@gtid_mode` of a MySQL source).
    pub has_gtids: bool,
    /// The binary logs, oldest first, with their sizes (`SHOW BINARY LOGS`).
    pub binary_logs: Vec<(String, u64)>,
    /// The GTIDs of the whole archive, as the source writes them (`SHOW MASTER STATUS`):
    /// read from the newest file's whole index, so only when a query needs them.
    pub executed_gtids: Option<String>,
}

/// The user variables a client set: what the dump reads (`@master_binlog_checksum`,
/// `@slave_connect_state`, `@master_heartbeat_period`, ...). Names are kept in lower
/// case, as the servers compare them.
#[derive(Debug, Clone, Default)]
pub struct SessionVariables {
    values: HashMap<String, Option<String>>,
}

impl SessionVariables {
    /// The value of `@name`; `None` when never set, `Some(None)` when set to NULL.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(|v| v.as_deref())
    }

    /// The value of `@name` as a number, when set to one.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.and_then(|v| v.trim().parse().ok())
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        self.values.insert(name.to_ascii_lowercase(), value);
    }

    /// What the names and values take.
    fn bytes(&self) -> usize {
        self.values
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, String::len))
            .sum()
    }
}

/// The most a session's user variables may hold, names and values: replicas set a few
/// short ones (a GTID position, a heartbeat period), and a session is not a store.
const SESSION_VARIABLES_MAX_BYTES: usize = 256 << 10;

/// A statement is quoted in a refusal, and logged, up to this many bytes.
const QUOTED_STATEMENT_MAX: usize = 200;

/// `statement`, cut to 200 bytes (at a character boundary) with
/// "…" when longer: what a refusal quotes and the log shows.
pub fn quoted_statement(statement: &str) -> std::borrow::Cow<'_, str> {
    if statement.len() <= QUOTED_STATEMENT_MAX {
        return statement.into();
    }
    let mut cut = QUOTED_STATEMENT_MAX;
    while !statement.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &statement[..cut], statement.len()).into()
}

/// How to answer a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// OK, no rows.
    Ok,
    /// A result set.
    Rows {
        /// Column names.
        columns: Vec<String>,
        /// Rows of text values (`None`: NULL).
        rows: Vec<Vec<Option<String>>>,
    },
    /// An error, as a server would give it.
    Refuse {
        /// MySQL error number.
        code: u16,
        /// SQLSTATE.
        state: &'static str,
        /// Message.
        message: String,
    },
}

/// `ER_UNKNOWN_SYSTEM_VARIABLE`.
const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// `ER_NOT_SUPPORTED_YET`.
const NOT_SUPPORTED: u16 = 1235;

/// Whether answering `query` needs [`SourceFacts::executed_gtids`].
pub fn needs_executed_gtids(query: &str) -> bool {
    let upper = query.to_ascii_uppercase();
    upper.contains("SHOW") && upper.contains("STATUS")
}

/// Answers `query`, updating the session's user variables.
pub fn answer(
    query: &str,
    facts: &SourceFacts,
    session: &mut SessionVariables,
    now_secs: u64,
) -> Answer {
    let text = query.trim().trim_end_matches(';').trim();
    let upper = text.to_ascii_uppercase();
    let evaluator = Evaluator {
        facts,
        session,
        now_secs,
    };
    let result = if let Some(rest) = strip_keyword(text, &upper, "SET") {
        evaluator.assignments(rest).and_then(|assigned| {
            let mut after = session.clone();
            for (name, value) in assigned {
                after.set(&name, value);
            }
            if after.bytes() > SESSION_VARIABLES_MAX_BYTES {
                return Err(Answer::Refuse {
                    code: 1105,
                    state: "HY000",
                    message: format!(
                        "user variables of more than {SESSION_VARIABLES_MAX_BYTES} bytes in \
                         one session: binlogd serve keeps what replicas set, not data"
                    ),
                });
            }
            *session = after;
            Ok(Answer::Ok)
        })
    } else if let Some(rest) = strip_keyword(text, &upper, "SELECT") {
        evaluator.select(rest)
    } else if upper.starts_with("SHOW") {
        evaluator.show(text, &upper)
    } else {
        Err(not_supported(text))
    };
    result.unwrap_or_else(|refusal| refusal)
}

fn not_supported(statement: &str) -> Answer {
    Answer::Refuse {
        code: NOT_SUPPORTED,
        state: "42000",
        message: format!(
            "binlogd serve is a binlog server, not a database: it answers what replicas ask \
             before a binlog dump, not '{}'",
            quoted_statement(statement)
        ),
    }
}

/// `text` after the keyword `keyword` and whitespace, if it starts with them.
fn strip_keyword<'t>(text: &'t str, upper: &str, keyword: &str) -> Option<&'t str> {
    let rest = upper.strip_prefix(keyword)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(text[keyword.len()..].trim_start())
}

/// Splits on commas that are not inside quotes or parentheses.
fn split_list(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

struct Evaluator<'a> {
    facts: &'a SourceFacts,
    session: &'a SessionVariables,
    now_secs: u64,
}

impl Evaluator<'_> {
    /// `@a = 1, @b = @@global.x`: the user variables to set. `SET NAMES` and the session
    /// settings client libraries send are accepted and change nothing.
    fn assignments(&self, list: &str) -> Result<Vec<(String, Option<String>)>, Answer> {
        let upper = list.to_ascii_uppercase();
        if upper.starts_with("NAMES ") || upper.starts_with("CHARACTER SET ") {
            return Ok(Vec::new());
        }
        let mut assigned = Vec::new();
        for item in split_list(list) {
            let (target, value) = item
                .split_once(":=")
                .or_else(|| item.split_once('='))
                .ok_or_else(|| not_supported(&format!("SET {list}")))?;
            let target = target.trim();
            let value = self.value(value.trim())?;
            if let Some(name) = target.strip_prefix('@').filter(|n| !n.starts_with('@')) {
                assigned.push((unquote(name).to_owned(), value));
            } else if !is_harmless_session_setting(target) {
                return Err(not_supported(&format!("SET {list}")));
            }
        }
        Ok(assigned)
    }

    fn select(&self, list: &str) -> Result<Answer, Answer> {
        let mut list = list.trim();
        let upper = list.to_ascii_uppercase();
        if let Some(cut) = upper.rfind(" LIMIT ") {
            list = list[..cut].trim();
        }
        let mut columns = Vec::new();
        let mut row = Vec::new();
        for item in split_list(list) {
            let upper_item = item.to_ascii_uppercase();
            let (expression, name) = match upper_item.rfind(" AS ") {
                Some(at) => (item[..at].trim(), unquote(item[at + 4..].trim())),
                None => (item, item),
            };
            row.push(self.value(expression)?);
            columns.push(name.to_owned());
        }
        Ok(Answer::Rows {
            columns,
            rows: vec![row],
        })
    }

    /// The value of one expression: a literal, a user or system variable, or one of the
    /// functions replicas call.
    fn value(&self, expression: &str) -> Result<Option<String>, Answer> {
        let upper = expression.to_ascii_uppercase();
        if upper == "NULL" {
            return Ok(None);
        }
        if upper == "UNIX_TIMESTAMP()" {
            return Ok(Some(self.now_secs.to_string()));
        }
        if upper == "VERSION()" {
            return Ok(Some(self.facts.version.clone()));
        }
        if let Some(name) = expression.strip_prefix("@@") {
            let lower = name.to_ascii_lowercase();
            let name = lower
                .strip_prefix("global.")
                .or_else(|| lower.strip_prefix("session."))
                .unwrap_or(&lower);
            return self.system_variable(name).ok_or_else(|| Answer::Refuse {
                code: UNKNOWN_SYSTEM_VARIABLE,
                state: "HY000",
                message: format!("Unknown system variable '{name}'"),
            });
        }
        if let Some(name) = expression.strip_prefix('@') {
            return Ok(self.session.get(unquote(name)).flatten().map(str::to_owned));
        }
        if let Some(text) = quoted(expression) {
            return Ok(Some(text.to_owned()));
        }
        if expression.parse::<i64>().is_ok() || expression.parse::<u64>().is_ok() {
            return Ok(Some(expression.to_owned()));
        }
        Err(not_supported(expression))
    }

    /// The system variables a binlog server has, by lower-case name.
    fn system_variable(&self, name: &str) -> Option<Option<String>> {
        let facts = self.facts;
        let mysql = facts.flavour == Flavour::MySql;
        let value = match name {
            "server_id" => facts.server_id.to_string(),
            "server_uuid" if mysql => facts.server_uuid.clone().unwrap_or_default(),
            "version" => facts.version.clone(),
            "version_comment" => "binlogd serve".to_owned(),
            "binlog_checksum" => facts.binlog_checksum.to_owned(),
            "gtid_mode" if mysql => if facts.has_gtids { "ON" } else { "OFF" }.to_owned(),
            "enforce_gtid_consistency" if mysql => {
                if facts.has_gtids { "ON" } else { "OFF" }.to_owned()
            }
            "gtid_domain_id" if !mysql => facts.gtid_domain_id.to_string(),
            "log_bin" => "1".to_owned(),
            "max_allowed_packet" => (1u64 << 30).to_string(),
            "time_zone" => "SYSTEM".to_owned(),
            "system_time_zone" => "UTC".to_owned(),
            "lower_case_table_names" => "0".to_owned(),
            "character_set_server" | "character_set_database" => "utf8mb4".to_owned(),
            "collation_server" | "collation_database" => "utf8mb4_general_ci".to_owned(),
            _ => return None,
        };
        Some(Some(value))
    }

    fn show(&self, text: &str, upper: &str) -> Result<Answer, Answer> {
        let words: Vec<&str> = upper.split_whitespace().collect();
        match words.as_slice() {
            ["SHOW", "VARIABLES" | "GLOBAL" | "SESSION", ..] => self.show_variables(text, upper),
            ["SHOW", "BINARY" | "MASTER", "LOGS"] => Ok(Answer::Rows {
                columns: vec!["Log_name".into(), "File_size".into()],
                rows: self
                    .facts
                    .binary_logs
                    .iter()
                    .map(|(name, size)| vec![Some(name.clone()), Some(size.to_string())])
                    .collect(),
            }),
            ["SHOW", "MASTER", "STATUS"]
            | ["SHOW", "BINARY", "LOG", "STATUS"]
            | ["SHOW", "BINLOG", "STATUS"] => {
                let mut columns = vec![
                    "File".to_owned(),
                    "Position".into(),
                    "Binlog_Do_DB".into(),
                    "Binlog_Ignore_DB".into(),
                ];
                let mut row = match self.facts.binary_logs.last() {
                    Some((name, size)) => vec![Some(name.clone()), Some(size.to_string())],
                    None => vec![None, None],
                };
                row.extend([Some(String::new()), Some(String::new())]);
                if self.facts.flavour == Flavour::MySql {
                    columns.push("Executed_Gtid_Set".into());
                    row.push(self.facts.executed_gtids.clone());
                }
                Ok(Answer::Rows {
                    columns,
                    rows: vec![row],
                })
            }
            _ => Err(not_supported(text)),
        }
    }

    /// `SHOW [GLOBAL|SESSION] VARIABLES LIKE 'pattern'`: the known variables that match.
    fn show_variables(&self, text: &str, upper: &str) -> Result<Answer, Answer> {
        let like = upper.find(" LIKE ").ok_or_else(|| not_supported(text))?;
        let pattern = quoted(text[like + 6..].trim()).ok_or_else(|| not_supported(text))?;
        if pattern.len() > LIKE_PATTERN_MAX {
            return Err(Answer::Refuse {
                code: 1105,
                state: "HY000",
                message: format!(
                    "a LIKE pattern of {} bytes; binlogd serve answers patterns of up to \
                     {LIKE_PATTERN_MAX}",
                    pattern.len()
                ),
            });
        }
        const NAMES: &[&str] = &[
            "binlog_checksum",
            "character_set_server",
            "collation_server",
            "enforce_gtid_consistency",
            "gtid_domain_id",
            "gtid_mode",
            "log_bin",
            "lower_case_table_names",
            "max_allowed_packet",
            "server_id",
            "server_uuid",
            "system_time_zone",
            "time_zone",
            "version",
            "version_comment",
        ];
        let rows = NAMES
            .iter()
            .filter(|name| like_matches(&pattern.to_ascii_lowercase(), name))
            .filter_map(|name| {
                self.system_variable(name)
                    .map(|value| vec![Some((*name).to_owned()), value])
            })
            .collect();
        Ok(Answer::Rows {
            columns: vec!["Variable_name".into(), "Value".into()],
            rows,
        })
    }
}

/// Session settings client libraries and tools send that a binlog server can accept
/// without doing anything.
fn is_harmless_session_setting(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    let name = lower
        .trim_start_matches("@@")
        .trim_start_matches("session ")
        .trim_start_matches("session.")
        .trim();
    matches!(
        name,
        "autocommit"
            | "sql_mode"
            | "time_zone"
            | "net_read_timeout"
            | "net_write_timeout"
            | "wait_timeout"
            | "interactive_timeout"
            | "character_set_client"
            | "character_set_results"
            | "character_set_connection"
            | "collation_connection"
            | "sql_log_bin"
            | "session_track_system_variables"
    )
}

fn quoted(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(b'\''), Some(b'\'')) | (Some(b'"'), Some(b'"')) if text.len() >= 2 => {
            Some(&text[1..text.len() - 1])
        }
        _ => None,
    }
}

fn unquote(name: &str) -> &str {
    name.strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .unwrap_or(name)
}

/// The longest `LIKE` pattern answered: the variables it is matched against are names
/// of a few dozen characters.
const LIKE_PATTERN_MAX: usize = 1024;

/// One piece of a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeToken {
    /// `%`: any run of characters.
    AnyRun,
    /// `_`: any one character.
    AnyOne,
    /// A character to match (after `\`, even `%` and `_`).
    Literal(u8),
}

/// SQL `LIKE` on lower-case text: `%` any run, `_` any one character, `\` escapes.
///
/// In time proportional to the pattern's length times the text's at worst (a scan that
/// backs up only to the last `%`), never by trying every way each `%` could match, which
/// grows exponentially with their number.
fn like_matches(pattern: &str, text: &str) -> bool {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut bytes = pattern.bytes();
    while let Some(byte) = bytes.next() {
        let token = match byte {
            b'%' => LikeToken::AnyRun,
            b'_' => LikeToken::AnyOne,
            b'\\' => LikeToken::Literal(bytes.next().unwrap_or(b'\\')),
            other => LikeToken::Literal(other),
        };
        // `%%` is `%`.
        if !(token == LikeToken::AnyRun && tokens.last() == Some(&LikeToken::AnyRun)) {
            tokens.push(token);
        }
    }
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    // The last `%` seen, and where in the text its run ends so far.
    let mut backup: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(LikeToken::AnyRun) => {
                backup = Some((p, t));
                p += 1;
            }
            Some(LikeToken::AnyOne) => {
                p += 1;
                t += 1;
            }
            Some(LikeToken::Literal(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backup {
                // The last `%` takes one more character; the rest is tried again after.
                Some((run, end)) => {
                    backup = Some((run, end + 1));
                    p = run + 1;
                    t = end + 1;
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == LikeToken::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(flavour: Flavour) -> SourceFacts {
        SourceFacts {
            flavour,
            server_id: 7,
            server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
            version: "9.7.0".into(),
            binlog_checksum: "CRC32",
            gtid_domain_id: 0,
            has_gtids: true,
            binary_logs: vec![
                ("binlog.000001".into(), 1000),
                ("binlog.000002".into(), 157),
            ],
            executed_gtids: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into()),
        }
    }

    fn rows(answer: Answer) -> Vec<Vec<Option<String>>> {
        match answer {
            Answer::Rows { rows, .. } => rows,
            other => panic!("not rows: {other:?}"),
        }
    }

    /// Every query a real replica sent (testdata/replica-setup/) is answered, none
    /// refused; the variables the dump reads are set as the replica meant.
    #[test]
    fn what_recorded_replicas_ask_is_answered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/replica-setup");
        let mut seen = 0;
        for (file, flavour) in [
            ("mariadb-10.11.txt", Flavour::MariaDb),
            ("mariadb-11.8.txt", Flavour::MariaDb),
            ("mysql-9.7.txt", Flavour::MySql),
        ] {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("recording");
            let facts = facts(flavour);
            let mut session = SessionVariables::default();
            for query in text.lines().filter_map(|l| l.strip_prefix("query ")) {
                seen += 1;
                let answer = answer(query, &facts, &mut session, 1_765_000_000);
                assert!(
                    !matches!(answer, Answer::Refuse { .. }),
                    "{file}: {query}: {answer:?}"
                );
            }
            let checksum = if flavour == Flavour::MySql {
                "source_binlog_checksum"
            } else {
                "master_binlog_checksum"
            };
            assert_eq!(session.get(checksum), Some(Some("CRC32")), "{file}");
            assert_eq!(
                session.number("master_heartbeat_period"),
                Some(30_000_001_024),
                "{file}"
            );
            if flavour == Flavour::MariaDb {
                assert_eq!(session.get("slave_connect_state"), Some(Some("")));
                assert_eq!(session.number("mariadb_slave_capability"), Some(4));
            }
        }
        assert!(seen >= 25, "only {seen} recorded queries");
    }

    #[test]
    fn variables_answer_as_a_server_does() {
        let facts = facts(Flavour::MySql);
        let mut session = SessionVariables::default();
        let mut ask = |q: &str| answer(q, &facts, &mut session, 1_765_000_000);
        assert_eq!(
            rows(ask("SHOW VARIABLES LIKE 'SERVER_ID'")),
            vec![vec![Some("server_id".into()), Some("7".into())]]
        );
        assert_eq!(rows(ask("SHOW VARIABLES LIKE 'rpl_semi_sync%'")).len(), 0);
        assert_eq!(
            rows(ask("SELECT @@GLOBAL.SERVER_UUID, UNIX_TIMESTAMP() AS now")),
            vec![vec![
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
                Some("1765000000".into())
            ]]
        );
        assert_eq!(ask("SET @a = 'x, y', @b := 5;"), Answer::Ok);
        assert_eq!(
            rows(ask("select @a, @b, @never")),
            vec![vec![Some("x, y".into()), Some("5".into()), None]]
        );
        assert_eq!(
            rows(ask("select @@version_comment limit 1")),
            vec![vec![Some("binlogd serve".into())]]
        );
        assert_eq!(rows(ask("SHOW BINARY LOGS")).len(), 2);
        assert!(matches!(
            ask("SELECT @@GLOBAL.gtid_domain_id"),
            Answer::Refuse { code: 1193, .. }
        ));
        for refused in [
            "DROP TABLE t",
            "SELECT * FROM mysql.user",
            "SET GLOBAL read_only=1",
        ] {
            let Answer::Refuse { code, message, .. } = ask(refused) else {
                panic!("{refused} answered");
            };
            assert_eq!(code, 1235, "{refused}");
            assert!(message.contains("not a database"), "{message}");
        }
    }

    #[test]
    fn like_patterns() {
        assert!(like_matches("server_id", "server_id"));
        assert!(like_matches("server%", "server_uuid"));
        assert!(like_matches("server_i_", "server_id"));
        assert!(!like_matches("server", "server_id"));
        assert!(like_matches("%", ""));
        assert!(like_matches("%_id", "server_id"));
        assert!(like_matches("s%r%d", "server_id"));
        assert!(!like_matches("s%r%x", "server_id"));
        assert!(like_matches("server\\_id", "server_id"));
        assert!(!like_matches("server\\_id", "serverxid"));
        assert!(like_matches("gtid%mode", "gtid_mode"));
        assert!(!like_matches("_", ""));
        assert!(like_matches("%%%", "x"));
    }

    #[test]
    fn user_variables_are_bounded_and_long_statements_quoted_short() {
        let facts = facts(Flavour::MariaDb);
        let mut session = SessionVariables::default();
        let big = "x".repeat(200 << 10);
        assert_eq!(
            answer(&format!("SET @a = '{big}'"), &facts, &mut session, 0),
            Answer::Ok
        );
        // A second one would pass the limit: refused, and the first is kept.
        assert!(matches!(
            answer(&format!("SET @b = '{big}'"), &facts, &mut session, 0),
            Answer::Refuse { code: 1105, .. }
        ));
        assert!(session.get("b").is_none());
        assert_eq!(session.get("a").flatten().map(str::len), Some(200 << 10));
        let Answer::Refuse { message, .. } =
            answer(&format!("DROP TABLE {big}"), &facts, &mut session, 0)
        else {
            panic!("not refused");
        };
        assert!(message.len() < 600, "{} bytes", message.len());
    }

    #[test]
    fn a_like_pattern_of_many_percent_signs_is_answered_at_once() {
        // Trying every way each `%` could match takes hours for this one: a query that
        // would pin a core of the server (a replica account is enough to send it).
        let pattern = format!("{}x", "%a".repeat(40));
        let text = "a".repeat(60);
        let (done, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(like_matches(&pattern, &text)));
        let matched = answered
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the match did not end");
        assert!(!matched);
        let mut session = SessionVariables::default();
        let long = format!("SHOW VARIABLES LIKE '{}'", "%".repeat(2000));
        let facts = facts(Flavour::MariaDb);
        assert!(matches!(
            answer(&long, &facts, &mut session, 0),
            Answer::Refuse { code: 1105, .. }
        ));
    }
}
