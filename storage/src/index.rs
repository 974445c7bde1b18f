//! The index kept beside every archived binlog file: `NAME.index.jsonl`.
//!
//! One JSON object a line, appended as the file grows and only after the bytes it
//! describes are durable, so an index line never points past the data:
//!
//! ```text
//! {"record":"gtids_before","flavour":"mariadb","gtids":"0-1-41"}
//! {"record":"transaction","gtid":"0-1-42","start":389,"end":1022,"commit_micros":1763868000000000,"exact_time":false,"ddl":false,"events":5}
//! {"record":"closed","size":1067,"next_file":"mysql-bin.000002"}
//! ```
//!
//! `gtids_before` comes from the file's GTID_LIST (MariaDB) or PREVIOUS_GTIDS (MySQL)
//! event; `transaction` lines give each transaction's byte range and commit time (the
//! boundaries a restore cuts at); `closed` is written when the server rotated away from
//! the file, which is then final. A line is JSON so that `jq` and `grep` answer
//! questions about an archive without binlogd. A crash can leave a torn last line; the
//! reader ignores it and the writer's recovery rewrites the file.

use crate::error::StorageError;
use crate::gtids::GtidState;
use binlogd_parser::Gtid;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Now, in µs since the Unix epoch: the unit of commit times in the index.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The suffix of an index file, after the binlog file's name.
pub const INDEX_SUFFIX: &str = ".index.jsonl";

/// One line of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum IndexRecord {
    /// The GTID state before the file's first transaction.
    GtidsBefore(GtidState),
    /// One transaction.
    Transaction(TransactionEntry),
    /// Everything up to `end` is whole events outside any transaction (say, a checkpoint
    /// event after the last transaction): a safe place to cut, durable like the rest.
    Boundary {
        /// Where the events end.
        end: u64,
    },
    /// The server rotated away from the file: it is complete.
    Closed {
        /// Its final size.
        size: u64,
        /// The file the server continued in, named by the closing ROTATE (none after STOP).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_file: Option<String>,
    },
}

/// A transaction in an archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionEntry {
    /// Its GTID, if the server gives transactions one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<Gtid>,
    /// Offset of its first event.
    pub start: u64,
    /// Offset just past its last event.
    pub end: u64,
    /// Commit time, microseconds since the epoch.
    pub commit_micros: u64,
    /// Whether `commit_micros` is exact (MySQL 8) or whole seconds.
    pub exact_time: bool,
    /// Whether it is DDL.
    pub ddl: bool,
    /// How many events it has.
    pub events: u32,
    /// Set when an earlier file of the archive already holds this GTID: a new primary's
    /// binlog repeats what it replicated from the old one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

/// An index file read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIndex {
    /// The GTID state before the file, once its GTID_LIST/PREVIOUS_GTIDS was seen.
    pub gtids_before: Option<GtidState>,
    /// Its transactions, in file order.
    pub transactions: Vec<TransactionEntry>,
    /// Its final size and successor, once the server rotated away from it.
    pub closed: Option<(u64, Option<String>)>,
    /// The furthest `boundary` record, when past the last transaction.
    pub boundary: Option<u64>,
    /// Whether a torn (unterminated) last line was ignored.
    pub torn_tail: bool,
}

impl FileIndex {
    /// The GTID state after the file's last indexed transaction.
    pub fn gtids_after(&self) -> GtidState {
        let mut state = self.gtids_before.clone().unwrap_or_default();
        for gtid in self.transactions.iter().filter_map(|t| t.gtid) {
            state.add(gtid);
        }
        state
    }

    /// Where the last indexed transaction ends (4, just past the magic, if none).
    pub fn indexed_end(&self) -> u64 {
        let last = self.transactions.last().map_or(4, |t| t.end);
        last.max(self.boundary.unwrap_or(0))
    }

    /// The records that say the same as this index, in order.
    pub fn records(&self) -> Vec<IndexRecord> {
        let mut records = Vec::with_capacity(self.transactions.len() + 2);
        if let Some(before) = &self.gtids_before {
            records.push(IndexRecord::GtidsBefore(before.clone()));
        }
        records.extend(
            self.transactions
                .iter()
                .cloned()
                .map(IndexRecord::Transaction),
        );
        if let Some(end) = self.boundary
            && end > self.transactions.last().map_or(0, |t| t.end)
        {
            records.push(IndexRecord::Boundary { end });
        }
        if let Some((size, next_file)) = &self.closed {
            records.push(IndexRecord::Closed {
                size: *size,
                next_file: next_file.clone(),
            });
        }
        records
    }

