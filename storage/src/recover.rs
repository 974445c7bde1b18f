//! Finding where an archive ends after a stop or a crash, and making it end cleanly.
//!
//! The writer fsyncs data before the index lines that describe it, so after a crash the
//! last file may hold more than its index says: whole transactions not yet indexed, and
//! the start of one that never finished. Recovery re-reads the file from its last
//! indexed transaction, indexes what is whole, cuts the file at the end of the last whole
//! transaction, and says where the source must continue. Only the newest file needs
//! this: the writer waits for a file's closing sync before it opens the next. Nothing acknowledged is lost:
//! only bytes past the last transaction boundary go, and the source sends them again.

use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::{FileIndex, encode_record, read_index};
use crate::layout::{Epoch, write_atomically};
use crate::scan::{ScanEnd, Scanned, scan_file};
use crate::tracking::FileTracker;
use binlogd_parser::{BINLOG_MAGIC, EventType, Frame, Framer, HEADER_LEN};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Where streaming continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The binlog file to continue in.
    pub file: String,
    /// The offset to continue at (4 for a file not begun).
    pub position: u64,
    /// The GTID state of everything archived before that point.
    pub gtids: GtidState,
    /// Bytes cut from the end of the file because they held no whole transaction.
    pub truncated: u64,
}

/// Recovers the last file of `epoch` and returns where to continue; `None` for an epoch
/// with no files.
pub fn recover(epoch: &Epoch) -> Result<Option<ResumePoint>, StorageError> {
    let files = epoch.binlog_files()?;
    let Some(last) = files.last() else {
        return Ok(None);
    };
    let previous_after = match files.len().checked_sub(2).map(|i| &files[i]) {
        Some(previous) => read_index(&epoch.index_path(previous))?.gtids_after(),
        None => GtidState::None,
    };
    let (index, end, truncated) = recover_file(epoch, last)?;
    let mut gtids = previous_after;
    if let Some(before) = &index.gtids_before {
        gtids = gtids.union(before);
    }
    gtids = gtids.union(&index.gtids_after());
    Ok(Some(match index.closed {
        Some((_, Some(next))) => ResumePoint {
            file: next,
            position: 4,
            gtids,
            truncated,
        },
        _ => ResumePoint {
            file: last.clone(),
            // A file cut back to nothing is fetched again from its start.
            position: end.max(4),
            gtids,
            truncated,
        },
    }))
}

/// Marks the last file of `epoch` closed as it stands, when the stream leaves the epoch's
/// server for another (a failover): that file can grow no more in this archive, and left
/// open it would hold up retention there for good, and never be sealed in an object
/// store. Call [`recover`] first, which ends it on a transaction boundary. Returns the
/// file's name when it was open.
pub fn close_abandoned(epoch: &Epoch) -> Result<Option<String>, StorageError> {
    let files = epoch.binlog_files()?;
    let Some(last) = files.last() else {
        return Ok(None);
    };
    let index_path = epoch.index_path(last);
    let mut index = read_index(&index_path)?;
    if index.closed.is_some() {
        return Ok(None);
    }
    let data_path = epoch.data_path(last);
    let len = fs::metadata(&data_path)
        .map_err(StorageError::io("reading", &data_path))?
        .len();
    index.closed = Some((len, None));
    let mut body = Vec::new();
    for record in index.records() {
        encode_record(&record, &mut body);
    }
    write_atomically(&index_path, &body)?;
    Ok(Some(last.clone()))
}

