//! What the index learns from each event of a file, shared by the live writer and by
//! recovery (which re-reads what the writer could not index before a crash).

use crate::gtids::GtidState;
use crate::index::TransactionEntry;
use binlogd_parser::{
    Event, EventHeader, MariadbGtidPos, MysqlGtidSet, RawEvent, Transaction, TransactionTracker,
};

/// The index's view of one file as its events go by.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileTracker {
    transactions: TransactionTracker,
    /// From the file's GTID_LIST or PREVIOUS_GTIDS event, once seen.
    pub gtids_before: Option<GtidState>,
    /// Where the last event outside any transaction ends: a cut here splits nothing.
    pub boundary: u64,
    /// Set by the file's last event: ROTATE (naming the next file) or STOP.
    pub closed: Option<Option<String>>,
}

/// What one event meant for the index.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The transaction the event completed.
    pub transaction: Option<TransactionEntry>,
    /// Set when the event revealed the file's GTID state before it.
    pub gtids_before: Option<GtidState>,
}

impl FileTracker {
    pub fn new(boundary: u64) -> Self {
        FileTracker {
            boundary,
            ..FileTracker::default()
        }
    }

    /// Takes in an event read whole.
    pub fn observe(&mut self, raw: &RawEvent<'_>, event: &Event<'_>) -> Observed {
        let mut observed = Observed::default();
        match event {
            Event::GtidList(list) if self.gtids_before.is_none() => {
                let mut pos = MariadbGtidPos::new();
                for gtid in list.gtids() {
                    if !pos.includes(&gtid) {
                        pos.advance(gtid);
                    }
                }
                observed.gtids_before = Some(GtidState::Mariadb(pos));
            }
            Event::PreviousGtids { encoded } if self.gtids_before.is_none() => {
                // An undecodable set was already refused by the parser's checks of the
                // event; an empty one means no GTIDs before this file.
                let set = MysqlGtidSet::decode(encoded).unwrap_or_default();
                observed.gtids_before = Some(GtidState::Mysql(set));
            }
            Event::Rotate { next_file, .. } if !raw.is_artificial() => {
                self.closed = Some(Some(String::from_utf8_lossy(next_file).into_owned()));
            }
            Event::Stop => self.closed = Some(None),
            _ => {}
        }
        if let Some(before) = &observed.gtids_before {
            self.gtids_before = Some(before.clone());
        }
        observed.transaction = self.transactions.push(raw, event).map(entry);
        self.after_event(raw.end_offset());
        observed
    }

    /// Takes in an event known by its header only.
    pub fn observe_unread(&mut self, offset: u64, header: &EventHeader) -> Observed {
        let transaction = self.transactions.push_unread(offset, header).map(entry);
        self.after_event(offset + u64::from(header.event_size));
        Observed {
            transaction,
            gtids_before: None,
        }
    }

    fn after_event(&mut self, end: u64) {
        if self.transactions.open_since().is_none() {
            self.boundary = end;
        }
    }
}

fn entry(t: Transaction<'_>) -> TransactionEntry {
    TransactionEntry {
        gtid: t.gtid,
        start: t.start,
        end: t.end,
        commit_micros: t.commit_time.micros,
        exact_time: t.commit_time.exact,
        ddl: t.is_ddl,
        events: t.events,
        repeated: false,
    }
}