    /// Adds a record read from a file or produced by the writer.
    pub fn apply(&mut self, record: IndexRecord) {
        match record {
            IndexRecord::GtidsBefore(state) => self.gtids_before = Some(state),
            IndexRecord::Transaction(entry) => self.transactions.push(entry),
            IndexRecord::Boundary { end } => {
                self.boundary = Some(self.boundary.map_or(end, |b| b.max(end)));
            }
            IndexRecord::Closed { size, next_file } => self.closed = Some((size, next_file)),
        }
    }
}

/// Appends one record as a line to `out`.
pub(crate) fn encode_record(record: &IndexRecord, out: &mut Vec<u8>) {
    // Serializing plain structs of numbers and strings into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, record).is_ok() {
        out.push(b'\n');
    }
}

/// Reads an index file; a missing file is an empty index.
pub fn read_index(path: &Path) -> Result<FileIndex, StorageError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileIndex::default()),
        Err(e) => return Err(StorageError::io("reading", path)(e)),
    };
    parse_index(&bytes, path)
}

/// What the first and the last lines of an index say, read without the lines between:
/// enough to know where a file stands (how far it is indexed, whether it is closed) at a
/// cost that does not grow with the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexEnds {
    /// The GTID state before the file (its first line), once written.
    pub gtids_before: Option<GtidState>,
    /// The GTID of the last indexed transaction.
    pub last_gtid: Option<Gtid>,
    /// Where the last indexed transaction (or boundary) ends; 4 when none is.
    pub indexed_end: u64,
    /// The file's final size and successor, once closed.
    pub closed: Option<(u64, Option<String>)>,
}

/// Reads the ends of the index at `path` (a missing file reads as an empty index).
pub fn read_index_ends(path: &Path) -> Result<IndexEnds, StorageError> {
    use std::io::{Read, Seek, SeekFrom};
    /// Bytes read at each end: hundreds of lines.
    const WINDOW: u64 = 64 << 10;
    /// The longest first line read: far beyond any GTID state a server writes.
    const FIRST_LINE_MAX: u64 = 256 << 20;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(IndexEnds {
                indexed_end: 4,
                ..IndexEnds::default()
            });
        }
        Err(e) => return Err(StorageError::io("reading", path)(e)),
    };
    let size = file
        .metadata()
        .map_err(StorageError::io("reading", path))?
        .len();
    let parse = |line: &[u8], number: usize| -> Result<IndexRecord, StorageError> {
        serde_json::from_slice(line).map_err(|e| StorageError::BadIndex {
            path: path.to_owned(),
            line: number,
            message: e.to_string(),
        })
    };
    let mut head = Vec::new();
    (&mut file)
        .take(WINDOW.min(size))
        .read_to_end(&mut head)
        .map_err(StorageError::io("reading", path))?;
    let mut ends = IndexEnds {
        indexed_end: 4,
        ..IndexEnds::default()
    };
    // The first line is read whole, however long: a MySQL server's PREVIOUS_GTIDS naming
    // thousands of servers makes a line of hundreds of KiB, and without it a replica's
    // GTID state would be taken as empty here.
    if head.len() as u64 == WINDOW && !head.contains(&b'\n') {
        use std::io::BufRead;
        file.seek(SeekFrom::Start(WINDOW))
            .map_err(StorageError::io("reading", path))?;
        std::io::BufReader::new((&mut file).take(FIRST_LINE_MAX))
            .read_until(b'\n', &mut head)
            .map_err(StorageError::io("reading", path))?;
    }
    if let Some(newline) = head.iter().position(|&b| b == b'\n')
        && let IndexRecord::GtidsBefore(state) = parse(&head[..newline], 1)?
    {
        ends.gtids_before = Some(state);
    }
    let tail_start = size.saturating_sub(WINDOW);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(tail_start))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(StorageError::io("reading", path))?;
    let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(ends);
    };
    let mut lines: Vec<&[u8]> = tail[..last_newline].split(|&b| b == b'\n').collect();
    if tail_start > 0 {
        // The window's first piece is the end of a line that began before it.
        lines.remove(0);
    }
    for line in lines {
        match parse(line, 0)? {
            IndexRecord::GtidsBefore(_) => {}
            IndexRecord::Transaction(entry) => {
                ends.indexed_end = ends.indexed_end.max(entry.end);
                ends.last_gtid = entry.gtid.or(ends.last_gtid);
            }
            IndexRecord::Boundary { end } => ends.indexed_end = ends.indexed_end.max(end),
            IndexRecord::Closed { size, next_file } => ends.closed = Some((size, next_file)),
        }
    }
    Ok(ends)
}

