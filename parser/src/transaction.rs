//! Transactions: grouping events into what the index records and what a restore cuts at.
//!
//! A transaction starts at a GTID event (MariaDB GTID, MySQL GTID or ANONYMOUS_GTID) or,
//! on servers without GTIDs, at a `BEGIN` query or a lone statement. It is either
//! - a multi-statement transaction, which ends with an XID event, a `COMMIT`/`ROLLBACK`
//!   query or an XA_PREPARE event. MySQL opens it with a `BEGIN`/`XA START` query after
//!   the GTID; MariaDB writes no such query: its GTID event opens it unless flagged
//!   `FL_STANDALONE` or `FL_COMPLETED_XA`;
//! - or a single statement (DDL, `XA COMMIT`): the first query after the GTID.
//!
//! Its byte range runs from the first event's offset to the end of the last event, which
//! is the `end_log_pos` the server wrote into that event's header: cutting a file there
//! never splits a transaction.

use crate::EventType;
use crate::error::ErrorKind;
use crate::events::gtid::FL_COMPLETED_XA;
use crate::events::query::Query;
use crate::events::query::StatementKind;
use crate::events::{Event, decompress_mariadb};
use crate::framing::RawEvent;
use crate::gtid::Gtid;
use crate::header::EventHeader;
use std::borrow::Cow;

/// When a transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitTime {
    /// Microseconds since the epoch.
    pub micros: u64,
    /// Whether `micros` is exact (MySQL 8 commit timestamps) or whole seconds from an
    /// event header.
    pub exact: bool,
}

impl CommitTime {
    /// Whole seconds since the epoch.
    pub fn seconds(&self) -> u64 {
        self.micros / 1_000_000
    }
}

/// One transaction found in a binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction<'a> {
    /// Its GTID; `None` on servers without GTIDs and for MySQL anonymous transactions.
    pub gtid: Option<Gtid>,
    /// Offset of its first event.
    pub start: u64,
    /// Offset just past its last event.
    pub end: u64,
    /// When it committed: the source's commit timestamp on MySQL 8, else the header time
    /// of its last event.
    pub commit_time: CommitTime,
    /// Whether it is DDL.
    pub is_ddl: bool,
    /// The statement of a DDL transaction (its text may be compressed: see
    /// [`Transaction::ddl_text`]).
    pub ddl: Option<Query<'a>>,
    /// How many events it holds.
    pub events: u32,
}

impl<'a> Transaction<'a> {
    /// The DDL statement's text, decompressed if the server compressed it
    /// (`log_bin_compress`); `None` for other transactions.
    pub fn ddl_text(&self) -> Option<Result<Cow<'a, [u8]>, ErrorKind>> {
        let query = self.ddl?;
        Some(if query.compressed {
            decompress_mariadb(query.sql).map(Cow::Owned)
        } else {
            Ok(Cow::Borrowed(query.sql))
        })
    }
}

/// A transaction in progress. It keeps nothing borrowed from events, so the tracker
/// outlives the buffers its events came from (file chunks, stream packets).
#[derive(Debug, Clone, Copy)]
struct Open {
    gtid: Option<Gtid>,
    start: u64,
    began: bool,
    mariadb_ddl_flag: Option<bool>,
    exact_commit_micros: Option<u64>,
    events: u32,
}

/// Groups events into transactions, one event at a time.
#[derive(Debug, Clone, Default)]
pub struct TransactionTracker {
    open: Option<Open>,
    abandoned: u64,
}

impl TransactionTracker {
    /// A tracker outside any transaction.
    pub fn new() -> Self {
        TransactionTracker::default()
    }

    /// Offset where the transaction in progress began, if one is open: where a reader
    /// must resume to see it whole.
    pub fn open_since(&self) -> Option<u64> {
        self.open.map(|open| open.start)
    }