/// Makes one file end on a transaction boundary with a complete index; returns the
/// index, the file's new length and how many bytes were cut.
pub(crate) fn recover_file(
    epoch: &Epoch,
    name: &str,
) -> Result<(FileIndex, u64, u64), StorageError> {
    let data_path = epoch.data_path(name);
    let index_path = epoch.index_path(name);
    let len = fs::metadata(&data_path)
        .map_err(StorageError::io("reading", &data_path))?
        .len();
    let mut index = read_index(&index_path)?;
    let original = index.clone();
    // Index lines past the data cannot come from this writer, but never trust them.
    index.transactions.retain(|t| t.end <= len);
    if index.closed.as_ref().is_some_and(|(size, _)| *size != len) {
        index.closed = None;
    }
    if index.boundary.is_some_and(|end| end > len) {
        index.boundary = None;
    }

    let mut start = index.indexed_end();
    let format = read_format_description(&data_path, len)?;
    let mut tracker = FileTracker::new(start);
    let mut framer = Framer::new();
    let mut scan_from = 0;
    match &format {
        Some(format) => {
            start = start.max(4 + u64::from(format.1));
            tracker.boundary = start;
            if index.transactions.is_empty() {
                // Nothing indexed: read the file whole, its GTID state included.
                tracker.boundary = 4;
            } else {
                framer = Framer::with_format(format.0.clone());
                scan_from = start;
            }
        }
        None => tracker.boundary = 4,
    }
    let mut recovered = Vec::new();
    let mut end_state = ScanEnd::Clean;
    if format.is_some() && len > scan_from.max(4) {
        end_state = scan_file(&data_path, scan_from, framer, |item| {
            let observed = match item {
                Scanned::Event(raw, event) => tracker.observe(&raw, &event),
                Scanned::Unread { offset, header } => tracker.observe_unread(offset, &header),
            };
            if let Some(before) = observed.gtids_before {
                index.gtids_before.get_or_insert(before);
            }
            if let Some(t) = observed.transaction
                && t.start >= start
            {
                recovered.push(t);
            }
        })?;
    }
    index.transactions.extend(recovered);
    let boundary = if format.is_some() {
        tracker.boundary
    } else {
        // Not even a whole format description: start the file over.
        0
    };
    if let ScanEnd::Corrupt(e) = &end_state {
        tracing::warn!(
            file = %data_path.display(),
            offset = e.offset,
            error = %e,
            "the archived file has a damaged tail (written but not made durable before a crash); \
             cutting it at the last whole transaction, the source sends the rest again"
        );
    }
    let truncated = len - boundary;
    if truncated > 0 {
        tracing::info!(
            file = %data_path.display(),
            from = len,
            to = boundary,
            "cut an unfinished transaction from the end of the archived file"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(&data_path)
            .map_err(StorageError::io("opening", &data_path))?;
        file.set_len(boundary)
            .map_err(StorageError::io("truncating", &data_path))?;
        file.sync_all()
            .map_err(StorageError::io("fsync of", &data_path))?;
        index.closed = None;
    } else if let Some(next) = tracker.closed.take() {
        // The file ends with its ROTATE or STOP: it is complete, whatever the index
        // managed to say before the crash.
        index.closed = Some((len, next));
        clear_in_use_flag(&data_path)?;
    }
    index.torn_tail = false;
    if index != original {
        let mut body = Vec::new();
        for record in index.records() {
            encode_record(&record, &mut body);
        }
        write_atomically(&index_path, &body)?;
    }
    Ok((index, boundary, truncated))
}

/// Reads the file's FORMAT_DESCRIPTION event: the format and the event's size, or
/// `None` when the file is too short to hold it.
fn read_format_description(
    path: &std::path::Path,
    len: u64,
) -> Result<Option<(binlogd_parser::FormatDescription, u32)>, StorageError> {
    let mut head = Vec::new();
    fs::File::open(path)
        .map_err(StorageError::io("opening", path))?
        .take(64 << 10)
        .read_to_end(&mut head)
        .map_err(StorageError::io("reading", path))?;
    if len < 4 || head.len() < 4 + HEADER_LEN {
        return Ok(None);
    }
    if head[..4] != BINLOG_MAGIC {
        return Err(StorageError::inconsistent(
            &path.display().to_string(),
            0,
            "not a binlog file: the archive's copy does not start with the binlog magic",
        ));
    }
    let mut framer = Framer::new();
    match framer.next_event(&head[4..], 4) {
        Ok(Frame::Event(raw)) if raw.event_type() == EventType::FORMAT_DESCRIPTION => {
            let size = raw.header.event_size;
            Ok(framer.format().cloned().map(|format| (format, size)))
        }
        Ok(Frame::Incomplete { .. }) => Ok(None),
        Ok(Frame::Event(raw)) => Err(StorageError::inconsistent(
            &path.display().to_string(),
            4,
            format!(
                "the first event is {}, not FORMAT_DESCRIPTION",
                raw.event_type()
            ),
        )),
        Err(e) => Err(StorageError::Parse {
            file: path.display().to_string(),
            offset: e.offset,
            cause: e,
        }),
    }
}

/// Clears the "file in use" flag of the file's FORMAT_DESCRIPTION event, as the server
/// does in its own copy when it closes the file: the copies then stay identical. The
/// event's checksum is computed as if the flag were clear, so it stays valid.
pub(crate) fn clear_in_use_flag(path: &std::path::Path) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StorageError::io("opening", path))?;
    let flags_at = 4 + HEADER_LEN as u64 - 2;
    let mut flags = [0u8; 1];
    file.read_exact_at(&mut flags, flags_at)
        .map_err(StorageError::io("reading", path))?;
    if flags[0] & 1 != 0 {
        file.write_all_at(&[flags[0] & !1], flags_at)
            .map_err(StorageError::io("writing", path))?;
        file.sync_data()
            .map_err(StorageError::io("fsync of", path))?;
    }
    Ok(())
}
