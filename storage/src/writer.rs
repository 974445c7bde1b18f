//! Turning a replication stream into archived files and their index.
//!
//! [`ArchiveWriter`] takes the stream's events as the protocol delivers them (whole, or
//! in 16 MiB pieces for larger ones) and:
//! - drops what the dump stream adds that is not in the server's file: the artificial
//!   ROTATE that names the file, heartbeats, events the server marks artificial, and the
//!   FORMAT_DESCRIPTION it repeats (with `log_pos` 0) when a dump starts mid-file;
//! - checks that every other event lands exactly where the archived copy ends (its
//!   `log_pos` is its end offset in the server's file), so a hole or an overlap is an
//!   error ([`StorageError::Gap`]), never a silently different file. MariaDB 11.4+ writes
//!   the events of a transaction's cache with `log_pos` 0, in its file and on the wire
//!   (unless `binlog_legacy_event_pos` is on): such an event follows the placement of the
//!   last event that had a position (appended after an appended one, skipped after one the
//!   copy already held), and the next positioned event (the XID, or the next GTID) proves
//!   that nothing was missed between;
//! - appends the bytes, verifies checksums, and records transaction boundaries;
//! - on [`ArchiveWriter::request_sync`] (in the background, on the `syncer`
//!   thread) or [`ArchiveWriter::sync`] (waiting), fsyncs the data, then appends the index
//!   lines that describe it and fsyncs those: an index line never points at bytes a crash
//!   can lose;
//! - when the server rotates, clears the file's "in use" flag as the server does in its
//!   own copy and marks the index closed.

use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::{IndexRecord, TransactionEntry, encode_record};
use crate::layout::{Epoch, binlog_order, sync_dir, validate_binlog_name};
use crate::recover::clear_in_use_flag;
use crate::syncer::{Durable, SyncJob, Syncer};
use crate::tracking::{FileTracker, Observed};
use binlogd_parser::header::{FLAG_ARTIFICIAL, FLAG_BINLOG_IN_USE};
use binlogd_parser::{
    BINLOG_MAGIC, ChecksumAlgorithm, Event, EventHeader, EventType, FormatDescription, Frame,
    Framer, PiecewiseEvent, decode_event,
};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// What the writer did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Archived (or, for the first piece of a large event, being archived).
    Archived {
        /// The transaction it completed, if any.
        transaction: Option<TransactionEntry>,
    },
    /// A heartbeat: the source is at `position` of `file`.
    Heartbeat {
        /// The source's current file.
        file: String,
        /// Its current position.
        position: u64,
    },
    /// Not part of the server's file (dump-stream bookkeeping), or already archived.
    Skipped,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    /// Events archived.
    pub events: u64,
    /// Bytes archived.
    pub bytes: u64,
    /// Transactions indexed.
    pub transactions: u64,
    /// The last transaction indexed.
    pub last_transaction: Option<TransactionEntry>,
}

/// Writes one epoch's files from a replication stream.
#[derive(Debug)]
pub struct ArchiveWriter {
    epoch: Epoch,
    framer: Framer,
    file: Option<OpenFile>,
    /// The file a real ROTATE named: where the next events belong.
    next_file: Option<String>,
    gtids: GtidState,
    /// What earlier epochs hold: a new primary's binlog repeats it.
    known_before_epoch: GtidState,
    large: Option<LargeEvent>,
    stats: WriterStats,
    /// How to decode what comes before the stream's FORMAT_DESCRIPTION.
    preamble: FormatDescription,
    syncer: Syncer,
    /// A sync finished while the writer waited for it, not yet reported by
    /// [`ArchiveWriter::poll_durable`].
    unreported: Option<Durable>,
    /// The archive's last file and its length, when the dump is to continue it (see
    /// [`ArchiveWriter::continues`]).
    continues: Option<(String, u64)>,
    /// What became of the last event that carried its position (`log_pos` != 0): events
    /// without one belong with it. `None` until the first such event of the stream.
    last_placement: Option<Placement>,
}