/// Follows an index file as a stream writes it: each [`IndexFollower::refresh`] reads
/// only the lines added since the last, so a reader at the live tail pays for what is new,
/// not for the whole file. A line the writer has not finished is left for the next call.
#[derive(Debug)]
pub struct IndexFollower {
    path: std::path::PathBuf,
    /// Bytes of the file consumed as whole lines.
    consumed: u64,
    lines: usize,
    index: FileIndex,
}

impl IndexFollower {
    /// Starts following the index at `path` (which may not exist yet: then it is empty).
    pub fn new(path: &Path) -> IndexFollower {
        IndexFollower {
            path: path.to_owned(),
            consumed: 0,
            lines: 0,
            index: FileIndex::default(),
        }
    }

    /// What the index says so far.
    pub fn index(&self) -> &FileIndex {
        &self.index
    }

    /// Reads the lines added since the last call; whether there were any.
    pub fn refresh(&mut self) -> Result<bool, StorageError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StorageError::io("reading", &self.path)(e)),
        };
        let mut added = Vec::new();
        file.seek(SeekFrom::Start(self.consumed))
            .and_then(|_| file.read_to_end(&mut added))
            .map_err(StorageError::io("reading", &self.path))?;
        let Some(last_newline) = added.iter().rposition(|&b| b == b'\n') else {
            return Ok(false);
        };
        for line in added[..last_newline].split(|&b| b == b'\n') {
            self.lines += 1;
            let record: IndexRecord =
                serde_json::from_slice(line).map_err(|e| StorageError::BadIndex {
                    path: self.path.clone(),
                    line: self.lines,
                    message: e.to_string(),
                })?;
            self.index.apply(record);
        }
        self.consumed += last_newline as u64 + 1;
        Ok(true)
    }
}

