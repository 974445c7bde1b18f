//! Small segment lists and indexes for the unit tests of compaction and consolidation.

use super::format::SegmentRecord;
use super::keys::Codec;
use crate::index::{FileIndex, IndexRecord, TransactionEntry};

/// Segments of the given ranges, keyed by their range.
pub(crate) fn segments(ranges: &[(u64, u64)]) -> Vec<SegmentRecord> {
    ranges
        .iter()
        .map(|&(start, end)| SegmentRecord {
            key: format!("{start}-{end}"),
            start,
            end,
            codec: Codec::Zst,
            crc32: String::new(),
        })
        .collect()
}

/// An index of transactions without GTIDs, the first starting at `first_start`, each
/// ending where the next starts.
pub(crate) fn index(first_start: u64, ends: &[u64]) -> FileIndex {
    let mut index = FileIndex::default();
    let mut start = first_start;
    for &end in ends {
        index.apply(IndexRecord::Transaction(TransactionEntry {
            gtid: None,
            start,
            end,
            commit_micros: 0,
            exact_time: false,
            ddl: false,
            events: 1,
            repeated: false,
        }));
        start = end;
    }
    index
}