/// Where an event of the stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// At the end of the archived copy.
    Append,
    /// Nowhere: the copy holds it already (a dump by GTID resends a file's first events).
    AlreadyArchived,
}

#[derive(Debug)]
struct LargeEvent {
    check: PiecewiseEvent,
    archive: bool,
}

#[derive(Debug)]
struct OpenFile {
    name: String,
    path: PathBuf,
    data: BufWriter<SharedFile>,
    len: u64,
    /// How much of the data a sync has been asked for.
    submitted_len: u64,
    index_path: PathBuf,
    index: Arc<File>,
    /// Index lines waiting for their data to be durable.
    index_pending: Vec<u8>,
    tracker: FileTracker,
    /// How far the index lines written or pending reach.
    indexed_to: u64,
}

/// A file written here and fsynced on the sync thread.
#[derive(Debug)]
struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ArchiveWriter {
    /// A writer into `epoch` for a stream whose checksum was negotiated as `checksum`.
    /// `gtids` is the state of everything archived so far (the resume point's). Fails
    /// only if the sync thread cannot be started.
    pub fn new(
        epoch: Epoch,
        checksum: ChecksumAlgorithm,
        gtids: GtidState,
    ) -> Result<Self, StorageError> {
        let known_before_epoch = epoch.gtids_at_start.clone();
        Ok(ArchiveWriter {
            epoch,
            framer: Framer::for_stream(checksum),
            file: None,
            next_file: None,
            gtids,
            known_before_epoch,
            large: None,
            stats: WriterStats::default(),
            preamble: FormatDescription::stream_preamble(checksum),
            syncer: Syncer::start()?,
            unreported: None,
            continues: None,
            last_placement: None,
        })
    }

    /// Says that the dump should continue the archive's unfinished last file `name`, now
    /// `len` bytes long. A dump by GTID that begins in a later file instead (the server
    /// rotated after the last archived transaction, before binlogd read the ROTATE) fails
    /// with [`StorageError::UnfinishedFile`], so that the stream fetches the rest by position.
    pub fn continues(&mut self, name: &str, len: u64) {
        self.continues = Some((name.to_owned(), len));
    }

    /// The epoch written to.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The file being written and how long it is (written, not necessarily durable).
    pub fn position(&self) -> Option<(&str, u64)> {
        self.file.as_ref().map(|f| (f.name.as_str(), f.len))
    }

    /// The GTID state of everything archived.
    pub fn gtids(&self) -> &GtidState {
        &self.gtids
    }

    /// Counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Whether anything was written that no sync has been asked for yet.
    pub fn has_unsynced(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| f.len > f.submitted_len || !f.index_pending.is_empty())
    }

    /// Bytes written that no sync has been asked for yet.
    pub fn unsynced_bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.len - f.submitted_len)
    }

    /// How many syncs are under way on the sync thread.
    pub fn syncs_in_flight(&self) -> usize {
        self.syncer.in_flight()
    }

    /// Sets what the sync thread calls after each sync it finishes (from that thread):
    /// typically it wakes the task that then calls [`ArchiveWriter::poll_durable`].
    pub fn set_sync_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        self.syncer.set_waker(Box::new(waker));
    }

    /// Whether a large event is half received.
    pub fn in_event(&self) -> bool {
        self.large.is_some()
    }

    /// Takes the next piece of the stream: a whole event (`first && last`), or a piece
    /// of one that spans several packets.
    pub fn ingest(
        &mut self,
        piece: &[u8],
        first: bool,
        last: bool,
    ) -> Result<Ingested, StorageError> {
        if !first {
            return self.continue_large(piece, last);
        }
        if self.large.is_some() {
            return Err(self.inconsistent("a new event began before the last one ended"));
        }
        if !last {
            return self.begin_large(piece);
        }
        let offset = self.file.as_ref().map_or(0, |f| f.len);
        let raw = match self.framer.next_event(piece, offset) {
            Ok(Frame::Event(raw)) if raw.bytes.len() == piece.len() => raw,
            Ok(_) => {
                return Err(self.inconsistent(format!(
                    "a packet of {} bytes does not hold exactly one event",
                    piece.len()
                )));
            }
            Err(source) => return Err(self.parse_error(source)),
        };
        let header = raw.header;
        let event = match self.framer.format() {
            Some(format) => decode_event(&raw, format),
            None => decode_event(&raw, &self.preamble),
        }
        .map_err(|e| self.parse_error(e))?;
        match &event {
            Event::Heartbeat { file } | Event::HeartbeatV2 { file, .. } => {
                let position = match event {
                    Event::HeartbeatV2 {
                        position: Some(p), ..
                    } => p,
                    _ => u64::from(header.log_pos),
                };
                return Ok(Ingested::Heartbeat {
                    file: String::from_utf8_lossy(file).into_owned(),
                    position,
                });
            }
            Event::Rotate {
                next_file,
                position,
            } if is_made_up(&header) => {
                let name = String::from_utf8_lossy(next_file).into_owned();
                self.switch_to(&name, *position)?;
                return Ok(Ingested::Skipped);
            }
            Event::FormatDescription(_) => {
                self.open_pending_file()?;
                let file = self.file.as_ref().ok_or_else(|| no_file(&header))?;
                // Repeated when a dump starts mid-file: the copy has it already.
                if file.len > 4 {
                    return Ok(Ingested::Skipped);
                }
                if header.log_pos == 0 {
                    return Err(StorageError::AlteredHead {
                        file: file.name.clone(),
                    });
                }
            }
            Event::StartEncryption { .. } if header.log_pos == 0 => {
                // A dump that starts mid-file sends the file's START_ENCRYPTION again after
                // its format description, both without their position: the copy has it.
                self.open_pending_file()?;
                let file = self.file.as_ref().ok_or_else(|| no_file(&header))?;
                if file.len > 4 {
                    return Ok(Ingested::Skipped);
                }
                return Err(StorageError::AlteredHead {
                    file: file.name.clone(),
                });
            }
            _ if is_made_up(&header) => return Ok(Ingested::Skipped),
            Event::Rotate { next_file, .. } => {
                // The name becomes a file of the archive: as the artificial ROTATE's, it
                // must be a plain name (not `../x`, not a path), whoever sent it.
                self.open_pending_file()?;
                let name = String::from_utf8_lossy(next_file);
                validate_binlog_name(&name).map_err(|m| self.inconsistent(m))?;
            }
            _ => self.open_pending_file()?,
        }
        if !self.lands_at_end(&header)? {
            return Ok(Ingested::Skipped);
        }
        if header.event_type == EventType::FORMAT_DESCRIPTION {
            // The dump sends the format description with the "in use" flag clear; the
            // server's own copy of a file it still writes has it set, until the file is
            // closed. Do the same, so the copies match at every moment.
            let mut in_use = piece.to_vec();
            in_use[FLAGS_OFFSET] |= FLAG_BINLOG_IN_USE as u8;
            self.append(&in_use)?;
        } else {
            self.append(piece)?;
        }
        let file = self.file.as_mut().ok_or_else(|| no_file(&header))?;
        let observed = file.tracker.observe(&raw, &event);
        self.record(observed)
    }

    fn begin_large(&mut self, piece: &[u8]) -> Result<Ingested, StorageError> {
        let offset = self.file.as_ref().map_or(0, |f| f.len);
        let check = self
            .framer
            .begin_piecewise(piece, offset)
            .map_err(|e| self.parse_error(e))?;
        let header = *check.header();
        let archive = if is_made_up(&header)
            || header.event_type == EventType::HEARTBEAT
            || header.event_type == EventType::HEARTBEAT_V2
        {
            false
        } else {
            self.open_pending_file()?;
            self.lands_at_end(&header)?
        };
        if archive {
            self.append(piece)?;
        }
        self.large = Some(LargeEvent { check, archive });
        Ok(if archive {
            Ingested::Archived { transaction: None }
        } else {
            Ingested::Skipped
        })
    }

    fn continue_large(&mut self, piece: &[u8], last: bool) -> Result<Ingested, StorageError> {
        let Some(mut large) = self.large.take() else {
            return Err(self.inconsistent("a continuation packet without an event to continue"));
        };
        large.check.update(piece).map_err(|e| self.parse_error(e))?;
        if large.archive {
            self.append(piece)?;
        }
        if !last {
            self.large = Some(large);
            return Ok(if large_archived(&self.large) {
                Ingested::Archived { transaction: None }
            } else {
                Ingested::Skipped
            });
        }
        let header = *large.check.header();
        let offset = large.check.offset();
        large.check.finish().map_err(|e| self.parse_error(e))?;
        if !large.archive {
            return Ok(Ingested::Skipped);
        }
        let file = self.file.as_mut().ok_or_else(|| no_file(&header))?;
        let observed = file.tracker.observe_unread(offset, &header);
        self.record(observed)
    }

    /// Whether an event belongs at the end of the archived copy: yes if its `log_pos`
    /// says it ends where the copy plus the event ends; no (skip) if the copy already
    /// holds it; a gap otherwise. An event without a position goes where the last one
    /// with a position went.
    fn lands_at_end(&mut self, header: &EventHeader) -> Result<bool, StorageError> {
        let file = self.file.as_ref().ok_or_else(|| no_file(header))?;
        let size = u64::from(header.event_size);
        if header.log_pos == 0 {
            return match self.last_placement {
                Some(placement) => Ok(placement == Placement::Append),
                None => Err(StorageError::inconsistent(
                    &file.name,
                    file.len,
                    format!(
                        "a {} event without a position (end_log_pos 0) came before any event \
                         with one, so where it belongs in the file cannot be known",
                        header.event_type
                    ),
                )),
            };
        }
        let end = file.len + size;
        // `log_pos` is 32 bits: compare modulo 2^32 for files past 4 GiB.
        if end as u32 == header.log_pos {
            self.last_placement = Some(Placement::Append);
            return Ok(true);
        }
        let event_end = u64::from(header.log_pos);
        if file.len < 1 << 32 && event_end <= file.len && event_end >= size {
            // The copy has it: a dump positioned by GTID resends a file's opening events.
            self.last_placement = Some(Placement::AlreadyArchived);
            return Ok(false);
        }
        Err(StorageError::Gap {
            file: file.name.clone(),
            offset: event_end.saturating_sub(size),
            archived: file.len,
            event_type: header.event_type,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StorageError::inconsistent(
                "",
                0,
                "no file open to append to",
            ));
        };
        file.data
            .write_all(bytes)
            .map_err(StorageError::io("writing", &file.path))?;
        file.len += bytes.len() as u64;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, observed: Observed) -> Result<Ingested, StorageError> {
        self.stats.events += 1;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StorageError::inconsistent("", 0, "no file open"))?;
        if let Some(before) = observed.gtids_before {
            self.gtids = self.gtids.union(&before);
            encode_record(&IndexRecord::GtidsBefore(before), &mut file.index_pending);
        }
        let mut transaction = observed.transaction;
        if let Some(t) = transaction.as_mut() {
            if let Some(gtid) = t.gtid {
                t.repeated = self.known_before_epoch.includes(&gtid);
                self.gtids.add(gtid);
            }
            encode_record(
                &IndexRecord::Transaction(t.clone()),
                &mut file.index_pending,
            );
            file.indexed_to = file.indexed_to.max(t.end);
            self.stats.transactions += 1;
            self.stats.last_transaction = Some(t.clone());
        }
        if let Some(next) = file.tracker.closed.clone() {
            self.close_file(next)?;
        }
        Ok(Ingested::Archived { transaction })
    }

    /// Asks the sync thread to make everything written so far durable (data first, then
    /// its index lines), and returns without waiting. Returns whether there was anything
    /// to sync.
    pub fn request_sync(&mut self) -> Result<bool, StorageError> {
        let last_transaction = self.stats.last_transaction.clone();
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        let Some(job) = file.sync_job(last_transaction, false)? else {
            return Ok(false);
        };
        self.syncer.submit(job)?;
        Ok(true)
    }

    /// What became durable since the last call, without waiting: the furthest point of
    /// the syncs that finished. An error means a sync failed; nothing after it is synced.
    pub fn poll_durable(&mut self) -> Result<Option<Durable>, StorageError> {
        let polled = self.syncer.poll()?;
        Ok(polled.or(self.unreported.take()))
    }

    /// Makes everything written so far durable and waits for it. Returns the durable
    /// transaction boundary (none before the first file is open).
    pub fn sync(&mut self) -> Result<Option<Durable>, StorageError> {
        self.request_sync()?;
        let done = self.syncer.wait()?.or(self.unreported.take());
        Ok(done.or_else(|| {
            self.file.as_ref().map(|file| Durable {
                file: file.name.clone(),
                position: file.tracker.boundary.min(file.submitted_len),
                last_transaction: self.stats.last_transaction.clone(),
            })
        }))
    }

    /// The server's artificial ROTATE names the file the stream continues in.
    fn switch_to(&mut self, name: &str, position: u64) -> Result<(), StorageError> {
        validate_binlog_name(name).map_err(|m| StorageError::inconsistent(name, position, m))?;
        if let Some((unfinished, archived)) = self.continues.take()
            && binlog_order(name, &unfinished) == std::cmp::Ordering::Greater
        {
            return Err(StorageError::UnfinishedFile {
                file: unfinished,
                archived,
                resumed_in: name.to_owned(),
            });
        }
        if let Some(file) = &self.file {
            if file.name == name {
                return Ok(());
            }
            tracing::warn!(
                from = %file.name,
                to = name,
                "the source moved to another file without a ROTATE event ending this one \
                 (did the server crash?); keeping the file as received"
            );
            self.close_file(None)?;
        }
        self.next_file = None;
        self.open(name)
    }

    fn open_pending_file(&mut self) -> Result<(), StorageError> {
        if self.file.is_none()
            && let Some(name) = self.next_file.take()
        {
            self.open(&name)?;
        }
        Ok(())
    }

    /// Opens `name` for appending, creating it (with the magic) if it is new. An
    /// existing copy ends on a transaction boundary (recovery saw to that).
    fn open(&mut self, name: &str) -> Result<(), StorageError> {
        validate_binlog_name(name).map_err(|m| StorageError::inconsistent(name, 0, m))?;
        let path = self.epoch.data_path(name);
        let index_path = self.epoch.index_path(name);
        let existed = path.exists();
        let data = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(StorageError::io("opening", &path))?;
        let mut len = data
            .metadata()
            .map_err(StorageError::io("reading", &path))?
            .len();
        if len < 4 {
            data.set_len(0)
                .map_err(StorageError::io("truncating", &path))?;
            (&data)
                .write_all(&BINLOG_MAGIC)
                .map_err(StorageError::io("writing", &path))?;
            len = 4;
        }
        let index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&index_path)
            .map_err(StorageError::io("opening", &index_path))?;
        if !existed {
            data.sync_all()
                .map_err(StorageError::io("fsync of", &path))?;
            sync_dir(&self.epoch.dir)?;
        }
        let mut tracker = FileTracker::new(len);
        if len > 4 {
            // Recovery left the copy on a boundary; its GTID state is indexed already.
            tracker.gtids_before = Some(GtidState::None);
        }
        self.file = Some(OpenFile {
            name: name.to_owned(),
            path,
            data: BufWriter::with_capacity(1 << 20, SharedFile(Arc::new(data))),
            len,
            submitted_len: len,
            index_path,
            index: Arc::new(index),
            index_pending: Vec::new(),
            tracker,
            indexed_to: len,
        });
        Ok(())
    }

    /// Ends the current file: flagged closed as the server's own copy is, marked closed in
    /// its index, and durable.
    fn close_file(&mut self, next: Option<String>) -> Result<(), StorageError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.data
            .flush()
            .map_err(StorageError::io("writing", &file.path))?;
        if file.tracker.closed.is_some() {
            clear_in_use_flag(&file.path)?;
        }
        encode_record(
            &IndexRecord::Closed {
                size: file.len,
                next_file: next.clone(),
            },
            &mut file.index_pending,
        );
        // The flag rewritten in place needs the data's fsync even when every byte was
        // handed to a sync before.
        let rewritten = file.tracker.closed.is_some();
        if let Some(job) = file.sync_job(self.stats.last_transaction.clone(), rewritten)? {
            self.syncer.submit(job)?;
        }
        // Wait for it: then only the newest file can ever lack index lines after a crash,
        // which is the one file recovery looks at. Rotations are rare enough not to notice.
        if let Some(durable) = self.syncer.wait()? {
            self.unreported = Some(durable);
        }
        self.next_file = next;
        Ok(())
    }

    fn parse_error(&self, source: binlogd_parser::ParseError) -> StorageError {
        StorageError::Parse {
            file: self.current_name(),
            offset: source.offset,
            cause: source,
        }
    }

    fn inconsistent(&self, message: impl Into<String>) -> StorageError {
        let offset = self.file.as_ref().map_or(0, |f| f.len);
        StorageError::inconsistent(&self.current_name(), offset, message)
    }

    fn current_name(&self) -> String {
        match (&self.file, &self.next_file) {
            (Some(file), _) => file.name.clone(),
            (None, Some(next)) => next.clone(),
            (None, None) => "(before the first file)".to_owned(),
        }
    }
}