    /// Transactions that began and were never finished before the next began: what a
    /// server leaves when it crashes in the middle of writing one.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Feeds the next event; returns the transaction it completes, if any.
    pub fn push<'a>(&mut self, raw: &RawEvent<'a>, event: &Event<'a>) -> Option<Transaction<'a>> {
        match event {
            Event::MariadbGtid(gtid) => {
                self.begin_group(raw, Some(Gtid::Mariadb(gtid.gtid)));
                if let Some(open) = self.open.as_mut() {
                    open.mariadb_ddl_flag = Some(gtid.is_ddl());
                    // The GTID event stands for BEGIN unless the group is one statement.
                    open.began = !gtid.is_standalone() && gtid.flags & FL_COMPLETED_XA == 0;
                }
                None
            }
            Event::MysqlGtid(gtid) => {
                self.begin_group(raw, gtid.gtid.map(Gtid::Mysql));
                if let Some(open) = self.open.as_mut() {
                    open.exact_commit_micros = gtid
                        .original_commit_timestamp
                        .filter(|&t| t != 0)
                        .or(gtid.immediate_commit_timestamp);
                }
                None
            }
            Event::Query(query) => match (query.statement_kind(), self.open.as_mut()) {
                (StatementKind::Begin, Some(open)) if !open.began => {
                    open.began = true;
                    open.events += 1;
                    None
                }
                (StatementKind::Begin, _) => {
                    if self.open.is_some() {
                        self.abandoned += 1;
                    }
                    self.open = Some(Open::new(None, raw.offset, true));
                    None
                }
                (StatementKind::Commit | StatementKind::Rollback, Some(_)) => self.close(raw, None),
                (_, Some(open)) if open.began => {
                    open.events += 1;
                    None
                }
                // The statement right after a GTID with no BEGIN is the whole group.
                (_, Some(_)) => self.close(raw, Some(*query)),
                (_, None) => {
                    // A lone statement on a server without GTIDs.
                    // `close` counts the closing event, which is the only one here.
                    self.open = Some(Open {
                        events: 0,
                        ..Open::new(None, raw.offset, false)
                    });
                    self.close(raw, Some(*query))
                }
            },
            // A payload holds everything of its transaction after the GTID event.
            Event::Xid { .. } | Event::XaPrepare(_) | Event::TransactionPayload(_) => {
                self.close(raw, None)
            }
            Event::FormatDescription(_)
            | Event::Rotate { .. }
            | Event::Stop
            | Event::Heartbeat { .. }
            | Event::HeartbeatV2 { .. }
            | Event::PreviousGtids { .. }
            | Event::GtidList(_)
            | Event::BinlogCheckpoint(_)
            | Event::StartEncryption { .. } => None,
            _ => {
                if let Some(open) = self.open.as_mut() {
                    open.events += 1;
                }
                None
            }
        }
    }

    /// Feeds an event known by its header only: one too large to hold whole (the
    /// replication stream delivers it in 16 MiB pieces), which sits at `offset`. Large
    /// events are row images, statements and compressed payloads, never GTIDs or `BEGIN`;
    /// a statement seen this way is the transaction's body, or a whole group of its own
    /// when no `BEGIN` opened one (its text is then not kept: `ddl` stays `None`).
    pub fn push_unread(
        &mut self,
        offset: u64,
        header: &EventHeader,
    ) -> Option<Transaction<'static>> {
        let end = offset + u64::from(header.event_size);
        let kind = header.event_type;
        if kind == EventType::XID
            || kind == EventType::XA_PREPARE
            || kind == EventType::TRANSACTION_PAYLOAD
        {
            return self.close_at(end, header.timestamp, None, false);
        }
        let is_statement = kind == EventType::QUERY || kind == EventType::MARIADB_QUERY_COMPRESSED;
        match self.open.as_mut() {
            Some(open) if open.began || !is_statement => {
                open.events += 1;
                None
            }
            Some(_) => self.close_at(end, header.timestamp, None, true),
            None if is_statement => {
                self.open = Some(Open {
                    events: 0,
                    ..Open::new(None, offset, false)
                });
                self.close_at(end, header.timestamp, None, true)
            }
            None => None,
        }
    }

    fn begin_group(&mut self, raw: &RawEvent<'_>, gtid: Option<Gtid>) {
        if self.open.is_some() {
            self.abandoned += 1;
        }
        self.open = Some(Open::new(gtid, raw.offset, false));
    }

    /// Ends the open transaction at `raw`; `statement` is the query when the group is a
    /// single statement.
    fn close<'a>(
        &mut self,
        raw: &RawEvent<'a>,
        statement: Option<Query<'a>>,
    ) -> Option<Transaction<'a>> {
        // The second phase of an XA transaction (`XA COMMIT`/`XA ROLLBACK`) is a group
        // of its own too, but not DDL.
        let lone_statement = statement.is_some_and(|q| !q.is_xa_completion());
        self.close_at(
            raw.end_offset(),
            raw.header.timestamp,
            statement,
            lone_statement,
        )
    }

    /// Ends the open transaction with the event that ends at `end` and was written at
    /// `timestamp`. A `lone_statement` group is DDL unless MariaDB's GTID said otherwise.
    fn close_at<'a>(
        &mut self,
        end: u64,
        timestamp: u32,
        statement: Option<Query<'a>>,
        lone_statement: bool,
    ) -> Option<Transaction<'a>> {
        let open = self.open.take()?;
        let commit_time = match open.exact_commit_micros {
            Some(micros) => CommitTime {
                micros,
                exact: true,
            },
            None => CommitTime {
                micros: u64::from(timestamp) * 1_000_000,
                exact: false,
            },
        };
        // MariaDB flags DDL in its GTID event; elsewhere a lone statement is DDL.
        let is_ddl = open.mariadb_ddl_flag.unwrap_or(lone_statement);
        Some(Transaction {
            gtid: open.gtid,
            start: open.start,
            end,
            commit_time,
            is_ddl,
            ddl: if is_ddl { statement } else { None },
            events: open.events + 1,
        })
    }
}