fn parse_index(bytes: &[u8], path: &Path) -> Result<FileIndex, StorageError> {
    let mut index = FileIndex::default();
    let mut rest = bytes;
    let mut line_number = 0;
    while !rest.is_empty() {
        line_number += 1;
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            // Written without its newline: the writer crashed mid-line.
            index.torn_tail = true;
            break;
        };
        let line = &rest[..newline];
        rest = &rest[newline + 1..];
        let record: IndexRecord =
            serde_json::from_slice(line).map_err(|e| StorageError::BadIndex {
                path: path.to_owned(),
                line: line_number,
                message: e.to_string(),
            })?;
        index.apply(record);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_a_torn_line_is_ignored() {
        let mut index = FileIndex::default();
        index.apply(IndexRecord::GtidsBefore(GtidState::Mariadb(
            "0-1-41".parse().expect("pos"),
        )));
        index.apply(IndexRecord::Transaction(TransactionEntry {
            gtid: Some("0-1-42".parse().expect("gtid")),
            start: 389,
            end: 1022,
            commit_micros: 1_763_868_000_000_000,
            exact_time: false,
            ddl: false,
            events: 5,
            repeated: false,
        }));
        index.apply(IndexRecord::Closed {
            size: 1067,
            next_file: Some("mysql-bin.000002".into()),
        });
        let mut bytes = Vec::new();
        for record in index.records() {
            encode_record(&record, &mut bytes);
        }
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.starts_with(r#"{"record":"gtids_before","flavour":"mariadb","gtids":"0-1-41"}"#)
        );
        let path = Path::new("x.index.jsonl");
        assert_eq!(parse_index(&bytes, path).expect("read"), index);
        assert_eq!(index.gtids_after().to_string(), "0-1-42");
        assert_eq!(index.indexed_end(), 1022);

        // Its ends, read without the middle.
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = dir.path().join("w.index.jsonl");
        std::fs::write(&whole, &bytes).expect("write");
        let ends = read_index_ends(&whole).expect("ends");
        assert_eq!(ends.gtids_before, index.gtids_before);
        assert_eq!(ends.closed, index.closed);
        assert_eq!(ends.indexed_end, 1022);
        assert_eq!(ends.last_gtid, index.transactions[0].gtid);
        assert_eq!(
            read_index_ends(&dir.path().join("none"))
                .expect("none")
                .indexed_end,
            4
        );

        // A follower reads the same, line by line as they are written.
        let followed = dir.path().join("f.index.jsonl");
        let mut follower = IndexFollower::new(&followed);
        assert!(!follower.refresh().expect("missing file"));
        let cut = bytes.len() - 10;
        std::fs::write(&followed, &bytes[..cut]).expect("write");
        follower.refresh().expect("refresh");
        assert!(follower.index().closed.is_none());
        std::fs::write(&followed, &bytes).expect("write");
        follower.refresh().expect("refresh");
        assert_eq!(follower.index().transactions, index.transactions);
        assert_eq!(follower.index().closed, index.closed);

        bytes.extend_from_slice(br#"{"record":"transa"#);
        let torn = parse_index(&bytes, path).expect("read");
        assert!(torn.torn_tail);
        assert_eq!(torn.transactions, index.transactions);

        let err = parse_index(b"{}\n", path).expect_err("not a record");
        assert!(
            err.to_string().starts_with("x.index.jsonl line 1:"),
            "{err}"
        );
    }

    #[test]
    fn the_ends_of_a_long_index_are_read_from_its_first_and_last_lines() {
        let mut bytes = Vec::new();
        encode_record(
            &IndexRecord::GtidsBefore(GtidState::Mariadb("0-1-7".parse().expect("pos"))),
            &mut bytes,
        );
        for n in 0..2000u64 {
            encode_record(
                &IndexRecord::Transaction(TransactionEntry {
                    gtid: Some(format!("0-1-{}", n + 8).parse().expect("gtid")),
                    start: 400 + n * 100,
                    end: 500 + n * 100,
                    commit_micros: 1,
                    exact_time: false,
                    ddl: false,
                    events: 3,
                    repeated: false,
                }),
                &mut bytes,
            );
        }
        assert!(bytes.len() > 128 << 10);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long.index.jsonl");
        // A torn last line is left alone.
        let mut torn = bytes.clone();
        torn.extend_from_slice(br#"{"record":"trans"#);
        std::fs::write(&path, &torn).expect("write");
        let ends = read_index_ends(&path).expect("ends");
        assert_eq!(ends.indexed_end, 500 + 1999 * 100);
        assert_eq!(ends.last_gtid, Some("0-1-2007".parse().expect("gtid")));
        assert_eq!(
            ends.gtids_before.map(|g| g.to_string()).as_deref(),
            Some("0-1-7")
        );
        assert_eq!(ends.closed, None);
        encode_record(
            &IndexRecord::Closed {
                size: 200_500,
                next_file: None,
            },
            &mut bytes,
        );
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            read_index_ends(&path).expect("ends").closed,
            Some((200_500, None))
        );
    }

    #[test]
    fn a_first_line_longer_than_the_window_is_read_whole() {
        // A MySQL PREVIOUS_GTIDS naming 2,000 servers: more than 64 KiB of JSON.
        let set: String = (0..2000u32)
            .map(|n| format!("{n:08x}-0000-0000-0000-000000000000:1-{}", n + 1))
            .collect::<Vec<_>>()
            .join(",");
        let before = GtidState::Mysql(set.parse().expect("set"));
        let mut bytes = Vec::new();
        encode_record(&IndexRecord::GtidsBefore(before.clone()), &mut bytes);
        assert!(bytes.len() > 64 << 10, "{} bytes", bytes.len());
        encode_record(
            &IndexRecord::Transaction(TransactionEntry {
                gtid: None,
                start: 400,
                end: 500,
                commit_micros: 1,
                exact_time: false,
                ddl: false,
                events: 3,
                repeated: false,
            }),
            &mut bytes,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wide.index.jsonl");
        std::fs::write(&path, &bytes).expect("write");
        let ends = read_index_ends(&path).expect("ends");
        assert_eq!(ends.gtids_before, Some(before));
        assert_eq!(ends.indexed_end, 500);
    }
}