impl OpenFile {
    /// Hands what was written since the last job to the OS, and describes the sync that
    /// makes it durable; `None` when there is nothing new.
    /// `data_rewritten`: bytes already handed over were changed in place since.
    fn sync_job(
        &mut self,
        last_transaction: Option<TransactionEntry>,
        data_rewritten: bool,
    ) -> Result<Option<SyncJob>, StorageError> {
        let sync_data = self.len > self.submitted_len || data_rewritten;
        // Whole events after the last transaction (a checkpoint event, say) are durable
        // with the rest: say so, or readers of the index would stop short of them.
        let boundary = self.tracker.boundary.min(self.len);
        if boundary > self.indexed_to {
            encode_record(
                &IndexRecord::Boundary { end: boundary },
                &mut self.index_pending,
            );
            self.indexed_to = boundary;
        }
        if !sync_data && self.index_pending.is_empty() {
            return Ok(None);
        }
        self.data
            .flush()
            .map_err(StorageError::io("writing", &self.path))?;
        self.submitted_len = self.len;
        Ok(Some(SyncJob {
            data: Arc::clone(&self.data.get_ref().0),
            data_path: self.path.clone(),
            sync_data,
            index: Arc::clone(&self.index),
            index_path: self.index_path.clone(),
            index_lines: std::mem::take(&mut self.index_pending),
            durable: Durable {
                file: self.name.clone(),
                position: self.tracker.boundary.min(self.len),
                last_transaction,
            },
        }))
    }
}

/// Where the low byte of the flags sits in an event header.
const FLAGS_OFFSET: usize = binlogd_parser::HEADER_LEN - 2;

/// Events the dump stream makes up: not in the server's file. MySQL and MariaDB flag
/// every one of them artificial (`fake_event_header` in MariaDB's `sql/sql_repl.cc`); a
/// `log_pos` of 0 alone does not tell, since MariaDB 11.4+ writes real events so.
fn is_made_up(header: &EventHeader) -> bool {
    header.flags & FLAG_ARTIFICIAL != 0
}

fn large_archived(large: &Option<LargeEvent>) -> bool {
    large.as_ref().is_some_and(|l| l.archive)
}

fn no_file(header: &EventHeader) -> StorageError {
    StorageError::inconsistent(
        "(no file)",
        0,
        format!(
            "a {} event arrived before the source named its binlog file",
            header.event_type
        ),
    )
}