impl Open {
    fn new(gtid: Option<Gtid>, start: u64, began: bool) -> Self {
        Open {
            gtid,
            start,
            began,
            mariadb_ddl_flag: None,
            exact_commit_micros: None,
            events: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventType;
    use crate::events::{MysqlGtidEvent, Query};
    use crate::gtid::{MysqlGtid, Tag, Uuid};
    use crate::header::EventHeader;

    fn raw(offset: u64, len: usize, event_type: EventType) -> RawEvent<'static> {
        static BYTES: [u8; 64] = [0; 64];
        let header = EventHeader {
            timestamp: 1_700_000_000,
            event_type,
            server_id: 1,
            event_size: len as u32,
            log_pos: 0,
            flags: 0,
        };
        RawEvent::for_tests(offset, header, &BYTES[..len])
    }

    fn query(sql: &'static [u8]) -> Event<'static> {
        Event::Query(Query {
            thread_id: 1,
            exec_time: 0,
            error_code: 0,
            status_vars: &[],
            schema: b"db",
            sql,
            compressed: false,
        })
    }

    fn mysql_gtid(gno: u64) -> Event<'static> {
        Event::MysqlGtid(Box::new(MysqlGtidEvent {
            gtid: Some(MysqlGtid {
                uuid: Uuid([7; 16]),
                tag: Tag::NONE,
                gno,
            }),
            ..MysqlGtidEvent::default()
        }))
    }

    #[test]
    fn mysql_xa_second_phase_is_its_own_group_but_not_ddl() {
        let mut tracker = TransactionTracker::new();
        assert_eq!(
            tracker.push(&raw(4, 40, EventType::GTID), &mysql_gtid(1)),
            None
        );
        let t = tracker
            .push(
                &raw(44, 50, EventType::QUERY),
                &query(b"XA COMMIT X'31',X'',1"),
            )
            .expect("closed");
        assert_eq!(
            (t.start, t.end, t.is_ddl, t.ddl.is_none()),
            (4, 94, false, true)
        );

        assert_eq!(
            tracker.push(&raw(94, 40, EventType::GTID), &mysql_gtid(2)),
            None
        );
        let t = tracker
            .push(
                &raw(134, 60, EventType::QUERY),
                &query(b"CREATE TABLE t (a INT)"),
            )
            .expect("closed");
        assert!(t.is_ddl);
        assert_eq!(
            t.ddl_text().expect("ddl").expect("text").as_ref(),
            b"CREATE TABLE t (a INT)"
        );
    }

    #[test]
    fn a_group_left_open_by_the_next_gtid_is_counted_as_abandoned() {
        let mut tracker = TransactionTracker::new();
        tracker.push(&raw(4, 40, EventType::GTID), &mysql_gtid(1));
        tracker.push(&raw(44, 30, EventType::QUERY), &query(b"BEGIN"));
        assert_eq!(tracker.open_since(), Some(4));
        // The server crashed mid-transaction; after restart a new GTID begins.
        tracker.push(&raw(74, 40, EventType::GTID), &mysql_gtid(2));
        assert_eq!(tracker.abandoned(), 1);
        assert_eq!(tracker.open_since(), Some(74));
    }

    fn header(event_type: EventType, size: u32) -> EventHeader {
        EventHeader {
            timestamp: 1_700_000_000,
            event_type,
            server_id: 1,
            event_size: size,
            log_pos: 0,
            flags: 0,
        }
    }

    #[test]
    fn events_known_by_header_only_still_bound_transactions() {
        let mut tracker = TransactionTracker::new();
        tracker.push(&raw(4, 40, EventType::GTID), &mysql_gtid(1));
        tracker.push(&raw(44, 30, EventType::QUERY), &query(b"BEGIN"));
        let rows = header(EventType::WRITE_ROWS, 40 << 20);
        assert_eq!(tracker.push_unread(74, &rows), None);
        let end = 74 + u64::from(rows.event_size);
        let t = tracker
            .push_unread(end, &header(EventType::XID, 31))
            .expect("the XID closes it");
        assert_eq!(
            (t.start, t.end, t.events, t.is_ddl),
            (4, end + 31, 4, false)
        );

        // A huge statement right after a GTID is a group of its own.
        tracker.push(&raw(500, 40, EventType::GTID), &mysql_gtid(2));
        let t = tracker
            .push_unread(540, &header(EventType::QUERY, 20 << 20))
            .expect("a lone statement closes its group");
        assert_eq!((t.start, t.end, t.is_ddl), (500, 540 + (20 << 20), true));
        assert_eq!(t.ddl, None);
        assert_eq!(tracker.open_since(), None);
    }
}
