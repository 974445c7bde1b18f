//! QUERY (and MariaDB QUERY_COMPRESSED): a statement in text.
//!
//! ```text
//! post-header (13 bytes in v4)       body
//!   thread_id        u32               status_vars     [status_vars_len]
//!   exec_time        u32               schema          [schema_len] then 0x00
//!   schema_len       u8                query           the rest
//!   error_code       u16
//!   status_vars_len  u16
//! ```
//! Transactions in a binlog open with the query `BEGIN` and close with `COMMIT` (or an
//! XID event); any other statement outside them (DDL) is a transaction by itself.
//! Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Query__event.html>,
//! <https://mariadb.com/kb/en/query_event/>. MariaDB's QUERY_COMPRESSED has the same
//! layout with the query text compressed (`log_bin_compress`); its text is left compressed.

use crate::error::ErrorKind;
use crate::le::{read_u16, read_u32};

/// Length of the v4 QUERY post-header.
const POST_HEADER_LEN: usize = 13;

/// A decoded QUERY event, borrowing its event's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// Id of the connection that ran the statement.
    pub thread_id: u32,
    /// Seconds the statement took.
    pub exec_time: u32,
    /// The error the statement raised on the source (0 if none).
    pub error_code: u16,
    /// Raw status variables (sql_mode, charset, ...).
    pub status_vars: &'a [u8],
    /// The default schema when the statement ran.
    pub schema: &'a [u8],
    /// The statement text; compressed if `compressed` is set.
    pub sql: &'a [u8],
    /// Whether `sql` is MariaDB-compressed (QUERY_COMPRESSED event).
    pub compressed: bool,
}

/// What a statement means for transaction boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `BEGIN` (or `XA START`): opens a transaction.
    Begin,
    /// `COMMIT`: closes a transaction.
    Commit,
    /// `ROLLBACK` (of a transaction with non-transactional changes already logged).
    Rollback,
    /// Anything else: DDL, DML in statement format, `SAVEPOINT`, `ROLLBACK TO`, `XA END`
    /// (the prepared part of an XA transaction ends with an XA_PREPARE event, not a query).
    Other,
}

impl<'a> Query<'a> {
    /// Decodes a QUERY body. `post_header_len` is the format description's value.
    pub(crate) fn parse(
        body: &'a [u8],
        post_header_len: usize,
        compressed: bool,
    ) -> Result<Self, ErrorKind> {
        let fixed = post_header_len.max(POST_HEADER_LEN);
        if body.len() < fixed {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: fixed,
            });
        }
        let thread_id = read_u32(&body[0..4]);
        let exec_time = read_u32(&body[4..8]);
        let schema_len = usize::from(body[8]);
        let error_code = read_u16(&body[9..11]);
        let status_vars_len = usize::from(read_u16(&body[11..13]));
        let rest = &body[fixed..];
        if status_vars_len > rest.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "status_vars_len",
                value: status_vars_len as u64,
                available: rest.len(),
            });
        }
        let (status_vars, rest) = rest.split_at(status_vars_len);
        // The schema is followed by a NUL byte.
        if schema_len + 1 > rest.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "schema_len",
                value: schema_len as u64 + 1,
                available: rest.len(),
            });
        }
        let schema = &rest[..schema_len];
        let sql = &rest[schema_len + 1..];
        Ok(Query {
            thread_id,
            exec_time,
            error_code,
            status_vars,
            schema,
            sql,
            compressed,
        })
    }

    /// Whether this is the second phase of an XA transaction (`XA COMMIT`, `XA ROLLBACK`):
    /// a group of its own after its GTID, like DDL, but not DDL.
    pub fn is_xa_completion(&self) -> bool {
        if self.compressed {
            return false;
        }
        let mut words = self
            .sql
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let is =
            |w: Option<&[u8]>, kw: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()));
        is(words.next(), "XA") && {
            let second = words.next();
            is(second, "COMMIT") || is(second, "ROLLBACK")
        }
    }

    /// Classifies the statement for transaction boundaries.
    pub fn statement_kind(&self) -> StatementKind {
        if self.compressed {
            // The servers compress only long statements; the boundary keywords are short.
            return StatementKind::Other;
        }
        classify(self.sql)
    }
}

fn classify(sql: &[u8]) -> StatementKind {
    let mut words = sql
        .split(|b| b.is_ascii_whitespace() || *b == b';')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    let is = |w: &[u8], kw: &str| w.eq_ignore_ascii_case(kw.as_bytes());
    if is(first, "BEGIN") {
        StatementKind::Begin
    } else if is(first, "COMMIT") {
        StatementKind::Commit
    } else if is(first, "ROLLBACK") {
        match words.next() {
            Some(w) if is(w, "TO") => StatementKind::Other,
            _ => StatementKind::Rollback,
        }
    } else if is(first, "XA") {
        match words.next() {
            Some(w) if is(w, "START") || is(w, "BEGIN") => StatementKind::Begin,
            _ => StatementKind::Other,
        }
    } else {
        StatementKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(schema: &[u8], status: &[u8], sql: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(schema.len() as u8);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(status.len() as u16).to_le_bytes());
        b.extend_from_slice(status);
        b.extend_from_slice(schema);
        b.push(0);
        b.extend_from_slice(sql);
        b
    }

    #[test]
    fn decodes_fields_and_borrows_the_text() {
        let bytes = body(b"shop", &[0, 0, 0, 0, 0], b"CREATE TABLE t (a INT)");
        let q = Query::parse(&bytes, 13, false).expect("parse");
        assert_eq!((q.thread_id, q.exec_time, q.error_code), (7, 1, 0));
        assert_eq!(q.schema, b"shop");
        assert_eq!(q.sql, b"CREATE TABLE t (a INT)");
        assert_eq!(q.statement_kind(), StatementKind::Other);
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut bytes = body(b"db", &[], b"BEGIN");
        bytes[8] = 200; // schema_len past the end
        assert!(matches!(
            Query::parse(&bytes, 13, false),
            Err(ErrorKind::LengthMismatch {
                field: "schema_len",
                ..
            })
        ));
        let mut bytes = body(b"db", &[], b"BEGIN");
        bytes[11] = 0xff; // status_vars_len past the end
        assert!(matches!(
            Query::parse(&bytes, 13, false),
            Err(ErrorKind::LengthMismatch {
                field: "status_vars_len",
                ..
            })
        ));
        assert!(Query::parse(&bytes[..5], 13, false).is_err());
    }

    #[test]
    fn classifies_boundary_statements() {
        assert_eq!(classify(b"BEGIN"), StatementKind::Begin);
        assert_eq!(classify(b"COMMIT"), StatementKind::Commit);
        assert_eq!(classify(b"  commit;"), StatementKind::Commit);
        assert_eq!(classify(b"ROLLBACK"), StatementKind::Rollback);
        assert_eq!(classify(b"ROLLBACK TO sp1"), StatementKind::Other);
        assert_eq!(classify(b"SAVEPOINT sp1"), StatementKind::Other);
        assert_eq!(classify(b"XA START X'31'"), StatementKind::Begin);
        assert_eq!(classify(b"XA END X'31'"), StatementKind::Other);
        assert_eq!(classify(b"XA COMMIT X'31'"), StatementKind::Other);
        assert_eq!(classify(b"BEGINNING"), StatementKind::Other);
        assert_eq!(classify(b"DROP TABLE t"), StatementKind::Other);
        assert_eq!(classify(b""), StatementKind::Other);
    }
}
